"""httpx and httpcore over trio_tls: TrioTLSTransport and TrioTLSBackend, end to end.

Servers are real: a trio_tls server speaking HTTP/1.1 or HTTP/2 by ALPN (h11/h2,
tests/helpers/http_server.py), ``openssl s_server -www``, and ``trio-tls serve
--http`` as a subprocess. Everything runs on 127.0.0.1 with trustme certificates.
"""

from __future__ import annotations

import hashlib
import re
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import httpcore
import httpx
import pytest
import trio

import trio_tls
from trio_tls.integrations.httpcore import TrioTLSBackend, TrioTLSNetworkStream
from trio_tls.integrations.httpx import TrioTLSTransport
from trio_tls.testing import Handler, TLSTestCA, open_tls_test_server

from .helpers.http_server import Stream, reply_body, serve_http
from .helpers.peers import openssl_s_server, write_pem_files

ALPN = ["h2", "http/1.1"]

#: Generous, so that only the timeout a test shortens on purpose can expire.
SECONDS = 10.0
TIMEOUT = httpx.Timeout(SECONDS)


@asynccontextmanager
async def http_server(ca: TLSTestCA, alpn: list[str] = ALPN) -> AsyncIterator[str]:
    """A trio_tls HTTPS server; yields its base URL."""
    async with open_tls_test_server(
        serve_http, server_context=ca.server_context(alpn_protocols=alpn), ca=ca
    ) as server:
        yield f"https://127.0.0.1:{server.port}"


def client(ca: TLSTestCA, *, http2: bool, timeout: httpx.Timeout = TIMEOUT) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=TrioTLSTransport(verify=ca.client_context(), http2=http2), timeout=timeout
    )


def expected(version: str, method: str, path: str, body: bytes = b"") -> str:
    return reply_body(version, method.encode(), path.encode(), body).decode()


# --- against a trio_tls server -----------------------------------------------------------


@pytest.mark.parametrize(
    ("http2", "http_version", "alpn"),
    [
        pytest.param(False, "HTTP/1.1", "http/1.1", id="http1.1"),
        pytest.param(True, "HTTP/2", "h2", id="http2"),
    ],
)
async def test_get_and_post(tls_ca: TLSTestCA, http2: bool, http_version: str, alpn: str) -> None:
    upload = hashlib.sha256(b"seed").digest() * 40_000  # 1.25 MiB: many records, windows
    async with http_server(tls_ca) as url, client(tls_ca, http2=http2) as http:
        got = await http.get(f"{url}/hello?x=1")
        posted = await http.post(f"{url}/upload", content=upload)
    assert got.status_code == 200
    assert got.http_version == http_version
    assert got.text == expected(http_version, "GET", "/hello?x=1")
    assert posted.text == expected(http_version, "POST", "/upload", upload)
    # The extra httpcore reads to choose HTTP/2 is the real SSLObject.
    ssl_object = got.extensions["network_stream"].get_extra_info("ssl_object")
    assert isinstance(ssl_object, ssl.SSLObject)
    assert ssl_object.selected_alpn_protocol() == alpn


async def test_http2_multiplexes_one_trio_tls_connection(tls_ca: TLSTestCA) -> None:
    transport = TrioTLSTransport(verify=tls_ca.client_context(), http2=True)
    async with http_server(tls_ca) as url, httpx.AsyncClient(transport=transport) as http:
        replies: dict[int, str] = {}

        async def fetch(n: int) -> None:
            replies[n] = (await http.get(f"{url}/{n}")).text

        async with trio.open_nursery() as nursery:
            for n in range(20):
                nursery.start_soon(fetch, n)
        (connection,) = transport.pool.connections
    assert replies == {n: expected("HTTP/2", "GET", f"/{n}") for n in range(20)}
    assert "HTTP/2" in repr(connection)


