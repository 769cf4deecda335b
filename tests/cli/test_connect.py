"""``trio-tls connect`` against real servers: openssl s_server, and a trio_tls server
in this process presenting bad certificates made with trustme.
"""

from __future__ import annotations

import datetime
import re
import ssl
from functools import partial

import pytest
import trio
import trustme

from trio_tls._cli.certs import parse_der
from trio_tls.testing import TLSTestCA

from ..helpers.cli import (
    VERSIONS,
    WAIT,
    Files,
    arun_cli,
    parse_json,
    port_of,
    presenting,
    run_cli,
    s_server,
)
from ..helpers.peers import free_port


@pytest.mark.parametrize(("flag", "version"), VERSIONS)
def test_connect_to_openssl(flag: str, version: str, files: Files) -> None:
    with s_server("-cert", str(files.server), "-rev", "-alpn", "http/1.1") as server:
        result = run_cli(
            "connect",
            f"localhost:{port_of(server)}",
            "--cafile",
            str(files.ca),
            "--alpn",
            "h2,http/1.1",
            flag,
            "--send",
            r"hello\n",
            "--json",
            *WAIT,
        )
    assert result.returncode == 0, result.stderr
    report = parse_json(result.stdout)
    assert report["ok"] is True
    assert report["verified"] is True
    assert report["version"] == version
    assert report["alpn"] == "http/1.1"
    assert report["session_reused"] is False
    assert report["received"] == "olleh\n"  # s_server -rev reverses each line
    assert report["bytes_sent"] == len("hello\n")
    assert isinstance(report["handshake_seconds"], float)
    leaf = report["chain"][0]  # type: ignore[index]
    assert leaf["dns_names"] == ["localhost"]
    assert leaf["ip_addresses"] == ["127.0.0.1"]
    assert leaf["key_type"] == "ECDSA P-256"
    assert leaf["days_left"] > 300_000  # trustme certificates run to the year 3000


def test_connect_text_is_aligned(files: Files) -> None:
    with s_server("-cert", str(files.server)) as server:
        result = run_cli(
            "connect", f"127.0.0.1:{port_of(server)}", "--cafile", str(files.ca), *WAIT
        )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"connected to 127.0.0.1:{port_of(server)} (server name 127.0.0.1)"
    table = lines[1 : lines.index("")]
    labels = [line.split()[0] for line in table]
    assert labels == [
        "TCP",
        "version",
        "cipher",
        "ALPN",
        "resumed",
        "handshake",
        "verified",
        "sent",
        "received",
    ]
    # Every value starts in the same column.
    starts = {re.match(r"  (TCP connect|\S+)\s+", line).end() for line in table}  # type: ignore[union-attr]
    assert len(starts) == 1
    assert re.search(r"^\s+SANs\s+DNS:localhost, IP:127\.0\.0\.1$", result.stdout, re.MULTILINE)


@pytest.mark.parametrize(("flag", "version"), VERSIONS)
def test_connect_with_client_certificate(flag: str, version: str, files: Files) -> None:
    need_cert = ["-Verify", "1", "-verify_return_error", "-CAfile", str(files.ca)]
    with s_server("-cert", str(files.server), "-rev", *need_cert) as server:
        address = f"localhost:{port_of(server)}"
        common = [address, "--cafile", str(files.ca), flag, "--send", r"ping\n", *WAIT]
        with_cert = run_cli("connect", *common, "--cert", str(files.client), "--json")
        without = run_cli("connect", *common)
    assert with_cert.returncode == 0, with_cert.stderr
    report = parse_json(with_cert.stdout)
    assert (report["version"], report["received"]) == (version, "gnip\n")
    assert without.returncode == 1
    # TLS 1.3 clients finish the handshake before the server judges them, so the
    # refusal comes after it; TLS 1.2 servers refuse inside the handshake.
    if version == "TLSv1.3":
        expected = "after the handshake: the server requires a client certificate"
    else:
        expected = "the server refused the handshake"
    assert expected in without.stderr


def test_connect_takes_a_url(files: Files) -> None:
    with s_server("-cert", str(files.server)) as server:
        url = f"https://localhost:{port_of(server)}/index.html"
        result = run_cli("connect", url, "--cafile", str(files.ca), *WAIT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"connected to localhost:{port_of(server)} (server name")


