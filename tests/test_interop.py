"""trio_tls against real TLS peers over loopback TCP, under TLS 1.2 and TLS 1.3.

Sections:

1. trio_tls on both ends (``serve_ssl_over_tcp`` / ``open_ssl_over_tcp_stream``).
2. The stdlib's blocking :mod:`ssl` sockets in a worker thread, as server and as client.
3. OpenSSL's command line tools and curl: ``openssl s_server -rev``, ``openssl
   s_client`` and ``curl`` speaking HTTP/1.1.
4. Drop-in proof: one program, written against ``trio.SSLStream``, run unchanged
   with trio's module and with trio_tls substituted; everything it observes must match.

Every payload is several hundred KiB of seeded random data and is checked by content
(SHA-256), in both directions. Every test runs under a deadline; subprocesses are
killed on the way out and threads end on their own socket timeouts.
"""

from __future__ import annotations

import ssl
import types
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

import trio_tls
from trio_tls import (
    SSLStream,
    open_ssl_over_tcp_listeners,
    open_ssl_over_tcp_stream,
    serve_ssl_over_tcp,
)
from trio_tls.testing import SERVER_NAME, TLSTestCA, TLSVersionName, handshake_pair

from .helpers.payloads import chunks, digest, random_lines, random_payload, reverse_lines
from .helpers.peers import (
    SERVER_ADDRESS,
    EchoReport,
    PemFiles,
    blocking_echo_client,
    blocking_echo_server,
    curl_command,
    listening_socket,
    openssl_s_server,
    run_tool,
    s_client_command,
    write_pem_files,
)
from .helpers.streams import port_of, receive_exactly

#: Plaintext bytes pushed through each connection (each direction).
PAYLOAD_SIZE = 384 * 1024
#: Whole-test deadline. A healthy test takes well under a second; the margin is for
#: a loaded two-core CI machine, not for waiting on anything.
DEADLINE = 30

#: What the TCP helpers hand out.
TCPStream = SSLStream[trio.SocketStream]


@pytest.fixture
def pems(tls_ca: TLSTestCA, tmp_path: Path) -> PemFiles:
    """The test CA as files, for the command line tools."""
    return write_pem_files(tls_ca, tmp_path)


# --- shared conversation helpers ---------------------------------------------------------


async def send_and_receive_echo(stream: trio.abc.Stream, payload: bytes, seed: int) -> bytes:
    """Stream ``payload`` out while reading the echo back in another task."""
    echoed = bytearray()

    async def send() -> None:
        for piece in chunks(payload, seed, high=32 * 1024):
            await stream.send_all(piece)

    async def receive() -> None:
        while len(echoed) < len(payload):
            data = await stream.receive_some()
            assert data, "peer closed before echoing everything"
            echoed.extend(data)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send)
        nursery.start_soon(receive)
    return bytes(echoed)


async def echo_until_eof(stream: TCPStream) -> EchoReport:
    """Server side of an echo: answer everything until the client's close_notify.

    ``receive_some`` returning ``b""`` on a non-https_compatible stream means a
    close_notify arrived (a bare TCP EOF would raise), so a report means a clean close.
    """
    # ``async with``: on any failure the transport is closed at once, so a blocked
    # peer sees EOF instead of waiting for its own timeout.
    async with stream:
        await stream.do_handshake()
        version = stream.version()
        seen = bytearray()
        while data := await stream.receive_some():
            seen += data
            await stream.send_all(data)
    return EchoReport(version, len(seen), digest(seen))


def check_statistics(
    stream: TCPStream, *, sent: int, received: int, version: TLSVersionName
) -> None:
    """``statistics()`` agrees with what really crossed a real socket."""
    __tracebackhide__ = True
    stats = stream.statistics()
    expected = (f"TLSv{version}", sent, received)
    assert (stats.version, stats.bytes_sent, stats.bytes_received) == expected
    # Records, MACs and the handshake all add bytes on the wire.
    assert stats.wire_bytes_sent > sent
    assert stats.wire_bytes_received > received
    assert stats.transport_sends >= 1
    assert stats.transport_receives >= 1
    assert stats.handshake_duration is not None
    assert stats.handshake_duration > 0


def check_echo(payload: bytes, echoed: bytes, report: EchoReport, version: TLSVersionName) -> None:
    __tracebackhide__ = True
    assert digest(echoed) == digest(payload)
    assert report == EchoReport(f"TLSv{version}", len(payload), digest(payload))


# --- 1. trio_tls on both ends --------------------------------------------------------------


