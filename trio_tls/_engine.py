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

The two operations on the hot path also come in a second form for the driver's fast
path: :meth:`TLSEngine.encrypt` and :meth:`TLSEngine.decrypt` return the ciphertext or
plaintext itself when that is all the step would hold (nothing else to send, no error),
and the Step otherwise, so that a plain send or receive builds no Step at all.

This module never imports trio: it is unit-tested by pumping two engines together.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

# Re-exported: the rest of the package asks the engine module what an EOF is.
from ._eof import _is_eof as _is_eof
from ._hello import HelloReader, ServerNameError

T = TypeVar("T")

#: Upper bound on one read's buffer when the caller gives no ``max_bytes``. Reads are
#: sized to the ciphertext already buffered (plaintext is never larger), so this only
#: matters when a transport hands us a very large chunk. Above 128 KiB CPython's
#: allocator switches to mmap and every read would pay for a fresh zero-filled mapping.
MAX_AUTO_READ = 128 * 1024

#: Most plaintext the engine holds on the application's behalf: what it decrypts while
#: waiting for something only a read processes (a TLS 1.3 ticket, a post-handshake
#: certificate) or while draining records before a write. At this limit the engine
#: stops taking input (:attr:`TLSEngine.read_ahead_full`), so the peer, not the
#: engine, holds the rest: backpressure, as a full kernel buffer would apply. Sixteen
#: full records: far more than any handshake message that follows application data.
READ_AHEAD_LIMIT = 256 * 1024

# The largest TLS record on the wire: 16 KiB of plaintext, up to 256 bytes of
# expansion and the 5-byte header. OpenSSL holds at most one partial record.
_MAX_RECORD = 16 * 1024 + 256 + 5


@dataclass(slots=True)
class Step(Generic[T]):
    """What one engine call produced and what the driver must do next."""

    to_send: bytes
    want_read: bool
    finished: bool
    result: T | None = None
    error: ssl.SSLError | ssl.CertificateError | None = None


def _as_read_step(out: bytes | Step[bytes]) -> Step[bytes]:
    """A decrypt-style answer as a Step: bare plaintext means a finished read."""
    return out if isinstance(out, Step) else Step(b"", False, True, out)


# Shared by every engine: never mutated, and "need input" is the most common answer.
_NEED_INPUT: Step[Any] = Step(b"", want_read=True, finished=False)


