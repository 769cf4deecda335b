"""Our side of every interop scenario, against a running peer on another TLS stack.

One :class:`Side` per run: it owns the Python end (trio_tls.SSLStream or
trio.SSLStream, server or client) and the peer process. Each scenario function
drives our end, asserts what our end saw, then checks what the peer reported.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

import trio_tls
from trio_tls.testing import SERVER_NAME, TLSTestCA

from ..helpers.contexts import post_handshake_auth_contexts
from ..helpers.payloads import random_lines
from ..helpers.peers import SERVER_ADDRESS
from ..helpers.streams import both, receive_exactly
from ..helpers.virtual_peer import OP_ALLOW_CLIENT_RENEGOTIATION
from .processes import (
    Builds,
    Credentials,
    Peer,
    PeerFiles,
    gnutls_cli_command,
    peer_command,
    run_gnutls_serv,
    run_peer,
    started_server_port,
)
from .support import Case, Impl

AnyStream = trio_tls.SSLStream[trio.SocketStream] | trio.SSLStream[trio.SocketStream]

DUPLEX_SIZE = 4 * 1024 * 1024
UPDATE_SIZE = 1024 * 1024
HALF_CLOSE_SIZE = 65536
#: Lines for the line-oriented GnuTLS tools: 1024 hex digits and a newline each.
LINE_WIDTH = 1024
ALPN_SERVER = ["interop/1"]
ALPN_CLIENT = ["x-other", "interop/1"]
#: Upper bound for anything read until end of stream.
READ_LIMIT = 8 * 1024 * 1024


class Unsupported(Exception):
    """Our implementation has no API for what the scenario needs (trio.SSLStream only)."""


@functools.cache
def pattern(size: int) -> bytes:
    """What the Go and Java peers send and expect: byte i is (i % 251) ^ ((i >> 12) & 0xff)."""
    period = bytes(i % 251 for i in range(4096 + 251))
    tables = [bytes(b ^ mask for b in range(256)) for mask in range(256)]
    blocks = (
        period[(start % 251) : (start % 251) + 4096].translate(tables[(start >> 12) & 0xFF])
        for start in range(0, size, 4096)
    )
    return b"".join(blocks)[:size]


def lines(size: int, seed: int) -> bytes:
    """At least ``size`` bytes of hex lines, for peers that are not binary-safe."""
    return random_lines(-(-size // (LINE_WIDTH + 1)), LINE_WIDTH, seed)


def wrap(
    impl: Impl,
    transport: trio.SocketStream,
    ctx: ssl.SSLContext,
    *,
    server_side: bool,
    session: ssl.SSLSession | None = None,
) -> AnyStream:
    """Our end of the connection, on trio_tls or on trio's own SSLStream."""
    hostname = None if server_side else SERVER_NAME
    if impl == "trio_tls":
        return trio_tls.SSLStream(
            transport, ctx, server_side=server_side, server_hostname=hostname, session=session
        )
    if session is not None:
        raise Unsupported("trio.SSLStream takes no session to resume")
    return trio.SSLStream(transport, ctx, server_side=server_side, server_hostname=hostname)


def ours(stream: AnyStream, what: str) -> trio_tls.SSLStream[trio.SocketStream]:
    """``stream`` as a trio_tls stream, for the extensions trio.SSLStream lacks."""
    if not isinstance(stream, trio_tls.SSLStream):
        raise Unsupported(f"trio.SSLStream has no {what}")
    return stream


async def read_to_eof(stream: AnyStream) -> bytes:
    """Everything until a clean end of stream (a ragged one raises BrokenResourceError)."""
    data = bytearray()
    while chunk := await stream.receive_some():
        data += chunk
        assert len(data) <= READ_LIMIT, "the peer sent more than any scenario does"
    return bytes(data)


def assert_same(got: bytes, want: bytes, what: str) -> None:
    """``got == want``, failing with the lengths and the first difference, not 4 MiB."""
    if got == want:
        return
    at = next((i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b), None)
    if at is None:
        at = min(len(got), len(want))
    raise AssertionError(
        f"{what}: {len(got)} bytes where {len(want)} were sent, first difference at "
        f"{at}: {got[at : at + 40]!r} instead of {want[at : at + 40]!r}"
    )