def test_connect_writes_ipv6_addresses_in_brackets() -> None:
    port = free_port()  # nobody listens there on ::1 either, or the reason differs
    result = run_cli("connect", f"[::1]:{port}", "--timeout", "5")
    assert result.returncode == 1
    assert result.stderr.startswith(f"trio-tls: connect [::1]:{port}: ")


def test_connect_alpn_mismatch(files: Files) -> None:
    with s_server("-cert", str(files.server), "-alpn", "h2") as server:
        result = run_cli(
            "connect", f"localhost:{port_of(server)}", "--cafile", str(files.ca), "--alpn", "h3"
        )
    assert result.returncode == 1
    assert result.stderr.endswith(": no ALPN protocol in common with the server\n")


@pytest.mark.parametrize(("flag", "version"), VERSIONS)
async def test_expired_certificate(
    flag: str, version: str, tls_ca: TLSTestCA, files: Files
) -> None:
    now = datetime.datetime.now(datetime.UTC)
    expired = tls_ca.ca.issue_cert(
        "localhost",
        not_before=now - datetime.timedelta(days=30),
        not_after=now - datetime.timedelta(days=3),
    )
    async with presenting(expired, flag) as port:
        address = f"localhost:{port}"
        refused = await arun_cli("connect", address, "--cafile", str(files.ca), flag, *WAIT)
        as_json = await arun_cli(
            "connect", address, "--cafile", str(files.ca), flag, "--json", *WAIT
        )
        insecure = await arun_cli("connect", address, "--insecure", flag, "--json", *WAIT)
    assert refused.returncode == 1
    message = refused.stderr.decode()
    assert message.startswith(f"trio-tls: connect {address}: certificate has expired 3 days ago")
    assert message.count("\n") == 1
    assert as_json.returncode == 1
    failure = parse_json(as_json.stdout)
    assert failure["ok"] is False
    assert str(failure["error"]).startswith("certificate has expired 3 days ago")
    # --insecure connects anyway and still shows what is wrong with the certificate.
    assert insecure.returncode == 0, insecure.stderr
    report = parse_json(insecure.stdout)
    assert (report["verified"], report["version"]) == (False, version)
    assert report["chain"][0]["days_left"] == -3  # type: ignore[index]


@pytest.mark.parametrize(("flag", "version"), VERSIONS)
async def test_wrong_host(flag: str, version: str, tls_ca: TLSTestCA, files: Files) -> None:
    async with presenting(tls_ca.ca.issue_cert("a.example"), flag) as port:
        result = await arun_cli(
            "connect",
            f"127.0.0.1:{port}",
            "--servername",
            "b.example",
            "--cafile",
            str(files.ca),
            flag,
            *WAIT,
        )
    assert result.returncode == 1
    assert result.stderr.decode().endswith(
        ": hostname mismatch: certificate is for a.example, not b.example\n"
    )


@pytest.mark.parametrize(("flag", "version"), VERSIONS)
async def test_untrusted_ca(flag: str, version: str, files: Files) -> None:
    stranger = trustme.CA()
    async with presenting(stranger.issue_cert("localhost"), flag) as port:
        result = await arun_cli(
            "connect", f"localhost:{port}", "--cafile", str(files.ca), flag, "--json", *WAIT
        )
    assert result.returncode == 1
    error = str(parse_json(result.stdout)["error"])
    assert error.startswith("untrusted certificate: issued by ")
    # It names the CA that signed the certificate, read from the certificate itself.
    stranger_cert = ssl.PEM_cert_to_DER_cert(stranger.cert_pem.bytes().decode())
    assert f'"{parse_der(stranger_cert).subject}"' in error


def test_connection_refused() -> None:
    port = free_port()
    result = run_cli("connect", f"127.0.0.1:{port}")
    assert result.returncode == 1
    assert result.stderr == f"trio-tls: connect 127.0.0.1:{port}: connection refused\n"
    assert result.stdout == ""


async def test_handshake_timeout() -> None:
    accepted: list[trio.SocketStream] = []

    async def hold(stream: trio.SocketStream) -> None:
        accepted.append(stream)  # say nothing, like a server that does not speak TLS
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, hold, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        result = await arun_cli("connect", f"127.0.0.1:{port}", "--timeout", "0.5")
        nursery.cancel_scope.cancel()
    assert len(accepted) == 1
    assert result.returncode == 1
    assert result.stderr.decode().endswith(": timed out after 0.5 s in the TLS handshake\n")
