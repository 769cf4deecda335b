"""anyio's ``TLSStream``, on the trio and asyncio backends.

Written as an anyio user would: ``anyio.connect_tcp`` + ``TLSStream.wrap`` (which handshakes),
``create_tcp_listener().serve`` with a handler per connection, ``send``/``receive``. anyio's
defaults are kept, including ``standard_compatible=True``, whose ``aclose()`` waits for the
peer's close_notify (a round trip more than trio's close; see shared TLS pitfalls, item 5).
The workloads are in ``_workloads``.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Final, TypeVar

import anyio
import anyio.abc
from anyio.streams.tls import TLSAttribute, TLSStream

from . import _workloads
from ._spec import HOST, HOSTNAME, Job, Measurement
from ._workloads import BACKLOG

T = TypeVar("T")
#: What a peer that vanishes or misbehaves looks like to an anyio server handler.
_GONE: Final = (anyio.BrokenResourceError, anyio.EndOfStream, ssl.SSLError, OSError)


class _AnyioAdapter:
    """anyio's side of :class:`_workloads.Adapter`; a connection is a ``TLSStream``."""

    gone: tuple[type[BaseException], ...] = _GONE

    def __init__(self, job: Job) -> None:
        self.job = job
        self._server_ctx, self._client_ctx = _workloads.contexts(job)

    async def connect(self, port: int) -> TLSStream:
        tcp = await anyio.connect_tcp(HOST, port)
        return await TLSStream.wrap(tcp, hostname=HOSTNAME, ssl_context=self._client_ctx)

    def send(self, stream: TLSStream, data: bytes) -> Awaitable[None]:
        return stream.send(data)

    def receive(self, stream: TLSStream, max_bytes: int) -> Awaitable[bytes]:
        return stream.receive(max_bytes)

    async def receive_exactly(self, stream: TLSStream, size: int) -> bytes | None:
        data = b""
        while len(data) < size:
            try:
                data += await stream.receive(size - len(data))
            except anyio.EndOfStream:
                if data:
                    raise
                return None
        return data

    async def close(self, stream: TLSStream) -> None:
        with contextlib.suppress(*_GONE):
            await stream.aclose()

    def describe(self, stream: TLSStream, measurement: Measurement) -> Measurement:
        cipher = stream.extra(TLSAttribute.cipher)
        measurement.version = stream.extra(TLSAttribute.tls_version)
        measurement.cipher = cipher[0]
        return measurement

    async def serve(
        self, handler: Callable[[TLSStream], Awaitable[None]], client: Callable[[int], Awaitable[T]]
    ) -> T:
        async def accepted(tcp: anyio.abc.SocketStream) -> None:
            await handler(await TLSStream.wrap(tcp, server_side=True, ssl_context=self._server_ctx))

        # serve() and concurrently() have the trio adapter's shape on purpose: anyio's task
        # groups are trio's nurseries under other names, and each family uses its own.
        listener = await anyio.create_tcp_listener(local_host=HOST, local_port=0, backlog=BACKLOG)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, accepted)
            result = await client(port)
            tg.cancel_scope.cancel()
        return result

    async def concurrently(
        self, count: int, task: Callable[[int], Coroutine[Any, Any, None]], port: int
    ) -> None:
        async with anyio.create_task_group() as tg:
            for _ in range(count):
                tg.start_soon(task, port)

    def in_thread(self, function: Callable[[], T]) -> Awaitable[T]:
        return anyio.to_thread.run_sync(function)

    def drop(self, streams: Sequence[TLSStream]) -> None:
        pass  # they end with the event loop


def run(job: Job) -> Measurement:
    """Run ``job`` with anyio on the backend named by the contender, bounded by ``job.timeout``."""
    backend = "trio" if job.contender == "anyio_trio" else "asyncio"

    async def main() -> Measurement:
        with anyio.fail_after(job.timeout):
            return await _workloads.BODIES[job.kind](_AnyioAdapter(job))

    return anyio.run(main, backend=backend)
