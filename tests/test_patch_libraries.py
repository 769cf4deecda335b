"""Unmodified hypercorn, httpx, trio-websocket and websockets on trio_tls via patch_trio().

Each test proves that trio_tls carried the traffic, not trio: it finds the stream
that carried a request (its class is ``trio_tls.SSLStream``) and reads its
``statistics()``. All peers are on 127.0.0.1 with the session's trustme CA.
"""

from __future__ import annotations

import gc
import json
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import hypercorn.trio
import pytest
import trio
import trio_websocket
import websockets.trio.client
import websockets.trio.server
from hypercorn.config import Config
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, Scope

import trio_tls
from trio_tls.testing import SERVER_NAME, TLSTestCA, open_tls_test_server

from .helpers.endpoints import endpoint_parts
from .helpers.http_server import serve_http
from .helpers.peers import SERVER_ADDRESS, require_tool, run_tool, write_pem_files

pytestmark = pytest.mark.usefixtures("patched_trio")

#: Every wait on a peer is bounded by this.
DEADLINE = 20.0


def carrier(client_address: tuple[str, int]) -> trio_tls.SSLStream[trio.SocketStream]:
    """The live server-side trio_tls stream whose peer is ``client_address``.

    hypercorn gives an ASGI app no stream, so the test finds it the way a debugger
    would: among the live objects. Finding none means trio_tls did not serve it.
    """
    found = [
        obj
        for obj in gc.get_objects()
        if type(obj) is trio_tls.SSLStream
        and obj.server_side
        and obj.transport_stream is not None
        and _peer(obj.transport_stream) == client_address
    ]
    assert len(found) == 1, f"no trio_tls server stream for {client_address}"
    return found[0]


def _peer(transport: object) -> tuple[str, int] | None:
    if not isinstance(transport, trio.SocketStream):
        return None
    try:
        host, port = transport.socket.getpeername()[:2]
    except OSError:
        return None
    return (host, port)


def described(stream: object) -> dict[str, object]:
    """What a test asserts about the stream that carried the traffic."""
    assert type(stream) is trio_tls.SSLStream, type(stream)
    stats = stream.statistics()
    return {
        "class": f"{type(stream).__module__}.{type(stream).__qualname__}",
        "alpn": stats.alpn_protocol,
        "tls": stats.version,
        "bytes_received": stats.bytes_received,
    }


# --- hypercorn ------------------------------------------------------------------------------


