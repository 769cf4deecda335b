"""trio-websocket over trio_tls: wss:// clients and servers on loopback, end to end."""

from __future__ import annotations

import gc
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial

import pytest
import trio
from trio_websocket import (
    CloseReason,
    ConnectionClosed,
    ConnectionRejected,
    WebSocketConnection,
    WebSocketRequest,
    wrap_server_stream,
)

import trio_tls
from trio_tls.integrations.trio_websocket import (
    connect_websocket,
    serve_websocket,
    wrap_client_stream,
)
from trio_tls.testing import TLSTestCA, TLSVersionName

from .helpers.endpoints import endpoint_parts
from .helpers.streams import port_of, serving

Handler = Callable[[WebSocketRequest], Awaitable[None]]

#: Each test runs its client under this deadline: a hang fails fast and says where.
DEADLINE = 10.0

#: Text, binary, and a binary message of many TLS records (trio-websocket's limit is 1 MiB).
MESSAGES: list[str | bytes] = ["hello, wss", bytes(range(256)), b"\xa5" * 300_000]


@asynccontextmanager
async def wss_server(handler: Handler, server_ctx: ssl.SSLContext) -> AsyncIterator[int]:
    """serve_websocket on 127.0.0.1 for the duration of the block; yields the port."""
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            partial(serve_websocket, handler, "127.0.0.1", 0, server_ctx)
        )
        yield port_of(listeners[0])
        nursery.cancel_scope.cancel()


class EchoServer:
    """Echoes every message until the client closes; records how it ended."""

    def __init__(self) -> None:
        self.subprotocols: list[str] = []
        self.closed: list[CloseReason | None] = []

    async def __call__(self, request: WebSocketRequest) -> None:
        self.subprotocols = list(request.proposed_subprotocols)
        ws = await request.accept(subprotocol="chat" if "chat" in self.subprotocols else None)
        try:
            while True:
                await ws.send_message(await ws.get_message())
        except ConnectionClosed as closed:
            self.closed.append(closed.reason)


async def test_echo_and_client_close(tls_ca: TLSTestCA, tls_version: TLSVersionName) -> None:
    server = EchoServer()
    async with wss_server(server, tls_ca.server_context(version=tls_version)) as port:
        with trio.fail_after(DEADLINE):
            async with trio.open_nursery() as nursery:
                ws = await connect_websocket(
                    nursery,
                    "localhost",
                    port,
                    "/echo",
                    ssl_context=tls_ca.client_context(),
                    subprotocols=["chat"],
                )
                for message in MESSAGES:
                    await ws.send_message(message)
                    echoed = await ws.get_message()
                    assert type(echoed) is type(message)
                    assert echoed == message
                await ws.aclose()
    assert ws.subprotocol == "chat" and server.subprotocols == ["chat"]
    assert ws.closed is not None and ws.closed.code == 1000
    assert [reason.code for reason in server.closed if reason] == [1000]


async def test_server_closes(tls_ca: TLSTestCA) -> None:
    async def say_goodbye(request: WebSocketRequest) -> None:
        ws = await request.accept()
        await ws.send_message("last words")
        await ws.aclose(code=4000, reason="bye")

    async with wss_server(say_goodbye, tls_ca.server_context()) as port:
        with trio.fail_after(DEADLINE):
            async with trio.open_nursery() as nursery:
                ws = await connect_websocket(
                    nursery, "127.0.0.1", port, "/", ssl_context=tls_ca.client_context()
                )
                assert await ws.get_message() == "last words"
                with pytest.raises(ConnectionClosed) as caught:
                    await ws.get_message()
    reason = caught.value.reason
    assert reason is not None
    assert (reason.code, reason.reason) == (4000, "bye")
    # trio-websocket's own client would leave its socket open here (its reader stops
    # at the server's EOF); an unclosed socket warns when collected, which
    # filterwarnings=error turns into this test's failure.
    del ws, caught
    gc.collect()


