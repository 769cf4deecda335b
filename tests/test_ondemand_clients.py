"""On-demand TLS with real clients: openssl s_client, curl and httpx against one server.

The server has no certificate when it starts. Its loader mints one for each name
the first time a client asks for it (trustme, written to files, then loaded from
them, as a loader backed by an ACME client would), and the ContextCache keeps it.
Every client verifies the certificate against the name it asked for, under TLS 1.2
and TLS 1.3.
"""

from __future__ import annotations

import ssl
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import trio

from trio_tls import ContextCache, SSLStream
from trio_tls.testing import TLSTestCA, TLSVersionName, pin_version

from .helpers.peers import curl_flags, openssl_flag, require_tool, run_tool
from .helpers.streams import serving

pytestmark = pytest.mark.usefixtures("no_fd_leak")

BODY = b"served on demand\n"


class MintOnFirstUse:
    """``load(name)``: write ``certs/NAME.pem`` and ``.key`` if missing, then load them."""

    def __init__(self, ca: TLSTestCA, certs: Path, version: TLSVersionName) -> None:
        self.ca = ca
        self.certs = certs
        self.version = version
        self.loads: Counter[str] = Counter()

    def _mint(self, name: str) -> None:
        leaf = self.ca.ca.issue_cert(name)
        leaf.private_key_pem.write_to_path(str(self.certs / f"{name}.key"))
        (self.certs / f"{name}.pem").write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems))

    async def __call__(self, name: str) -> ssl.SSLContext:
        self.loads[name] += 1
        pem, key = self.certs / f"{name}.pem", self.certs / f"{name}.key"
        if not pem.exists():
            await trio.to_thread.run_sync(self._mint, name)
        context = pin_version(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), self.version)
        context.set_alpn_protocols(["http/1.1"])
        await trio.to_thread.run_sync(context.load_cert_chain, pem, key)
        return context


async def http_ok(stream: SSLStream[trio.SocketStream]) -> None:
    request = b""
    while b"\r\n\r\n" not in request and len(request) < 16384:
        chunk = await stream.receive_some()
        if not chunk:
            return
        request += chunk
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(BODY)
    await stream.send_all(head + BODY)
    # close_notify: s_client counts a bare EOF as an error (and trio.serve_listeners
    # closes a stream forcefully, without one, when the handler returns).
    await stream.aclose()


@asynccontextmanager
async def on_demand_server(loader: MintOnFirstUse) -> AsyncIterator[int]:
    async with serving(http_ok, ContextCache(loader)) as port:
        yield port


async def test_real_clients_get_a_certificate_minted_for_their_name(
    tls_ca: TLSTestCA, tls_version: TLSVersionName, tmp_path: Path
) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    ca_file = tmp_path / "ca.pem"
    tls_ca.ca.cert_pem.write_to_path(str(ca_file))
    loader = MintOnFirstUse(tls_ca, certs, tls_version)
    with trio.fail_after(60):
        async with on_demand_server(loader) as port:
            for name in ("s-client-a.example", "s-client-b.example"):
                await s_client(name, port, ca_file, tls_version)
            await curl(
                ("curl-a.example", "curl-b.example", "curl-c.example"), port, ca_file, tls_version
            )
            await httpx_client(("httpx-a.example", "httpx-b.example"), port, tls_ca, tls_version)
            # Asked again: served from the cache, no second load.
            await curl(("curl-a.example",), port, ca_file, tls_version)
    names = [f"s-client-{x}.example" for x in "ab"] + [f"curl-{x}.example" for x in "abc"]
    names += [f"httpx-{x}.example" for x in "ab"]
    assert loader.loads == Counter(dict.fromkeys(names, 1))
    assert sorted(p.name for p in certs.glob("*.pem")) == sorted(f"{n}.pem" for n in names)


async def s_client(name: str, port: int, ca_file: Path, version: TLSVersionName) -> None:
    command = [
        require_tool("openssl"),
        "s_client",
        "-connect",
        f"127.0.0.1:{port}",
        "-servername",
        name,
        "-verify_hostname",
        name,
        "-CAfile",
        str(ca_file),
        "-verify_return_error",
        openssl_flag(version),
        "-quiet",
        "-nocommands",
    ]
    request = f"GET / HTTP/1.1\r\nHost: {name}\r\n\r\n".encode()
    result = await run_tool(command, stdin=request)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.endswith(BODY), result.stdout


async def curl(names: tuple[str, ...], port: int, ca_file: Path, version: TLSVersionName) -> None:
    """One curl run fetching from every name, each resolved to 127.0.0.1."""
    resolves = [arg for name in names for arg in ("--resolve", f"{name}:{port}:127.0.0.1")]
    command = [
        require_tool("curl"),
        "--silent",
        "--show-error",
        "--fail",
        "--http1.1",
        "--max-time",
        "20",
        "--cacert",
        str(ca_file),
        *curl_flags(version),
        *resolves,
        *(f"https://{name}:{port}/" for name in names),
    ]
    result = await run_tool(command)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == BODY * len(names)


async def httpx_client(
    names: tuple[str, ...], port: int, ca: TLSTestCA, version: TLSVersionName
) -> None:
    """httpx connects to 127.0.0.1 and sends each name as SNI, verifying it."""
    async with httpx.AsyncClient(verify=ca.client_context(version=version)) as client:
        for name in names:
            response = await client.get(
                f"https://127.0.0.1:{port}/",
                headers={"Host": name},
                extensions={"sni_hostname": name},
            )
            assert response.status_code == 200
            assert response.content == BODY
            tls = response.extensions["network_stream"].get_extra_info("ssl_object")
            assert tls.version() == f"TLSv{version}"
