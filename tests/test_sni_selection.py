"""Several names on one listener: ``select_context_by_sni`` picks the context by the
name the client sends."""

from __future__ import annotations

import contextlib
import ssl
from functools import partial
from typing import Any

import pytest
import trio

from trio_tls import SSLListener, SSLStream, select_context_by_sni, serve_ssl_over_tcp
from trio_tls._sni import _lookup
from trio_tls.testing import TLSTestCA, TLSVersionName

from .helpers.peers import openssl_flag, require_tool, run_tool
from .helpers.streams import port_of


def test_sni_lookup_rules() -> None:
    a, b = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    table = {"a.example": a, "*.b.example": b}
    assert _lookup(table, "A.Example.") is a
    assert _lookup(table, "x.b.example") is b
    assert _lookup(table, "y.x.b.example") is None  # a wildcard covers one label
    assert _lookup(table, "b.example") is None


@pytest.mark.parametrize("reject_unknown", [False, True], ids=["fallback", "reject"])
async def test_sni_selects_the_certificate_openssl_s_client(
    tmp_path: Any, tls_version: TLSVersionName, reject_unknown: bool
) -> None:
    openssl = require_tool("openssl")
    cas = {
        name: TLSTestCA(hostnames=(name,))
        for name in ("alpha.example", "beta.example", "fallback.example")
    }
    contexts = {name: ca.server_context(version=tls_version) for name, ca in cas.items()}
    default = select_context_by_sni(
        contexts.pop("fallback.example"), contexts, reject_unknown=reject_unknown
    )

    async def hello(stream: SSLStream[trio.SocketStream]) -> None:
        with trio.move_on_after(10), contextlib.suppress(trio.BrokenResourceError):
            await stream.do_handshake()  # the SNI callback runs during the handshake
            await stream.send_all(f"served by {stream.context is default}\n".encode())
            await stream.aclose()

    async def ask(port: int, name: str) -> tuple[int, str]:
        ca_file = tmp_path / f"{name}.pem"
        cas[name if name in cas else "fallback.example"].ca.cert_pem.write_to_path(str(ca_file))
        command = [
            openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-servername", name,
            "-CAfile", str(ca_file), "-verify_return_error", "-verify_hostname",
            name if name in cas else "fallback.example", openssl_flag(tls_version), "-quiet",
        ]  # fmt: skip
        with trio.fail_after(15):
            done = await run_tool(command)
        return done.returncode, done.stdout.decode(errors="replace")

    async with trio.open_nursery() as nursery:
        listeners: list[SSLListener[trio.SocketStream]] = await nursery.start(
            partial(serve_ssl_over_tcp, hello, 0, default, host="127.0.0.1")
        )
        port = port_of(listeners[0])
        for name in ("alpha.example", "beta.example"):
            code, out = await ask(port, name)
            assert code == 0 and "served by False" in out, out
        code, out = await ask(port, "unknown.example")
        if reject_unknown:
            assert code != 0
        else:
            assert code == 0 and "served by True" in out, out
        nursery.cancel_scope.cancel()