@dataclass
class Side:
    """Our end of one run and the peer it talks to."""

    case: Case
    impl: Impl
    ctx: ssl.SSLContext
    peer: Peer
    listener: trio.SocketListener | None = None
    port: int = 0
    streams: list[AnyStream] = field(default_factory=list)
    #: What happened, when a scenario has more than one acceptable outcome.
    note: str = ""

    @property
    def stack(self) -> str:
        return self.case.stack

    @property
    def serving(self) -> bool:
        return self.listener is not None

    async def stream(self, session: ssl.SSLSession | None = None) -> AnyStream:
        """Accept (as server) or open (as client) the next connection, wrapped."""
        if self.listener is not None:
            transport = await self.listener.accept()
        else:
            transport = await trio.open_tcp_stream(SERVER_ADDRESS, self.port)
        try:
            stream = wrap(self.impl, transport, self.ctx, server_side=self.serving, session=session)
        except BaseException:
            await transport.aclose()
            raise
        self.streams.append(stream)
        return stream

    async def feed(self, data: bytes) -> None:
        """Write to a gnutls-cli peer's stdin, which it sends to us."""
        assert self.peer.process.stdin is not None
        await self.peer.process.stdin.send_all(data)

    async def end_input(self) -> None:
        """Close a gnutls-cli peer's stdin: it says goodbye."""
        assert self.peer.process.stdin is not None
        await self.peer.process.stdin.aclose()

    async def peer_report(self) -> dict[str, str]:
        """Wait for a Go or Java peer to exit and return what it printed."""
        report = await self.peer.finish()
        return report

    def log(self) -> str:
        """A gnutls-cli peer's informational messages."""
        assert self.peer.info is not None
        return self.peer.info.read_text(errors="replace")


Scenario = Callable[[Side], Awaitable[None]]


def check_report(side: Side, report: dict[str, str], **expected: str) -> None:
    """The Go or Java peer saw no error and the ``expected`` values."""
    assert "error" not in report, f"the peer failed: {side.peer.describe()}"
    for key, value in expected.items():
        assert report.get(key) == value, f"peer {key}: {side.peer.describe()}"


async def wait_output(side: Side, size: int) -> bytes:
    """What a gnutls-cli peer printed, once it has printed ``size`` bytes."""
    await side.peer.wait_for_size(size)
    return bytes(side.peer.output)


# --- the scenarios ---------------------------------------------------------------------------


async def handshake(side: Side) -> None:
    """Handshake, ALPN (in ``handshake``), the client certificate (in ``mtls``), ping/pong."""
    case = side.case
    stream = await side.stream()
    await stream.do_handshake()
    assert stream.version() == f"TLSv{case.version}"
    if case.scenario == "handshake":
        assert stream.selected_alpn_protocol() == "interop/1"
    if side.serving and case.scenario == "mtls":
        assert stream.getpeercert(), "no client certificate"
    if side.stack == "gnutls" and side.serving:
        await side.feed(b"ping\n")
    if side.serving:
        assert await receive_exactly(stream, 5) == b"ping\n"
        await stream.send_all(b"pong\n")
    else:
        await stream.send_all(b"ping\n")
        # gnutls-serv --echo echoes; the Go and Java servers answer pong.
        answer = b"ping\n" if side.stack == "gnutls" else b"pong\n"
        assert await receive_exactly(stream, 5) == answer
    await stream.aclose()
    if side.stack != "gnutls":
        got = "pong" if side.serving else "ping"
        alpn = "interop/1" if case.scenario == "handshake" else ""
        report = await side.peer_report()
        check_report(side, report, got=got, eof="clean", version=case.version, alpn=alpn)
    elif side.serving:
        await side.peer.finish()
        assert side.peer.output == b"pong\n", side.peer.describe()
        assert "Peer has closed the GnuTLS connection" in side.log(), side.peer.describe()


