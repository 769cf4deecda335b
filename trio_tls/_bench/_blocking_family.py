"""Blocking ``ssl.SSLSocket``, one thread per connection on each side.

Written as a threaded server would be: an accept thread starts a handler thread per
connection; clients run in the main thread (or one thread each in the concurrent workload).
Sockets are wrapped with ``SSLContext.wrap_socket`` (handshake on connect) and closed without
``unwrap()``, as ``with ctx.wrap_socket(...)`` code does.

The sizes and results come from ``_workloads``; the loops restate its async ones without
``await``, in the same order. Running those bodies here would take an event loop, or a
coroutine driven by hand with an awaitable around every socket call, in each timed loop,
and this contender is the one that measures code with neither.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Final

from . import _memory, _workloads
from ._spec import HOST, HOSTNAME, RECV_SIZE, Job, Kind, Measurement
from ._workloads import BACKLOG, Bulk, Concurrent, Handshakes, PingPong, per_second

#: How often the accept loop checks whether it should stop.
_ACCEPT_POLL_S: Final = 0.05
Handler = Callable[[ssl.SSLSocket], None]


class _Setup:
    def __init__(self, job: Job) -> None:
        self.job = job
        self.server_ctx, self.client_ctx = _workloads.contexts(job)

    def connect(self, port: int) -> ssl.SSLSocket:
        sock = socket.create_connection((HOST, port), timeout=self.job.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self.client_ctx.wrap_socket(sock, server_hostname=HOSTNAME)


def _describe(sock: ssl.SSLSocket, measurement: Measurement) -> Measurement:
    cipher = sock.cipher()
    measurement.version = sock.version()
    measurement.cipher = cipher[0] if cipher else None
    return measurement


def _receive_exactly(sock: ssl.SSLSocket, size: int) -> bytes | None:
    """``size`` bytes, or None at a clean EOF before the first byte."""
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            if data:
                raise ConnectionError("EOF in the middle of a message")
            return None
        data += chunk
    return data


def _echo_until_eof(sock: ssl.SSLSocket) -> None:
    with sock:
        while data := sock.recv(RECV_SIZE):
            sock.sendall(data)


class _Server:
    """Accept thread + a thread per connection; errors are kept and re-raised by ``check``."""

    def __init__(self, setup: _Setup, handler: Handler) -> None:
        self._setup = setup
        self._handler = handler
        self._listener = socket.create_server((HOST, 0), backlog=BACKLOG)
        self._listener.settimeout(_ACCEPT_POLL_S)
        self.port = int(self._listener.getsockname()[1])
        self._stop = threading.Event()
        self.errors: list[BaseException] = []
        self._accepter = threading.Thread(target=self._accept_loop, daemon=True)
        self._accepter.start()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(self._setup.job.timeout)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._serve_one, args=(conn,), daemon=True).start()
        self._listener.close()

    def _serve_one(self, conn: socket.socket) -> None:
        try:
            self._handler(self._setup.server_ctx.wrap_socket(conn, server_side=True))
        except (ConnectionError, ssl.SSLError) as exc:
            # A client that vanished (the killed memory peer) is ordinary; keep anything odd.
            if not isinstance(exc, ConnectionResetError | ssl.SSLEOFError | BrokenPipeError):
                self.errors.append(exc)
        except BaseException as exc:
            self.errors.append(exc)
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        self._accepter.join(timeout=5)
        if self.errors:
            raise self.errors[0]


@contextmanager
def _serving(setup: _Setup, handler: Handler) -> Iterator[_Server]:
    server = _Server(setup, handler)
    try:
        yield server
    finally:
        server.stop()


def _bulk(s: _Setup) -> Measurement:
    plan = Bulk.of(s.job)

    def handler(sock: ssl.SSLSocket) -> None:
        received = 0
        while received < plan.total:
            data = sock.recv(RECV_SIZE)
            if not data:
                raise RuntimeError("EOF before all bulk data arrived")
            received += len(data)
        sock.sendall(b"k")
        _echo_until_eof(sock)

    with _serving(s, handler) as server, s.connect(server.port) as sock:
        payload = plan.payload
        start = time.perf_counter()
        for _ in range(plan.writes):
            sock.sendall(payload)
        _receive_exactly(sock, 1)
        elapsed = time.perf_counter() - start
        return _describe(sock, plan.result(elapsed))


def _pingpong(s: _Setup) -> Measurement:
    plan = PingPong.of(s.job)
    message, size = plan.message, len(plan.message)

    def handler(sock: ssl.SSLSocket) -> None:
        with sock:
            while (data := _receive_exactly(sock, size)) is not None:
                sock.sendall(data)

    with _serving(s, handler) as server, s.connect(server.port) as sock:
        for _ in range(plan.warmup):
            sock.sendall(message)
            _receive_exactly(sock, size)
        start = time.perf_counter()
        for _ in range(plan.count):
            sock.sendall(message)
            _receive_exactly(sock, size)
        elapsed = time.perf_counter() - start
        return _describe(sock, per_second(plan.count, elapsed))


def _handshakes(s: _Setup) -> Measurement:
    plan = Handshakes.of(s.job)

    def handler(sock: ssl.SSLSocket) -> None:
        if _receive_exactly(sock, 1) is not None:
            sock.sendall(b"y")
        _echo_until_eof(sock)

    def exchange(port: int) -> ssl.SSLSocket:
        """Connect, handshake, one byte each way; the connection stays open."""
        sock = s.connect(port)
        sock.sendall(b"x")
        _receive_exactly(sock, 1)
        return sock

    with _serving(s, handler) as server:
        for _ in range(plan.warmup):
            exchange(server.port).close()
        start = time.perf_counter()
        for _ in range(plan.count):
            exchange(server.port).close()
        elapsed = time.perf_counter() - start
        with exchange(server.port) as sock:
            return _describe(sock, per_second(plan.count, elapsed))


def _memory_server(s: _Setup) -> Measurement:
    with _serving(s, _echo_until_eof) as server:
        return _memory.measure_server_side(server.port, s.job)


def _memory_client(s: _Setup) -> Measurement:
    plan = _memory.MemoryPlan(s.job.params)
    kept: list[ssl.SSLSocket] = []
    with _memory.running_peer("server", 0, s.job) as peer:
        port = peer.port()
        try:
            for count in plan.batches():
                for _ in range(count):
                    sock = s.connect(port)
                    kept.append(sock)
                    sock.sendall(_memory.MESSAGE)
                    _receive_exactly(sock, len(_memory.MESSAGE))
            return _describe(kept[0], plan.result())
        finally:
            for sock in kept:
                sock.close()


def _concurrent(s: _Setup) -> Measurement:
    plan = Concurrent.of(s.job)
    message, size = plan.message, len(plan.message)
    described: list[Measurement] = []
    errors: list[BaseException] = []

    def one(port: int) -> None:
        try:
            with s.connect(port) as sock:
                for _ in range(plan.exchanges):
                    sock.sendall(message)
                    _receive_exactly(sock, size)
                if not described:
                    described.append(_describe(sock, Measurement(0.0)))
        except BaseException as exc:
            errors.append(exc)

    with _serving(s, _echo_until_eof) as server:
        start = time.perf_counter()
        threads = [
            threading.Thread(target=one, args=(server.port,), daemon=True)
            for _ in range(plan.connections)
        ]
        for thread in threads:
            thread.start()
        deadline = start + s.job.timeout
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.perf_counter()))
        elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    if any(thread.is_alive() for thread in threads):
        raise TimeoutError("concurrent clients did not finish within the job timeout")
    return plan.result(described[0], elapsed)


_WORKLOADS: Final[dict[Kind, Callable[[_Setup], Measurement]]] = {
    Kind.BULK: _bulk,
    Kind.PINGPONG: _pingpong,
    Kind.HANDSHAKE: _handshakes,
    Kind.MEMORY_SERVER: _memory_server,
    Kind.MEMORY_CLIENT: _memory_client,
    Kind.CONCURRENT: _concurrent,
}


def run(job: Job) -> Measurement:
    """Run ``job`` with blocking sockets; every socket times out after ``job.timeout``."""
    return _WORKLOADS[job.kind](_Setup(job))
