"""Workloads for asyncio's native TLS (streams API), on the default loop and on uvloop.

Written as an asyncio user would: ``asyncio.open_connection(ssl=...)`` (handshakes before it
returns), ``asyncio.start_server(ssl=...)``, ``write`` + ``drain``, ``read``/``readexactly``,
``close`` + ``wait_closed``. Under uvloop the same code runs on uvloop's own TLS implementation.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

from . import _memory
from ._peer import client_context, server_context
from ._spec import HOST, HOSTNAME, RECV_SIZE, Job, Kind, Measurement

T = TypeVar("T")
BACKLOG: Final = 4096
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
#: What a vanished or misbehaving client looks like to an asyncio server handler.
_GONE: Final = (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError, OSError)


class _Setup:
    def __init__(self, job: Job) -> None:
        self.job = job
        key = str(job.params.get("key", "ecdsa"))
        self.server_ctx = server_context(job.certs, job.tls, key)
        self.client_ctx = client_context(job.certs, job.tls, key)

    async def connect(self, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(
            HOST, port, ssl=self.client_ctx, server_hostname=HOSTNAME
        )


def _describe(writer: asyncio.StreamWriter, measurement: Measurement) -> Measurement:
    ssl_object: ssl.SSLObject = writer.get_extra_info("ssl_object")
    cipher = ssl_object.cipher()
    measurement.version = ssl_object.version()
    measurement.cipher = cipher[0] if cipher else None
    return measurement


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(*_GONE):
        await writer.wait_closed()


async def _receive_exactly(reader: asyncio.StreamReader, size: int) -> bytes | None:
    """``size`` bytes, or None at a clean EOF before the first byte."""
    try:
        return await reader.readexactly(size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise
        return None


async def _echo_until_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(RECV_SIZE):
            writer.write(data)
            await writer.drain()
    except _GONE:
        # A client that vanished without close_notify (the killed memory peer) is ordinary.
        pass
    await _close(writer)


async def _with_server(setup: _Setup, handler: Handler, client: Callable[[int], Awaitable[T]]) -> T:
    writers: list[asyncio.StreamWriter] = []

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await handler(reader, writer)

    server = await asyncio.start_server(tracked, HOST, 0, ssl=setup.server_ctx, backlog=BACKLOG)
    port = int(server.sockets[0].getsockname()[1])
    try:
        return await client(port)
    finally:
        server.close()
        # Connections still open at the end (memory workload) are dropped, not awaited:
        # Python 3.12's wait_closed() would wait for every one of them.
        for writer in writers:
            writer.transport.abort()


async def _bulk(s: _Setup) -> Measurement:
    chunk = int(s.job.params["chunk"])
    writes = max(1, int(s.job.params["total"]) // chunk)
    total = writes * chunk
    payload = bytes(range(256)) * (chunk // 256)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received = 0
        while received < total:
            data = await reader.read(RECV_SIZE)
            if not data:
                raise RuntimeError("EOF before all bulk data arrived")
            received += len(data)
        writer.write(b"k")
        await writer.drain()
        await _echo_until_eof(reader, writer)

    async def client(port: int) -> Measurement:
        reader, writer = await s.connect(port)
        start = time.perf_counter()
        for _ in range(writes):
            writer.write(payload)
            await writer.drain()
        await _receive_exactly(reader, 1)
        elapsed = time.perf_counter() - start
        measurement = _describe(writer, Measurement(total / elapsed / 1e6, {"seconds": elapsed}))
        await _close(writer)
        return measurement

    return await _with_server(s, handler, client)


async def _pingpong(s: _Setup) -> Measurement:
    size, count, warmup = (int(s.job.params[k]) for k in ("size", "count", "warmup"))
    message = b"p" * size

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (data := await _receive_exactly(reader, size)) is not None:
            writer.write(data)
            await writer.drain()
        await _close(writer)

    async def client(port: int) -> Measurement:
        reader, writer = await s.connect(port)
        for _ in range(warmup):
            writer.write(message)
            await writer.drain()
            await _receive_exactly(reader, size)
        start = time.perf_counter()
        for _ in range(count):
            writer.write(message)
            await writer.drain()
            await _receive_exactly(reader, size)
        elapsed = time.perf_counter() - start
        measurement = _describe(writer, Measurement(count / elapsed, {"seconds": elapsed}))
        await _close(writer)
        return measurement

    return await _with_server(s, handler, client)


async def _handshakes(s: _Setup) -> Measurement:
    count, warmup = int(s.job.params["count"]), int(s.job.params["warmup"])

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if await _receive_exactly(reader, 1) is not None:
            writer.write(b"y")
            await writer.drain()
        await _echo_until_eof(reader, writer)

    async def one(port: int) -> Measurement:
        reader, writer = await s.connect(port)
        writer.write(b"x")
        await writer.drain()
        await _receive_exactly(reader, 1)
        measurement = _describe(writer, Measurement(0.0))
        await _close(writer)
        return measurement

    async def client(port: int) -> Measurement:
        for _ in range(warmup):
            await one(port)
        start = time.perf_counter()
        for _ in range(count):
            last = await one(port)
        elapsed = time.perf_counter() - start
        last.value = count / elapsed
        last.extra = {"seconds": elapsed}
        return last

    return await _with_server(s, handler, client)


async def _memory_server(s: _Setup) -> Measurement:
    async def client(port: int) -> Measurement:
        return await asyncio.to_thread(_memory.measure_server_side, port, s.job)

    return await _with_server(s, _echo_until_eof, client)


async def _memory_client(s: _Setup) -> Measurement:
    plan = _memory.MemoryPlan(s.job.params)
    kept: list[asyncio.StreamWriter] = []
    with _memory.running_peer("server", 0, s.job) as peer:
        port = peer.port()
        try:
            for phase, count in enumerate(plan.phases):
                plan.before(phase)
                for _ in range(count):
                    reader, writer = await s.connect(port)
                    writer.write(_memory.MESSAGE)
                    await writer.drain()
                    await _receive_exactly(reader, len(_memory.MESSAGE))
                    kept.append(writer)
                plan.after(phase)
            return _describe(kept[0], plan.result())
        finally:
            for writer in kept:
                writer.transport.abort()


async def _concurrent(s: _Setup) -> Measurement:
    connections, exchanges = int(s.job.params["connections"]), int(s.job.params["exchanges"])
    message = b"c" * int(s.job.params["size"])
    described: list[Measurement] = []

    async def one(port: int) -> None:
        reader, writer = await s.connect(port)
        for _ in range(exchanges):
            writer.write(message)
            await writer.drain()
            await _receive_exactly(reader, len(message))
        if not described:
            described.append(_describe(writer, Measurement(0.0)))
        await _close(writer)

    async def client(port: int) -> Measurement:
        start = time.perf_counter()
        async with asyncio.TaskGroup() as tg:
            for _ in range(connections):
                tg.create_task(one(port))
        elapsed = time.perf_counter() - start
        result = described[0]
        result.value = connections / elapsed
        result.extra = {"seconds": elapsed, "connections": connections}
        return result

    return await _with_server(s, _echo_until_eof, client)


_WORKLOADS: Final[dict[Kind, Callable[[_Setup], Awaitable[Measurement]]]] = {
    Kind.BULK: _bulk,
    Kind.PINGPONG: _pingpong,
    Kind.HANDSHAKE: _handshakes,
    Kind.MEMORY_SERVER: _memory_server,
    Kind.MEMORY_CLIENT: _memory_client,
    Kind.CONCURRENT: _concurrent,
}


def run(job: Job) -> Measurement:
    """Run ``job`` on asyncio's default loop or on uvloop, bounded by ``job.timeout``."""

    async def main() -> Measurement:
        async with asyncio.timeout(job.timeout):
            return await _WORKLOADS[job.kind](_Setup(job))

    if job.contender == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(main())
    return asyncio.run(main())
