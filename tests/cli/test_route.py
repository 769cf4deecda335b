"""``trio-tls route`` with real clients and real backends, as a process.

Three backends present certificates from one CA, each valid for its own name only:
two ``trio-tls serve --http`` (``a.example``; ``www.b.example`` behind a ``*.b.example``
route) and ``openssl s_server -www`` (``c.example``). openssl s_client, curl and
httpx verify the certificate against the name they asked for, so a connection
routed to the wrong backend fails verification. Then the half-closes, the bad
clients and the options.
"""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import ssl
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio

import trio_tls
from trio_tls.integrations.httpx import TrioTLSTransport
from trio_tls.testing import TLSTestCA

from ..helpers.cli import (
    RUN_TIMEOUT,
    Background,
    port_of,
    read_until,
    route,
    run_main,
    s_server,
    serve,
)
from ..helpers.payloads import digest, random_payload
from ..helpers.peers import curl_flags, free_port, openssl_flag, require_tool
from ..helpers.streams import receive_to_eof, serving

VERSIONS = [pytest.param("1.2", id="tls12"), pytest.param("1.3", id="tls13")]
NAMES = ["a.example", "www.b.example", "c.example"]
#: What each backend's reply contains.
REPLIES = {
    "a.example": b"hello from trio_tls",
    "www.b.example": b"hello from trio_tls",
    "c.example": b"\ns_server -accept 127.0.0.1:0 -www",
}


@dataclass
class Routed:
    router: Background
    port: int
    ca: Path
    backends: dict[str, int]
    #: A certificate-and-key file per name, for backends started by a test.
    pems: dict[str, Path]


def _pem(tls_ca: TLSTestCA, directory: Path, name: str) -> Path:
    path = directory / f"{name}.pem"
    tls_ca.ca.issue_cert(name).private_key_and_cert_chain_pem.write_to_path(str(path))
    return path


@pytest.fixture(scope="module")
def routed(tls_ca: TLSTestCA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Routed]:
    directory = tmp_path_factory.mktemp("route")
    ca = directory / "ca.pem"
    tls_ca.ca.cert_pem.write_to_path(str(ca))
    pems = {name: _pem(tls_ca, directory, name) for name in [*NAMES, "d.example"]}
    with (
        serve("--http", "--cert", str(pems["a.example"])) as a,
        serve("--http", "--cert", str(pems["www.b.example"])) as b,
        s_server("-www", "-cert", str(pems["c.example"])) as c,
    ):
        backends = {"a.example": port_of(a), "www.b.example": port_of(b), "c.example": port_of(c)}
        with route(
            "--to",
            f"a.example=127.0.0.1:{backends['a.example']}",
            "--to",
            f"*.B.example=127.0.0.1:{backends['www.b.example']}",
            "--to",
            f"c.example=127.0.0.1:{backends['c.example']}",
            "--timeout",
            "2",
        ) as router:
            yield Routed(router, port_of(router), ca, backends, pems)


def _log_line(routed: Routed, peer_port: int | None, name: str) -> str:
    """The router's log line for a connection, found by the client's port or the name."""
    who = rf"127\.0\.0\.1:{peer_port}" if peer_port else r"127\.0\.0\.1:\d+"
    match = read_until(routed.router, rf"\d\d:\d\d:\d\d  {who} +{re.escape(name)} .*\n".encode())
    return match[0].decode()