async def test_network_stream_is_trio_tls(tls_ca: TLSTestCA) -> None:
    """Users reach the SSLStream (and its statistics) through httpx's extension."""
    async with http_server(tls_ca) as url, client(tls_ca, http2=False) as http:
        response = await http.get(f"{url}/")
        network_stream = response.extensions["network_stream"]
        assert isinstance(network_stream, TrioTLSNetworkStream)
        tls = network_stream.stream
        assert isinstance(tls, trio_tls.SSLStream)
        assert tls.statistics().bytes_received >= len(response.content)
        host, port = network_stream.get_extra_info("server_addr")[:2]
        assert (host, port) == ("127.0.0.1", int(url.rsplit(":", 1)[1]))
        assert network_stream.get_extra_info("client_addr")[0] == "127.0.0.1"
        assert network_stream.get_extra_info("socket") is tls.transport_stream.socket
        assert network_stream.get_extra_info("is_readable") is False
        assert network_stream.get_extra_info("no such key") is None


async def test_httpcore_pool_with_backend(tls_ca: TLSTestCA) -> None:
    """The backend alone, as httpcore documents network backends."""
    async with (
        http_server(tls_ca) as url,
        httpcore.AsyncConnectionPool(
            ssl_context=tls_ca.client_context(), http2=True, network_backend=TrioTLSBackend()
        ) as pool,
    ):
        response = await pool.request("GET", f"{url}/core")
    assert response.extensions["http_version"] == b"HTTP/2"
    assert response.content.decode() == expected("HTTP/2", "GET", "/core")