async def test_cancelled_client_closes_its_connection(tls_ca: TLSTestCA) -> None:
    """Cancelling the client's nursery closes the TCP connection: the server sees it."""
    ended = trio.Event()
    reasons: list[CloseReason | None] = []

    async def wait_for_client(request: WebSocketRequest) -> None:
        ws = await request.accept()
        try:
            await ws.get_message()
        except ConnectionClosed as closed:
            reasons.append(closed.reason)
        ended.set()

    async with wss_server(wait_for_client, tls_ca.server_context()) as port:
        with trio.fail_after(DEADLINE):
            async with trio.open_nursery() as nursery:
                ws = await connect_websocket(
                    nursery, "127.0.0.1", port, "/", ssl_context=tls_ca.client_context()
                )
                nursery.cancel_scope.cancel()
            await ended.wait()
    assert ws.closed is None  # trio-websocket never saw a close; the transport went away
    assert [reason.code for reason in reasons if reason] == [1006]  # abnormal closure


async def test_rejected(tls_ca: TLSTestCA) -> None:
    async def refuse(request: WebSocketRequest) -> None:
        await request.reject(403, body=b"not you")

    async with wss_server(refuse, tls_ca.server_context()) as port:
        with trio.fail_after(DEADLINE):
            async with trio.open_nursery() as nursery:
                with pytest.raises(ConnectionRejected) as caught:
                    await connect_websocket(
                        nursery, "127.0.0.1", port, "/", ssl_context=tls_ca.client_context()
                    )
    assert (caught.value.status_code, caught.value.body) == (403, b"not you")


async def test_certificate_failure(tls_ca: TLSTestCA) -> None:
    """The TLS failure is trio_tls's, with its cause; the server keeps serving."""
    server = EchoServer()
    async with wss_server(server, tls_ca.server_context()) as port:
        with trio.fail_after(DEADLINE):
            async with trio.open_nursery() as nursery:
                with pytest.raises(trio.BrokenResourceError) as caught:
                    await connect_websocket(
                        nursery, "localhost", port, "/", ssl_context=TLSTestCA().client_context()
                    )
                ws = await connect_websocket(
                    nursery, "localhost", port, "/", ssl_context=tls_ca.client_context()
                )
                await ws.send_message("still here")
                assert await ws.get_message() == "still here"
                await ws.aclose()
    assert isinstance(caught.value.__cause__, ssl.SSLCertVerificationError)


async def test_endpoints_and_the_peer_address(tls_ca: TLSTestCA) -> None:
    """trio-websocket's endpoints, and the peer address read from the stream.

    The server recipe of notes/integrations.md: serve with trio_tls, read the peer
    from the stream, then hand the stream to trio_websocket.wrap_server_stream.
    trio-websocket recognises only trio's classes, which trio_tls's count as (virtual
    subclasses), so its own endpoints are real too, with no patch_trio().
    """
    seen: dict[str, object] = {}

    async def handle(stream: trio_tls.SSLStream[trio.SocketStream]) -> None:
        seen["peer"] = stream.transport_stream.socket.getpeername()
        async with trio.open_nursery() as nursery:
            request = await wrap_server_stream(nursery, stream)
            seen["remote"] = request.remote
            ws = await request.accept()
            await ws.send_message(repr(seen["peer"]))
            with pytest.raises(ConnectionClosed):
                await ws.get_message()

    async with serving(handle, tls_ca.server_context()) as port:
        with trio.fail_after(DEADLINE):
            stream = await trio_tls.open_ssl_over_tcp_stream(
                "127.0.0.1", port, ssl_context=tls_ca.client_context()
            )
            async with trio.open_nursery() as nursery:
                ws: WebSocketConnection = await wrap_client_stream(
                    nursery, stream, f"127.0.0.1:{port}", "/"
                )
                local = stream.transport_stream.socket.getsockname()
                assert await ws.get_message() == repr(local)
                assert endpoint_parts(ws.local) == (local[0], local[1], True)
                assert endpoint_parts(ws.remote) == ("127.0.0.1", port, True)
                await ws.aclose()
    assert seen["peer"] == local
    assert endpoint_parts(seen["remote"]) == (local[0], local[1], True)
