"""Workloads for anyio's ``TLSStream``, on the trio and asyncio backends.

Written as an anyio user would: ``anyio.connect_tcp`` + ``TLSStream.wrap`` (which handshakes),
``create_tcp_listener().serve`` with a handler per connection, ``send``/``receive``. anyio's
defaults are kept, including ``standard_compatible=True``, whose ``aclose()`` waits for the
peer's close_notify (a round trip more than trio's close; see shared TLS pitfalls, item 5).
"""

from __future__ import annotations

import contextlib
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

import anyio
import anyio.abc
from anyio.streams.tls import TLSAttribute, TLSStream

from . import _memory
from ._peer import client_context, server_context
from ._spec import HOST, HOSTNAME, RECV_SIZE, Job, Kind, Measurement

T = TypeVar("T")
BACKLOG: Final = 4096
#: What a peer that vanishes or misbehaves looks like to an anyio server handler.
_GONE: Final = (anyio.BrokenResourceError, anyio.EndOfStream, ssl.SSLError, OSError)


class _Setup:
    def __init__(self, job: Job) -> None:
        self.job = job
        key = str(job.params.get("key", "ecdsa"))
        self.server_ctx = server_context(job.certs, job.tls, key)
        self.client_ctx = client_context(job.certs, job.tls, key)

    async def connect(self, port: int) -> TLSStream:
        tcp = await anyio.connect_tcp(HOST, port)
        return await TLSStream.wrap(tcp, hostname=HOSTNAME, ssl_context=self.client_ctx)

    async def accept(self, tcp: anyio.abc.SocketStream) -> TLSStream:
        return await TLSStream.wrap(tcp, server_side=True, ssl_context=self.server_ctx)


def _describe(stream: TLSStream, measurement: Measurement) -> Measurement:
    cipher = stream.extra(TLSAttribute.cipher)
    measurement.version = stream.extra(TLSAttribute.tls_version)
    measurement.cipher = cipher[0]
    return measurement


async def _receive_exactly(stream: TLSStream, size: int) -> bytes | None:
    """``size`` bytes, or None at a clean EOF before the first byte."""
    data = b""
    while len(data) < size:
        try:
            data += await stream.receive(size - len(data))
        except anyio.EndOfStream:
            if data:
                raise
            return None
    return data


async def _close(stream: TLSStream) -> None:
    with contextlib.suppress(*_GONE):
        await stream.aclose()


async def _echo_until_eof(stream: TLSStream) -> None:
    try:
        while True:
            await stream.send(await stream.receive(RECV_SIZE))
    except _GONE:
        # EOF, or a client that vanished without close_notify (the killed memory peer).
        pass
    await _close(stream)


async def _with_server(
    handler: Callable[[anyio.abc.SocketStream], Awaitable[object]],
    client: Callable[[int], Awaitable[T]],
) -> T:
    listener = await anyio.create_tcp_listener(local_host=HOST, local_port=0, backlog=BACKLOG)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handler)
        result = await client(port)
        tg.cancel_scope.cancel()
    return result