def _run(command: list[str], stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(command, input=stdin, capture_output=True, timeout=RUN_TIMEOUT)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", NAMES)
def test_openssl_s_client_reaches_the_backend_for_its_name(
    routed: Routed, name: str, version: str
) -> None:
    result = _run(
        [
            require_tool("openssl"),
            "s_client",
            "-connect",
            f"127.0.0.1:{routed.port}",
            "-servername",
            name,
            "-verify_hostname",
            name,
            "-verify_return_error",
            "-CAfile",
            str(routed.ca),
            openssl_flag(version),  # type: ignore[arg-type]
            "-quiet",
            "-ign_eof",
        ],
        stdin=b"GET / HTTP/1.0\r\n\r\n",
    )
    assert result.returncode == 0, result.stderr
    assert REPLIES[name] in result.stdout
    line = _log_line(routed, None, name)
    assert f"127.0.0.1:{routed.backends[name]}" in line


@pytest.mark.parametrize("version", VERSIONS)
def test_curl_reaches_each_backend_by_name(routed: Routed, version: str) -> None:
    # One curl, three names resolved to the router: each URL verified on its own.
    urls = [f"https://{name}:{routed.port}/{name}" for name in NAMES]
    resolves = [arg for name in NAMES for arg in ("--resolve", f"{name}:{routed.port}:127.0.0.1")]
    result = _run(
        [
            require_tool("curl"),
            "-sS",
            "--fail",
            "--http1.1",
            "--cacert",
            str(routed.ca),
            *resolves,
            *curl_flags(version),  # type: ignore[arg-type]
            "--max-time",
            "20",
            *urls,
        ]
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(b"hello from trio_tls") == 2
    assert b"GET /a.example " in result.stdout and b"GET /www.b.example " in result.stdout
    assert REPLIES["c.example"] in result.stdout
    for name in NAMES:
        assert f"127.0.0.1:{routed.backends[name]}" in _log_line(routed, None, name)


def test_a_misrouted_client_fails_verification(routed: Routed) -> None:
    """The proof above can fail: b's backend reached under a's name is refused."""
    result = _run(
        [
            require_tool("curl"),
            "-sS",
            "--cacert",
            str(routed.ca),
            "--resolve",
            f"a.example:{routed.backends['www.b.example']}:127.0.0.1",
            f"https://a.example:{routed.backends['www.b.example']}/",
        ]
    )
    assert result.returncode == 60, result.stderr  # peer certificate cannot be verified
    assert b"a.example" in result.stderr


@pytest.mark.parametrize("version", VERSIONS)
async def test_httpx_reaches_each_backend_by_name(
    routed: Routed, tls_ca: TLSTestCA, version: str
) -> None:
    context = tls_ca.client_context()
    pinned = ssl.TLSVersion.TLSv1_2 if version == "1.2" else ssl.TLSVersion.TLSv1_3
    context.minimum_version = context.maximum_version = pinned
    transport = TrioTLSTransport(verify=context)
    async with httpx.AsyncClient(transport=transport, timeout=20) as client:
        for name in NAMES:
            # The router's address in the URL, the name in SNI and the verification.
            response = await client.get(
                f"https://127.0.0.1:{routed.port}/",
                headers={"Host": name},
                extensions={"sni_hostname": name},
            )
            assert response.status_code == 200
            assert REPLIES[name] in response.content
            assert f"TLSv{version}" in response.text


PAYLOAD = random_payload(1 << 20, seed=25)

Handler = Callable[[trio_tls.SSLStream[trio.SocketStream]], Awaitable[None]]


def _pin(context: ssl.SSLContext, version: str) -> ssl.SSLContext:
    pinned = ssl.TLSVersion.TLSv1_2 if version == "1.2" else ssl.TLSVersion.TLSv1_3
    context.minimum_version = context.maximum_version = pinned
    return context


async def _half_close_run(
    tls_ca: TLSTestCA,
    version: str,
    backend: Handler,
    client: Callable[[trio_tls.SSLStream[trio.SocketStream]], Awaitable[bytes]],
) -> bytes:
    """Run ``client`` against ``backend`` (a trio_tls server for d.example) through a router."""
    server_context = _pin(ssl.create_default_context(ssl.Purpose.CLIENT_AUTH), version)
    tls_ca.ca.issue_cert("d.example").configure_cert(server_context)
    async with serving(backend, server_context) as backend_port:
        with route("--to", f"d.example=127.0.0.1:{backend_port}") as router:
            with trio.fail_after(RUN_TIMEOUT):
                tcp = await trio.open_tcp_stream("127.0.0.1", port_of(router))
                stream = trio_tls.SSLStream(
                    tcp, _pin(tls_ca.client_context(), version), server_hostname="d.example"
                )
                async with stream:
                    reply = await client(stream)
            # In a thread: the backend runs in this event loop and must go on meanwhile.
            pattern = rb"\d\d:\d\d:\d\d  .* d\.example .*\n"
            match = await trio.to_thread.run_sync(read_until, router, pattern)
            line = match[0].decode()
    assert line.endswith("  closed\n"), line
    assert f"127.0.0.1:{backend_port}" in line
    # Both ways carried the megabyte and the handshake.
    sizes = [int(n.replace(",", "")) for n in re.findall(r"(?:in|out) +([\d,]+) B", line)]
    assert max(sizes) > len(PAYLOAD), line
    return reply


@pytest.mark.parametrize("version", VERSIONS)
async def test_client_half_closes_while_the_backend_still_sends(
    tls_ca: TLSTestCA, version: str
) -> None:
    """The client's close_notify and FIN cross the router; the backend's 1 MiB still comes back."""
    got: dict[str, bytes] = {}

    async def backend(stream: trio_tls.SSLStream[trio.SocketStream]) -> None:
        got["request"] = await receive_to_eof(stream)
        await stream.send_all(PAYLOAD)  # after the client's EOF: the half-close
        await stream.aclose()

    async def client(stream: trio_tls.SSLStream[trio.SocketStream]) -> bytes:
        await stream.send_all(b"all I have to say")
        await stream.send_eof()
        return await receive_to_eof(stream)

    reply = await _half_close_run(tls_ca, version, backend, client)
    assert got["request"] == b"all I have to say"
    assert digest(reply) == digest(PAYLOAD)


@pytest.mark.parametrize("version", VERSIONS)
async def test_backend_half_closes_while_the_client_still_sends(
    tls_ca: TLSTestCA, version: str
) -> None:
    got: dict[str, bytes] = {}

    async def backend(stream: trio_tls.SSLStream[trio.SocketStream]) -> None:
        await stream.send_all(b"go ahead")
        await stream.send_eof()
        got["upload"] = await receive_to_eof(stream)

    async def client(stream: trio_tls.SSLStream[trio.SocketStream]) -> bytes:
        reply = await receive_to_eof(stream)
        await stream.send_all(PAYLOAD)  # after the backend's EOF
        await stream.aclose()
        return reply

    assert await _half_close_run(tls_ca, version, backend, client) == b"go ahead"
    assert digest(got["upload"]) == digest(PAYLOAD)


# --- clients that send no usable hello, and names with nowhere to go ----------------------


def _raw_client(routed: Routed, data: bytes, *, close: bool = True) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", routed.port), timeout=RUN_TIMEOUT)
    # The router may judge and close before all of it is sent (at the first byte of
    # plain text), and then its kernel resets the connection: that is for the log.
    with contextlib.suppress(BrokenPipeError, ConnectionResetError, OSError):
        sock.sendall(data)
        if close:
            sock.shutdown(socket.SHUT_WR)
    return sock


def _until_closed(sock: socket.socket) -> bytes:
    """What the router sent before closing; a reset (it closed with our bytes unread) is b""."""
    data = b""
    with sock, contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


@pytest.mark.parametrize(
    ("data", "logged"),
    [
        pytest.param(
            b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n",
            "bad ClientHello (not_tls): the client's first bytes are not a TLS handshake record",
            id="plain_http",
        ),
        pytest.param(
            b"\x16\x03\x01\x02\x00\x01\x00",
            "bad ClientHello (truncated): the client closed the connection inside its"
            " ClientHello, after 7 bytes",
            id="truncated",
        ),
        pytest.param(
            (b"\x16\x03\x01\x40\x00\x01\xff\xff\xff" + bytes(2**14 - 4)) * 5,
            "bad ClientHello (too_large): the ClientHello does not end within the first"
            " 65556 bytes",
            id="too_large",
        ),
    ],
)
def test_bad_hellos_are_logged_and_closed(routed: Routed, data: bytes, logged: str) -> None:
    sock = _raw_client(routed, data)
    port = sock.getsockname()[1]
    assert _until_closed(sock) == b""  # no alert: it may not be TLS at all
    line = _log_line(routed, port, "-")
    assert f"failed: {logged}" in line


def test_a_slow_hello_is_dropped_and_others_go_on(routed: Routed) -> None:
    slow = _raw_client(routed, b"\x16\x03", close=False)
    port = slow.getsockname()[1]
    # While it dawdles (--timeout 2), another client is served.
    result = _run(
        [
            require_tool("curl"),
            "-sS",
            "--fail",
            "--cacert",
            str(routed.ca),
            "--resolve",
            f"a.example:{routed.port}:127.0.0.1",
            f"https://a.example:{routed.port}/",
        ]
    )
    assert result.returncode == 0, result.stderr
    assert _until_closed(slow) == b""
    line = _log_line(routed, port, "-")
    assert "failed: the client's ClientHello did not arrive within 2 s (2 bytes of it came)" in line


def test_an_unknown_name_gets_unrecognized_name(routed: Routed, tls_ca: TLSTestCA) -> None:
    context = tls_ca.client_context()
    with (
        socket.create_connection(("127.0.0.1", routed.port), timeout=RUN_TIMEOUT) as sock,
        pytest.raises(ssl.SSLError) as caught,
    ):
        context.wrap_socket(sock, server_hostname="nowhere.example")
    assert caught.value.reason == "TLSV1_UNRECOGNIZED_NAME"
    line = _log_line(routed, None, "nowhere.example")
    assert "failed: no backend for this name (sent unrecognized_name)" in line


def test_an_unreachable_backend_is_an_internal_error(tls_ca: TLSTestCA) -> None:
    dead = free_port()
    with route("--to", f"a.example=127.0.0.1:{dead}", "--max-connections", "1") as router:
        context = tls_ca.client_context()
        with (
            socket.create_connection(("127.0.0.1", port_of(router)), timeout=RUN_TIMEOUT) as sock,
            pytest.raises(ssl.SSLError) as caught,
        ):
            context.wrap_socket(sock, server_hostname="a.example")
        log = router.finish()
    assert caught.value.reason == "TLSV1_ALERT_INTERNAL_ERROR"
    assert f"failed: backend 127.0.0.1:{dead}: connection refused (sent internal_error)" in log
    assert "routed 1 connection (1 failed)" in log
    assert router.proc.returncode == 0


def test_default_takes_other_names_and_ctrl_c_stops(routed: Routed, tls_ca: TLSTestCA) -> None:
    a_port = routed.backends["a.example"]
    with route("--to", "z.example=127.0.0.1:9", "--default", f"127.0.0.1:{a_port}") as router:
        assert b"(any other)  -> 127.0.0.1:" in router.output
        context = tls_ca.client_context()
        with (
            socket.create_connection(("127.0.0.1", port_of(router)), timeout=RUN_TIMEOUT) as sock,
            context.wrap_socket(sock, server_hostname="a.example") as tls,
        ):
            tls.sendall(b"GET / HTTP/1.0\r\n\r\n")
            reply = b""
            while chunk := tls.recv(65536):
                reply += chunk
        assert b"hello from trio_tls" in reply
        read_until(router, rb"a\.example .*closed\n")
        router.proc.send_signal(signal.SIGINT)
        log = router.finish()
    assert router.proc.returncode == 130
    assert "routed 1 connection (0 failed)" in log


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        pytest.param(
            [], "give at least one --to NAME=HOST:PORT, or --default HOST:PORT", id="none"
        ),
        pytest.param(["--to", "a.example"], "'a.example': write NAME=HOST:PORT", id="no_equals"),
        pytest.param(
            ["--to", "a.*.example=127.0.0.1:1"],
            "a wildcard must be the whole first label",
            id="inner_wildcard",
        ),
        pytest.param(
            ["--to", "a.example=127.0.0.1"],
            "'127.0.0.1' has no port: write HOST:PORT",
            id="no_port",
        ),
        pytest.param(["--default", "127.0.0.1:0"], "bad port '0'", id="port_zero"),
        pytest.param(
            ["--to", "A.example=127.0.0.1:1", "--to", "a.example.=127.0.0.1:2"],
            "--to: a server name is given twice",
            id="twice",
        ),
        pytest.param(["--default", "h:1", "--timeout", "0"], "must be more than 0", id="timeout"),
    ],
)
def test_bad_options(capsys: pytest.CaptureFixture[str], argv: list[str], error: str) -> None:
    status, stderr = run_main(capsys, "route", *argv)
    assert status == 2
    assert error in stderr


