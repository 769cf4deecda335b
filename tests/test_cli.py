"""The command line, run as users run it: ``python -m trio_tls`` in a subprocess.

Peers are real: ``openssl s_server``, ``curl``, the CLI's own ``serve``, and a
trio_tls server in this process presenting bad certificates made with
trustme. Everything listens on 127.0.0.1 with a kernel-chosen port, every
wait is bounded, and every child process is killed in ``finally``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import re
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import types
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
import trio
import trustme
from cryptography.hazmat.primitives import serialization

import trio_tls
from trio_tls import _cli
from trio_tls._cli_args import target as parse_address
from trio_tls._cli_certs import parse_der
from trio_tls._cli_output import span

#: Generous for one CLI run on a loaded 2-core machine; a run takes ~0.5 s.
RUN_TIMEOUT = 30.0
#: How long the CLI keeps reading once the server is quiet. Short: replies to --send
#: are waited for regardless, this only adds to every run.
WAIT = ["--wait", "0.1"]

VERSIONS = [
    pytest.param("--tls1.2", "TLSv1.2", id="tls12"),
    pytest.param("--tls1.3", "TLSv1.3", id="tls13"),
]


# --- running the CLI ---------------------------------------------------------


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "trio_tls", *args]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    # subprocess.run kills the child itself when the timeout expires.
    return subprocess.run(cli(*args), capture_output=True, text=True, timeout=RUN_TIMEOUT)


async def arun_cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    """For tests whose server runs in this process: the CLI must not block trio."""
    with trio.fail_after(RUN_TIMEOUT):  # cancelling run_process kills the child
        return await trio.run_process(
            cli(*args), capture_stdout=True, capture_stderr=True, check=False
        )


@dataclass
class Background:
    """A child process that printed what we waited for, with its output so far."""

    proc: subprocess.Popen[bytes]
    match: re.Match[bytes]
    output: bytes

    def finish(self) -> str:
        """Wait for a process that is due to exit on its own, and return its output."""
        rest, _ = self.proc.communicate(timeout=RUN_TIMEOUT)
        return (self.output + rest).decode()


@contextlib.contextmanager
def background(
    argv: Sequence[str], ready: bytes, *, stderr: int = subprocess.STDOUT
) -> Iterator[Background]:
    """Start *argv*, wait until its output matches *ready*, kill it at the end.

    stderr goes with stdout, unless *stderr* says otherwise (``subprocess.PIPE``).
    """
    # stdin stays an open pipe: s_server reads it and drops its client at EOF.
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr)
    try:
        assert proc.stdout is not None
        output = b""
        deadline = time.monotonic() + RUN_TIMEOUT
        while (match := re.search(ready, output)) is None:
            left = deadline - time.monotonic()
            assert left > 0, f"{argv[:4]} never printed {ready!r}; it said: {output!r}"
            readable, _, _ = select.select([proc.stdout], [], [], left)
            chunk = os.read(proc.stdout.fileno(), 65536) if readable else b""
            assert chunk or not readable, f"{argv[:4]} exited early: {output!r}"
            output += chunk
        yield Background(proc, match, output)
    finally:
        proc.kill()
        proc.wait(timeout=RUN_TIMEOUT)
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def s_server(*args: str) -> contextlib.AbstractContextManager[Background]:
    return background(
        ["openssl", "s_server", "-accept", "127.0.0.1:0", *args], rb"ACCEPT 127\.0\.0\.1:(\d+)"
    )


def serve(
    *args: str, stderr: int = subprocess.STDOUT
) -> contextlib.AbstractContextManager[Background]:
    # Ready once the whole banner is out: it ends with the log's column headers.
    banner = rb"on 127\.0\.0\.1:(\d+)\n(?s:.*)\btraffic\n"
    return background(cli("serve", "--port", "0", *args), banner, stderr=stderr)


def port_of(server: Background) -> int:
    return int(server.match[1])


def parse_json(stdout: str | bytes) -> dict[str, object]:
    document = json.loads(stdout)
    assert isinstance(document, dict)
    return document


# --- certificates --------------------------------------------------------------


@dataclass(frozen=True)
class Files:
    """PEM files for the peers that need paths (openssl, curl, the CLI)."""

    ca: Path
    server: Path  # key and certificate for localhost and 127.0.0.1
    client: Path  # key and certificate signed by the same CA
    client_der: bytes


@pytest.fixture(scope="module")
def issuer() -> trustme.CA:
    """The CA behind :class:`Files` (trustme directly: we need files and bad dates)."""
    return trustme.CA()


@pytest.fixture(scope="module")
def files(issuer: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Files:
    root = tmp_path_factory.mktemp("pem")
    client = issuer.issue_cert("client@example.org")
    client_der = ssl.PEM_cert_to_DER_cert(client.cert_chain_pems[0].bytes().decode())
    result = Files(root / "ca.pem", root / "server.pem", root / "client.pem", client_der)
    issuer.cert_pem.write_to_path(str(result.ca))
    server = issuer.issue_cert("localhost", "127.0.0.1")
    server.private_key_and_cert_chain_pem.write_to_path(str(result.server))
    client.private_key_and_cert_chain_pem.write_to_path(str(result.client))
    return result


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@contextlib.asynccontextmanager
async def presenting(cert: trustme.LeafCert, version: str) -> AsyncIterator[int]:
    """A TLS server in this process that presents *cert*; yields its port."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    pinned = ssl.TLSVersion.TLSv1_2 if version == "--tls1.2" else ssl.TLSVersion.TLSv1_3
    ctx.minimum_version = ctx.maximum_version = pinned

    async def drain(stream: trio_tls.SSLStream[trio.SocketStream]) -> None:
        # The client refuses the certificate (or looks and leaves): both are fine here.
        with contextlib.suppress(trio.BrokenResourceError):
            while await stream.receive_some():
                pass
        await trio.aclose_forcefully(stream)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            partial(trio_tls.serve_ssl_over_tcp, drain, 0, ctx, host="127.0.0.1")
        )
        yield listeners[0].transport_listener.socket.getsockname()[1]
        nursery.cancel_scope.cancel()


