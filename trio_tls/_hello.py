"""Reading a ClientHello before OpenSSL does: sans-I/O, bytes in, a verdict out.

Two jobs need the client's first flight before any SSLObject sees it:

- A server with an SNI callback must refuse a server name that is not ASCII itself.
  A client that puts raw UTF-8 there instead of IDNA A-labels (which RFC 6066
  forbids, and ``openssl s_client -servername bücher.example`` does) makes CPython
  report an "unraisable" ``UnicodeDecodeError`` and fail the handshake with a
  generic alert; nothing in the callback can prevent it.
- Choosing a certificate with trio code (which cannot run inside OpenSSL's
  synchronous callback), and routing a connection by name without terminating TLS,
  both need the hello's server name, ALPN list and versions up front.

The parser is strict about framing and lenient about content: anything that is not
a TLS handshake record carrying a ClientHello is refused with a
:class:`ClientHelloError` that says what was wrong; extensions it does not read are
skipped, and whether the hello is acceptable TLS is left to OpenSSL. A hello may
span several records (RFC 8446 section 5.1 allows the fragmentation; large
post-quantum key shares make it happen), up to ``max_bytes`` in all. No trio, no I/O.
"""

from __future__ import annotations

import dataclasses
import ssl
import struct
from typing import Final

import idna

_HANDSHAKE_RECORD: Final = 22
_CLIENT_HELLO: Final = 1
_SERVER_NAME_EXTENSION: Final = 0
_ALPN_EXTENSION: Final = 16
_SUPPORTED_VERSIONS_EXTENSION: Final = 43
_HOST_NAME: Final = 0
_RECORD_HEADER: Final = 5
#: RFC 8446 section 5.1: a plaintext record carries at most 2**14 bytes.
_MAX_FRAGMENT: Final = 2**14
#: The default bound on a ClientHello's records together: four full records. Hellos
#: with hybrid post-quantum key shares take about 1.5 KiB; nothing legitimate comes
#: near, and it bounds what a server holds for a client that never finishes one.
DEFAULT_MAX_HELLO_BYTES: Final = 4 * (_RECORD_HEADER + _MAX_FRAGMENT)

_VERSIONS: Final = {
    0x0304: ssl.TLSVersion.TLSv1_3,
    0x0303: ssl.TLSVersion.TLSv1_2,
    0x0302: ssl.TLSVersion.TLSv1_1,
    0x0301: ssl.TLSVersion.TLSv1,
    0x0300: ssl.TLSVersion.SSLv3,
}


class ServerNameError(ssl.SSLError):
    """The ClientHello's server name cannot be a host name (it is not ASCII)."""

    reason = "NON_ASCII_SERVER_NAME"

    def __str__(self) -> str:
        return str(self.args[0])