async def app(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    """Answers every request with what carried it, as JSON."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    assert scope["type"] == "http"
    client = scope["client"]
    assert client is not None
    seen = described(carrier((client[0], client[1])))
    seen["http_version"] = scope["http_version"]
    seen["scheme"] = scope["scheme"]
    body = json.dumps(seen).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
            "trailers": False,
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


@asynccontextmanager
async def hypercorn_server(ca: TLSTestCA, directory: Path) -> AsyncIterator[int]:
    """hypercorn's trio worker serving :func:`app` over TLS; yields its port."""
    pems = write_pem_files(ca, directory)
    config = Config()
    config.bind = [f"{SERVER_ADDRESS}:0"]
    config.certfile = str(pems.cert)
    config.keyfile = str(pems.key)
    config.graceful_timeout = 1.0
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        serve = partial(hypercorn.trio.serve, app, config, shutdown_trigger=stop.wait)
        binds: list[str] = await nursery.start(serve)
        assert binds[0].startswith("https://"), binds
        try:
            yield int(binds[0].rpartition(":")[2])
        finally:
            stop.set()


@pytest.mark.parametrize(("http2", "alpn"), [(False, "http/1.1"), (True, "h2")])
async def test_hypercorn_serves_httpx(
    tls_ca: TLSTestCA, tmp_path: Path, http2: bool, alpn: str
) -> None:
    with trio.fail_after(DEADLINE):
        async with (
            hypercorn_server(tls_ca, tmp_path) as port,
            httpx.AsyncClient(verify=tls_ca.client_context(), http2=http2) as client,
        ):
            url = f"https://{SERVER_ADDRESS}:{port}/"
            for _ in range(3):  # one connection, reused
                response = await client.get(url)
                seen = response.json()
                assert seen["class"] == "trio_tls._stream.SSLStream"
                assert seen["alpn"] == alpn
                assert seen["scheme"] == "https"
                assert seen["http_version"] == ("2" if http2 else "1.1")
            assert described(network_stream(response))["alpn"] == alpn


def curl_supports_http2() -> bool:
    version = subprocess.run(
        [require_tool("curl"), "-V"], capture_output=True, text=True, check=True, timeout=10
    ).stdout
    return any("HTTP2" in line.split() for line in version.splitlines() if line.startswith("F"))


@pytest.mark.parametrize(("flag", "alpn"), [("--http1.1", "http/1.1"), ("--http2", "h2")])
async def test_hypercorn_serves_curl(
    tls_ca: TLSTestCA, tmp_path: Path, flag: str, alpn: str
) -> None:
    # The project promises curl, and Debian's lists HTTP2 among its features: a
    # curl without it is a broken environment, not a reason to skip.
    assert curl_supports_http2(), "this curl was built without HTTP/2 (see curl -V)"
    pems = write_pem_files(tls_ca, tmp_path)
    with trio.fail_after(DEADLINE):
        async with hypercorn_server(tls_ca, tmp_path) as port:
            result = await run_tool(
                [
                    require_tool("curl"),
                    "--silent",
                    "--show-error",
                    "--fail",
                    flag,
                    "--cacert",
                    str(pems.ca),
                    "--resolve",
                    f"{SERVER_NAME}:{port}:{SERVER_ADDRESS}",
                    "--max-time",
                    "15",
                    f"https://{SERVER_NAME}:{port}/",
                ]
            )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["class"] == "trio_tls._stream.SSLStream"
    assert seen["alpn"] == alpn
    assert seen["http_version"] == ("2" if alpn == "h2" else "1.1")


# --- httpx's default transport -----------------------------------------------------------------


def network_stream(response: httpx.Response) -> object:
    """The trio stream under httpcore's network stream: its private ``_stream``,
    read only to prove which class carried the response."""
    return response.extensions["network_stream"]._stream


@asynccontextmanager
async def http_server(ca: TLSTestCA) -> AsyncIterator[str]:
    """A trio_tls server speaking HTTP/1.1 or HTTP/2 by ALPN; yields its URL."""
    context = ca.server_context(alpn_protocols=["h2", "http/1.1"])
    async with open_tls_test_server(serve_http, server_context=context, ca=ca) as server:
        yield f"https://{SERVER_ADDRESS}:{server.port}/"


@pytest.mark.parametrize(("http2", "alpn"), [(False, "http/1.1"), (True, "h2")])
async def test_httpx_default_client(tls_ca: TLSTestCA, http2: bool, alpn: str) -> None:
    with trio.fail_after(DEADLINE):
        async with (
            http_server(tls_ca) as url,
            httpx.AsyncClient(verify=tls_ca.client_context(), http2=http2) as client,
        ):
            response = await client.get(url)
            response.raise_for_status()
            assert response.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
            seen = described(network_stream(response))
            assert seen["alpn"] == alpn
            # The body came through trio_tls, headers and framing on top.
            assert isinstance(seen["bytes_received"], int)
            assert seen["bytes_received"] > len(response.content) > 0
            assert response.extensions["network_stream"].get_extra_info("ssl_object") is not None


async def test_httpx_certificate_failure_names_the_reason(tls_ca: TLSTestCA) -> None:
    with trio.fail_after(DEADLINE):
        async with http_server(tls_ca) as url, httpx.AsyncClient() as client:  # certifi's CAs
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await client.get(url)


async def test_httpx_pool_survives_unpatch_and_patch(tls_ca: TLSTestCA) -> None:
    """A pooled connection made on one side of the swap is reused on the other.

    httpcore checks a pooled connection with ``isinstance(stream, trio.SSLStream)``
    and asserts what it finds under it (``httpcore/_backends/trio.py``).
    """
    with trio.fail_after(DEADLINE):
        async with (
            http_server(tls_ca) as url,
            httpx.AsyncClient(verify=tls_ca.client_context()) as client,
        ):
            made_patched = (await client.get(url)).extensions["network_stream"]
            trio_tls.unpatch_trio()
            again = (await client.get(url)).extensions["network_stream"]
            assert again is made_patched  # reused, not replaced
            assert type(again._stream) is trio_tls.SSLStream
        async with (
            http_server(tls_ca) as url,
            httpx.AsyncClient(verify=tls_ca.client_context()) as client,
        ):
            made_unpatched = (await client.get(url)).extensions["network_stream"]
            assert type(made_unpatched._stream) is not trio_tls.SSLStream  # trio's own
            trio_tls.patch_trio()
            again = (await client.get(url)).extensions["network_stream"]
            assert again is made_unpatched


# --- trio-websocket ---------------------------------------------------------------------------


async def test_trio_websocket_client_and_server(tls_ca: TLSTestCA) -> None:
    server_side: dict[str, Any] = {}

    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept()
        server_side["remote"] = request.remote
        # trio-websocket keeps the stream private; read only to prove what carried it.
        server_side["stream"] = described(ws._stream)
        await ws.send_message(await ws.get_message())
        await ws.aclose()

    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            serve = partial(
                trio_websocket.serve_websocket,
                handler,
                SERVER_ADDRESS,
                0,
                tls_ca.server_context(),
            )
            server: trio_websocket.WebSocketServer = await nursery.start(serve)
            port = server.port
            assert [endpoint_parts(e) for e in server.listeners] == [(SERVER_ADDRESS, port, True)]
            async with trio_websocket.open_websocket_url(
                f"wss://{SERVER_ADDRESS}:{port}/", ssl_context=tls_ca.client_context()
            ) as ws:
                assert endpoint_parts(ws.remote) == (SERVER_ADDRESS, port, True)
                client_stream = described(ws._stream)
                await ws.send_message("hello")
                assert await ws.get_message() == "hello"
            nursery.cancel_scope.cancel()
    assert client_stream["class"] == "trio_tls._stream.SSLStream"
    assert server_side["stream"]["class"] == "trio_tls._stream.SSLStream"
    assert endpoint_parts(server_side["remote"])[2] is True


# --- websockets ---------------------------------------------------------------------------------


async def test_websockets_trio_client_and_server(tls_ca: TLSTestCA) -> None:
    server_side: dict[str, dict[str, object]] = {}

    async def handler(connection: websockets.trio.server.ServerConnection) -> None:
        server_side["stream"] = described(connection.stream)
        async for message in connection:
            await connection.send(message)

    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            serve = partial(
                websockets.trio.server.serve,
                handler,
                0,
                host=SERVER_ADDRESS,
                ssl=tls_ca.server_context(),
            )
            server: websockets.trio.server.Server = await nursery.start(serve)
            port = server.listeners[0].socket.getsockname()[1]
            async with websockets.trio.client.connect(
                f"wss://{SERVER_ADDRESS}:{port}/", ssl=tls_ca.client_context(), proxy=None
            ) as connection:
                client_stream = described(connection.stream)
                assert connection.remote_address[:2] == (SERVER_ADDRESS, port)
                await connection.send("hello")
                assert await connection.recv() == "hello"
            await server.aclose()
            nursery.cancel_scope.cancel()
    assert client_stream["class"] == "trio_tls._stream.SSLStream"
    assert server_side["stream"]["class"] == "trio_tls._stream.SSLStream"