async def duplex(side: Side) -> None:
    """4 MiB each way at once; with ``keyupdate*`` / ``renegotiate``, 1 MiB while the peer rekeys."""
    size = DUPLEX_SIZE if side.case.scenario == "duplex" else UPDATE_SIZE
    stream = await side.stream()
    if side.stack == "gnutls":
        await _gnutls_duplex(side, stream, size)
        return
    data = pattern(size)

    async def receive() -> None:
        got = await receive_exactly(stream, size)
        assert_same(got, data, "the peer's bytes")

    if side.case.refused is not None:
        # OpenSSL may refuse what this peer does, depending on how its records fall:
        # the transfer then fails typed (BrokenResourceError), never hangs.
        try:
            await both(lambda: stream.send_all(data), receive)
        except BaseExceptionGroup as group:
            _, rest = group.split(trio.BrokenResourceError)
            if rest is not None:
                raise
            side.note = "refused with BrokenResourceError (OpenSSL: unexpected record)"
            await stream.aclose()
            return
        side.note = "completed, checked byte for byte"
        await stream.aclose()
        check_report(side, await side.peer_report(), received=str(size), mismatch="-1")
        return

    await both(lambda: stream.send_all(data), receive)
    await stream.aclose()
    report = await side.peer_report()
    check_report(side, report, received=str(size), mismatch="-1")
    updates = {"keyupdate1": "1", "keyupdate100": "100", "renegotiate": "1"}
    if side.case.scenario in updates:
        check_report(side, report, updates=updates[side.case.scenario])


def _inline_commands(data: bytes, scenario: str) -> list[bytes]:
    """gnutls-cli's stdin: our lines, with its rekey/renegotiate commands in the middle.

    ``^rekey^`` asks the server to update its keys too; GnuTLS 3.7 accepts only about
    8 such requests a second, so the 100-update case uses ``^rekey1^``, which asks
    for no answer.
    """
    rows = data.splitlines(keepends=True)
    middle = len(rows) // 4
    if scenario == "duplex":
        return rows
    if scenario == "keyupdate100":
        out = rows[:middle]
        for row in rows[middle : middle + 100]:
            out += [b"^rekey1^\n", row]
        return out + rows[middle + 100 :]
    command = b"^rekey^\n" if scenario == "keyupdate1" else b"^renegotiate^\n"
    return [*rows[:middle], command, *rows[middle:]]


async def _gnutls_duplex(side: Side, stream: AnyStream, size: int) -> None:
    ours_data = lines(size, seed=1)
    if not side.serving:
        # gnutls-serv --echo: what we send comes back, while we are still sending.
        async def echoed() -> None:
            assert_same(await receive_exactly(stream, len(ours_data)), ours_data, "the echo")

        await both(lambda: stream.send_all(ours_data), echoed)
        await stream.aclose()
        return
    theirs = lines(size, seed=2)
    rows = _inline_commands(theirs, side.case.scenario)

    async def feed() -> None:
        # One write per line: gnutls-cli acts on a command only at the start of a read.
        for row in rows:
            await side.feed(row)

    async def receive() -> None:
        assert_same(await receive_exactly(stream, len(theirs)), theirs, "gnutls-cli's lines")

    await both(feed, receive, lambda: stream.send_all(ours_data))
    assert_same(await wait_output(side, len(ours_data)), ours_data, "gnutls-cli's output")
    await stream.aclose()
    await side.end_input()
    await side.peer.finish()
    # gnutls-cli reports each update it completed: the commands did run, mid-transfer.
    done = {"keyupdate1": 1, "keyupdate100": 100}.get(side.case.scenario, 0)
    assert side.log().count("- Rekey was completed") == done, side.peer.describe()
    renegotiated = int(side.case.scenario == "renegotiate")
    assert side.log().count("- ReHandshake was completed") == renegotiated, side.peer.describe()


async def close(side: Side) -> None:
    """The peer sends bye and closes with close_notify: we read a clean end of stream."""
    stream = await side.stream()
    if side.stack == "gnutls":
        await side.feed(b"bye\n")
        await side.end_input()
    assert await read_to_eof(stream) == b"bye\n"
    await stream.aclose()
    if side.stack != "gnutls":
        check_report(side, await side.peer_report())


