"""How an SSLStream moves ciphertext: through any trio Stream, or straight to a socket.

:class:`StreamWire` calls the transport's ``send_all``/``receive_some``, so it works
with every trio Stream (memory pairs, another SSLStream, a user's own stream).

:class:`SocketWire` is the fast path for a plain :class:`trio.SocketStream` on POSIX.
It makes the non-blocking system call first and asks trio to wait only when the
kernel says the call would block, receiving into a reusable per-thread buffer instead
of a fresh bytes object each time. On bulk transfers that removes two scheduler passes
and an allocation per transport call, which is most of the cost trio pays above the
crypto (see notes/benchmarks.md). It uses only public trio API: the socket's
``fileno()`` (read again before every call, because a closed socket's number may be
reused) and :func:`trio.lowlevel.wait_readable` / ``wait_writable``, which raise
:exc:`trio.ClosedResourceError` when another task closes the socket meanwhile.

Sending is split in two so that the usual send creates no coroutine: ``try_send``
makes the non-blocking system call (a generic stream cannot, and takes nothing), and
only what it left over goes to the awaiting ``send_rest``. ``receive`` reports whether
it yielded to the scheduler, so that the driver can skip its own closing checkpoint
when the transport already provided one.
"""

from __future__ import annotations

import os
import socket
import sys
import threading

import trio
from trio.abc import Stream

from ._engine import TLSEngine

#: Bytes requested per receive system call: sixteen full TLS records, so a busy
#: loopback socket drains in one call. The buffer is allocated once per thread, not
#: per connection, so its size costs idle connections nothing.
RECEIVE_CHUNK = 256 * 1024

#: Lingering close after a fatal alert: how long :meth:`SocketWire.linger` keeps
#: reading, and the most it reads, before the socket is closed. A peer that is still
#: sending when we close would get a TCP reset, and a reset makes its stack drop
#: what it had not read yet, our alert included; reading on (nginx's lingering
#: close) lets it read the alert first. One second is plenty for a peer on any
#: network to finish a write in flight and read; the byte cap bounds the work a
#: peer that never stops sending can cause.
LINGER_TIMEOUT = 1.0
LINGER_MAX_BYTES = 4 * 1024 * 1024

#: Most receive calls :meth:`SocketWire.discard_unread` makes before a close.
_DISCARD_READS = 4

_buffers = threading.local()


def _receive_iov() -> list[bytearray]:
    # One buffer per thread (each thread runs at most one trio loop), shared by every
    # stream in it: the engine copies the bytes into its BIO before anything else
    # runs, so an idle connection costs no receive buffer at all. Kept as the
    # one-element list os.readv() takes, so no list is built per call.
    iov: list[bytearray] | None = getattr(_buffers, "iov", None)
    if iov is None:
        iov = _buffers.iov = [bytearray(RECEIVE_CHUNK)]
    return iov


class StreamWire:
    """Ciphertext over any trio Stream's ``send_all``/``receive_some``."""

    __slots__ = ("_stream",)

    def __init__(self, stream: Stream) -> None:
        self._stream = stream

    def try_send(self, data: bytes) -> int:
        """A generic stream has no way to send without awaiting."""
        return 0

    async def send_rest(self, data: bytes, sent: int) -> None:
        # ``sent`` is always 0 here (try_send took nothing), so the transport gets the
        # bytes object itself, as it did before: a user's stream may expect bytes.
        await self._stream.send_all(data[sent:] if sent else data)

    def discard_unread(self) -> None:
        """A generic stream has no kernel buffer to empty before it closes."""

    async def linger(self, deadline: float) -> int:
        """A generic stream has no reset to avoid: closing it is enough."""
        return 0

    async def receive(self, engine: TLSEngine) -> tuple[int, bool]:
        data = await self._stream.receive_some()
        if data:
            engine.feed(data)
        else:
            engine.feed_eof()
        return len(data), True


