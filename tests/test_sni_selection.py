"""Several names on one listener: ``select_context_by_sni`` picks the context by the
name the client sends."""

from __future__ import annotations

import contextlib
import re
import ssl
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio

from trio_tls import SSLStream, select_context_by_sni
from trio_tls._sni import lookup_name
from trio_tls.testing import TLSTestCA, TLSVersionName, handshake_pair

from .helpers.peers import openssl_flag, require_tool, run_tool
from .helpers.streams import serving


def test_sni_lookup_rules() -> None:
    a, b = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    table = {"a.example": a, "*.b.example": b}
    assert lookup_name(table, "A.Example.") is a
    assert lookup_name(table, "x.b.example") is b
    assert lookup_name(table, "y.x.b.example") is None  # a wildcard covers one label
    assert lookup_name(table, "b.example") is None


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

    async with serving(hello, default) as port:
        for name in ("alpha.example", "beta.example"):
            code, out = await ask(port, name)
            assert code == 0 and "served by False" in out, out
        code, out = await ask(port, "unknown.example")
        if reject_unknown:
            assert code != 0
        else:
            assert code == 0 and "served by True" in out, out


# Internationalised names: clients send A-labels (RFC 6066), keys may be U-labels.


@pytest.fixture(scope="module")
def idn_ca() -> TLSTestCA:
    """A certificate for internationalised names (trustme stores their A-labels)."""
    return TLSTestCA(hostnames=("bücher.example", "*.bücher.example", "faß.example"))


@pytest.fixture
def unraisable(monkeypatch: pytest.MonkeyPatch) -> list[sys.UnraisableHookArgs]:
    """What CPython reports from places no exception can propagate, an SNI callback
    among them. (pytest's own check would fail the test too, less plainly.)"""
    reported: list[sys.UnraisableHookArgs] = []
    monkeypatch.setattr(sys, "unraisablehook", reported.append)
    return reported


def test_sni_keys_are_stored_as_clients_send_them() -> None:
    from trio_tls._sni import _key

    assert _key("Bücher.Example.") == "xn--bcher-kva.example"
    assert _key("*.bücher.example") == "*.xn--bcher-kva.example"
    # IDNA 2008, as trio_tls's client encodes it; IDNA 2003 would say fass.example.
    assert _key("faß.example") == "xn--fa-hia.example"
    assert _key("A.Example") == "a.example"


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("bü_cher.example", id="underscore"),
        pytest.param("-bücher.example", id="leading_hyphen"),
        pytest.param("a.*.example", id="inner_wildcard"),
    ],
)
def test_an_invalid_sni_key_is_a_clear_error(key: str) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with pytest.raises(ValueError, match=re.escape(repr(key))):
        select_context_by_sni(context, {key: context})


@pytest.mark.parametrize(
    ("key", "client_name"),
    [
        pytest.param("bücher.example", "bücher.example", id="name"),
        pytest.param("*.bücher.example", "laden.bücher.example", id="wildcard"),
        pytest.param("faß.example", "faß.example", id="idna2008_only"),
    ],
)
async def test_sni_selects_the_certificate_of_an_internationalised_name(
    tls_ca: TLSTestCA,
    idn_ca: TLSTestCA,
    tls_version: TLSVersionName,
    unraisable: list[sys.UnraisableHookArgs],
    key: str,
    client_name: str,
) -> None:
    idn_context = idn_ca.server_context(version=tls_version)
    default = select_context_by_sni(tls_ca.server_context(version=tls_version), {key: idn_context})
    client_raw, server_raw = trio.testing.memory_stream_pair()
    # The client checks the certificate against client_name: only idn_ca's passes.
    client = SSLStream(
        client_raw, idn_ca.client_context(version=tls_version), server_hostname=client_name
    )
    server = SSLStream(server_raw, default, server_side=True)
    await handshake_pair(client, server)
    assert server.context is idn_context
    assert unraisable == []


async def suppress_broken(operation: Callable[[], Awaitable[object]]) -> None:
    with contextlib.suppress(trio.BrokenResourceError):
        await operation()


@pytest.mark.parametrize("reject_unknown", [False, True], ids=["fallback", "reject"])
@pytest.mark.parametrize(
    "client_name",
    [
        pytest.param("xn--zz.example", id="bad_punycode"),
        pytest.param("xn--.example", id="empty_punycode"),
        pytest.param("_acme.example", id="underscore"),
    ],
)
async def test_sni_names_that_are_no_valid_idna_are_just_unknown(
    tls_ca: TLSTestCA,
    idn_ca: TLSTestCA,
    unraisable: list[sys.UnraisableHookArgs],
    client_name: str,
    reject_unknown: bool,
) -> None:
    """Whatever ASCII name a client sends, the callback never raises."""
    default = select_context_by_sni(
        tls_ca.server_context(),
        {"bücher.example": idn_ca.server_context()},
        reject_unknown=reject_unknown,
    )
    client_context = tls_ca.client_context()
    client_context.check_hostname = False  # the name is the test; the certificate is not
    client_raw, server_raw = trio.testing.memory_stream_pair()
    client = SSLStream(client_raw, client_context, server_hostname=client_name)
    server = SSLStream(server_raw, default, server_side=True)
    if reject_unknown:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(suppress_broken, server.do_handshake)
            with pytest.raises(trio.BrokenResourceError) as info, trio.fail_after(10):
                await client.do_handshake()
        assert isinstance(info.value.__cause__, ssl.SSLError)
    else:
        await handshake_pair(client, server)
        assert server.context is default
    assert unraisable == []


async def test_sni_lookup_is_case_insensitive_for_a_labels(
    tls_ca: TLSTestCA, idn_ca: TLSTestCA, unraisable: list[sys.UnraisableHookArgs]
) -> None:
    idn_context = idn_ca.server_context()
    default = select_context_by_sni(tls_ca.server_context(), {"bücher.example": idn_context})
    client_raw, server_raw = trio.testing.memory_stream_pair()
    client = SSLStream(client_raw, idn_ca.client_context(), server_hostname="XN--BCHER-KVA.example")
    server = SSLStream(server_raw, default, server_side=True)
    await handshake_pair(client, server)
    assert server.context is idn_context
    assert unraisable == []