async def ragged(side: Side) -> None:
    """The peer drops TCP without close_notify after bye: a standard stream must raise."""
    stream = await side.stream()
    if side.stack == "gnutls":
        # GnuTLS's tools always say goodbye; killing one makes the kernel close its
        # socket with no close_notify, which is what a crashed peer looks like.
        if side.serving:
            await side.feed(b"bye\n")
        else:
            await stream.send_all(b"bye\n")
        assert await receive_exactly(stream, 4) == b"bye\n"
        side.peer.process.kill()
    else:
        assert await receive_exactly(stream, 4) == b"bye\n"
    # A clean end of stream here would fail as "DID NOT RAISE": the peer sent no
    # close_notify, so reading b"" would hide a truncation.
    with pytest.raises(trio.BrokenResourceError):
        await read_to_eof(stream)
    await stream.aclose()


async def halfclose_peer(side: Side) -> None:
    """The peer sends, then close_notify, then still reads our answer."""
    stream = await side.stream()
    gnutls = side.stack == "gnutls"
    expected = lines(HALF_CLOSE_SIZE, seed=3) if gnutls else pattern(HALF_CLOSE_SIZE)
    received = bytearray()

    async def feed() -> None:
        # gnutls-cli sends its stdin, then close_notify when the input ends.
        if gnutls:
            await side.feed(expected)
            await side.end_input()

    async def receive() -> None:
        received.extend(await read_to_eof(stream))

    await both(feed, receive)
    assert_same(bytes(received), expected, "the peer's data before its close_notify")
    answer = f"got {len(expected)}\n".encode()
    await stream.send_all(answer)
    await stream.aclose()
    if side.stack == "gnutls":
        await side.peer.finish()
        assert side.peer.output == answer, side.peer.describe()
    else:
        check_report(side, await side.peer_report(), got=answer.decode().strip(), eof="clean")


async def halfclose_local(side: Side) -> None:
    """We send, then close_notify (send_eof), then still read the peer's answer."""
    stream = await side.stream()
    data = lines(HALF_CLOSE_SIZE, seed=4) if side.stack == "gnutls" else pattern(HALF_CLOSE_SIZE)
    await stream.send_all(data)
    await ours(stream, "send_eof() (it is not a HalfCloseableStream)").send_eof()
    answer = await read_to_eof(stream)
    await stream.aclose()
    if side.stack == "gnutls":
        assert answer == data  # gnutls-serv --echo echoes, then answers our close_notify
    else:
        assert answer == f"got {len(data)}\n".encode()
        check_report(side, await side.peer_report(), received=str(len(data)), intact="true")


async def resume(side: Side) -> None:
    """A second connection resumes the first one's session; we check it from our side."""
    if side.serving:
        await _resume_as_server(side)
    else:
        await _resume_as_client(side)


async def _resume_as_server(side: Side) -> None:
    reused = []
    for _ in range(2):
        stream = await side.stream()
        await stream.do_handshake()
        reused.append(stream.session_reused)
        # We speak first, so a TLS 1.3 ticket is on the wire before the greeting.
        await stream.send_all(b"hello\n")
        if side.stack == "gnutls" and len(reused) == 2:
            await side.end_input()
        await read_to_eof(stream)
        await stream.aclose()
    assert reused == [False, True]
    if side.stack == "gnutls":
        await side.peer.finish()
        assert "This is a resumed session" in side.log(), side.peer.describe()
    elif side.stack == "go":
        check_report(side, await side.peer_report(), resumed="true")
    else:
        check_report(side, await side.peer_report())


async def _resume_as_client(side: Side) -> None:
    first = await side.stream()
    # gnutls-serv --echo waits for us; the Go and Java servers greet first.
    greeting = b"ping\n" if side.stack == "gnutls" else b"hello\n"
    if side.stack == "gnutls":
        await first.send_all(greeting)
    assert await receive_exactly(first, len(greeting)) == greeting
    session = await ours(first, "resumable_session()").resumable_session()
    await first.aclose()
    second = await side.stream(session=session)
    await second.do_handshake()
    assert second.session_reused
    if side.stack == "gnutls":
        await second.send_all(greeting)
    assert await receive_exactly(second, len(greeting)) == greeting
    await second.aclose()
    if side.stack == "go":
        check_report(side, await side.peer_report(), resumed="true")
    elif side.stack == "java":
        check_report(side, await side.peer_report())


