"""``trio-tls demo``: a TLS server and client talking in one trio nursery.

Everything is real: a fresh trustme CA, a listening socket on 127.0.0.1 with
a port chosen by the kernel, a full handshake, 64 KiB echoed back, and a
close_notify each way. Both sides count their bytes once the connection is
closed, so what one side sent is exactly what the other received.
"""

from __future__ import annotations

import argparse
import random
import ssl
import time
from dataclasses import dataclass, field
from functools import partial

import trio
import trustme

from .._contexts import TLSVersionName, pin_version
from .._listener import default_client_context, open_ssl_over_tcp_stream, serve_ssl_over_tcp
from .._stream import SSLStream
from . import options
from . import output as out
from .failure import Failure, causes, explain
from .tls import Summary, bound_address, server_context, summarize

#: Big enough to take many TLS records (16 KiB each), small enough to be instant.
PAYLOAD_SIZE = 64 * 1024
#: The whole demo normally takes milliseconds; this only stops a hang.
DEADLINE = 10.0
#: How long the client waits for the server's close_notify after sending its own.
CLOSE_WAIT = 2.0
ALPN = "trio-tls-demo"

Stream = SSLStream[trio.SocketStream]


@dataclass
class Sides:
    """What each side saw, filled in as the demo runs."""

    port: int = 0
    client: Summary | None = None
    server: Summary | None = None
    server_done: trio.Event = field(default_factory=trio.Event)
    echoed: bytes = b""
    seconds: float = 0.0


def configure(parser: argparse.ArgumentParser) -> None:
    options.add_version_flags(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    version: TLSVersionName | None = args.tls_version
    try:
        sides = trio.run(demo, version)
    except Failure as failure:
        out.fail(f"demo: {failure}")
        return 1
    out.emit(_text(sides))
    return 0


async def demo(version: TLSVersionName | None) -> Sides:
    server_ctx, client_ctx = _contexts(version)
    payload = random.Random(0).randbytes(PAYLOAD_SIZE)
    sides = Sides()
    try:
        with trio.fail_after(DEADLINE):
            async with trio.open_nursery() as nursery:
                handler = partial(_server, sides=sides)
                listeners = await nursery.start(
                    partial(serve_ssl_over_tcp, handler, 0, server_ctx, host="127.0.0.1")
                )
                sides.port = bound_address(listeners[0])[1]
                await _client(client_ctx, payload, sides)
                await sides.server_done.wait()
                nursery.cancel_scope.cancel()  # stop listening; nothing else is running
    except trio.TooSlowError:
        raise Failure(f"did not finish within {DEADLINE:g} s") from None
    except (trio.BrokenResourceError, OSError, ExceptionGroup) as exc:
        # Either side's failure reaches us wrapped in the nurseries' exception groups.
        ours = next((e for e in causes(exc) if isinstance(e, Failure)), None)
        raise (ours or Failure(explain(exc))) from exc
    if sides.echoed != payload:
        raise Failure("the echoed data differs from what was sent")
    return sides


def _contexts(version: TLSVersionName | None) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = trustme.CA()
    server_ctx = server_context(version, [ALPN])
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(server_ctx)
    client_ctx = default_client_context()  # what trio_tls's client helpers use
    ca.configure_trust(client_ctx)
    pin_version(client_ctx, version)
    client_ctx.set_alpn_protocols([ALPN])
    return server_ctx, client_ctx


async def _client(ctx: ssl.SSLContext, payload: bytes, sides: Sides) -> None:
    # close_timeout: aclose() waits for the server's close_notify, so that the client
    # has received every byte the server sent, its close_notify included.
    stream = await open_ssl_over_tcp_stream(
        "127.0.0.1", sides.port, ssl_context=ctx, close_timeout=CLOSE_WAIT
    )
    await stream.do_handshake()
    received = bytearray()
    start = time.perf_counter()

    async def receive() -> None:
        while len(received) < len(payload):
            data = await stream.receive_some()
            if not data:
                raise Failure("the server closed before echoing everything")
            received.extend(data)

    # Send and receive at once: the echo comes back while we are still sending,
    # and a client that only sent would stall once the socket buffers filled.
    async with trio.open_nursery() as nursery:
        nursery.start_soon(receive)
        await stream.send_all(payload)
    sides.seconds = time.perf_counter() - start
    sides.echoed = bytes(received)
    negotiated = summarize(stream)
    await stream.aclose()  # close_notify both ways: the server sees b"" and closes too
    # Counted after closing, so that each side's close_notify is in both sides' totals.
    sides.client = negotiated.counted(stream.statistics())


async def _server(stream: Stream, *, sides: Sides) -> None:
    await stream.do_handshake()
    # b"" only comes after a close_notify: without https_compatible, an EOF
    # without it raises BrokenResourceError, so reaching the end proves a clean close.
    while data := await stream.receive_some():
        await stream.send_all(data)
    negotiated = summarize(stream)
    await stream.aclose()
    sides.server = negotiated.counted(stream.statistics())
    sides.server_done.set()


def _text(sides: Sides) -> list[str]:
    assert sides.client is not None
    assert sides.server is not None
    client, server = sides.client, sides.server
    rows = [
        ["", "client", "server"],
        *(
            [label, c, s]
            for (label, c), (_, s) in zip(client.rows(), server.rows(), strict=True)
            if label != "resumed"
        ),
        ["data sent", out.size(client.bytes_sent), out.size(server.bytes_sent)],
        ["data received", out.size(client.bytes_received), out.size(server.bytes_received)],
        # Ciphertext: the data plus record overhead, the handshake and the tickets.
        ["wire sent", out.size(client.wire_bytes_sent), out.size(server.wire_bytes_sent)],
        [
            "wire received",
            out.size(client.wire_bytes_received),
            out.size(server.wire_bytes_received),
        ],
    ]
    return [
        f"trio_tls demo: a TLS client and server in one trio nursery, over 127.0.0.1:{sides.port}",
        "certificate: a fresh trustme CA and a leaf for localhost and 127.0.0.1",
        "",
        *out.columns(rows[0], rows[1:]),
        "",
        f"echoed {len(sides.echoed):,} bytes intact in {out.duration(sides.seconds)} after the handshake;"
        " each side closed with close_notify, and the server saw a clean end of stream.",
    ]
