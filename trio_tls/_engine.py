"""The sans-I/O TLS engine: one ``ssl.SSLObject`` between two ``ssl.MemoryBIO``\\ s.

Theory of operation
-------------------
Every TLS operation (handshake, read, write, unwrap, sending close_notify) is one
synchronous *step*. A step calls the SSLObject once (or, for reads, as often as whole
records are already buffered), then reports what the caller must do to make progress::

    Step(to_send, want_read, finished, result, error)

- ``to_send``: ciphertext that must go onto the wire next, in this order, before any
  later step's ``to_send`` (ordering is the driver's job, with a FIFO lock).
- ``want_read``: the operation cannot finish until more ciphertext is fed with
  :meth:`TLSEngine.feed` (or :meth:`TLSEngine.feed_eof`).
- ``finished``: the operation is complete once ``to_send`` is sent; ``result`` is its value.
- ``error``: the operation failed (an ``ssl.SSLError`` or ``ssl.CertificateError``).
  ``to_send`` then holds the fatal alert OpenSSL queued, which the driver should flush
  (best effort) so the peer learns the real reason instead of seeing a bare EOF.

Invariant: ``want_read`` and ``finished`` are never both true; ``error`` implies
``finished``.

This module never imports trio: it is unit-tested by pumping two engines together.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

T = TypeVar("T")

#: Upper bound on one read's buffer when the caller gives no ``max_bytes``. Reads are
#: sized to the ciphertext already buffered (plaintext is never larger), so this only
#: matters when a transport hands us a very large chunk. Above 128 KiB CPython's
#: allocator switches to mmap and every read would pay for a fresh zero-filled mapping.
MAX_AUTO_READ = 128 * 1024


def _is_eof(exc: BaseException | None) -> bool:
    """Whether ``exc`` means the peer closed the transport without close_notify.

    Python 3.10 sometimes reported this as a plain ``SSLError`` whose reason is
    ``UNEXPECTED_EOF_WHILE_READING`` instead of ``SSLEOFError`` (bpo-43794 era);
    3.11+ with OpenSSL 3 raises ``SSLEOFError``, but the text check is kept because a
    CPython built against another OpenSSL may still take the old path. This is the
    only place that makes this decision.
    """
    if isinstance(exc, ssl.SSLEOFError):
        return True
    # ``reason`` is only set on errors that came from OpenSSL itself.
    reason = getattr(exc, "reason", None)
    return isinstance(exc, ssl.SSLError) and reason == "UNEXPECTED_EOF_WHILE_READING"


@dataclass(slots=True)
class Step(Generic[T]):
    """What one engine call produced and what the driver must do next."""

    to_send: bytes
    want_read: bool
    finished: bool
    result: T | None = None
    error: ssl.SSLError | ssl.CertificateError | None = None


class TLSEngine:
    """One side of a TLS connection, with no I/O of its own.

    The engine also owns the TLS 1.3 session-ticket delay: OpenSSL's server emits its
    NewSessionTicket messages in the same call that completes the handshake. Sent at
    once, they can deadlock a zero-buffer transport against a client that is already
    writing (openssl/openssl#7948). So a TLS 1.3 server engine holds them back in
    :attr:`delayed` and the driver prepends them to the next thing it sends, or flushes
    them early when it can do so without blocking.
    """

    __slots__ = (
        "_in",
        "_out",
        "_read_error",
        "delayed",
        "handshook",
        "obj",
        "peer_closed",
        "ragged_eof_ok",
    )

    def __init__(
        self,
        context: ssl.SSLContext,
        *,
        server_side: bool,
        server_hostname: str | None,
        session: ssl.SSLSession | None = None,
    ) -> None:
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self.obj: ssl.SSLObject = context.wrap_bio(
            self._in,
            self._out,
            server_side=server_side,
            server_hostname=server_hostname,
            session=session,
        )
        #: Ciphertext held back until the next send (TLS 1.3 server tickets).
        self.delayed = b""
        #: The peer's close_notify has been read: every later read returns b"".
        self.peer_closed = False
        #: The initial handshake has completed.
        self.handshook = False
        #: Read a transport EOF without close_notify as end of stream (HTTPS style).
        self.ragged_eof_ok = False
        # A read that decrypted some records and then hit an error returns the good
        # data first; the error is raised by the next read so nothing is lost.
        self._read_error: ssl.SSLError | None = None

    # -- feeding ciphertext in --------------------------------------------------------

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Give the engine ciphertext received from the transport."""
        self._in.write(data)

    def feed_eof(self) -> None:
        """Tell the engine the transport reached end-of-file."""
        self._in.write_eof()

    @property
    def buffered(self) -> int:
        """Ciphertext fed but not yet consumed by OpenSSL."""
        return self._in.pending

    def take_trailing(self) -> bytes:
        """After unwrap: bytes the transport delivered beyond the TLS stream."""
        return self._in.read()

    def take_delayed(self) -> bytes:
        data, self.delayed = self.delayed, b""
        return data

    # -- steps --------------------------------------------------------------------------

    def _outgoing(self) -> bytes:
        # Skipping the read when nothing is pending saves a call and an empty bytes.
        return self._out.read() if self._out.pending else b""

    def _failed(self, exc: ssl.SSLError | ssl.CertificateError) -> Step[T]:
        return Step(self._outgoing(), want_read=False, finished=True, error=exc)

    def handshake(self) -> Step[None]:
        try:
            self.obj.do_handshake()
        except ssl.SSLWantReadError:
            return Step(self._outgoing(), want_read=True, finished=False)
        except (ssl.SSLError, ssl.CertificateError) as exc:
            return self._failed(exc)
        to_send = self._outgoing()
        first, self.handshook = not self.handshook, True
        if first and self.obj.server_side and self.obj.version() == "TLSv1.3":
            # Only tickets can be produced by the call that completes a TLS 1.3 server
            # handshake (its own flight went out when it still wanted the client's
            # Finished), so everything here is safe to delay.
            self.delayed += to_send
            to_send = b""
        return Step(to_send, want_read=False, finished=True)

    def request_client_certificate(self) -> None:
        """TLS 1.3 post-handshake auth: queue a CertificateRequest.

        Raises ``ssl.SSLError`` at once if the client did not offer post-handshake
        authentication. A following :meth:`handshake` step puts the request on the
        wire (``SSL_do_handshake`` flushes it); the client answers while reading.
        """
        self.obj.verify_client_post_handshake()

    def has_resumable_session(self) -> bool:
        """Whether :attr:`obj`.session could resume this connection now.

        TLS 1.2 sessions are resumable once the handshake is done; a TLS 1.3 session
        only once a NewSessionTicket has been read, some time after the handshake.
        """
        session = self.obj.session
        if session is None or not self.handshook:
            return False
        return session.has_ticket or self.obj.version() != "TLSv1.3"

    def write(self, data: bytes | bytearray | memoryview) -> Step[None]:
        """Encrypt all of ``data`` (memory BIOs never refuse a write)."""
        try:
            self.obj.write(data)
        except ssl.SSLWantReadError:
            # Only during a renegotiation: the write must wait for the peer's flight.
            return Step(self._outgoing(), want_read=True, finished=False)
        except (ssl.SSLError, ssl.CertificateError) as exc:
            return self._failed(exc)
        return Step(self._outgoing(), want_read=False, finished=True)

    def read(self, max_bytes: int | None) -> Step[bytes | bytearray]:
        """Decrypt every complete record already buffered, up to ``max_bytes``.

        With ``max_bytes=None`` the buffer is sized to the ciphertext on hand, so a
        100-byte message costs a 100-byte buffer, not a 16 KiB one.
        """
        if self.peer_closed:
            return Step(b"", want_read=False, finished=True, result=b"")
        if self._read_error is not None:
            return self._failed(self._read_error)
        obj = self.obj
        available = self._in.pending + obj.pending()
        if available == 0 and not self._in.eof:
            # Nothing to decrypt: skip the SSL_read that would only raise WantRead.
            return Step(b"", want_read=True, finished=False)
        limit = max_bytes if max_bytes is not None else min(max(available, 1), MAX_AUTO_READ)
        return self._read_into(bytearray(limit))

    def _read_into(self, buf: bytearray) -> Step[bytes | bytearray]:
        obj, incoming = self.obj, self._in
        got = 0
        with memoryview(buf) as view:
            try:
                while got < len(buf):
                    # Released at once, even when read() raises: a live export
                    # would stop us trimming ``buf`` below.
                    with view[got:] as rest:
                        # With a buffer, read() returns a count (typeshed says bytes).
                        n = cast(int, obj.read(len(rest), rest))
                    if n == 0:  # the peer's close_notify
                        self.peer_closed = True
                        break
                    got += n
                    if not incoming.pending and not obj.pending():
                        break
            except ssl.SSLWantReadError:
                if got == 0:
                    return Step(self._outgoing(), want_read=True, finished=False)
            except ssl.SSLZeroReturnError:
                # Both sides have now sent close_notify (we sent ours with unwrap or
                # send_eof first); OpenSSL reports that as an error, but it is EOF.
                self.peer_closed = True
            except ssl.SSLError as exc:
                if self.ragged_eof_ok and _is_eof(exc):
                    # OpenSSL queued a fatal alert for the EOF; the peer is gone and
                    # we are calling this a clean end, so it must not be sent.
                    self._out.read()
                    self.peer_closed = True
                elif got == 0:
                    return self._failed(exc)
                else:
                    self._read_error = exc
        del buf[got:]
        return Step(self._outgoing(), want_read=False, finished=True, result=buf)

    def unwrap(self) -> Step[None]:
        """Full shutdown: send close_notify and wait for the peer's."""
        try:
            self.obj.unwrap()
        except ssl.SSLWantReadError:
            return Step(self._outgoing(), want_read=True, finished=False)
        except (ssl.SSLError, ssl.CertificateError) as exc:
            return self._failed(exc)
        return Step(self._outgoing(), want_read=False, finished=True)

    def send_close_notify(self) -> Step[None]:
        """Queue our close_notify without waiting for the peer's reply.

        ``SSLObject.unwrap`` calls ``SSL_shutdown`` twice; the second call wants to
        read the peer's close_notify. Its ``SSLWantReadError`` is expected here and
        ignored: the alert is already in the outgoing BIO.
        """
        try:
            self.obj.unwrap()
        except ssl.SSLWantReadError:
            pass
        except (ssl.SSLError, ssl.CertificateError) as exc:
            return self._failed(exc)
        return Step(self._outgoing(), want_read=False, finished=True)
