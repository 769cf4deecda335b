"""Reading a client's ClientHello off a stream without consuming anything after it.

A router that picks a backend by server name (as nginx's ``ssl_preread`` and
HAProxy's ``req.ssl_sni`` do) must hand the backend every byte the client sent, in
order, and must not terminate TLS. So the hello is read record by record: first a
record's 5-byte header, then exactly the rest of that record, each with a bounded
``receive_some(max_bytes)``. A client that sends its next flight right behind the
hello (or several hellos' worth of garbage) never has a byte of it taken here; it is
still in the socket for whoever reads next.

The verdict on the bytes is :class:`trio_tls._hello.HelloReader`'s, which also says
how many bytes to ask for next (the first byte alone, so plain text fails at once;
then the rest of a record header; then the rest of the record). It looks at each
byte once, so a hello cut into thousands of tiny records costs linear time.
"""

from __future__ import annotations

import operator
from typing import Final

import trio

from ._hello import DEFAULT_MAX_HELLO_BYTES, ClientHello, ClientHelloError, HelloReader

#: A client sends its hello as soon as TCP is up, with no round trip before it, so
#: 10 s is already very patient; a slow-loris client holds a connection no longer.
DEFAULT_HELLO_TIMEOUT: Final = 10.0


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

    On failure, the bytes read so far are gone from the stream, which is left in the
    middle of whatever the client sent: it can only be closed, or handed on together
    with those bytes. A :exc:`ClientHelloError` carries them as ``received``; after a
    timeout or a cancellation they are lost, so close the stream.

    Raises:
      ClientHelloError: the bytes are not a ClientHello, with ``reason``
        ``"not_tls"`` (plain HTTP to the port, say; raised at the first byte),
        ``"malformed"``, ``"too_large"`` (no end within ``max_bytes``),
        ``"truncated"`` (the client closed before its hello ended, or sent nothing)
        or ``"non_ascii_server_name"``. The message names what was wrong, and
        ``received`` holds the bytes read.
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
    reader, received = HelloReader(max_bytes), bytearray()
    with trio.move_on_after(timeout) as scope:
        try:
            while reader.hello is None:
                # Never more than the reader wants: what follows the hello stays unread.
                chunk = await stream.receive_some(reader.wanted)
                if not chunk:
                    raise _truncated(len(received))
                received += chunk
                reader.feed(chunk)
        except ClientHelloError as exc:
            exc.received = bytes(received)
            raise
        return reader.hello, bytes(received)
    assert scope.cancelled_caught
    raise trio.TooSlowError(
        f"the client's ClientHello did not arrive within {timeout:g} s"
        f" ({len(received)} bytes of it came)"
    )


def _truncated(received: int) -> ClientHelloError:
    return ClientHelloError(
        "truncated",
        f"the client closed the connection inside its ClientHello, after {received} bytes"
        if received
        else "the client closed the connection before sending anything",
    )