def free_port() -> int:
    """A port nobody listens on: bound, then released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- parsing and help ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("example.org:8443", ("example.org", 8443)),
        ("example.org", ("example.org", 443)),
        ("[::1]:4433", ("::1", 4433)),
        ("::1", ("::1", 443)),
        ("[::1]", ("::1", 443)),
        # Pasted from a browser or curl: the scheme says TLS, the path is not used.
        ("https://localhost:8443/", ("localhost", 8443)),
        ("https://Example.ORG/a/b?c=d#e", ("example.org", 443)),
        ("https://[::1]:8443/x", ("::1", 8443)),
        ("münchen.example:443", ("münchen.example", 443)),
    ],
)
def test_parse_address(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "example.org:http",
        ":443",
        "example.org:70000",
        "example.org:0",
        "example.org:+5",
        "garbage:::",
        "[::1]x",
        "[example.org]:443",
        "bad name!",
        "http://example.org/",
        "https://user@example.org/",
        "https://[::1/",
        "https://example.org:99999/",
    ],
)
def test_parse_address_rejects(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=re.escape(repr(text))):
        parse_address(text)


def test_ipv6_addresses_are_printed_in_brackets() -> None:
    assert str(parse_address("[::1]:8443")) == "[::1]:8443"
    assert str(parse_address("https://[::1]/")) == "[::1]:443"
    assert str(parse_address("localhost:8443")) == "localhost:8443"


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[object, str]:
    """Run the CLI in this process up to its exit status; return it and stderr."""
    try:
        status: object = _cli.main(list(argv))
    except SystemExit as exc:  # argparse's own usage errors
        status = exc.code
    return status, capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["connect", "x:1", "--timeout", "-1"], "argument --timeout: must be more than 0 seconds"),
        (["connect", "x:1", "--timeout", "0"], "argument --timeout: must be more than 0 seconds"),
        (["connect", "x:1", "--timeout", "nan"], "argument --timeout: must be a finite number"),
        (["connect", "x:1", "--timeout", "soon"], "argument --timeout: not a number of seconds"),
        (["connect", "x:1", "--wait", "-1"], "argument --wait: must be 0 seconds or more"),
        (["connect", "x:1", "--wait", "inf"], "argument --wait: must be a finite number"),
        (["serve", "--timeout", "-1"], "argument --timeout: must be more than 0 seconds"),
        (["serve", "--port", "70000"], "argument --port: must be a port from 0 to 65535"),
        (["serve", "--port", "-5"], "argument --port: must be a port from 0 to 65535"),
        (["serve", "--max-connections", "0"], "argument --max-connections: must be a whole"),
        (["serve", "--host", "no such host"], "argument --host: 'no such host' is not a host"),
        (["connect", "garbage:::"], "argument HOST:PORT: bad address 'garbage:::'"),
        (["connect", "x:1", "--servername", ""], "argument --servername: empty"),
        (["connect", "x:1", "--alpn", "h2," + "a" * 300], "is 300 bytes long; ALPN allows 1"),
        (["serve", "--alpn", "h2,é"], "argument --alpn: protocol 'é' is not ASCII"),
        (["serve", "--trustme", "bad name!"], "argument --trustme: 'bad name!' is not a host"),
        (["connect", "x:1", "--key", "k.pem"], "trio-tls connect: error: --key needs --cert"),
        (["serve", "--key", "k.pem"], "trio-tls serve: error: --key needs --cert"),
    ],
)
def test_bad_values_are_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, err = run_main(capsys, *argv)
    assert status == 2
    assert message in err
    assert err.endswith("\n")
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (3 * 86400 + 5, "3 days"),
        (2 * 86400 - 1, "1 day 23 hours"),
        (400 * 86400 + 7200, "400 days"),
        (61, "1 minute 1 second"),
        (0, "0 seconds"),
    ],
)
def test_span(seconds: int, text: str) -> None:
    assert span(datetime.timedelta(seconds=seconds)) == text
    assert span(datetime.timedelta(seconds=-seconds)) == text


@pytest.mark.parametrize("command", [[], ["demo"], ["connect"], ["serve"]])
def test_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        _cli.main([*command, "--help"])
    assert info.value.code == 0
    usage = capsys.readouterr().out
    assert usage.startswith(f"usage: {' '.join(['trio-tls', *command])}")
    if not command:
        for name in ("demo", "connect", "serve", "bench"):
            assert re.search(rf"^\s+{name}\s+\S", usage, re.MULTILINE), name


def test_console_script_and_module_agree() -> None:
    script = Path(sys.executable).parent / "trio-tls"
    installed = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, timeout=RUN_TIMEOUT
    )
    assert installed.returncode == 0
    assert installed.stdout == run_cli("--version").stdout
    assert installed.stdout.startswith("trio_tls ")


def test_bench_forwards_its_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []

    def main(argv: list[str]) -> int:
        seen.append(argv)
        return 7

    bench = types.ModuleType("trio_tls._bench")
    bench.main = main  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "trio_tls._bench", bench)
    assert _cli.main(["bench", "--quick", "--json", "out.json"]) == 7
    assert _cli.main(["bench", "--help"]) == 7
    assert seen == [["--quick", "--json", "out.json"], ["--help"]]


def test_bench_missing(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # None in sys.modules makes the import fail exactly as an absent module does.
    monkeypatch.setitem(sys.modules, "trio_tls._bench", None)
    assert _cli.main(["bench", "--quick"]) == 2
    assert "no benchmark module (trio_tls._bench)" in capsys.readouterr().err


# --- certificate files: which option, which file, what is wrong ------------------------


@pytest.fixture(scope="module")
def pems(issuer: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Files that are wrong in one way each, by name."""
    root = tmp_path_factory.mktemp("bad-pem")
    leaf = issuer.issue_cert("client@example.org")
    other = issuer.issue_cert("other@example.org")
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), password=None)
    contents = {
        "cert_only": leaf.cert_chain_pems[0].bytes(),
        "key_only": leaf.private_key_pem.bytes(),
        "other_key": other.private_key_pem.bytes(),
        "encrypted_key": key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        ),
        "der": ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode()),
        "notes": b"not a certificate\n",
    }
    paths = {}
    for name, data in contents.items():
        (root / f"{name}.pem").write_bytes(data)
        paths[name] = str(root / f"{name}.pem")
    paths["missing"] = str(root / "missing.pem")
    paths["directory"] = str(root)
    return paths


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param(
            [("--cafile", "missing")], "--cafile {missing}: no such file", id="cafile-missing"
        ),
        pytest.param(
            [("--cafile", "directory")],
            "--cafile {directory}: a directory, not a PEM file",
            id="cafile-directory",
        ),
        pytest.param([("--cafile", "notes")], "--cafile {notes}: not PEM;", id="cafile-text"),
        pytest.param([("--cafile", "der")], "--cafile {der}: binary (DER?);", id="cafile-der"),
        pytest.param(
            [("--cafile", "key_only")],
            "--cafile {key_only}: no certificate in the file (it holds: ",
            id="cafile-key",
        ),
        pytest.param(
            [("--cert", "cert_only")],
            "--cert {cert_only}: no private key in the file; give it with --key",
            id="cert-without-key",
        ),
        pytest.param(
            [("--cert", "cert_only"), ("--key", "other_key")],
            "--key {other_key}: the private key does not match the certificate"
            " in --cert {cert_only}",
            id="key-mismatch",
        ),
        pytest.param(
            [("--cert", "cert_only"), ("--key", "cert_only")],
            "--key {cert_only}: no private key in the file",
            id="key-is-a-cert",
        ),
        pytest.param(
            [("--cert", "cert_only"), ("--key", "encrypted_key")],
            "--key {encrypted_key}: the private key is encrypted",
            id="key-encrypted",
        ),
        pytest.param(
            [("--cert", "key_only")],
            "--cert {key_only}: no certificate in the file",
            id="cert-is-a-key",
        ),
        pytest.param([("--cert", "missing")], "--cert {missing}: no such file", id="cert-missing"),
    ],
)
@pytest.mark.parametrize("command", ["connect", "serve"])
def test_certificate_files_are_checked(
    command: str,
    options: list[tuple[str, str]],
    message: str,
    pems: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    if command == "serve":  # the server's option for the same check
        options = [(o.replace("--cafile", "--client-ca"), name) for o, name in options]
        message = message.replace("--cafile", "--client-ca")
    argv = [command, *(["127.0.0.1:1"] if command == "connect" else ["--port", "0"])]
    for option, name in options:
        argv += [option, pems[name]]
    status, err = run_main(capsys, *argv)
    assert status == 2
    assert err.startswith(f"trio-tls {command}: error: {message.format_map(pems)}")
    assert err.count("\n") == 1


def test_serve_ca_out_must_be_writable(
    pems: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    target = Path(pems["missing"]) / "ca.pem"  # in a directory that does not exist
    status, err = run_main(capsys, "serve", "--port", "0", "--ca-out", str(target))
    assert status == 2
    assert err.startswith(f"trio-tls serve: error: --ca-out {target}: cannot write it: ")


def test_serve_ca_out_needs_trustme(files: Files, capsys: pytest.CaptureFixture[str]) -> None:
    status, err = run_main(
        capsys, "serve", "--port", "0", "--cert", str(files.server), "--ca-out", "ca.pem"
    )
    assert status == 2
    assert "--ca-out writes the CA of a --trustme certificate" in err


# --- demo ---------------------------------------------------------------------


@pytest.mark.parametrize(("flag", "version"), VERSIONS)
def test_demo(flag: str, version: str) -> None:
    result = run_cli("demo", flag)
    assert result.returncode == 0, result.stderr
    # label, client, server: columns are separated by at least two spaces.
    block = result.stdout.split("\n\n")[1]  # between the title and the conclusion
    table = [re.split(r" {2,}", line.strip()) for line in block.splitlines()]
    assert table[0] == ["client", "server"]
    rows = {label: values for label, *values in table[1:]}
    assert rows["version"] == [version, version]
    assert rows["ALPN"] == ["trio-tls-demo", "trio-tls-demo"]
    assert all(value.endswith(" ms") for value in rows["handshake"])
    for label in ("data sent", "data received"):
        assert rows[label] == ["64.0 KiB (65,536 B)"] * 2
    # Ciphertext is the data plus the handshake and some record overhead.
    for label in ("wire sent", "wire received"):
        for value in rows[label]:
            wire = int(re.fullmatch(r".* \(([\d,]+) B\)", value)[1].replace(",", ""))  # type: ignore[index]
            assert 65_536 < wire < 70_000
    # Counted after closing: each side received exactly what the other sent, close_notify included.
    assert rows["wire sent"] == rows["wire received"][::-1]
    assert "echoed 65,536 bytes intact" in result.stdout


# --- connect against openssl s_server -----------------------------------------------


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


# --- connect against serve, serve against curl -----------------------------------


@pytest.mark.parametrize(("flag", "version"), VERSIONS)
def test_connect_to_serve_resumes(flag: str, version: str, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    with serve("--ca-out", str(ca), "--max-connections", "2", flag) as server:
        result = run_cli(
            "connect",
            f"localhost:{port_of(server)}",
            "--cafile",
            str(ca),
            "--send",
            "hi",
            "--reconnect",
            "--json",
            *WAIT,
        )
        log = server.finish()
    assert result.returncode == 0, result.stderr
    report = parse_json(result.stdout)
    assert (report["version"], report["received"]) == (version, "hi")
    # The echo makes the server write, which sends TLS 1.3 tickets; the client's
    # read picks them up, so the second connection resumes in both versions.
    assert report["reconnected"] is True
    assert report["session_reused"] is True
    assert server.proc.returncode == 0
    connections = [line for line in log.splitlines() if re.match(r"\d\d:\d\d:\d\d  ", line)]
    assert len(connections) == 2
    for line in connections:
        assert line.split()[2] == version
        assert "in      2 B  out      2 B" in line
    assert "served 2 connections (0 failed)" in log


@pytest.mark.parametrize(("flag", "version"), VERSIONS)
def test_serve_requires_client_certificate(
    flag: str, version: str, files: Files, tmp_path: Path
) -> None:
    stranger = tmp_path / "stranger.pem"
    trustme.CA().issue_cert("x@example.org").private_key_and_cert_chain_pem.write_to_path(
        str(stranger)
    )
    ca = tmp_path / "ca.pem"
    args = ["--ca-out", str(ca), "--client-ca", str(files.ca), "--max-connections", "3", flag]
    with serve(*args) as server:
        common = [f"localhost:{port_of(server)}", "--cafile", str(ca), "--send", "hi", *WAIT]
        trusted = run_cli("connect", *common, "--cert", str(files.client), "--json")
        anonymous = run_cli("connect", *common)
        untrusted = run_cli("connect", *common, "--cert", str(stranger))
        log = server.finish()
    assert trusted.returncode == 0, trusted.stderr
    assert parse_json(trusted.stdout)["received"] == "hi"
    assert (anonymous.returncode, untrusted.returncode) == (1, 1)
    # Under TLS 1.3 the client's handshake is over before the server judges its
    # certificate, so the refusal arrives on the first read after it.
    when = ": after the handshake: " if version == "TLSv1.3" else ": "
    assert untrusted.stderr.endswith(
        f"{when}the server does not trust the CA of our client certificate\n"
    )
    # A TLS 1.2 server can only send handshake_failure; TLS 1.3 has certificate_required.
    if version == "TLSv1.3":
        assert f"{when}the server requires a client certificate" in anonymous.stderr
    else:
        assert f"{when}the server refused the handshake" in anonymous.stderr
    assert f"client cert {parse_der(files.client_der).subject!r}" in log
    assert "failed: the client sent no certificate" in log
    assert "failed: client certificate refused: " in log
    assert "served 3 connections (2 failed)" in log


@pytest.mark.parametrize(
    ("flag", "curl_flags", "version"),
    [
        pytest.param("--tls1.2", ["--tls-max", "1.2"], "TLSv1.2", id="tls12"),
        pytest.param("--tls1.3", ["--tlsv1.3"], "TLSv1.3", id="tls13"),
    ],
)
def test_serve_http_to_curl(flag: str, curl_flags: list[str], version: str, tmp_path: Path) -> None:
    curl = shutil.which("curl")
    assert curl is not None, "curl is a test requirement (see the README)"
    ca = tmp_path / "ca.pem"
    with serve("--http", "--ca-out", str(ca), "--max-connections", "1", flag) as server:
        url = f"https://localhost:{port_of(server)}/hello"
        fetched = subprocess.run(
            [curl, "-sS", "--cacert", str(ca), *curl_flags, url],
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
        )
        log = server.finish()
    assert fetched.returncode == 0, fetched.stderr
    assert fetched.stdout.startswith("hello from trio_tls\n")
    assert re.search(r"^request\s+GET /hello HTTP/1\.1$", fetched.stdout, re.MULTILINE)
    assert re.search(rf"^version\s+{version}$", fetched.stdout, re.MULTILINE)
    assert re.search(r"^ALPN\s+http/1\.1$", fetched.stdout, re.MULTILINE)
    assert f"curl --cacert {ca} https://localhost:{port_of(server)}/" in log
    (line,) = [line for line in log.splitlines() if re.match(r"\d\d:\d\d:\d\d  ", line)]
    _, _, logged_version, _, alpn, *_ = line.split()
    assert (logged_version, alpn) == (version, "http/1.1")


def _strict_client(ca: Path) -> ssl.SSLContext:
    """A stdlib client that reports a missing close_notify as an error."""
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.options &= ~getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
    return ctx


def test_serve_http_sends_close_notify(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    with serve("--http", "--ca-out", str(ca), "--max-connections", "2") as server:
        address = ("127.0.0.1", port_of(server))
        with (
            socket.create_connection(address, timeout=RUN_TIMEOUT) as raw,
            _strict_client(ca).wrap_socket(
                raw, server_hostname="localhost", suppress_ragged_eofs=False
            ) as tls,
        ):
            tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            reply = b""
            for _ in range(100):
                # b"" only after the server's close_notify; without it, SSLEOFError.
                if not (chunk := tls.recv(65536)):
                    break
                reply += chunk
        # A client that hangs up mid-request without close_notify, as HTTP clients may:
        # the server reads that as the end of the request, not as a TLS failure.
        with (
            socket.create_connection(address, timeout=RUN_TIMEOUT) as raw,
            _strict_client(ca).wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            tls.sendall(b"GET / HTTP/1.1\r\n")
        log = server.finish()
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert f"Content-Length: {len(body)}\r\n".encode() in head + b"\r\n"
    assert body.startswith(b"hello from trio_tls\n")
    assert "bad request: the client closed before finishing its request" in log
    assert "served 2 connections (1 failed)" in log


def test_serve_http_curl_line_works_as_printed(files: Files, tmp_path: Path) -> None:
    curl = shutil.which("curl")
    assert curl is not None, "curl is a test requirement (see the README)"
    ca = tmp_path / "ca.pem"
    # A name that does not resolve to us, and client certificates required.
    args = ["--http", "--trustme", "tls.test", "--ca-out", str(ca), "--client-ca", str(files.ca)]
    with serve(*args, "--max-connections", "1") as server:
        line = re.search(rb"^  try\s+(curl .*)$", server.output, re.MULTILINE)
        assert line is not None
        words = line[1].decode().split()
        placeholders = [w for w in words if w.startswith("CLIENT-")]
        assert placeholders == ["CLIENT-CERT.pem", "CLIENT-KEY.pem"]
        # The user's client certificate in place of the placeholders, nothing else changed.
        argv = [str(files.client) if w in placeholders else w for w in words]
        fetched = subprocess.run(
            [curl, "-sS", *argv[1:]], capture_output=True, text=True, timeout=RUN_TIMEOUT
        )
        server.finish()
    assert fetched.returncode == 0, fetched.stderr
    assert fetched.stdout.startswith("hello from trio_tls\n")


def test_serve_stops_cleanly_on_ctrl_c() -> None:
    with serve() as server:
        server.proc.send_signal(signal.SIGINT)
        log = server.finish()
    assert server.proc.returncode == 130
    assert log.endswith("served 0 connections (0 failed)\n")  # stderr included: no traceback


def test_serve_stops_quietly_when_stdout_is_closed() -> None:
    with serve(stderr=subprocess.PIPE) as server:
        assert server.proc.stdout is not None
        server.proc.stdout.close()  # as `head` does once it has its lines
        # A client that leaves at once makes the server log a line, into the closed pipe.
        socket.create_connection(("127.0.0.1", port_of(server)), timeout=RUN_TIMEOUT).close()
        _, err = server.proc.communicate(timeout=RUN_TIMEOUT)
    assert err == b""
    assert server.proc.returncode == 128 + signal.SIGPIPE


# --- failure reasons, from real bad certificates ------------------------------------


@pytest.mark.parametrize(("flag", "version"), VERSIONS)
async def test_expired_certificate(
    flag: str, version: str, issuer: trustme.CA, files: Files
) -> None:
    now = _now()
    expired = issuer.issue_cert(
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
async def test_wrong_host(flag: str, version: str, issuer: trustme.CA, files: Files) -> None:
    async with presenting(issuer.issue_cert("a.example"), flag) as port:
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


def test_serve_stops_cleanly_on_sigterm() -> None:
    with serve() as server:
        ca = Path(re.search(r"CA file\s+(\S+)", server.output.decode())[1])  # type: ignore[index]
        assert ca.read_text().startswith("-----BEGIN CERTIFICATE-----")
        server.proc.terminate()
        log = server.finish()
    assert server.proc.returncode == 0
    assert log.endswith("served 0 connections (0 failed)\n")
    assert not ca.exists()  # the throwaway CA went with the server