async def _first_exchange(stream: AnyStream, *, client: bool) -> None:
    # TLS 1.3 clients finish the handshake before the server has checked their
    # certificate; the refusal then arrives as an alert on the first read.
    await stream.do_handshake()
    if client:
        await stream.send_all(b"ping\n")
        await stream.receive_some()


async def mtls_refused(side: Side) -> None:
    """The client's certificate comes from another CA: the server refuses the connection."""
    stream = await side.stream()
    with pytest.raises(trio.BrokenResourceError):
        await _first_exchange(stream, client=not side.serving)
    await stream.aclose()
    if side.stack == "gnutls":
        if side.serving:
            await side.peer.finish()
            assert side.peer.process.returncode != 0, side.peer.describe()
            said = [line for line in side.log().splitlines() if line.startswith("***")]
            side.note = "the client saw: " + (" ".join(said)[:120] or "no alert")
            _the_client_learnt_why(side, " ".join(said))
        return
    report = await side.peer_report()
    assert "error" in report, f"the peer did not see the refusal: {side.peer.describe()}"
    # Whether the peer learnt *why* (the alert) or only that the connection died.
    side.note = "the peer saw: " + report["error"][:120]
    if side.serving:
        _the_client_learnt_why(side, report["error"])


#: How each stack words the unknown_ca alert it received.
_UNKNOWN_CA = ("unknown certificate authority", "unknown_ca", "CA is unknown")


def _the_client_learnt_why(side: Side, what_it_saw: str) -> None:
    """trio_tls sends the alert and lingers, so a client still writing reads the reason
    instead of a reset (trio.SSLStream's clients see EOF or a broken pipe: recorded)."""
    if side.impl == "trio_tls":
        assert any(words in what_it_saw for words in _UNKNOWN_CA), what_it_saw


async def pha(side: Side) -> None:
    """The server asks for the client's certificate after the handshake, mid-connection."""
    stream = await side.stream()
    await side.feed(b"ping\n")
    assert await receive_exactly(stream, 5) == b"ping\n"
    assert stream.getpeercert() is None
    await ours(stream, "verify_client_post_handshake()").verify_client_post_handshake()
    assert stream.getpeercert(), "no client certificate after post-handshake auth"
    await stream.send_all(b"pong\n")
    await stream.aclose()
    await side.peer.finish()
    assert side.peer.output == b"pong\n", side.peer.describe()


SCENARIO_FUNCTIONS: dict[str, Scenario] = {
    "handshake": handshake,
    "duplex": duplex,
    "close": close,
    "ragged": ragged,
    "halfclose_peer": halfclose_peer,
    "halfclose_local": halfclose_local,
    "resume": resume,
    "mtls": handshake,
    "mtls_refused": mtls_refused,
    "keyupdate1": duplex,
    "keyupdate100": duplex,
    "renegotiate": duplex,
    "pha": pha,
}


# --- contexts and peer commands ----------------------------------------------------------------


def our_context(case: Case, ca: TLSTestCA, stranger: TLSTestCA) -> ssl.SSLContext:
    """The context our end uses in ``case``."""
    version, scenario = case.version, case.scenario
    if case.our_role == "server":
        if scenario == "pha":
            return post_handshake_auth_contexts(ca, version)[1]
        ctx = ca.server_context(
            version=version,
            require_client_cert=scenario in ("mtls", "mtls_refused"),
            alpn_protocols=ALPN_SERVER if scenario == "handshake" else None,
        )
        if scenario == "renegotiate":
            # OpenSSL 3 servers refuse client-initiated renegotiation unless allowed.
            ctx.options |= OP_ALLOW_CLIENT_RENEGOTIATION
        return ctx
    ctx = ca.client_context(
        version=version,
        with_client_cert=scenario == "mtls",
        alpn_protocols=ALPN_CLIENT if scenario == "handshake" else None,
    )
    if scenario == "mtls_refused":
        stranger.client_cert.configure_cert(ctx)
    return ctx