# --- errors read as httpx's, with the cause kept ---------------------------------------


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and what led to it. httpcore's pool re-raises its errors ``from None``,
    which erases their ``__cause__`` but leaves ``__context__``: follow either."""
    seen: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and len(seen) < 10:
        seen.append(cause)
        cause = cause.__cause__ or cause.__context__
    return seen


async def test_certificate_failure_is_a_connect_error(tls_ca: TLSTestCA) -> None:
    stranger = TLSTestCA()  # the server's certificate is not from this CA
    async with http_server(tls_ca) as url, client(stranger, http2=True) as http:
        with pytest.raises(httpx.ConnectError) as caught:
            await http.get(url)
    chain = _chain(caught.value)
    assert [type(exc) for exc in chain] == [
        httpx.ConnectError,
        httpcore.ConnectError,
        trio.BrokenResourceError,
        ssl.SSLCertVerificationError,
    ]
    # It reads as a certificate failure: the message is trio_tls's, which carries
    # OpenSSL's. (httpx over trio.SSLStream says only ConnectError('').)
    assert str(chain[-1]) in str(caught.value)
    assert str(caught.value) == str(chain[2])


async def test_connection_refused_is_a_connect_error() -> None:
    with trio.socket.socket() as probe:
        await probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, never listening: connecting is refused
        async with httpx.AsyncClient(transport=TrioTLSTransport()) as http:
            with pytest.raises(httpx.ConnectError) as caught:
                await http.get(f"https://127.0.0.1:{port}/")
    assert [type(exc) for exc in _chain(caught.value)][:2] == [
        httpx.ConnectError,
        httpcore.ConnectError,
    ]
    assert isinstance(_chain(caught.value)[2], OSError)  # trio's "all attempts ... failed"


async def test_silent_server_is_a_connect_timeout(tls_ca: TLSTestCA) -> None:
    """A TCP server that never answers the ClientHello: the handshake times out."""
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, _hold_open, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        async with client(tls_ca, http2=False, timeout=httpx.Timeout(SECONDS, connect=0.3)) as http:
            with pytest.raises(httpx.ConnectTimeout):
                await http.get(f"https://127.0.0.1:{port}/")
        nursery.cancel_scope.cancel()


async def _hold_open(stream: trio.SocketStream) -> None:
    await trio.sleep(30)  # cancelled when the test leaves its nursery


async def _handshake_then_wait(stream: Stream) -> None:
    await stream.do_handshake()
    await stream.receive_some()  # the request; never answered
    await trio.sleep(30)


async def _handshake_then_garbage(stream: Stream) -> None:
    await stream.do_handshake()
    await stream.receive_some()
    # An application-data record that fails authentication: the client's TLS layer
    # breaks, which httpcore must report as a read error.
    await stream.transport_stream.send_all(b"\x17\x03\x03\x00\x20" + bytes(32))
    await trio.sleep(30)


@pytest.mark.parametrize(
    ("handler", "error"),
    [
        pytest.param(_handshake_then_wait, httpx.ReadTimeout, id="read_timeout"),
        pytest.param(_handshake_then_garbage, httpx.ReadError, id="read_error"),
    ],
)
async def test_read_failures(tls_ca: TLSTestCA, handler: Handler, error: type[Exception]) -> None:
    async with (
        open_tls_test_server(handler, ca=tls_ca) as server,
        # Only the read is short: a slow handshake on a busy machine stays a success.
        client(tls_ca, http2=False, timeout=httpx.Timeout(SECONDS, read=0.5)) as http,
    ):
        with pytest.raises(error) as caught:
            await http.get(f"https://127.0.0.1:{server.port}/")
    assert isinstance(caught.value.__cause__, httpcore.ReadTimeout | httpcore.ReadError)
    assert isinstance(_chain(caught.value)[2], trio.TooSlowError | trio.BrokenResourceError)


# --- against openssl s_server -www and trio-tls serve --http ---------------------------


@pytest.mark.parametrize("http2", [False, True], ids=["http1.1", "http2_offered"])
async def test_openssl_s_server_www(tls_ca: TLSTestCA, tmp_path: Path, http2: bool) -> None:
    """s_server speaks HTTP/1.0 and no ALPN: a client offering h2 falls back."""
    pems = write_pem_files(tls_ca, tmp_path)
    verify = ssl.create_default_context(cafile=str(pems.ca))
    log = tmp_path / "s_server.log"
    async with (
        openssl_s_server(pems, "1.3", "-www", log=log) as (port, _),
        httpx.AsyncClient(transport=TrioTLSTransport(verify, http2=http2)) as http,
    ):
        response = await http.get(f"https://localhost:{port}/")
    assert response.status_code == 200
    assert response.http_version == "HTTP/1.0"
    assert "TLSv1.3" in response.text  # s_server's page describes the session


@asynccontextmanager
async def trio_tls_serve_http(tmp_path: Path, connections: int) -> AsyncIterator[tuple[int, Path]]:
    """``python -m trio_tls serve --http`` for ``connections`` connections: (port, CA file)."""
    ca_file = tmp_path / "ca.pem"
    command = [sys.executable, "-m", "trio_tls", "serve", "--http", "--port", "0"]
    command += ["--ca-out", str(ca_file), "--max-connections", str(connections)]
    process = await trio.lowlevel.open_process(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        assert process.stdout is not None
        banner = b""
        with trio.fail_after(20):
            while not (found := re.search(rb"serving TLS \(http\) on [\d.]+:(\d+)", banner)):
                chunk = await process.stdout.receive_some()
                assert chunk, f"serve exited early: {banner.decode(errors='replace')}"
                banner += chunk
        yield int(found.group(1)), ca_file
        with trio.fail_after(10):
            assert await process.wait() == 0  # it served its connections and exited
    finally:
        if process.returncode is None:
            process.kill()
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            await process.wait()


async def test_trio_tls_serve_http(tmp_path: Path) -> None:
    """The project's own ``serve --http`` (HTTP/1.1 only), by a plain and an h2 client."""
    async with trio_tls_serve_http(tmp_path, connections=2) as (port, ca_file):
        verify = ssl.create_default_context(cafile=str(ca_file))
        for http2 in (False, True):
            async with httpx.AsyncClient(transport=TrioTLSTransport(verify, http2=http2)) as http:
                response = await http.get(f"https://localhost:{port}/page")
            assert response.status_code == 200
            assert response.http_version == "HTTP/1.1"
            assert "GET /page HTTP/1.1" in response.text
            ssl_object = response.extensions["network_stream"].get_extra_info("ssl_object")
            assert ssl_object.selected_alpn_protocol() == "http/1.1"
