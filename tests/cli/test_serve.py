"""``trio-tls serve`` against real clients: the CLI's own connect, curl, the stdlib's
blocking ssl; and how it stops.
"""

from __future__ import annotations

import re
import shutil
import signal
import socket
import ssl
import subprocess
from pathlib import Path

import pytest
import trustme

from trio_tls._cli.certs import parse_der
from trio_tls._cli.serve import head_ends

# Much of test_connect.py's list: both run the CLI through the same helpers.
from ..helpers.cli import (
    RUN_TIMEOUT,
    VERSIONS,
    WAIT,
    Files,
    parse_json,
    port_of,
    run_cli,
    run_main,
    serve,
)


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


@pytest.mark.parametrize(
    "request_head",
    [
        pytest.param(b"GET /lf HTTP/1.0\n\n", id="bare_lf"),
        pytest.param(b"GET /mixed HTTP/1.1\r\nHost: localhost\n\r\n", id="mixed"),
    ],
)
@pytest.mark.parametrize("one_byte_records", [False, True], ids=["whole", "one_byte_records"])
def test_serve_http_answers_a_head_ending_in_bare_lf(
    tmp_path: Path, request_head: bytes, one_byte_records: bool
) -> None:
    """What hand-typed requests and many test clients send: answered at once, not
    dropped after --timeout (which is long here, so waiting for it fails the test)."""
    ca = tmp_path / "ca.pem"
    with serve("--http", "--ca-out", str(ca), "--max-connections", "1") as server:
        address = ("127.0.0.1", port_of(server))
        with (
            socket.create_connection(address, timeout=RUN_TIMEOUT) as raw,
            _strict_client(ca).wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            # One byte per TLS record: the end of the head arrives split every way.
            for piece in (
                [request_head[i : i + 1] for i in range(len(request_head))]
                if one_byte_records
                else [request_head]
            ):
                tls.sendall(piece)
            reply = b""
            for _ in range(100):
                if not (chunk := tls.recv(65536)):
                    break
                reply += chunk
        server.finish()
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n")
    request_line = request_head.splitlines()[0].decode()
    assert request_line in reply.decode()


@pytest.mark.parametrize(
    "head",
    [b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", b"GET / HTTP/1.0\n\n", b"GET / HTTP/1.1\r\nA: b\n\r\n"],
)
def test_head_ends_searches_only_the_new_bytes_and_the_3_before(head: bytes) -> None:
    # Fed in every chunking of two pieces, and a byte at a time: found exactly when
    # the whole head is in, as a search of everything would find it.
    for cut in range(len(head) + 1):
        received = bytearray(head[:cut])
        assert head_ends(received, cut) is (cut == len(head))
        received += head[cut:]
        assert head_ends(received, len(head) - cut)
    received = bytearray()
    for index, byte in enumerate(head):
        received.append(byte)
        assert head_ends(received, 1) is (index == len(head) - 1)
    # Bytes before the window are not looked at: an end already passed is not found again.
    assert not head_ends(bytearray(b"\r\n\r\nbody!!"), 4)


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


def test_serve_stops_cleanly_on_sigterm() -> None:
    with serve() as server:
        ca = Path(re.search(r"CA file\s+(\S+)", server.output.decode())[1])  # type: ignore[index]
        assert ca.read_text().startswith("-----BEGIN CERTIFICATE-----")
        server.proc.terminate()
        log = server.finish()
    assert server.proc.returncode == 0
    assert log.endswith("served 0 connections (0 failed)\n")
    assert not ca.exists()  # the throwaway CA went with the server


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