def test_port_in_use(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status, stderr = run_main(capsys, "route", "--port", str(port), "--default", "h:1")
    assert status == 1
    assert f"route: cannot listen on 127.0.0.1:{port}" in stderr


# --- what the router holds: backpressure and idle connections ------------------------------


def _hello_bytes(tls_ca: TLSTestCA, name: str) -> bytes:
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = tls_ca.client_context().wrap_bio(incoming, outgoing, server_hostname=name)
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    return outgoing.read()


async def test_a_client_that_does_not_read_holds_the_backend_back(tls_ca: TLSTestCA) -> None:
    """The router buffers a bounded amount: the backend's sends stall, nothing is lost.

    After the hello the router only copies bytes, so the backend here sends plain
    bytes, much more than the kernel's socket buffers can hold on the way.
    """
    total, chunk = 64 << 20, bytes(16 << 10)
    sent = 0

    async def backend(stream: trio.SocketStream) -> None:
        nonlocal sent
        await stream.receive_some()  # the hello
        while sent < total:
            await stream.send_all(chunk)
            sent += len(chunk)
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, backend, 0, host="127.0.0.1"))
        backend_port = listeners[0].socket.getsockname()[1]
        with route("--to", f"d.example=127.0.0.1:{backend_port}") as router:
            with trio.fail_after(RUN_TIMEOUT):
                client = await trio.open_tcp_stream("127.0.0.1", port_of(router))
                await client.send_all(_hello_bytes(tls_ca, "d.example"))
                # Wait (bounded) until the backend makes no progress for a while.
                before = -1
                while sent != before:
                    before = sent
                    await trio.sleep(0.5)
                stalled_at = sent
                received = 0
                while data := await client.receive_some(1 << 20):
                    received += len(data)
                await client.aclose()
        nursery.cancel_scope.cancel()
    assert 0 < stalled_at < total // 2
    assert received == total


