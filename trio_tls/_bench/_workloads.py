"""The workloads, written once for every family.

A workload is a server handler and a client routine. What differs between trio, anyio and
asyncio is how a connection is opened, served, written to, read from and closed: that is the
:class:`Adapter` each family module supplies, and nothing else lives there. The bodies below
call the adapter's ``send``/``receive`` once per library call; those are plain methods that
hand back the library's own awaitable (no wrapper coroutine), so a timed loop makes the same
library calls, in the same order, as code written straight against the library, plus one
plain method call each (under 0.1 us, against 50 us or more per round trip measured).

The sizes and the results (:class:`Bulk`, :class:`PingPong`, :class:`Handshakes`,
:class:`Concurrent`) serve the blocking family too, which restates the loops without
``await`` (see ``_blocking_family``).

A client describes (version, cipher, counters) a connection that is still open, after the
clock stops: the one it measured, or for handshakes one more after the timed ones, so that
the timed loop is only connect, handshake, exchange and close.
"""

from __future__ import annotations

import functools
import ssl
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeVar

from . import _memory
from ._peer import client_context, server_context
from ._spec import RECV_SIZE, Job, Kind, Measurement

#: A connection as the family's users hold it (a trio stream, an asyncio reader and writer).
C = TypeVar("C")
T = TypeVar("T")
#: Listen backlog, for the concurrent workload's simultaneous connects (the kernel caps it
#: at somaxconn).
BACKLOG: Final = 4096


def contexts(job: Job) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """The (server, client) contexts for ``job``'s TLS version and certificate type."""
    key = str(job.params.get("key", "ecdsa"))
    return server_context(job.certs, job.tls, key), client_context(job.certs, job.tls, key)


def per_second(count: int, elapsed: float) -> Measurement:
    """``count`` operations in ``elapsed`` seconds, as a rate."""
    return Measurement(count / elapsed, {"seconds": elapsed})