class ClientHelloError(Exception):
    """The bytes a client sent first are not a ClientHello that can be read.

    ``reason`` is one of ``"not_tls"`` (the first byte is not a TLS handshake record:
    plain HTTP sent to a TLS port, say), ``"malformed"`` (a length or field does not
    fit), ``"too_large"`` (the hello does not end within the bound), ``"truncated"``
    (the transport ended inside it) and ``"non_ascii_server_name"``. The message
    names what was wrong in words.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        #: A short machine-readable name for what was wrong (see the class docstring).
        self.reason = reason
        #: From :func:`~trio_tls.read_client_hello`: the bytes it had read off the
        #: stream, which are no longer in it, so that a server can still hand them on
        #: (to a plain-text fallback for ``"not_tls"``, say). ``b""`` from a parse of
        #: bytes already in hand.
        self.received: bytes = b""


@dataclasses.dataclass(frozen=True, slots=True)
class ClientHello:
    """What a TLS client asked for in its ClientHello, read before any handshake.

    A server reads it to choose a certificate (an async chooser given instead of an
    ``ssl.SSLContext``) or to route the connection by name. Nothing here is
    verified: it is what the client claims, before any cryptography.
    """

    #: The server name (SNI) in the A-label form clients send (``xn--bcher-kva.example``),
    #: lowercase; None when the client sent none (as for an IP address).
    server_name: str | None
    #: The same name decoded to Unicode (``bücher.example``); equal to
    #: :attr:`server_name` for ASCII names, and to it as well when the A-labels do
    #: not decode (the client's name is then passed on as sent, never guessed at).
    server_name_unicode: str | None
    #: The ALPN protocol names the client offered, in its order of preference.
    alpn_protocols: tuple[str, ...]
    #: The TLS versions the client offered, in its order, from the supported_versions
    #: extension when present (TLS 1.3 clients), else the hello's legacy version.
    #: Values this Python does not name (GREASE, drafts) are left out.
    tls_versions: tuple[ssl.TLSVersion, ...]


class _Short(Exception):
    """The data ends before the field being read."""


class HelloReader:
    """Follows a ClientHello's records as bytes arrive, and reads it once it is whole.

    Sans-I/O and incremental, so that a hello cut into one-byte reads or one-byte
    records costs time linear in its size: each byte is looked at once for framing,
    and the fields are parsed once, when the message is complete. Memory is bounded
    by ``max_bytes``. A stream reader asks for :attr:`wanted` bytes at a time and so
    never reads past the hello; an engine that already holds more gives it all to
    :meth:`feed`, which takes only the hello's part.

    Errors are sticky: once :meth:`feed` has raised, :attr:`error` keeps the
    :class:`ClientHelloError` and every later call raises it again.
    """

    __slots__ = ("_header", "_left", "_max", "_message", "error", "hello", "taken")

    def __init__(self, max_bytes: int = DEFAULT_MAX_HELLO_BYTES) -> None:
        self._max = max_bytes
        self._header = bytearray()  # the current record's header, while incomplete
        self._left = 0  # bytes of the current record's fragment still to come
        self._message = bytearray()  # the handshake message, without record headers
        #: Bytes taken so far: the hello's records, and nothing after them.
        self.taken = 0
        #: The hello, once its last record has been taken.
        self.hello: ClientHello | None = None
        #: Why the bytes cannot be a ClientHello, once :meth:`feed` has said so.
        self.error: ClientHelloError | None = None

    @property
    def wanted(self) -> int:
        """How many more bytes can be taken without reading past the hello (0 when done).

        The very first byte is asked for alone: plain text sent to a TLS port is then
        refused at its first byte, with nothing more read.
        """
        if self.hello is not None or self.error is not None:
            return 0
        if self._left:
            return self._left
        return 1 if self.taken == 0 else _RECORD_HEADER - len(self._header)

    def feed(self, data: bytes | bytearray | memoryview) -> int:
        """Take the bytes of ``data`` that belong to the hello; returns how many.

        Raises:
          ClientHelloError: the bytes cannot start a ClientHello of at most
            ``max_bytes`` (also on every call after the first such error).
        """
        if self.error is not None:
            raise self.error
        try:
            return self._feed(memoryview(data))
        except ClientHelloError as exc:
            self.error = exc
            raise

    def follow(self, data: bytes | bytearray | memoryview) -> None:
        """Like :meth:`feed`, for an engine that keeps every byte anyway: an error is
        only kept in :attr:`error`, for its next handshake step to act on."""
        if self.wanted:
            # Not contextlib.suppress: this runs on every handshake of a server with a
            # chooser, and a try statement costs nothing when nothing is raised.
            try:  # noqa: SIM105
                self.feed(data)
            except ClientHelloError:
                pass

    def _feed(self, data: memoryview) -> int:
        if self.taken == 0 and data:
            if data[0] != _HANDSHAKE_RECORD:
                raise _not_tls(bytes(data[:16]))
            whole = self._whole_record_hello(data)
            if whole:
                return whole
        pos = 0
        while pos < len(data) and self.hello is None:
            chunk = data[pos : pos + self.wanted]
            pos += len(chunk)
            self.taken += len(chunk)
            if self._left:
                self._message += chunk
                self._left -= len(chunk)
                if not self._left:
                    self._record_done()
            else:
                self._header += chunk
                self._header_progress()
        return pos

    def _whole_record_hello(self, data: memoryview) -> int:
        """The usual first read, a hello in one record all there: parse it at once.

        Returns the bytes taken, or 0 to leave ``data`` to the general loop (which
        also raises every error, so this path only ever accepts). It checks what the
        loop would (record header, bound, message type and length) and skips
        building the header and message buffers byte range by byte range, which
        costs more than parsing the fields themselves.
        """
        if len(data) < _RECORD_HEADER + 4 or data[1] != 3:
            return 0
        length = (data[3] << 8) | data[4]
        end = _RECORD_HEADER + length
        if not 4 <= length <= _MAX_FRAGMENT or end > len(data) or end > self._max:
            return 0
        if data[5] != _CLIENT_HELLO or int.from_bytes(data[6:9], "big") != length - 4:
            return 0
        self.taken = end
        self.hello = _hello_from(bytes(data[9:end]))
        return end

    def _header_progress(self) -> None:
        header = self._header
        if header[0] != _HANDSHAKE_RECORD:
            raise ClientHelloError("malformed", "a non-handshake record inside the ClientHello")
        if len(header) < _RECORD_HEADER:
            return
        length = int.from_bytes(header[3:5], "big")
        if header[1] != 3 or length == 0 or length > _MAX_FRAGMENT:
            raise ClientHelloError(
                "malformed", f"a TLS record header that no client sends: {header.hex()}"
            )
        if self.taken + length > self._max:
            raise _too_large(self._max)
        self._header, self._left = bytearray(), length

    def _record_done(self) -> None:
        message = self._message
        if len(message) >= 4:
            if message[0] != _CLIENT_HELLO:
                raise ClientHelloError("malformed", "the first handshake message is no ClientHello")
            whole = 4 + int.from_bytes(message[1:4], "big")
            if len(message) > whole:
                raise ClientHelloError("malformed", "bytes after the ClientHello message")
            if len(message) == whole:
                self.hello = _hello_from(bytes(message[4:]))
                return
        if self.taken + _RECORD_HEADER >= self._max:  # no room for one more record
            raise _too_large(self._max)


def _not_tls(first: bytes) -> ClientHelloError:
    return ClientHelloError(
        "not_tls",
        f"the client's first bytes are not a TLS handshake record (they begin {first!r}); "
        "is it speaking plain text to a TLS port?",
    )


def _too_large(max_bytes: int) -> ClientHelloError:
    return ClientHelloError(
        "too_large", f"the ClientHello does not end within the first {max_bytes} bytes"
    )


def parse_client_hello(
    data: bytes | bytearray, *, max_bytes: int = DEFAULT_MAX_HELLO_BYTES
) -> tuple[ClientHello, int] | None:
    """Read the ClientHello at the start of ``data``.

    Returns the hello and the number of bytes its records took (everything after
    that belongs to the client's next flight), or None while ``data`` ends before
    the hello does.

    Raises:
      ClientHelloError: ``data`` cannot start a ClientHello of at most ``max_bytes``.
    """
    reader = HelloReader(max_bytes)
    reader.feed(data)
    return None if reader.hello is None else (reader.hello, reader.taken)


def _hello_from(body: bytes) -> ClientHello:
    try:
        raw_name, alpn, versions = _fields(body)
    except _Short:
        raise ClientHelloError("malformed", "a ClientHello field overruns the message") from None
    name, unicode_name = _names(raw_name)
    return ClientHello(name, unicode_name, alpn, versions)


# The fields are read with offsets into one bytes object: a hello is parsed on every
# handshake of a server with a chooser, and this costs a few microseconds where a
# reader object per field cost tens.


_EXTENSION_HEADER: Final = struct.Struct(">HH")  # type, length


def _vector(data: bytes, pos: int, width: int) -> tuple[int, int]:
    """``(start, end)`` of the vector whose ``width``-byte length is at ``pos``."""
    start = pos + width
    if start > len(data):
        raise _Short
    end = start + int.from_bytes(data[pos:start], "big")
    if end > len(data):
        raise _Short
    return start, end


def _fields(body: bytes) -> tuple[bytes | None, tuple[str, ...], tuple[ssl.TLSVersion, ...]]:
    # Lengths are read by indexing rather than with _vector(): three function calls
    # and three slices fewer, on every handshake. Each check matches _vector's.
    size = len(body)
    if size < 2 + 32 + 1:
        raise _Short
    pos = 2 + 32 + 1 + body[2 + 32]  # after the random and the session id
    if pos + 2 > size:
        raise _Short
    pos += 2 + ((body[pos] << 8) | body[pos + 1])  # after the cipher suites
    if pos + 1 > size:
        raise _Short
    pos += 1 + body[pos]  # after the compression methods
    if pos > size:
        raise _Short
    name: bytes | None = None
    alpn: tuple[str, ...] = ()
    offered: list[int] | None = None
    if pos < size:  # extensions are optional
        name, alpn, offered = _extensions(body, *_vector(body, pos, 2))
    if offered is None:  # no supported_versions: the legacy version
        offered = [(body[0] << 8) | body[1]]
    return name, alpn, tuple([_VERSIONS[v] for v in offered if v in _VERSIONS])


def _extensions(
    body: bytes, pos: int, end: int
) -> tuple[bytes | None, tuple[str, ...], list[int] | None]:
    name: bytes | None = None
    alpn: tuple[str, ...] = ()
    offered: list[int] | None = None
    header = _EXTENSION_HEADER.unpack_from  # looked up once: a hello has ~15
    while pos < end:
        start = pos + 4
        if start > end:
            raise _Short
        kind, length = header(body, pos)
        pos = start + length
        if pos > end:
            raise _Short
        if kind == _SERVER_NAME_EXTENSION:
            name = _host_name(body[start:pos])
        elif kind == _ALPN_EXTENSION:
            alpn = _alpn(body[start:pos])
        elif kind == _SUPPORTED_VERSIONS_EXTENSION:
            offered = _versions(body[start:pos])
    return name, alpn, offered


def _host_name(content: bytes) -> bytes | None:
    start, end = _vector(content, 0, 2)  # the server name list; its first entry counts
    if end - start < 3:
        raise _Short
    if content[start] != _HOST_NAME:
        return None
    start, end = _vector(content[:end], start + 1, 2)
    return content[start:end]


def _alpn(content: bytes) -> tuple[str, ...]:
    pos, end = _vector(content, 0, 2)
    content, protocols = content[:end], []
    while pos < end:
        start, pos = _vector(content, pos, 1)
        protocols.append(content[start:pos].decode("latin-1"))
    return tuple(protocols)


def _versions(content: bytes) -> list[int]:
    start, end = _vector(content, 0, 1)
    if (end - start) % 2:
        raise _Short
    return [(content[i] << 8) | content[i + 1] for i in range(start, end, 2)]


def _names(raw: bytes | None) -> tuple[str | None, str | None]:
    if raw is None:
        return None, None
    if not raw.isascii():
        raise ClientHelloError(
            "non_ascii_server_name",
            f"the client sent a server name (SNI) that is not ASCII: {raw!r}; clients "
            "must send internationalised names as IDNA A-labels (xn--...)",
        )
    name = raw.decode("ascii").lower()
    if "xn--" not in name:
        return name, name  # nothing to decode (and IDNA decoding is not cheap)
    try:
        return name, idna.decode(name)
    except idna.IDNAError:
        return name, name