def test_an_idle_connection_is_dropped(routed: Routed, tls_ca: TLSTestCA) -> None:
    backend = routed.backends["a.example"]
    with route("--to", f"a.example=127.0.0.1:{backend}", "--idle-timeout", "1") as router:
        sock = socket.create_connection(("127.0.0.1", port_of(router)), timeout=RUN_TIMEOUT)
        with tls_ca.client_context().wrap_socket(sock, server_hostname="a.example") as tls:
            # Handshake done, then silence: the router gives up after a second.
            line = read_until(router, rb"\d\d:\d\d:\d\d  .* a\.example .*\n")[0].decode()
            assert tls.recv(1) == b""
    assert line.endswith("failed: nothing moved either way for 1 s\n"), line


def test_connections_cut_by_ctrl_c_are_logged_and_counted(
    routed: Routed, tls_ca: TLSTestCA
) -> None:
    backend = routed.backends["a.example"]
    with route("--to", f"a.example=127.0.0.1:{backend}") as router:
        port = port_of(router)
        # One connection spliced to its backend, one still inside its ClientHello:
        # the two places where a stopping router cuts a connection.
        slow = socket.create_connection(("127.0.0.1", port), timeout=RUN_TIMEOUT)
        sock = socket.create_connection(("127.0.0.1", port), timeout=RUN_TIMEOUT)
        with slow, tls_ca.client_context().wrap_socket(sock, server_hostname="a.example") as tls:
            slow.sendall(b"\x16\x03")
            # The handshake with the backend went through the router: spliced, and idle.
            ports = slow.getsockname()[1], tls.getsockname()[1]
            router.proc.send_signal(signal.SIGINT)
            log = router.finish()
    assert router.proc.returncode == 130
    for peer_port, name in zip(ports, ["-", "a.example"], strict=True):
        line = re.search(rf"127\.0\.0\.1:{peer_port} +{re.escape(name)} .*", log)
        assert line, log
        assert line[0].endswith("failed: cut short: the router is stopping"), log
    assert "routed 2 connections (2 failed)" in log