def _peer_credentials(case: Case, files: PeerFiles) -> Credentials | None:
    """What the peer presents: the server's chain, or a client certificate in mtls*."""
    if case.peer_role == "server":
        return files.server
    return {"mtls": files.client, "mtls_refused": files.stranger}.get(case.scenario)


def _peer_alpn(case: Case) -> list[str]:
    """The ALPN protocols the peer offers (client) or accepts (server), in ``handshake``."""
    if case.scenario != "handshake":
        return []
    return ALPN_CLIENT if case.peer_role == "client" else ALPN_SERVER


def go_java_command(case: Case, build: tuple[str, ...], files: PeerFiles, port: int) -> list[str]:
    """The Go or Java peer's command line for ``case``."""
    scenario, extra = case.scenario, []
    if scenario.startswith("keyupdate"):
        scenario, count = "keyupdate", scenario.removeprefix("keyupdate")
        extra = ["--updates", count]
    return peer_command(
        build,
        files,
        role=case.peer_role,
        version=case.version,
        scenario=scenario,
        port=port,
        credentials=_peer_credentials(case, files),
        require_client_cert=case.peer_role == "server" and scenario.startswith("mtls"),
        alpn=_peer_alpn(case),
        extra=extra,
    )


def gnutls_client_command(case: Case, files: PeerFiles, port: int, log: Path) -> list[str]:
    """``gnutls-cli`` for ``case`` (we are the server)."""
    extra: list[str] = []
    scenario = case.scenario
    if scenario == "resume":
        extra.append("--resume")
        if case.version == "1.3":
            # The ticket comes after the handshake; without this gnutls-cli reconnects
            # before it has one.
            extra.append("--waitresumption")
    if scenario in ("keyupdate1", "keyupdate100", "renegotiate"):
        extra.append("--inline-commands")
    credentials = {
        "mtls": files.client,
        "mtls_refused": files.stranger,
        "pha": files.client,
    }.get(scenario)
    if scenario == "pha":
        extra.append("--post-handshake-auth")
    alpn = ALPN_CLIENT if scenario == "handshake" else ()
    return gnutls_cli_command(
        files, case.version, port, log, credentials=credentials, alpn=alpn, extra=extra
    )


@asynccontextmanager
async def open_side(
    case: Case, impl: Impl, ctx: ssl.SSLContext, builds: Builds, files: PeerFiles, tmp: Path
) -> AsyncIterator[Side]:
    """Start the peer for ``case`` and set up our end; everything is closed on exit."""
    log = tmp / f"{impl}-peer.log"
    if case.our_role == "server":
        listener = (await trio.open_tcp_listeners(0, host=SERVER_ADDRESS))[0]
        port = listener.socket.getsockname()[1]
        info = None
        if case.stack == "gnutls":
            # Its --logfile is its own file: two writers on one file could overwrite.
            info = tmp / f"{impl}-gnutls-cli.log"
            command = gnutls_client_command(case, files, port, info)
        else:
            command = go_java_command(case, getattr(builds, case.stack), files, port)
        async with listener, run_peer(command, log, stdin=case.stack == "gnutls") as peer:
            peer.info = info
            side = Side(case, impl, ctx, peer, listener=listener)
            try:
                yield side
            finally:
                await _close_all(side)
        return
    if case.stack == "gnutls":
        async with run_gnutls_serv(
            files,
            case.version,
            log,
            require_client_cert=case.scenario.startswith("mtls"),
            alpn=_peer_alpn(case),
        ) as (peer, port):
            side = Side(case, impl, ctx, peer, port=port)
            try:
                yield side
            finally:
                await _close_all(side)
        return
    command = go_java_command(case, getattr(builds, case.stack), files, 0)
    async with run_peer(command, log) as peer:
        side = Side(case, impl, ctx, peer, port=await started_server_port(peer))
        try:
            yield side
        finally:
            await _close_all(side)


async def _close_all(side: Side) -> None:
    for stream in side.streams:
        await trio.aclose_forcefully(stream)