@dataclass(frozen=True)
class Bulk:
    """``writes`` writes of ``payload`` one way, acknowledged with one byte at the end."""

    writes: int
    #: Bytes the server waits for before it acknowledges.
    total: int
    payload: bytes

    @classmethod
    def of(cls, job: Job) -> Bulk:
        chunk = int(job.params["chunk"])
        writes = max(1, int(job.params["total"]) // chunk)
        return cls(writes, writes * chunk, bytes(range(256)) * (chunk // 256))

    def result(self, elapsed: float) -> Measurement:
        """Throughput in MB/s (10^6 bytes)."""
        return Measurement(self.total / elapsed / 1e6, {"seconds": elapsed})


@dataclass(frozen=True)
class PingPong:
    """``count`` round trips of ``message`` (after ``warmup`` untimed ones)."""

    message: bytes
    count: int
    warmup: int

    @classmethod
    def of(cls, job: Job) -> PingPong:
        size, count, warmup = (int(job.params[k]) for k in ("size", "count", "warmup"))
        return cls(b"p" * size, count, warmup)


@dataclass(frozen=True)
class Handshakes:
    """``count`` sequential connections (after ``warmup`` untimed ones)."""

    count: int
    warmup: int

    @classmethod
    def of(cls, job: Job) -> Handshakes:
        return cls(int(job.params["count"]), int(job.params["warmup"]))


@dataclass(frozen=True)
class Concurrent:
    """``connections`` started at once, each echoing ``message`` ``exchanges`` times."""

    connections: int
    exchanges: int
    message: bytes

    @classmethod
    def of(cls, job: Job) -> Concurrent:
        params = job.params
        message = b"c" * int(params["size"])
        return cls(int(params["connections"]), int(params["exchanges"]), message)

    def result(self, described: Measurement, elapsed: float) -> Measurement:
        """``described`` (the first connection's version and cipher) with the rate."""
        described.value = self.connections / elapsed
        described.extra = {"seconds": elapsed, "connections": self.connections}
        return described


class Adapter(Protocol[C]):
    """What one async family supplies; the workloads below are written over it."""

    job: Job
    #: What a client that vanished, or closed without close_notify, raises in a server
    #: handler's receive or send (the memory peer is killed at the end of its run).
    gone: tuple[type[BaseException], ...]

    def connect(self, port: int) -> Awaitable[C]:
        """Open a client connection to ``port`` on loopback and finish its handshake."""

    def send(self, conn: C, data: bytes) -> Awaitable[object]:
        """Send all of ``data``."""

    def receive(self, conn: C, max_bytes: int) -> Awaitable[bytes]:
        """Up to ``max_bytes``; at EOF ``b""`` or one of ``gone``."""

    def receive_exactly(self, conn: C, size: int) -> Awaitable[bytes | None]:
        """``size`` bytes, or None at a clean EOF before the first byte."""

    def close(self, conn: C) -> Awaitable[None]:
        """Close ``conn``; a peer that is already gone is not an error."""

    def describe(self, conn: C, measurement: Measurement) -> Measurement:
        """``measurement`` with the TLS version, cipher and details of the open ``conn``."""

    def serve(
        self, handler: Callable[[C], Awaitable[None]], client: Callable[[int], Awaitable[T]]
    ) -> Awaitable[T]:
        """Run ``handler`` per accepted connection while ``client(port)`` runs; then stop."""

    def concurrently(
        self, count: int, task: Callable[[int], Coroutine[Any, Any, None]], port: int
    ) -> Awaitable[None]:
        """Run ``count`` copies of ``task(port)`` at once; return when all are done."""

    def in_thread(self, function: Callable[[], T]) -> Awaitable[T]:
        """Call ``function`` in a worker thread."""

    def drop(self, conns: Sequence[C]) -> None:
        """Abandon connections still open at the end of the memory workload."""


async def _finish(a: Adapter[C], conn: C, measurement: Measurement) -> Measurement:
    """Describe ``conn`` into ``measurement``, then close it."""
    described = a.describe(conn, measurement)
    await a.close(conn)
    return described


async def echo_until_eof(a: Adapter[C], conn: C) -> None:
    """The server side of every connection that only answers: echo, then close."""
    # An idle connection waits here holding its last message in `data` (133 bytes with
    # the bytes header), the same for every contender, as the usual `while data := ...`
    # handler does.
    try:
        while data := await a.receive(conn, RECV_SIZE):
            await a.send(conn, data)
    except a.gone:
        pass
    await a.close(conn)


async def bulk(a: Adapter[C]) -> Measurement:
    plan = Bulk.of(a.job)

    async def handler(conn: C) -> None:
        received = 0
        while received < plan.total:
            data = await a.receive(conn, RECV_SIZE)
            if not data:
                raise RuntimeError("EOF before all bulk data arrived")
            received += len(data)
        await a.send(conn, b"k")
        await echo_until_eof(a, conn)

    async def client(port: int) -> Measurement:
        conn = await a.connect(port)
        payload = plan.payload
        start = time.perf_counter()
        for _ in range(plan.writes):
            await a.send(conn, payload)
        await a.receive_exactly(conn, 1)
        elapsed = time.perf_counter() - start
        return await _finish(a, conn, plan.result(elapsed))

    return await a.serve(handler, client)


async def pingpong(a: Adapter[C]) -> Measurement:
    plan = PingPong.of(a.job)
    message, size = plan.message, len(plan.message)

    async def handler(conn: C) -> None:
        while (data := await a.receive_exactly(conn, size)) is not None:
            await a.send(conn, data)
        await a.close(conn)

    async def client(port: int) -> Measurement:
        conn = await a.connect(port)
        for _ in range(plan.warmup):
            await a.send(conn, message)
            await a.receive_exactly(conn, size)
        start = time.perf_counter()
        for _ in range(plan.count):
            await a.send(conn, message)
            await a.receive_exactly(conn, size)
        elapsed = time.perf_counter() - start
        return await _finish(a, conn, per_second(plan.count, elapsed))

    return await a.serve(handler, client)


async def handshakes(a: Adapter[C]) -> Measurement:
    plan = Handshakes.of(a.job)

    async def handler(conn: C) -> None:
        if await a.receive_exactly(conn, 1) is not None:
            await a.send(conn, b"y")
        await echo_until_eof(a, conn)

    async def exchange(port: int) -> C:
        """Connect, handshake, one byte each way; the connection stays open."""
        conn = await a.connect(port)
        await a.send(conn, b"x")
        await a.receive_exactly(conn, 1)
        return conn

    async def client(port: int) -> Measurement:
        for _ in range(plan.warmup):
            await a.close(await exchange(port))
        start = time.perf_counter()
        for _ in range(plan.count):
            await a.close(await exchange(port))
        elapsed = time.perf_counter() - start
        return await _finish(a, await exchange(port), per_second(plan.count, elapsed))

    return await a.serve(handler, client)


async def memory_server(a: Adapter[C]) -> Measurement:
    async def client(port: int) -> Measurement:
        return await a.in_thread(functools.partial(_memory.measure_server_side, port, a.job))

    # The partial, not a coroutine of its own: each idle connection holds exactly the frames
    # a user's handler would (the accepting task and the echo loop).
    return await a.serve(functools.partial(echo_until_eof, a), client)


async def memory_client(a: Adapter[C]) -> Measurement:
    plan = _memory.MemoryPlan(a.job.params)
    kept: list[C] = []
    with _memory.running_peer("server", 0, a.job) as peer:
        port = peer.port()
        try:
            for count in plan.batches():
                for _ in range(count):
                    conn = await a.connect(port)
                    kept.append(conn)
                    await a.send(conn, _memory.MESSAGE)
                    await a.receive_exactly(conn, len(_memory.MESSAGE))
            return a.describe(kept[0], plan.result())
        finally:
            a.drop(kept)


async def concurrent(a: Adapter[C]) -> Measurement:
    plan = Concurrent.of(a.job)
    message, size = plan.message, len(plan.message)
    described: list[Measurement] = []

    async def one(port: int) -> None:
        conn = await a.connect(port)
        for _ in range(plan.exchanges):
            await a.send(conn, message)
            await a.receive_exactly(conn, size)
        if not described:
            described.append(a.describe(conn, Measurement(0.0)))
        await a.close(conn)

    async def client(port: int) -> Measurement:
        start = time.perf_counter()
        await a.concurrently(plan.connections, one, port)
        elapsed = time.perf_counter() - start
        return plan.result(described[0], elapsed)

    return await a.serve(functools.partial(echo_until_eof, a), client)


#: The body of each kind of workload. ``Adapter[Any]``: a table cannot hold the bodies'
#: connection type, which each family fixes.
BODIES: Final[dict[Kind, Callable[[Adapter[Any]], Awaitable[Measurement]]]] = {
    Kind.BULK: bulk,
    Kind.PINGPONG: pingpong,
    Kind.HANDSHAKE: handshakes,
    Kind.MEMORY_SERVER: memory_server,
    Kind.MEMORY_CLIENT: memory_client,
    Kind.CONCURRENT: concurrent,
}
