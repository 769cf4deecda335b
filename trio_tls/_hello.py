"""A look at the server name in a ClientHello, before OpenSSL parses it.

When a server context has an SNI callback, CPython decodes the name the client sent
as ASCII before it calls any Python code. A client that puts raw UTF-8 there instead
of IDNA A-labels (which RFC 6066 forbids, and ``openssl s_client -servername
bücher.example`` does) makes CPython report an "unraisable" ``UnicodeDecodeError``
and fail the handshake with a generic alert; nothing in the callback can prevent it.
So a server engine reads the name first and refuses such a hello itself, with an
error that says what was wrong. No trio, no I/O: bytes in, a verdict out.
"""

from __future__ import annotations

import ssl
from typing import Final

#: Returned while the bytes so far end before the server name (or the hello).
MORE: Final = object()

_HANDSHAKE_RECORD: Final = 22
_CLIENT_HELLO: Final = 1
_SERVER_NAME_EXTENSION: Final = 0
_HOST_NAME: Final = 0
#: A ClientHello longer than one record is not examined (OpenSSL 3.0 clients never
#: send one); waiting for more would only delay the handshake.
MAX_HELLO_BYTES: Final = 5 + 16 * 1024


class ServerNameError(ssl.SSLError):
    """The ClientHello's server name cannot be a host name (it is not ASCII)."""

    reason = "NON_ASCII_SERVER_NAME"

    def __str__(self) -> str:
        return str(self.args[0])


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


def server_name(data: bytes) -> bytes | object | None:
    """The raw server name of the ClientHello at the start of ``data``.

    Returns the name's bytes, None when there is none (or the data is not a
    ClientHello in one record: OpenSSL will judge it), or :data:`MORE` while ``data``
    stops before the end of the first record.
    """
    if not data:
        return MORE
    if data[0] != _HANDSHAKE_RECORD:
        return None  # not TLS at all (plain HTTP, say): OpenSSL says so itself
    record = _Reader(data)
    try:
        record.take(1 + 2)  # content type, legacy record version
        fragment = record.vector(2)
    except _Short:
        return MORE if len(data) < MAX_HELLO_BYTES else None
    try:
        return _name_in(fragment)
    except _Short:
        return None  # malformed, or a hello split over records: OpenSSL's to judge


def _name_in(fragment: _Reader) -> bytes | None:
    if fragment.number(1) != _CLIENT_HELLO:
        return None
    body = fragment.vector(3)
    body.take(2 + 32)  # legacy version, random
    for width in (1, 2, 1):  # session id, cipher suites, compression methods
        body.vector(width)
    if body.done:
        return None  # no extensions at all
    extensions = body.vector(2)
    while not extensions.done:
        kind, content = extensions.number(2), extensions.vector(2)
        if kind == _SERVER_NAME_EXTENSION:
            names = content.vector(2)
            return names.vector(2).rest() if names.number(1) == _HOST_NAME else None
    return None
