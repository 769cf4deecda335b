"""Workloads for trio streams: trio_tls.SSLStream, trio.SSLStream, plain trio TCP and the
trio_tls engine without its driver.

All four share this code; they differ only in how a TCP stream is wrapped (``_Variant``). The
code is what a trio user would write: ``trio.open_tcp_stream`` / ``trio.serve_listeners``, one
handler task per accepted connection, ``send_all`` / ``receive_some``.
"""

from __future__ import annotations

import contextlib
import importlib
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol, TypeVar, cast

import trio

from . import _memory
from ._peer import client_context, server_context
from ._spec import HOST, HOSTNAME, RECV_SIZE, Job, Kind, Measurement

T = TypeVar("T")
#: Backlog for the concurrent workload's simultaneous connects (the kernel caps it at somaxconn).
BACKLOG: Final = 4096


class _TLSLike(Protocol):
    async def do_handshake(self) -> None: ...
    def version(self) -> str | None: ...
    def cipher(self) -> tuple[str, str, int] | None: ...


class _Variant:
    """How one contender turns a TCP stream into the stream under test."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self._cls: Any = None
        if job.contender == "trio_ssl":
            self._cls = trio.SSLStream
        elif job.contender == "trio_tls":
            # Imported lazily: the runner skips this contender while the core is missing.
            self._cls = importlib.import_module("trio_tls").SSLStream
        elif job.contender == "trio_tls_engine":
            self._cls = importlib.import_module("trio_tls._bench._engine_only").EngineOnlyStream
        key = str(job.params.get("key", "ecdsa"))
        self._server_ctx = server_context(job.certs, job.tls, key) if self._cls else None
        self._client_ctx = client_context(job.certs, job.tls, key) if self._cls else None

    def wrap(self, tcp: trio.SocketStream, *, server_side: bool) -> trio.abc.Stream:
        if self._cls is None:
            return tcp
        if server_side:
            return cast(trio.abc.Stream, self._cls(tcp, self._server_ctx, server_side=True))
        return cast(trio.abc.Stream, self._cls(tcp, self._client_ctx, server_hostname=HOSTNAME))

    async def connect(self, port: int) -> trio.abc.Stream:
        stream = self.wrap(await trio.open_tcp_stream(HOST, port), server_side=False)
        if self._cls is not None:
            await cast(_TLSLike, stream).do_handshake()
        return stream

    def describe(self, stream: trio.abc.Stream, measurement: Measurement) -> Measurement:
        if self._cls is not None:
            tls = cast(_TLSLike, stream)
            cipher = tls.cipher()
            measurement.version = tls.version()
            measurement.cipher = cipher[0] if cipher else None
        statistics = getattr(stream, "statistics", None)
        if statistics is not None:
            # trio_tls only: how many transport calls the client made, to explain its numbers.
            stats = statistics()
            measurement.extra = {
                **measurement.extra,
                "client_transport_sends": stats.transport_sends,
                "client_transport_receives": stats.transport_receives,
                "client_wire_bytes_sent": stats.wire_bytes_sent,
            }
        return measurement


async def _receive_exactly(stream: trio.abc.ReceiveStream, size: int) -> bytes | None:
    """``size`` bytes, or None at a clean EOF before the first byte."""
    data = b""
    while len(data) < size:
        chunk = await stream.receive_some(size - len(data))
        if not chunk:
            if data:
                raise RuntimeError("EOF in the middle of a message")
            return None
        data += chunk
    return data


async def _close(stream: trio.abc.Stream) -> None:
    # The peer may already be gone; a benchmark connection that closes uncleanly is not an error.
    with contextlib.suppress(trio.BrokenResourceError):
        await stream.aclose()


async def _echo_until_eof(stream: trio.abc.Stream) -> None:
    try:
        while data := await stream.receive_some(RECV_SIZE):
            await stream.send_all(data)
    except trio.BrokenResourceError:
        # Clients that vanish without close_notify (the memory peer is killed at the end) are
        # an ordinary event for a server, not a benchmark failure.
        pass
    await _close(stream)


async def _with_server(
    handler: Callable[[trio.SocketStream], Awaitable[object]],
    client: Callable[[int], Awaitable[T]],
) -> T:
    """Run ``handler`` for each accepted connection while ``client(port)`` runs; then stop."""
    listeners = await trio.open_tcp_listeners(0, host=HOST, backlog=BACKLOG)
    port = int(listeners[0].socket.getsockname()[1])
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handler, listeners)
        result = await client(port)
        nursery.cancel_scope.cancel()
    return result


async def _bulk(v: _Variant) -> Measurement:
    chunk = int(v.job.params["chunk"])
    writes = max(1, int(v.job.params["total"]) // chunk)
    total = writes * chunk
    payload = bytes(range(256)) * (chunk // 256)

    async def handler(tcp: trio.SocketStream) -> None:
        stream = v.wrap(tcp, server_side=True)
        received = 0
        while received < total:
            data = await stream.receive_some(RECV_SIZE)
            if not data:
                raise RuntimeError("EOF before all bulk data arrived")
            received += len(data)
        await stream.send_all(b"k")
        await _echo_until_eof(stream)

    async def client(port: int) -> Measurement:
        stream = await v.connect(port)
        start = time.perf_counter()
        for _ in range(writes):
            await stream.send_all(payload)
        await _receive_exactly(stream, 1)
        elapsed = time.perf_counter() - start
        await _close(stream)
        return v.describe(stream, Measurement(total / elapsed / 1e6, {"seconds": elapsed}))

    return await _with_server(handler, client)


async def _pingpong(v: _Variant) -> Measurement:
    size, count, warmup = (int(v.job.params[k]) for k in ("size", "count", "warmup"))
    message = b"p" * size

    async def handler(tcp: trio.SocketStream) -> None:
        stream = v.wrap(tcp, server_side=True)
        while (data := await _receive_exactly(stream, size)) is not None:
            await stream.send_all(data)
        await _close(stream)

    async def client(port: int) -> Measurement:
        stream = await v.connect(port)
        for _ in range(warmup):
            await stream.send_all(message)
            await _receive_exactly(stream, size)
        start = time.perf_counter()
        for _ in range(count):
            await stream.send_all(message)
            await _receive_exactly(stream, size)
        elapsed = time.perf_counter() - start
        await _close(stream)
        return v.describe(stream, Measurement(count / elapsed, {"seconds": elapsed}))

    return await _with_server(handler, client)


async def _handshakes(v: _Variant) -> Measurement:
    count, warmup = int(v.job.params["count"]), int(v.job.params["warmup"])

    async def handler(tcp: trio.SocketStream) -> None:
        stream = v.wrap(tcp, server_side=True)
        if await _receive_exactly(stream, 1) is not None:
            await stream.send_all(b"y")
            await _echo_until_eof(stream)

    async def one(port: int) -> trio.abc.Stream:
        stream = await v.connect(port)
        await stream.send_all(b"x")
        await _receive_exactly(stream, 1)
        await _close(stream)
        return stream

    async def client(port: int) -> Measurement:
        for _ in range(warmup):
            await one(port)
        start = time.perf_counter()
        for _ in range(count):
            last = await one(port)
        elapsed = time.perf_counter() - start
        return v.describe(last, Measurement(count / elapsed, {"seconds": elapsed}))

    return await _with_server(handler, client)


async def _memory_server(v: _Variant) -> Measurement:
    async def handler(tcp: trio.SocketStream) -> None:
        await _echo_until_eof(v.wrap(tcp, server_side=True))

    async def client(port: int) -> Measurement:
        return await trio.to_thread.run_sync(_memory.measure_server_side, port, v.job)

    return await _with_server(handler, client)


async def _memory_client(v: _Variant) -> Measurement:
    plan = _memory.MemoryPlan(v.job.params)
    kept: list[trio.abc.Stream] = []
    with _memory.running_peer("server", 0, v.job) as peer:
        port = peer.port()
        for phase, count in enumerate(plan.phases):
            plan.before(phase)
            for _ in range(count):
                stream = await v.connect(port)
                await stream.send_all(_memory.MESSAGE)
                await _receive_exactly(stream, len(_memory.MESSAGE))
                kept.append(stream)
            plan.after(phase)
        return v.describe(kept[0], plan.result())


async def _concurrent(v: _Variant) -> Measurement:
    connections, exchanges = int(v.job.params["connections"]), int(v.job.params["exchanges"])
    message = b"c" * int(v.job.params["size"])
    described: list[Measurement] = []

    async def handler(tcp: trio.SocketStream) -> None:
        await _echo_until_eof(v.wrap(tcp, server_side=True))

    async def one(port: int) -> None:
        stream = await v.connect(port)
        for _ in range(exchanges):
            await stream.send_all(message)
            await _receive_exactly(stream, len(message))
        if not described:
            described.append(v.describe(stream, Measurement(0.0)))
        await _close(stream)

    async def client(port: int) -> Measurement:
        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(connections):
                nursery.start_soon(one, port)
        elapsed = time.perf_counter() - start
        result = described[0]
        result.value = connections / elapsed
        result.extra = {"seconds": elapsed, "connections": connections}
        return result

    return await _with_server(handler, client)


_WORKLOADS: Final[dict[Kind, Callable[[_Variant], Awaitable[Measurement]]]] = {
    Kind.BULK: _bulk,
    Kind.PINGPONG: _pingpong,
    Kind.HANDSHAKE: _handshakes,
    Kind.MEMORY_SERVER: _memory_server,
    Kind.MEMORY_CLIENT: _memory_client,
    Kind.CONCURRENT: _concurrent,
}


def run(job: Job) -> Measurement:
    """Run ``job`` in a fresh trio event loop, bounded by ``job.timeout``."""

    async def main() -> Measurement:
        with trio.fail_after(job.timeout):
            return await _WORKLOADS[job.kind](_Variant(job))

    return trio.run(main)
