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
from typing import Final

import idna

#: Returned while the bytes so far end before the server name (or the hello).
MORE: Final = object()

_HANDSHAKE_RECORD: Final = 22
_CLIENT_HELLO: Final = 1
_SERVER_NAME_EXTENSION: Final = 0
_ALPN_EXTENSION: Final = 16
_SUPPORTED_VERSIONS_EXTENSION: Final = 43
_HOST_NAME: Final = 0
_RECORD_HEADER: Final = 5
#: RFC 8446 section 5.1: a plaintext record carries at most 2**14 bytes.
_MAX_FRAGMENT: Final = 2**14
#: One full record. OpenSSL 3.0 clients never send a longer hello, and a server
#: engine holding bytes back for the SNI check waits for no more than this.
MAX_HELLO_BYTES: Final = _RECORD_HEADER + _MAX_FRAGMENT
#: The default bound for :func:`parse_client_hello`: four full records. Hellos with
#: hybrid post-quantum key shares take about 1.5 KiB; nothing legitimate comes near.
DEFAULT_MAX_HELLO_BYTES: Final = 4 * MAX_HELLO_BYTES

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
    #: The TLS versions the client offered, in its order: the supported_versions
    #: extension when present (TLS 1.3 clients), else the hello's legacy version.
    #: Values this Python does not name (GREASE, drafts) are left out.
    tls_versions: tuple[ssl.TLSVersion, ...]


class _Short(Exception):
    """The data ends before the field being read."""


class _Reader:
    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def take(self, count: int) -> bytes:
        end = self._pos + count
        if end > len(self._data):
            raise _Short
        chunk, self._pos = self._data[self._pos : end], end
        return chunk

    def number(self, width: int) -> int:
        return int.from_bytes(self.take(width), "big")

    def vector(self, width: int) -> _Reader:
        return _Reader(self.take(self.number(width)))

    def rest(self) -> bytes:
        return self.take(len(self._data) - self._pos)

    @property
    def done(self) -> bool:
        return self._pos >= len(self._data)


def _handshake_bytes(data: bytes, max_bytes: int) -> tuple[bytes, int] | None:
    """The ClientHello message reassembled from its records, and the bytes they took.

    None while ``data`` ends before the message does.
    """
    # A bytearray: a hello cut into one-byte records must cost linear time, not
    # the quadratic time of joining immutable bytes record by record.
    message, pos = bytearray(), 0
    while True:
        header = data[pos : pos + _RECORD_HEADER]
        if header and header[0] != _HANDSHAKE_RECORD:
            if pos == 0:
                raise ClientHelloError(
                    "not_tls",
                    f"the client's first bytes are not a TLS handshake record "
                    f"(they begin {data[:16]!r}); is it speaking plain text to a TLS port?",
                )
            raise ClientHelloError("malformed", "a non-handshake record inside the ClientHello")
        if len(header) < _RECORD_HEADER:
            if len(data) >= max_bytes:
                raise _too_large(max_bytes)
            return None
        length = int.from_bytes(header[3:5], "big")
        if header[1] != 3 or length == 0 or length > _MAX_FRAGMENT:
            raise ClientHelloError(
                "malformed", f"a TLS record header that no client sends: {header.hex()}"
            )
        end = pos + _RECORD_HEADER + length
        if end > max_bytes:
            raise _too_large(max_bytes)
        if end > len(data):
            return None
        message += data[pos + _RECORD_HEADER : end]
        pos = end
        if len(message) >= 4:
            if message[0] != _CLIENT_HELLO:
                raise ClientHelloError("malformed", "the first handshake message is no ClientHello")
            whole = 4 + int.from_bytes(message[1:4], "big")
            if len(message) >= whole:
                if len(message) > whole:
                    raise ClientHelloError("malformed", "bytes after the ClientHello message")
                return bytes(message[4:]), pos


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
    found = _handshake_bytes(bytes(data), max_bytes)
    if found is None:
        return None
    body, used = found
    try:
        raw_name, alpn, versions = _fields(_Reader(body))
    except _Short:
        raise ClientHelloError("malformed", "a ClientHello field overruns the message") from None
    name, unicode_name = _names(raw_name)
    return ClientHello(name, unicode_name, alpn, versions), used


def _fields(body: _Reader) -> tuple[bytes | None, tuple[str, ...], tuple[ssl.TLSVersion, ...]]:
    legacy_version = body.number(2)
    body.take(32)  # random
    for width in (1, 2, 1):  # session id, cipher suites, compression methods
        body.vector(width)
    name: bytes | None = None
    alpn: tuple[str, ...] = ()
    offered = [legacy_version]
    extensions = body.vector(2) if not body.done else _Reader(b"")
    while not extensions.done:
        kind, content = extensions.number(2), extensions.vector(2)
        if kind == _SERVER_NAME_EXTENSION:
            names = content.vector(2)
            name = names.vector(2).rest() if names.number(1) == _HOST_NAME else None
        elif kind == _ALPN_EXTENSION:
            alpn = _alpn(content.vector(2))
        elif kind == _SUPPORTED_VERSIONS_EXTENSION:
            listed, offered = content.vector(1), []
            while not listed.done:
                offered.append(listed.number(2))
    return name, alpn, tuple(_VERSIONS[v] for v in offered if v in _VERSIONS)


def _alpn(names: _Reader) -> tuple[str, ...]:
    protocols = []
    while not names.done:
        protocols.append(names.vector(1).rest().decode("latin-1"))
    return tuple(protocols)


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
    try:
        return name, idna.decode(name)
    except idna.IDNAError:
        return name, name


def server_name(data: bytes) -> bytes | object | None:
    """The raw server name of the ClientHello at the start of ``data``.

    For the server engine's check, which must not refuse what OpenSSL should judge:
    returns the name's bytes (ASCII or not), None when there is none or the data is
    not a ClientHello within :data:`MAX_HELLO_BYTES` (OpenSSL will say what is
    wrong), or :data:`MORE` while ``data`` stops before the end of the hello.
    """
    try:
        found = _handshake_bytes(bytes(data), MAX_HELLO_BYTES)
    except ClientHelloError:
        return None
    if found is None:
        return MORE
    try:
        return _fields(_Reader(found[0]))[0]
    except _Short:
        return None
