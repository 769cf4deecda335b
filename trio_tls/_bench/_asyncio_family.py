"""asyncio's native TLS (streams API), on the default loop and on uvloop.

Written as an asyncio user would: ``asyncio.open_connection(ssl=...)`` (handshakes before it
returns), ``asyncio.start_server(ssl=...)``, ``write`` + ``drain``, ``read``/``readexactly``,
``close`` + ``wait_closed``. Under uvloop the same code runs on uvloop's own TLS implementation.
The workloads are in ``_workloads``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Final, TypeVar

from . import _workloads
from ._spec import HOST, HOSTNAME, Job, Measurement
from ._workloads import BACKLOG

T = TypeVar("T")
#: A connection: what ``open_connection`` returns and a ``start_server`` callback receives.
#: Keeping the pair costs a 56-byte tuple per idle connection (0.02% of asyncio's, 0.2% of
#: uvloop's); nothing public leads from the writer to its reader.
_Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]
#: What a vanished or misbehaving client looks like to an asyncio server handler.
_GONE: Final = (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError, OSError)


class _AsyncioAdapter:
    """asyncio's side of :class:`_workloads.Adapter`."""

    gone: tuple[type[BaseException], ...] = _GONE

    def __init__(self, job: Job) -> None:
        self.job = job
        self._server_ctx, self._client_ctx = _workloads.contexts(job)

    def connect(self, port: int) -> Awaitable[_Conn]:
        return asyncio.open_connection(HOST, port, ssl=self._client_ctx, server_hostname=HOSTNAME)

    def send(self, conn: _Conn, data: bytes) -> Awaitable[None]:
        writer = conn[1]
        writer.write(data)
        return writer.drain()

    def receive(self, conn: _Conn, max_bytes: int) -> Awaitable[bytes]:
        return conn[0].read(max_bytes)

    async def receive_exactly(self, conn: _Conn, size: int) -> bytes | None:
        try:
            return await conn[0].readexactly(size)
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise
            return None

    async def close(self, conn: _Conn) -> None:
        writer = conn[1]
        writer.close()
        with contextlib.suppress(*_GONE):
            await writer.wait_closed()

    def describe(self, conn: _Conn, measurement: Measurement) -> Measurement:
        ssl_object: ssl.SSLObject = conn[1].get_extra_info("ssl_object")
        cipher = ssl_object.cipher()
        measurement.version = ssl_object.version()
        measurement.cipher = cipher[0] if cipher else None
        return measurement

    async def serve(
        self, handler: Callable[[_Conn], Awaitable[None]], client: Callable[[int], Awaitable[T]]
    ) -> T:
        writers: list[asyncio.StreamWriter] = []

        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.append(writer)
            await handler((reader, writer))

        server = await asyncio.start_server(
            accepted, HOST, 0, ssl=self._server_ctx, backlog=BACKLOG
        )
        port = int(server.sockets[0].getsockname()[1])
        try:
            return await client(port)
        finally:
            server.close()
            # Connections still open at the end (memory workload) are dropped, not awaited:
            # Python 3.12's wait_closed() would wait for every one of them.
            for writer in writers:
                writer.transport.abort()

    async def concurrently(
        self, count: int, task: Callable[[int], Coroutine[Any, Any, None]], port: int
    ) -> None:
        async with asyncio.TaskGroup() as tg:
            for _ in range(count):
                tg.create_task(task(port))

    def in_thread(self, function: Callable[[], T]) -> Awaitable[T]:
        return asyncio.to_thread(function)

    def drop(self, conns: Sequence[_Conn]) -> None:
        for _, writer in conns:
            writer.transport.abort()


def run(job: Job) -> Measurement:
    """Run ``job`` on asyncio's default loop or on uvloop, bounded by ``job.timeout``."""

    async def main() -> Measurement:
        async with asyncio.timeout(job.timeout):
            return await _workloads.BODIES[job.kind](_AsyncioAdapter(job))

    if job.contender == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(main())
    return asyncio.run(main())