async def test_client_and_server_both_trio_tls(
    tls_ca: TLSTestCA, tls_version: TLSVersionName
) -> None:
    payload = random_payload(PAYLOAD_SIZE, seed=1)
    reports: list[EchoReport] = []
    handler_done = trio.Event()

    async def handler(stream: TCPStream) -> None:
        reports.append(await echo_until_eof(stream))
        handler_done.set()

    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            serve = partial(
                serve_ssl_over_tcp,
                handler,
                0,
                tls_ca.server_context(version=tls_version),
                host=SERVER_ADDRESS,
            )
            listeners = await nursery.start(serve)
            port = port_of(listeners[0])
            # Connecting by IP address: the certificate's IP SAN is what gets verified.
            stream = await open_ssl_over_tcp_stream(
                SERVER_ADDRESS, port, ssl_context=tls_ca.client_context(version=tls_version)
            )
            async with stream:
                echoed = await send_and_receive_echo(stream, payload, seed=1)
                assert stream.version() == f"TLSv{tls_version}"
                check_statistics(
                    stream, sent=len(payload), received=len(echoed), version=tls_version
                )
            await handler_done.wait()
            nursery.cancel_scope.cancel()
    check_echo(payload, echoed, reports[0], tls_version)


# --- 2. stdlib blocking ssl in a thread ----------------------------------------------------


async def test_client_against_stdlib_blocking_server(
    tls_ca: TLSTestCA, tls_version: TLSVersionName
) -> None:
    payload = random_payload(PAYLOAD_SIZE, seed=2)
    reports: list[EchoReport] = []

    with trio.fail_after(DEADLINE), listening_socket() as listener:
        port = listener.getsockname()[1]

        async def server() -> None:
            report = await trio.to_thread.run_sync(
                blocking_echo_server, listener, tls_ca.server_context(version=tls_version)
            )
            reports.append(report)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(server)
            tcp = await trio.open_tcp_stream(SERVER_ADDRESS, port)
            stream = SSLStream(
                tcp, tls_ca.client_context(version=tls_version), server_hostname=SERVER_NAME
            )
            async with stream:
                echoed = await send_and_receive_echo(stream, payload, seed=2)
                assert stream.version() == f"TLSv{tls_version}"
                check_statistics(
                    stream, sent=len(payload), received=len(echoed), version=tls_version
                )
    check_echo(payload, echoed, reports[0], tls_version)


async def test_server_against_stdlib_blocking_client(
    tls_ca: TLSTestCA, tls_version: TLSVersionName
) -> None:
    payload = random_payload(PAYLOAD_SIZE, seed=3)
    results: list[tuple[bytes, str | None]] = []

    async def client(port: int) -> None:
        results.append(
            await trio.to_thread.run_sync(
                blocking_echo_client, port, tls_ca.client_context(version=tls_version), payload
            )
        )

    with trio.fail_after(DEADLINE):
        listeners = await open_ssl_over_tcp_listeners(
            0, tls_ca.server_context(version=tls_version), host=SERVER_ADDRESS
        )
        async with listeners[0] as listener, trio.open_nursery() as nursery:
            nursery.start_soon(client, port_of(listener))
            # The client's unwrap() waits for our close_notify, which echo_until_eof
            # sends from aclose() once it has seen the client's.
            report = await echo_until_eof(await listener.accept())
    echoed, client_version = results[0]
    assert client_version == f"TLSv{tls_version}"
    check_echo(payload, echoed, report, tls_version)


# --- 3. OpenSSL command line tools and curl ------------------------------------------------


async def test_client_against_openssl_s_server_rev(
    tls_ca: TLSTestCA, tls_version: TLSVersionName, pems: PemFiles, tmp_path: Path
) -> None:
    # ``-rev`` answers every line reversed: an echo whose content proves the server
    # really decrypted, understood and re-encrypted our bytes.
    lines = random_lines(count=1500, width=256, seed=4)  # ~385 KiB
    expected = reverse_lines(lines)
    log = tmp_path / "s_server.log"
    with trio.fail_after(DEADLINE):
        async with openssl_s_server(pems, tls_version, "-rev", "-naccept", "1", log=log) as (
            port,
            process,
        ):
            tcp = await trio.open_tcp_stream(SERVER_ADDRESS, port)
            # A host name, not the IP: this also sends SNI, as real clients do.
            stream = SSLStream(
                tcp, tls_ca.client_context(version=tls_version), server_hostname=SERVER_NAME
            )
            async with stream:
                answers = bytearray()

                async def send() -> None:
                    for piece in chunks(lines, seed=4, high=32 * 1024):
                        await stream.send_all(piece)

                async def receive() -> None:
                    answers.extend(await receive_exactly(stream, len(expected)))

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(send)
                    nursery.start_soon(receive)
                assert stream.version() == f"TLSv{tls_version}"
                check_statistics(
                    stream, sent=len(lines), received=len(answers), version=tls_version
                )
            # -naccept 1: after our close s_server exits by itself, and 0 means it saw
            # a proper session end.
            assert await process.wait() == 0, log.read_text()
    assert digest(answers) == digest(expected)


