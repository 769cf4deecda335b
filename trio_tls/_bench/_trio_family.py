"""trio streams: trio_tls.SSLStream, trio.SSLStream, plain trio TCP and the trio_tls engine
without its driver.

The four differ only in how a TCP stream is wrapped (``_TrioAdapter.wrap``). The rest is what a
trio user would write: ``trio.open_tcp_stream`` / ``trio.serve_listeners``, one handler task
per accepted connection, ``send_all`` / ``receive_some``. The workloads are in ``_workloads``.
"""

from __future__ import annotations

import contextlib
import importlib
import ssl
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Protocol, TypeVar, cast

import trio

from . import _workloads
from ._spec import HOST, HOSTNAME, Job, Measurement
from ._workloads import BACKLOG

T = TypeVar("T")


class _TLSLike(Protocol):
    async def do_handshake(self) -> None: ...
    def version(self) -> str | None: ...
    def cipher(self) -> tuple[str, str, int] | None: ...


def _stream_class(contender: str) -> Any:
    """The class that wraps a TCP stream for ``contender``; None for plain TCP."""
    if contender == "trio_ssl":
        return trio.SSLStream
    if contender in ("trio_tls", "trio_tls_chooser"):
        # Imported lazily: the runner skips this contender while the core is missing.
        return importlib.import_module("trio_tls").SSLStream
    if contender == "trio_tls_engine":
        return importlib.import_module("trio_tls._bench._engine_only").EngineOnlyStream
    return None


def _warm_chooser(context: ssl.SSLContext) -> Any:
    """A ContextCache whose load returns ``context``: warm after the first handshake
    (every workload's warm-up makes one), so the timed ones are cache hits."""

    async def load(name: str) -> ssl.SSLContext:
        return context

    return importlib.import_module("trio_tls").ContextCache(load)


class _TrioAdapter:
    """trio's side of :class:`_workloads.Adapter`; a connection is a ``trio.abc.Stream``."""

    gone: tuple[type[BaseException], ...] = (trio.BrokenResourceError,)

    def __init__(self, job: Job) -> None:
        self.job = job
        self._cls = _stream_class(job.contender)
        if self._cls is not None:
            self._server_ctx, self._client_ctx = _workloads.contexts(job)
        if job.contender == "trio_tls_chooser":
            self._server_ctx = _warm_chooser(self._server_ctx)

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

    def send(self, stream: trio.abc.Stream, data: bytes) -> Awaitable[None]:
        return stream.send_all(data)

    def receive(self, stream: trio.abc.Stream, max_bytes: int) -> Awaitable[bytes]:
        # The ABC allows a bytearray; every stream measured here returns bytes. (Not cast():
        # that would be one more call per receive in the timed loops.)
        return stream.receive_some(max_bytes)  # type: ignore[return-value]

    async def receive_exactly(self, stream: trio.abc.Stream, size: int) -> bytes | None:
        data = b""
        while len(data) < size:
            chunk = await stream.receive_some(size - len(data))
            if not chunk:
                if data:
                    raise RuntimeError("EOF in the middle of a message")
                return None
            data += chunk
        return data

    async def close(self, stream: trio.abc.Stream) -> None:
        with contextlib.suppress(trio.BrokenResourceError):
            await stream.aclose()

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

    async def serve(
        self,
        handler: Callable[[trio.abc.Stream], Awaitable[None]],
        client: Callable[[int], Awaitable[T]],
    ) -> T:
        async def accepted(tcp: trio.SocketStream) -> None:
            await handler(self.wrap(tcp, server_side=True))

        listeners = await trio.open_tcp_listeners(0, host=HOST, backlog=BACKLOG)
        port = int(listeners[0].socket.getsockname()[1])
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, accepted, listeners)
            result = await client(port)
            nursery.cancel_scope.cancel()
        return result

    async def concurrently(
        self, count: int, task: Callable[[int], Coroutine[Any, Any, None]], port: int
    ) -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(count):
                nursery.start_soon(task, port)

    def in_thread(self, function: Callable[[], T]) -> Awaitable[T]:
        return trio.to_thread.run_sync(function)

    def drop(self, streams: Sequence[trio.abc.Stream]) -> None:
        pass  # they end with the event loop


def run(job: Job) -> Measurement:
    """Run ``job`` in a fresh trio event loop, bounded by ``job.timeout``."""

    async def main() -> Measurement:
        with trio.fail_after(job.timeout):
            return await _workloads.BODIES[job.kind](_TrioAdapter(job))

    return trio.run(main)
