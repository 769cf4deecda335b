"""trio_tls's engine and socket path with no driver: the design's ceiling, as a contender.

:class:`EngineOnlyStream` is what remains of :class:`trio_tls.SSLStream` once everything but the
work itself is taken away. It uses the same :class:`~trio_tls._engine.TLSEngine` and the same
:class:`~trio_tls._wire.SocketWire`, and it keeps trio's rule that every ``send_all`` and
``receive_some`` is a checkpoint (``checkpoint_if_cancelled`` first, a schedule point if the
transport never yielded), because trio code may rely on that and trio.SSLStream honours it.
It drops the rest: no send/receive locks (the workloads use one task per direction), no
state machine, no conflict detection, no statistics, no handshake deadlines, no alert
flushing, no cancellation safety.

It is not a TLS stream anyone should use. It exists so that ``python -m trio_tls bench`` can
show, in the same run, how fast this design (SSLObject + MemoryBIOs under trio's checkpoint
rules) can possibly be on the machine, and so how much of trio_tls's time its driver costs:
a speed target that even this contender misses cannot be met by a better driver
(notes/benchmarks.md).
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Callable
from typing import TypeVar

import trio

from .._engine import _NEED_INPUT, Step, TLSEngine
from .._wire import SocketWire

T = TypeVar("T")


class EngineOnlyStream(trio.abc.Stream):
    """TLS over a :class:`trio.SocketStream` with the least Python around the engine."""

    def __init__(
        self,
        transport: trio.SocketStream,
        context: ssl.SSLContext,
        *,
        server_side: bool = False,
        server_hostname: str | None = None,
    ) -> None:
        self._transport = transport
        self._wire = SocketWire(transport)
        self._engine = TLSEngine(context, server_side=server_side, server_hostname=server_hostname)
        self._handshook = False

    async def _send(self, data: bytes) -> bool:
        """Send ``data`` (and any held-back tickets); True if that yielded."""
        if self._engine.delayed:
            data = self._engine.take_delayed() + data
        sent = self._wire.try_send(data)
        if sent == len(data):
            return False
        await self._wire.send_rest(data, sent)
        return True

    async def _finish(self, step: Step[T], operation: Callable[[], Step[T]]) -> tuple[T, bool]:
        """Drive ``operation`` from ``step`` until it finishes; (result, whether it yielded)."""
        yielded = False
        while True:
            if step.error is not None:
                raise trio.BrokenResourceError(f"TLS failed: {step.error}") from step.error
            if step.to_send:
                yielded |= await self._send(step.to_send)
            elif step.want_read:
                yielded |= (await self._wire.receive(self._engine))[1]
            if step.finished:
                return step.result, yielded  # type: ignore[return-value]
            step = operation()

    async def do_handshake(self) -> None:
        if not self._handshook:
            engine = self._engine
            await self._finish(engine.handshake(), engine.handshake)
            self._handshook = True

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if not self._handshook:
            await self.do_handshake()
        await trio.lowlevel.checkpoint_if_cancelled()
        engine = self._engine
        out = engine.encrypt(data)
        if isinstance(out, bytes):
            yielded = await self._send(out)
        else:
            _, yielded = await self._finish(out, lambda: engine.write(data))
        if not yielded:
            await trio.lowlevel.cancel_shielded_checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if not self._handshook:
            await self.do_handshake()
        await trio.lowlevel.checkpoint_if_cancelled()
        engine = self._engine
        out = engine.decrypt(max_bytes)
        yielded = False
        if out is _NEED_INPUT:  # the usual way to wait, without the general loop
            yielded = (await self._wire.receive(engine))[1]
            out = engine.decrypt(max_bytes)
        if isinstance(out, bytes):
            data = out
        else:
            data, waited = await self._finish(out, lambda: engine.read(max_bytes))
            yielded |= waited
        if not yielded:
            await trio.lowlevel.cancel_shielded_checkpoint()
        return data

    async def wait_send_all_might_not_block(self) -> None:
        await self._transport.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        # close_notify, best effort (the peer may be gone), then the socket.
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            if self._handshook:
                step = self._engine.send_close_notify()
                if step.to_send:
                    await self._send(step.to_send)
        await self._transport.aclose()

    def version(self) -> str | None:
        return self._engine.obj.version()

    def cipher(self) -> tuple[str, str, int] | None:
        return self._engine.obj.cipher()