async def serve_one_connection(
    server_context: ssl.SSLContext,
    handle: Callable[[TCPStream], Awaitable[None]],
    client: Callable[[int], Awaitable[None]],
    *,
    https_compatible: bool = False,
) -> None:
    """Listen on 127.0.0.1:0, run ``client(port)`` and ``handle`` one connection."""
    listeners = await open_ssl_over_tcp_listeners(
        0, server_context, host=SERVER_ADDRESS, https_compatible=https_compatible
    )
    async with listeners[0] as listener, trio.open_nursery() as nursery:
        nursery.start_soon(client, port_of(listener))
        await handle(await listener.accept())


async def test_server_against_openssl_s_client(
    tls_ca: TLSTestCA, tls_version: TLSVersionName, pems: PemFiles
) -> None:
    payload = random_payload(PAYLOAD_SIZE, seed=5)
    outputs: list[tuple[int, bytes, bytes]] = []
    server_saw: list[str | None] = []

    async def client(port: int) -> None:
        done = await run_tool(s_client_command(pems, tls_version, port), stdin=payload)
        outputs.append((done.returncode, done.stdout, done.stderr))

    async def handle(stream: TCPStream) -> None:
        # s_client keeps reading after its stdin ends (-quiet implies -ign_eof) and
        # exits when we close, so echo exactly the payload and then close.
        async with stream:
            await stream.do_handshake()
            server_saw.append(stream.version())
            received = 0
            while received < len(payload):
                data = await stream.receive_some()
                assert data, "s_client closed before sending everything"
                received += len(data)
                await stream.send_all(data)
            check_statistics(stream, sent=received, received=received, version=tls_version)

    with trio.fail_after(DEADLINE):
        await serve_one_connection(tls_ca.server_context(version=tls_version), handle, client)
    returncode, stdout, stderr = outputs[0]
    assert returncode == 0, stderr.decode(errors="replace")
    assert server_saw == [f"TLSv{tls_version}"]
    assert digest(stdout) == digest(payload)


@dataclass
class HttpRequest:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


async def read_http_request(stream: TCPStream) -> HttpRequest:
    """Just enough HTTP/1.1 for curl: a head, then a Content-Length body."""
    buffer = bytearray()
    while b"\r\n\r\n" not in buffer:
        assert len(buffer) < 65536, "request head too large"
        data = await stream.receive_some()
        assert data, "client closed inside the request head"
        buffer += data
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    request_line, *header_lines = head.decode("ascii").split("\r\n")
    method, target, _version = request_line.split(" ")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = rest + await receive_exactly(stream, length - len(rest))
    return HttpRequest(method, target, headers, body)


async def test_server_against_curl_https(
    tls_ca: TLSTestCA, tls_version: TLSVersionName, pems: PemFiles, tmp_path: Path
) -> None:
    upload = random_payload(PAYLOAD_SIZE, seed=6)
    upload_file = tmp_path / "upload.bin"
    upload_file.write_bytes(upload)
    requests: list[HttpRequest] = []
    outputs: list[tuple[int, bytes, bytes]] = []
    server_saw: list[str | None] = []

    async def client(port: int) -> None:
        command = curl_command(
            pems,
            tls_version,
            port,
            "--data-binary",
            f"@{upload_file}",
            "--header",
            "Content-Type: application/octet-stream",
            # curl would otherwise wait up to a second for "100 Continue" on big bodies.
            "--header",
            "Expect:",
        )
        done = await run_tool(command)
        outputs.append((done.returncode, done.stdout, done.stderr))

    async def handle(stream: TCPStream) -> None:
        async with stream:
            request = await read_http_request(stream)
            requests.append(request)
            server_saw.append(stream.version())
            # The response body is the request body reversed: not an identity echo,
            # so a confused peer cannot pass by accident.
            body = request.body[::-1]
            head = (
                "HTTP/1.1 200 OK\r\n"
                f"Content-Length: {len(body)}\r\n"
                "Content-Type: application/octet-stream\r\n"
                "Connection: close\r\n\r\n"
            )
            await stream.send_all(head.encode("ascii") + body)

    with trio.fail_after(DEADLINE):
        # HTTPS clients may drop the connection without close_notify; that is the
        # case https_compatible exists for.
        await serve_one_connection(
            tls_ca.server_context(version=tls_version), handle, client, https_compatible=True
        )
    returncode, stdout, stderr = outputs[0]
    assert returncode == 0, stderr.decode(errors="replace")
    (request,) = requests
    assert server_saw == [f"TLSv{tls_version}"]
    assert (request.method, request.target) == ("POST", "/")
    assert request.headers["host"].split(":")[0] == SERVER_NAME
    assert digest(request.body) == digest(upload)
    assert digest(stdout) == digest(upload[::-1])