class TLSEngine:
    """One side of a TLS connection, with no I/O of its own.

    The engine also owns the TLS 1.3 session-ticket delay: OpenSSL's server emits its
    NewSessionTicket messages in the same call that completes the handshake. Sent at
    once, they can deadlock a zero-buffer transport against a client that is already
    writing (openssl/openssl#7948). So a TLS 1.3 server engine holds them back in
    :attr:`delayed` and puts them in front of the next ciphertext any step produces;
    a driver that closes without sending anything else takes them with
    :meth:`take_delayed`.
    """

    __slots__ = (
        "_hello",
        "_in",
        "_out",
        "_pending_out",
        "_plain",
        "_plaintext_pending",
        "_read_error",
        "_sslobj",
        "_swallowed",
        "delayed",
        "handshook",
        "obj",
        "peer_closed",
        "ragged_eof_ok",
    )

    #: The connection's SSLObject.
    obj: ssl.SSLObject

    def __init__(
        self,
        context: ssl.SSLContext | None,
        *,
        server_side: bool,
        server_hostname: str | None,
        session: ssl.SSLSession | None = None,
    ) -> None:
        """``context`` None: a subclass creates :attr:`obj` later, with :meth:`_set_obj`."""
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._sslobj: Any = None
        if context is not None:
            wrap = context.wrap_bio
            self._set_obj(wrap(self._in, self._out, server_side, server_hostname, session))
        #: Ciphertext held back until the next send (TLS 1.3 server tickets).
        self.delayed: bytes = b""
        #: The peer's close_notify has been read: every later read returns b"".
        self.peer_closed: bool = False
        #: The initial handshake has completed.
        self.handshook: bool = False
        #: Read a transport EOF without close_notify as end of stream (HTTPS style).
        self.ragged_eof_ok: bool = False
        # A read that decrypted some records and then hit an error returns the good
        # data first; the error is raised by the next read so nothing is lost.
        self._read_error: ssl.SSLError | None = None
        # Plaintext decrypted ahead of the application's read (read_ahead, or a
        # write during a renegotiation); the next read returns it first. A bytearray,
        # so appending and taking from the front cost what they move (no quadratic
        # copying), and never more than READ_AHEAD_LIMIT.
        self._plain = bytearray()
        # A read filled its buffer, so OpenSSL may hold decrypted bytes (pending()).
        self._plaintext_pending = False
        # Ciphertext of an incomplete record that OpenSSL already took out of the
        # incoming BIO (SSL_read keeps a partial record in its own buffer). It counts
        # towards the size of the next read: when the record's last byte arrives,
        # ``_in.pending`` alone would size the read to that one byte.
        self._swallowed = 0
        # Ciphertext taken out of the outgoing BIO by such a drain, still to be sent.
        self._pending_out = b""
        # A server with an SNI callback follows the ClientHello until it has seen its
        # server name (see trio_tls._hello); None otherwise.
        sni = context is not None and context.sni_callback is not None
        self._hello: HelloReader | None = HelloReader() if server_side and sni else None

    def _set_obj(self, obj: ssl.SSLObject) -> None:
        self.obj = obj
        # SSLObject.read/write are one-line Python wrappers around the C object in
        # ``_sslobj``; calling it directly saves a Python frame on every record (the
        # hot loops below). ``_sslobj`` is private, so fall back to the public object
        # (same read(len)/write(data) signatures) on an interpreter without it.
        self._sslobj = getattr(obj, "_sslobj", obj)

    # -- feeding ciphertext in --------------------------------------------------------

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Give the engine ciphertext received from the transport."""
        self._in.write(data)
        if self._hello is not None:
            self._hello.follow(data)

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
        """The held-back tickets, for a driver about to close without another send."""
        data, self.delayed = self.delayed, b""
        return data

    def is_ragged_eof(self, exc: BaseException | None) -> bool:
        """Whether a failure means the transport ended without close_notify.

        Besides :func:`_is_eof`: an EOF in the middle of the handshake sometimes
        surfaces as ``SSLSyscallError`` instead.
        """
        return _is_eof(exc) or (not self.handshook and isinstance(exc, ssl.SSLSyscallError))

    # -- steps --------------------------------------------------------------------------

    def _outgoing(self) -> bytes:
        # Skipping the read when nothing is pending saves a call and an empty bytes.
        data = self._out.read() if self._out.pending else b""
        if self._pending_out:
            data, self._pending_out = self._pending_out + data, b""
        if self.delayed and data:
            # Held-back tickets go out in front of whatever is sent next.
            data, self.delayed = self.delayed + data, b""
        return data

    def _failed(self, exc: ssl.SSLError | ssl.CertificateError) -> Step[T]:
        return Step(self._outgoing(), want_read=False, finished=True, error=exc)

    def _check_server_name(self) -> Step[None] | None:
        """A Step to return instead of handshaking: wait for more, or refuse the hello."""
        reader = self._hello
        assert reader is not None
        if reader.hello is None and reader.error is None:
            return Step(b"", want_read=True, finished=False) if not self._in.eof else None
        self._hello = None
        if reader.error is not None and reader.error.reason == "non_ascii_server_name":
            return self._failed(ServerNameError(str(reader.error)))
        return None  # a readable hello, or one OpenSSL will refuse with its own alert

    def handshake(self) -> Step[None]:
        """Advance the handshake (or a renegotiation); finished once OpenSSL says so.

        On a TLS 1.3 server the completing call's tickets go to :attr:`delayed`."""
        if self._hello is not None:
            refused = self._check_server_name()
            if refused is not None:
                return refused
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

        Raises ``ValueError`` on a connection that is not TLS 1.3 (earlier versions
        have no post-handshake authentication), and ``ssl.SSLError`` if the client
        did not offer it. A following :meth:`handshake` step puts the request on the
        wire (``SSL_do_handshake`` flushes it); the client answers while reading.
        """
        version = self.obj.version()
        if version != "TLSv1.3":
            raise ValueError(f"post-handshake authentication needs TLS 1.3, not {version}")
        self.obj.verify_client_post_handshake()

    def peer_certificate(self, binary_form: bool) -> dict[str, Any] | bytes | None:
        """``obj.getpeercert(binary_form)``, None while a certificate is on its way.

        CPython raises ``ValueError("handshake not done yet")`` while OpenSSL is half-way
        through a handshake exchange: after the first handshake, a matter of how the
        peer's bytes were split (a post-handshake certificate in several reads, as
        GnuTLS sends it, or a TLS 1.2 renegotiation), not a misuse. So it is None.
        """
        try:
            return self.obj.getpeercert(binary_form)
        except ValueError:
            return None

    def has_peer_certificate(self) -> bool:
        """Whether the peer's certificate has been received and verified."""
        return self.peer_certificate(True) is not None

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
        out = self.encrypt(data)
        return out if isinstance(out, Step) else Step(out, False, True)

    def encrypt(self, data: bytes | bytearray | memoryview) -> bytes | Step[None]:
        """:meth:`write`, returning the ciphertext itself when the write simply succeeded.

        The driver's send fast path: it saves building a Step for every send. Any other
        outcome (a renegotiation that needs input, an error) is the Step :meth:`write`
        would return.
        """
        if self._in.pending:
            instead = self._drain_before_write()
            if instead is not None:
                return instead
        try:
            self._sslobj.write(data)
        except ssl.SSLWantReadError:
            # Only during a renegotiation: the write must wait for the peer's flight.
            return Step(self._outgoing(), True, False)
        except (ssl.SSLError, ssl.CertificateError) as exc:
            return self._failed(exc)
        return self._outgoing()

    def _drain_before_write(self) -> Step[None] | None:
        """Decrypt buffered records so that SSL_write never meets application data.

        During a TLS 1.2 renegotiation SSL_write continues the handshake by reading,
        and if it finds an application record (the peer keeps sending until it sees
        our hello) OpenSSL kills the connection with "unexpected record"; only SSL_read
        may consume those. trio has the same failure. So whatever is buffered is read
        first and kept for the next read; its output (say, our renegotiation hello)
        stays in the outgoing BIO ahead of the write's, in order.

        Returns None when the write may go ahead, else the Step to return instead: a
        failure, or "wants input" while the read-ahead buffer is full.
        """
        if self.peer_closed or self._read_error is not None:
            return None
        if self.read_ahead_full:
            # Reading on would buffer without limit; SSL_write is not called until
            # the application has taken some of what is held (the driver waits).
            return Step(b"", want_read=True, finished=False)
        step = _as_read_step(self._read_buffered(None, self._read_ahead_room()))
        if step.error is not None:
            self._read_error = step.error if isinstance(step.error, ssl.SSLError) else None
            return Step(step.to_send, want_read=False, finished=True, error=step.error)
        if step.result:
            self._plain += step.result
        if step.to_send:
            self._pending_out += step.to_send
        return None

    def read(self, max_bytes: int | None) -> Step[bytes]:
        """Decrypt every complete record already buffered, up to ``max_bytes``.

        Plaintext decrypted ahead of time (:meth:`read_ahead_until`, or before a write during
        a renegotiation) comes first. With ``max_bytes=None`` the read is sized to the
        ciphertext on hand, so a 100-byte message costs a 100-byte buffer.
        """
        return _as_read_step(self.decrypt(max_bytes))

    def decrypt(self, max_bytes: int | None) -> bytes | Step[bytes]:
        """:meth:`read`, returning the plaintext itself when the read simply finished.

        The driver's receive fast path. A read that needs input, has ciphertext to send
        (a TLS 1.2 renegotiation, a TLS 1.3 KeyUpdate reply) or failed is returned as
        its Step; "need input" is always the shared :data:`_NEED_INPUT`.
        """
        if self._plain:
            return self._take_plain(max_bytes)
        return self._read_buffered(max_bytes)

    @property
    def read_ahead_full(self) -> bool:
        """Plaintext held for the application has reached :data:`READ_AHEAD_LIMIT`.

        A step that wants input while this is true must not be fed: the driver waits
        until the application's next read has taken some plaintext.
        """
        return len(self._plain) >= READ_AHEAD_LIMIT

    def _read_ahead_room(self) -> int:
        return READ_AHEAD_LIMIT - len(self._plain)

    def read_ahead_until(self, ready: Callable[[], bool]) -> Step[bool | None]:
        """Process incoming records until ``ready()``, keeping any plaintext for later.

        For callers waiting for something only a read processes (a TLS 1.3 ticket, a
        post-handshake certificate) without consuming the application's data, which
        the next :meth:`read` returns first. Finishes with True once ``ready()`` holds
        (checked after every record batch, so a ticket followed by an EOF still
        counts), False at end of stream, or None once :data:`READ_AHEAD_LIMIT` bytes
        of plaintext are held: the caller is the only reader while it waits, so no one
        would ever make room, and waiting could only end at its deadline.
        """
        if ready():
            return Step(b"", want_read=False, finished=True, result=True)
        if self.read_ahead_full:
            return Step(b"", want_read=False, finished=True, result=None)
        step = _as_read_step(self._read_buffered(None, self._read_ahead_room()))
        if step.error is not None:
            return Step(step.to_send, want_read=False, finished=True, error=step.error)
        if step.result:
            self._plain += step.result
        if ready():
            return Step(step.to_send, want_read=False, finished=True, result=True)
        if step.want_read:
            return Step(step.to_send, want_read=True, finished=False)
        if not step.result:  # end of stream
            return Step(step.to_send, want_read=False, finished=True, result=False)
        return Step(step.to_send, want_read=False, finished=False)  # more may be buffered

    def _take_plain(self, max_bytes: int | None) -> bytes:
        plain = self._plain
        end = len(plain) if max_bytes is None else max_bytes
        data = bytes(plain[:end])
        del plain[:end]  # O(bytes taken): bytearray drops a prefix without a copy
        return data

    def _read_buffered(self, max_bytes: int | None, room: int | None = None) -> bytes | Step[bytes]:
        """Decrypt what is buffered: up to ``max_bytes``, or sized to it and below ``room``."""
        if self.peer_closed:
            return b""
        if self._read_error is not None:
            return self._failed(self._read_error)
        available = self._in.pending + self._swallowed
        if self._plaintext_pending:
            available += self.obj.pending()
        if not available and not self._in.eof:
            # Nothing to decrypt: skip the SSL_read that would only raise WantRead.
            return _NEED_INPUT
        if max_bytes is None:
            # Plaintext is never larger than the ciphertext it came from.
            max_bytes = available if 0 < available < MAX_AUTO_READ else MAX_AUTO_READ
            if room is not None:
                max_bytes = min(max_bytes, room)
        return self._read_records(max_bytes)

    def _read_records(self, limit: int) -> bytes | Step[bytes]:
        # SSL_read returns one record at a time; keep going while whole records may
        # be buffered, so one call hands back everything that has arrived.
        obj, incoming = self._sslobj, self._in
        parts: list[bytes] = []
        got = 0
        self._plaintext_pending = False
        try:
            while got < limit:
                want = limit - got
                before = incoming.pending
                chunk = obj.read(want)
                self._swallowed = 0  # a record came out whole: OpenSSL holds no partial one
                if not chunk:  # the peer's close_notify
                    self.peer_closed = True
                    break
                parts.append(chunk)
                got += len(chunk)
                if len(chunk) == want:
                    # A full read may have left part of the record in OpenSSL.
                    self._plaintext_pending = True
                elif not incoming.pending:
                    break  # the record is used up and no ciphertext is left
        except ssl.SSLWantReadError:
            # What this call took from the BIO is part of a record OpenSSL now holds.
            self._swallowed = min(self._swallowed + before - incoming.pending, _MAX_RECORD)
            if not parts:
                return Step(self._outgoing(), want_read=True, finished=False)
        except ssl.SSLZeroReturnError:
            # Both sides have now sent close_notify (we sent ours with unwrap or
            # send_eof first); OpenSSL reports that as an error, but it is EOF.
            self.peer_closed = True
        except ssl.SSLError as exc:
            if self.ragged_eof_ok and _is_eof(exc):
                # OpenSSL queued a fatal alert for the EOF; the peer is gone and we
                # are calling this a clean end, so it must not be sent.
                self._out.read()
                self.peer_closed = True
            elif not parts:
                return self._failed(exc)
            else:
                self._read_error = exc  # raised by the next read; return the data first
        result = parts[0] if len(parts) == 1 else b"".join(parts)
        if self._out.pending or self._pending_out:
            return Step(self._outgoing(), False, True, result)
        return result

    def unwrap(self) -> Step[None]:
        """Full shutdown: send close_notify and wait for the peer's."""
        return self._shutdown(wait_for_peer=True)

    def send_close_notify(self) -> Step[None]:
        """Queue our close_notify without waiting for the peer's reply."""
        return self._shutdown(wait_for_peer=False)

    def _shutdown(self, *, wait_for_peer: bool) -> Step[None]:
        # SSLObject.unwrap calls SSL_shutdown twice; the second call wants to read the
        # peer's close_notify. Without waiting for it, that SSLWantReadError is
        # expected: our alert is already in the outgoing BIO.
        try:
            self.obj.unwrap()
        except ssl.SSLWantReadError:
            if wait_for_peer:
                return Step(self._outgoing(), want_read=True, finished=False)
        except (ssl.SSLError, ssl.CertificateError) as exc:
            return self._failed(exc)
        return Step(self._outgoing(), want_read=False, finished=True)