class SocketWire:
    """Ciphertext straight through a :class:`trio.SocketStream`'s file descriptor."""

    __slots__ = ("_socket",)

    def __init__(self, stream: trio.SocketStream) -> None:
        self._socket = stream.socket

    def _fd(self) -> int:
        fd = self._socket.fileno()
        if fd < 0:
            raise trio.ClosedResourceError("the transport socket was closed")
        return fd

    def try_send(self, data: bytes) -> int:
        """Write what the kernel takes now (usually everything); never blocks."""
        try:
            return os.write(self._fd(), data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            raise trio.BrokenResourceError(f"socket connection broken: {exc}") from exc

    async def send_rest(self, data: bytes, sent: int) -> None:
        with memoryview(data) as view:
            while sent < len(data):
                await trio.lowlevel.wait_writable(self._socket)
                try:
                    sent += os.write(self._fd(), view[sent:])
                except BlockingIOError:
                    pass
                except OSError as exc:
                    raise trio.BrokenResourceError(f"socket connection broken: {exc}") from exc

    async def receive(self, engine: TLSEngine) -> tuple[int, bool]:
        iov = _receive_iov()
        yielded = False
        while True:
            try:
                count = os.readv(self._fd(), iov)
                break
            except BlockingIOError:
                yielded = True
                await trio.lowlevel.wait_readable(self._socket)
            except OSError as exc:
                raise trio.BrokenResourceError(f"socket connection broken: {exc}") from exc
        if count:
            # The slice is never kept beyond this call and the buffer never resized.
            engine.feed(memoryview(iov[0])[:count])
        else:
            engine.feed_eof()
        return count, yielded

    def discard_unread(self) -> None:
        """Read away, without waiting, what the kernel holds for us before we close.

        Closing a TCP socket that still has unread data makes the kernel send a reset
        instead of a FIN (RFC 2525, 2.17), and the peer may then lose data it has not
        read yet or see an error instead of the end of the stream. A TLS 1.3 client
        that never reads does hold unread data: the server's session tickets. What is
        read here is dropped (the stream is closing); at most a few receives, so a
        peer that keeps sending only gets the reset it would have got anyway.
        """
        iov = _receive_iov()
        for _ in range(_DISCARD_READS):
            try:
                if os.readv(self._fd(), iov) < RECEIVE_CHUNK:
                    return  # drained, or end of stream
            except (OSError, trio.ClosedResourceError):
                return  # nothing waiting (BlockingIOError), or nothing to drain

    async def linger(self, deadline: float) -> int:
        """Lingering close: stop sending, then read and drop the peer's data for a while.

        For after a fatal alert, so that a peer still sending reads the alert instead
        of a reset (see :data:`LINGER_TIMEOUT`). Shutting down our sending side first
        sends a FIN behind the alert: the peer learns we are done as soon as it reads.
        Ends at the peer's EOF, after :data:`LINGER_MAX_BYTES`, after
        :data:`LINGER_TIMEOUT` seconds or at ``deadline`` (what is left of the
        caller's close_timeout), whichever comes first, or on any error. Every
        receive is a checkpoint, so it yields between reads and a cancellation ends
        it at once. Returns the number of bytes read and dropped.
        """
        sock = self._socket
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            return 0  # not connected any more: nothing to linger for
        buffer = memoryview(_receive_iov()[0])
        discarded = 0
        with trio.move_on_at(min(trio.current_time() + LINGER_TIMEOUT, deadline)):
            while discarded < LINGER_MAX_BYTES:
                try:
                    count = await sock.recv_into(buffer)
                except (OSError, trio.ClosedResourceError):
                    break
                if not count:
                    break
                discarded += count
        return discarded


def wire_for(stream: Stream) -> StreamWire | SocketWire:
    """The fast path for exactly :class:`trio.SocketStream` on POSIX, else the generic one.

    Subclasses and wrappers keep the generic path: they may do something in
    send_all/receive_some that the fast path would skip.
    """
    if type(stream) is trio.SocketStream and sys.platform != "win32":
        return SocketWire(stream)
    return StreamWire(stream)