# --- 4. drop-in proof ------------------------------------------------------------------------
#
# ``drop_in_program`` is ordinary code written against trio's TLS API; the module it
# gets as ``tls`` plays the role of ``import trio as tls`` / ``import trio_tls as tls``.
# It records what a program can observe (data, return values, exception types and
# their causes) and the test demands identical records from both modules. Memory
# streams keep the run free of timing noise, so the records are comparable exactly.

Observation = tuple[str, object]
#: Either module's SSLStream over a memory stream. Deliberately duck-typed, like the
#: applications the program stands for: it only uses the API the two share.
TLSMemoryStream = Any


def outcome(exc: BaseException) -> tuple[str, str | None]:
    """An exception as a program sees it: its type and the type of its cause."""
    cause = exc.__cause__
    return type(exc).__name__, None if cause is None else type(cause).__name__


async def drop_in_program(
    tls: types.ModuleType, ca: TLSTestCA, version: TLSVersionName
) -> list[Observation]:
    """Exercise the SSLStream API the way applications do; return what was observed."""
    seen: list[Observation] = []

    def new_pair(
        *, hostname: str = SERVER_NAME, https_compatible: bool = False
    ) -> tuple[TLSMemoryStream, TLSMemoryStream]:
        client_ctx = ca.client_context(version=version)
        server_ctx = ca.server_context(version=version)
        client_ctx.set_alpn_protocols(["h2", "http/1.1"])
        server_ctx.set_alpn_protocols(["http/1.1"])
        client_transport, server_transport = trio.testing.memory_stream_pair()
        client = tls.SSLStream(
            client_transport,
            client_ctx,
            server_hostname=hostname,
            https_compatible=https_compatible,
        )
        server = tls.SSLStream(server_transport, server_ctx, server_side=True)
        seen.append(("transport kept", client.transport_stream is client_transport))
        return client, server

    # Before the handshake: configuration is readable, results are not.
    client, server = new_pair()
    seen.append(("server_side", (client.server_side, server.server_side)))
    seen.append(("server_hostname", client.server_hostname))
    for name in ("version", "cipher", "getpeercert", "selected_alpn_protocol"):
        try:
            getattr(client, name)()
        except tls.NeedHandshakeError as exc:
            seen.append((f"{name} before handshake", outcome(exc)))

    # The handshake and what it negotiated.
    await handshake_pair(client, server)
    await client.do_handshake()  # a second call is a no-op
    seen.append(("version", (client.version(), server.version())))
    seen.append(("cipher", client.cipher() == server.cipher()))
    seen.append(("alpn", (client.selected_alpn_protocol(), server.selected_alpn_protocol())))
    seen.append(("session_reused", client.session_reused))
    peercert = client.getpeercert()
    seen.append(("server cert subject alt names", peercert and peercert["subjectAltName"]))
    seen.append(("client cert as the server sees it", server.getpeercert()))

    # Data, with and without max_bytes.
    await client.send_all(b"hello world")
    await client.send_all(b"")  # nothing at all is sent
    seen.append(("receive max 5", await server.receive_some(5)))
    seen.append(("receive rest", await receive_exactly(server, 6)))
    seen.append(("wait_send_all_might_not_block", await client.wait_send_all_might_not_block()))
    seen.append(("context kept", client.context.check_hostname))
    for bad in (0, -1, 1.5):
        try:
            await server.receive_some(bad)
        except (ValueError, TypeError) as exc:
            seen.append((f"receive_some({bad!r})", outcome(exc)))

    # Two tasks receiving, or sending, at once: one gets BusyResourceError. Which one
    # does is up to the scheduler, so only the multiset of outcomes is recorded.
    async def guarded(results: list[str], operation: Callable[[], Awaitable[object]]) -> None:
        try:
            value = await operation()
        except trio.BusyResourceError as exc:
            results.append(repr(outcome(exc)))
        else:
            # receive_some may return bytes or bytearray (both allowed by the trio ABC):
            # compare the content, not the container.
            results.append(repr(bytes(value) if isinstance(value, bytearray) else value))

    receivers: list[str] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(guarded, receivers, server.receive_some)
        nursery.start_soon(guarded, receivers, server.receive_some)
        await trio.testing.wait_all_tasks_blocked()
        await client.send_all(b"ping")
    seen.append(("two receivers", sorted(receivers)))

    senders: list[str] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(guarded, senders, partial(client.send_all, b"x" * 100_000))
        nursery.start_soon(guarded, senders, partial(client.send_all, b"y" * 100_000))
        nursery.start_soon(receive_exactly, server, 100_000)
    seen.append(("two senders", sorted(senders)))

    # Both sides unwrap, then talk in the clear over the transport they got back.
    async with trio.open_nursery() as nursery:
        results: dict[str, tuple[trio.abc.Stream, bytes | bytearray]] = {}

        async def unwrap(name: str, stream: TLSMemoryStream) -> None:
            results[name] = await stream.unwrap()

        nursery.start_soon(unwrap, "client", client)
        nursery.start_soon(unwrap, "server", server)
    (client_raw, client_trailing), (server_raw, server_trailing) = (
        results["client"],
        results["server"],
    )
    await client_raw.send_all(b"plain text")
    cleartext = bytes(server_trailing) + await receive_exactly(
        server_raw, len(b"plain text") - len(server_trailing)
    )
    seen.append(("after unwrap", (cleartext, bytes(client_trailing))))

    # Use after close.
    for name, call in (
        ("send_all", partial(client.send_all, b"late")),
        ("receive_some", client.receive_some),
        ("do_handshake", client.do_handshake),
        ("unwrap", client.unwrap),
    ):
        try:
            await call()
        except trio.ClosedResourceError as exc:
            seen.append((f"{name} after unwrap", outcome(exc)))
    await client.aclose()  # closing a closed stream is fine
    await client.aclose()
    seen.append(("aclose twice", "ok"))

    # Transport EOF without close_notify: an error, unless https_compatible.
    for https_compatible in (False, True):
        client, server = new_pair(https_compatible=https_compatible)
        await handshake_pair(client, server)
        await server.transport_stream.aclose()
        try:
            seen.append((f"ragged EOF https={https_compatible}", await client.receive_some()))
        except trio.BrokenResourceError as exc:
            seen.append((f"ragged EOF https={https_compatible}", outcome(exc)))
        await client.aclose()

    # A certificate that does not match: the handshake fails, the stream is broken.
    client, server = new_pair(hostname="wrong.example.org")
    failures: list[Observation] = []

    async def doomed(name: str, stream: TLSMemoryStream) -> None:
        try:
            await stream.do_handshake()
        except trio.BrokenResourceError as exc:
            # The server's cause depends on whether the client sent an alert (trio
            # does not, trio_tls does), so only the client's cause is compared.
            failures.append((name, outcome(exc) if name == "client" else type(exc).__name__))
        await stream.aclose()  # a broken stream still closes cleanly

    async with trio.open_nursery() as nursery:
        nursery.start_soon(doomed, "client", client)
        nursery.start_soon(doomed, "server", server)
    seen.append(("wrong hostname", sorted(failures)))
    try:
        await client.send_all(b"after failure")
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        seen.append(("send after failed handshake and aclose", outcome(exc)))
    return seen


