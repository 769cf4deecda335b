"""Reading a client's ClientHello off a stream without consuming anything after it.

A router that picks a backend by server name (as nginx's ``ssl_preread`` and
HAProxy's ``req.ssl_sni`` do) must hand the backend every byte the client sent, in
order, and must not terminate TLS. So the hello is read record by record: first a
record's 5-byte header, then exactly the rest of that record, each with a bounded
``receive_some(max_bytes)``. A client that sends its next flight right behind the
hello (or several hellos' worth of garbage) never has a byte of it taken here; it is
still in the socket for whoever reads next.

The verdict on the bytes is :func:`trio_tls._hello.parse_client_hello`'s. The reader
only follows the framing to know how much to ask for, and asks the parser at a fixed
number of points (the first byte, the first header, each of the first records, and
the end), so a hello cut into thousands of tiny records still costs a bounded amount
of parsing rather than one parse per record.
"""

from __future__ import annotations

import operator
from typing import Final

import trio

from ._hello import DEFAULT_MAX_HELLO_BYTES, ClientHello, ClientHelloError, parse_client_hello

#: A client sends its hello as soon as TCP is up, with no round trip before it, so
#: 10 s is already very patient; a slow-loris client holds a connection no longer.
DEFAULT_HELLO_TIMEOUT: Final = 10.0
_HEADER: Final = 5
#: Records after which the reader stops asking the parser at each record boundary
#: (real clients send one, two with large post-quantum key shares).
_EARLY_RECORDS: Final = 4


async def read_client_hello(
    stream: trio.abc.ReceiveStream,
    *,
    max_bytes: int = DEFAULT_MAX_HELLO_BYTES,
    timeout: float = DEFAULT_HELLO_TIMEOUT,  # noqa: ASYNC109 (see the docstring)
) -> tuple[ClientHello, bytes]:
    """Read the client's ClientHello from ``stream``, and nothing after it.

    Returns the parsed :class:`ClientHello` and the exact bytes read (its records).
    The stream is left positioned right after them: pass those bytes, then the rest
    of the stream, to whatever serves the connection (a backend chosen by
    ``hello.server_name``, or an :class:`SSLStream` over a stream that replays them).

    ``max_bytes`` bounds the hello's records together (default 64 KiB, four full
    records; real hellos take 0.3 to 2 KiB), and so the memory used. ``timeout``
    bounds the whole read, so that a client sending one byte a second cannot hold
    the connection. It is an argument, on by default, rather than left to a cancel
    scope around the call because a preread faces unauthenticated clients and must
    be bounded even when the caller forgets; pass ``math.inf`` to rely on your own.

    Raises:
      ClientHelloError: the bytes are not a ClientHello, with ``reason``
        ``"not_tls"`` (plain HTTP to the port, say; raised at the first byte),
        ``"malformed"``, ``"too_large"`` (no end within ``max_bytes``),
        ``"truncated"`` (the client closed before its hello ended, or sent nothing)
        or ``"non_ascii_server_name"``. The message names what was wrong.
      trio.TooSlowError: the hello did not arrive within ``timeout``; the message
        says how many bytes had come.
      trio.BrokenResourceError: from ``stream`` (a reset), unchanged.
      ValueError: ``max_bytes`` is less than 1 or ``timeout`` is negative or NaN.
    """
    max_bytes = operator.index(max_bytes)
    if max_bytes < 1:
        raise ValueError(f"max_bytes must be at least 1, not {max_bytes}")
    if not timeout >= 0:
        raise ValueError(f"timeout must be 0 seconds or more, not {timeout!r}")
    received = bytearray()
    with trio.move_on_after(timeout) as scope:
        return await _read(stream, received, max_bytes)
    assert scope.cancelled_caught
    raise trio.TooSlowError(
        f"the client's ClientHello did not arrive within {timeout:g} s"
        f" ({len(received)} bytes of it came)"
    )


async def _read(
    stream: trio.abc.ReceiveStream, received: bytearray, max_bytes: int
) -> tuple[ClientHello, bytes]:
    message = bytearray()  # the handshake message's bytes, without record headers
    records = 0
    while True:
        await _receive(stream, received, _HEADER, max_bytes, check_each=records == 0)
        length = int.from_bytes(received[-2:], "big")
        if records == 0 or len(received) + length > max_bytes:
            _verdict(received, max_bytes)  # a bad header, or too large, raises here
        await _receive(stream, received, length, max_bytes, check_each=False)
        message += received[len(received) - length :]
        records += 1
        if records <= _EARLY_RECORDS or _message_complete(message):
            found = _verdict(received, max_bytes)
            if found is not None:
                return found, bytes(received)


async def _receive(
    stream: trio.abc.ReceiveStream,
    received: bytearray,
    count: int,
    max_bytes: int,
    *,
    check_each: bool,
) -> None:
    """Append exactly ``count`` more bytes to ``received``; never ask for more."""
    end = len(received) + count
    while len(received) < end:
        chunk = await stream.receive_some(end - len(received))
        if not chunk:
            raise ClientHelloError(
                "truncated",
                "the client closed the connection before sending anything"
                if not received
                else f"the client closed the connection inside its ClientHello,"
                f" after {len(received)} bytes",
            )
        received += chunk
        if check_each:  # plain text to a TLS port fails at its first byte
            _verdict(received, max_bytes)


def _verdict(received: bytearray, max_bytes: int) -> ClientHello | None:
    found = parse_client_hello(received, max_bytes=max_bytes)
    return None if found is None else found[0]


def _message_complete(message: bytearray) -> bool:
    # A handshake message: type (1 byte), length (3 bytes), body. Whether the type
    # is ClientHello, and everything else, is the parser's to say.
    return len(message) >= 4 and len(message) >= 4 + int.from_bytes(message[1:4], "big")