async def _bulk(s: _Setup) -> Measurement:
    chunk = int(s.job.params["chunk"])
    writes = max(1, int(s.job.params["total"]) // chunk)
    total = writes * chunk
    payload = bytes(range(256)) * (chunk // 256)

    async def handler(tcp: anyio.abc.SocketStream) -> None:
        stream = await s.accept(tcp)
        received = 0
        while received < total:
            received += len(await stream.receive(RECV_SIZE))
        await stream.send(b"k")
        await _echo_until_eof(stream)

    async def client(port: int) -> Measurement:
        stream = await s.connect(port)
        start = time.perf_counter()
        for _ in range(writes):
            await stream.send(payload)
        await _receive_exactly(stream, 1)
        elapsed = time.perf_counter() - start
        await _close(stream)
        return _describe(stream, Measurement(total / elapsed / 1e6, {"seconds": elapsed}))

    return await _with_server(handler, client)


async def _pingpong(s: _Setup) -> Measurement:
    size, count, warmup = (int(s.job.params[k]) for k in ("size", "count", "warmup"))
    message = b"p" * size

    async def handler(tcp: anyio.abc.SocketStream) -> None:
        stream = await s.accept(tcp)
        while (data := await _receive_exactly(stream, size)) is not None:
            await stream.send(data)
        await _close(stream)

    async def client(port: int) -> Measurement:
        stream = await s.connect(port)
        for _ in range(warmup):
            await stream.send(message)
            await _receive_exactly(stream, size)
        start = time.perf_counter()
        for _ in range(count):
            await stream.send(message)
            await _receive_exactly(stream, size)
        elapsed = time.perf_counter() - start
        await _close(stream)
        return _describe(stream, Measurement(count / elapsed, {"seconds": elapsed}))

    return await _with_server(handler, client)


async def _handshakes(s: _Setup) -> Measurement:
    count, warmup = int(s.job.params["count"]), int(s.job.params["warmup"])

    async def handler(tcp: anyio.abc.SocketStream) -> None:
        stream = await s.accept(tcp)
        if await _receive_exactly(stream, 1) is not None:
            await stream.send(b"y")
            await _echo_until_eof(stream)

    async def one(port: int) -> TLSStream:
        stream = await s.connect(port)
        await stream.send(b"x")
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
        return _describe(last, Measurement(count / elapsed, {"seconds": elapsed}))

    return await _with_server(handler, client)


async def _memory_server(s: _Setup) -> Measurement:
    async def handler(tcp: anyio.abc.SocketStream) -> None:
        await _echo_until_eof(await s.accept(tcp))

    async def client(port: int) -> Measurement:
        return await anyio.to_thread.run_sync(_memory.measure_server_side, port, s.job)

    return await _with_server(handler, client)


async def _memory_client(s: _Setup) -> Measurement:
    plan = _memory.MemoryPlan(s.job.params)
    kept: list[TLSStream] = []
    with _memory.running_peer("server", 0, s.job) as peer:
        port = peer.port()
        for phase, count in enumerate(plan.phases):
            plan.before(phase)
            for _ in range(count):
                stream = await s.connect(port)
                await stream.send(_memory.MESSAGE)
                await _receive_exactly(stream, len(_memory.MESSAGE))
                kept.append(stream)
            plan.after(phase)
        return _describe(kept[0], plan.result())


async def _concurrent(s: _Setup) -> Measurement:
    connections, exchanges = int(s.job.params["connections"]), int(s.job.params["exchanges"])
    message = b"c" * int(s.job.params["size"])
    described: list[Measurement] = []

    async def handler(tcp: anyio.abc.SocketStream) -> None:
        await _echo_until_eof(await s.accept(tcp))

    async def one(port: int) -> None:
        stream = await s.connect(port)
        for _ in range(exchanges):
            await stream.send(message)
            await _receive_exactly(stream, len(message))
        if not described:
            described.append(_describe(stream, Measurement(0.0)))
        await _close(stream)

    async def client(port: int) -> Measurement:
        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(connections):
                tg.start_soon(one, port)
        elapsed = time.perf_counter() - start
        result = described[0]
        result.value = connections / elapsed
        result.extra = {"seconds": elapsed, "connections": connections}
        return result

    return await _with_server(handler, client)


_WORKLOADS: Final[dict[Kind, Callable[[_Setup], Awaitable[Measurement]]]] = {
    Kind.BULK: _bulk,
    Kind.PINGPONG: _pingpong,
    Kind.HANDSHAKE: _handshakes,
    Kind.MEMORY_SERVER: _memory_server,
    Kind.MEMORY_CLIENT: _memory_client,
    Kind.CONCURRENT: _concurrent,
}


def run(job: Job) -> Measurement:
    """Run ``job`` with anyio on the backend named by the contender, bounded by ``job.timeout``."""
    backend = "trio" if job.contender == "anyio_trio" else "asyncio"

    async def main() -> Measurement:
        with anyio.fail_after(job.timeout):
            return await _WORKLOADS[job.kind](_Setup(job))

    return anyio.run(main, backend=backend)