async def test_drop_in_program_observes_the_same(
    tls_ca: TLSTestCA, tls_version: TLSVersionName
) -> None:
    with trio.fail_after(DEADLINE):
        reference = await drop_in_program(trio, tls_ca, tls_version)
        ours = await drop_in_program(trio_tls, tls_ca, tls_version)
    # The reference run must have gone through every path the program probes, or
    # equality would prove little.
    labels = {label for label, _ in reference}
    assert {
        "version before handshake",
        "receive_some(0)",
        "receive_some(1.5)",
        "two receivers",
        "two senders",
        "send_all after unwrap",
        "ragged EOF https=False",
        "ragged EOF https=True",
        "wrong hostname",
    } <= labels
    assert ("version", (f"TLSv{tls_version}", f"TLSv{tls_version}")) in reference
    assert ours == reference


async def test_drop_in_need_handshake_error_is_trios(
    tls_ca: TLSTestCA, tls_version: TLSVersionName
) -> None:
    # Code that imports SSLStream from trio_tls but still catches
    # trio.NeedHandshakeError must keep working.
    client_transport, _ = trio.testing.memory_stream_pair()
    stream = trio_tls.SSLStream(
        client_transport, tls_ca.client_context(version=tls_version), server_hostname=SERVER_NAME
    )
    with pytest.raises(trio.NeedHandshakeError):
        stream.version()
