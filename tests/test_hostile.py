"""Hostile peers: whatever the peer sends, deadlines fire on time and memory stays bounded.

Each peer runs the stdlib's blocking :mod:`ssl` in a thread over a real loopback TCP
connection, so it keeps flooding while our event loop runs (or fails to run): a peer in
the same loop would stop sending whenever we stopped yielding and hide the stall. A
flood never finishes the operation under test (session tickets when we wait for data,
data when we wait for a ticket or a certificate), so only the deadline can end it.
Every peer ends by itself: its socket has a timeout and each flood a size or time cap;
closing our end makes its next send fail.
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import random
import socket
import ssl
import termios
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial

import pytest
import trio

from trio_tls import NoSessionTicketError, PostHandshakeAuthError, SSLStream
from trio_tls._engine import READ_AHEAD_LIMIT
from trio_tls.testing import SERVER_NAME, TLSTestCA, TLSVersionName, measure_stalls

from .helpers.contexts import post_handshake_auth_contexts
from .helpers.deadlines import lateness_after
from .helpers.streams import receive_exactly

#: The deadline put around each operation under attack.
DEADLINE = 0.3
#: The CPU time the event loop's thread may spend after the deadline before the
#: operation ends, and in any single task step meanwhile. CPU time, not wall time:
#: on a loaded machine the OS may preempt the test process for tens of milliseconds
#: in any step, which says nothing about trio_tls; a loop that works without
#: yielding uses the CPU all along and still fails.
ON_TIME = 0.05
#: Wall-clock bounds on the same two figures, so a step blocked in the kernel or a
#: deadline that never fires still fails: far above anything preemption causes.
HANG = 3.0
#: A peer thread's bound on each blocking socket call, and on any flood.
PEER_TIMEOUT = 10.0
#: Data sent by a flooding peer that we later read back in full: well past the
#: read-ahead limit and the loopback socket buffers together.
FLOOD_SIZE = 4 * 1024 * 1024
#: Session tickets sent in one burst: enough that handling them all takes longer than
#: the deadline (several microseconds each), so a loop that never yields misses it.
TICKETS = 60_000

Behaviour = Callable[[socket.socket], None]


def _pattern(size: int) -> bytes:
    """Bytes in which a lost, repeated or reordered record cannot go unnoticed."""
    return random.Random(size).randbytes(size)


@asynccontextmanager
async def thread_peer(behave: Behaviour) -> AsyncIterator[trio.SocketStream]:
    """Our end of a loopback TCP connection whose other end runs ``behave`` in a thread."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(PEER_TIMEOUT)
    port = listener.getsockname()[1]

    def run() -> None:
        with listener:
            conn, _ = listener.accept()
        with conn:
            conn.settimeout(PEER_TIMEOUT)
            # Our side hanging up is how every flood ends: the peer's next send fails.
            with contextlib.suppress(OSError):
                behave(conn)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(trio.to_thread.run_sync, run))
        sock = await trio.open_tcp_stream("127.0.0.1", port)
        try:
            yield sock
        finally:
            await trio.aclose_forcefully(sock)


def _queued(sock: trio.SocketStream) -> int:
    """How many received bytes wait in the kernel for our side to read them."""
    count = array.array("i", [0])
    fcntl.ioctl(sock.socket.fileno(), termios.FIONREAD, count)
    return count[0]


async def backlogged(sock: trio.SocketStream) -> None:
    """Wait until the peer has filled our receive buffer and it stops growing.

    A flood only tests the yield budget if every receive finds data waiting: a reader
    that catches up with its peer waits for the socket and so yields whatever it does.
    Starting with a full buffer (and the peer's send buffer behind it) keeps the
    reader behind for several times the work one step may do. Bounded by PEER_TIMEOUT;
    a peer too slow to fill it weakens the test but cannot make it fail.
    """
    seen = -1
    with trio.move_on_after(PEER_TIMEOUT):
        while (queued := _queued(sock)) != seen or not queued:
            seen = queued
            await trio.sleep(0.05)


def _drain(tls: ssl.SSLSocket) -> None:
    """Read until the other side closes, so that our close_notify is not answered by RST."""
    while tls.recv(65536):
        pass


def _tls(conn: socket.socket, context: ssl.SSLContext, *, server_side: bool) -> ssl.SSLSocket:
    hostname = None if server_side else SERVER_NAME
    return context.wrap_socket(conn, server_side=server_side, server_hostname=hostname)


def tickets_then_silence(context: ssl.SSLContext, count: int) -> Behaviour:
    """A TLS 1.3 server that sends ``count`` NewSessionTickets and no data."""

    def behave(conn: socket.socket) -> None:
        context.num_tickets = count  # OpenSSL writes them all as the handshake ends
        with _tls(conn, context, server_side=True) as tls:
            _drain(tls)

    return behave


def send_then_listen(context: ssl.SSLContext, data: bytes, *, server_side: bool) -> Behaviour:
    """Send ``data`` right after the handshake, then read until the end."""

    def behave(conn: socket.socket) -> None:
        with _tls(conn, context, server_side=server_side) as tls:
            tls.sendall(data)
            _drain(tls)

    return behave


def flood_until_hung_up(context: ssl.SSLContext, *, server_side: bool) -> Behaviour:
    """Send data without pause (and never close_notify) until our side hangs up."""

    def behave(conn: socket.socket) -> None:
        chunk = bytes(64 * 1024)
        give_up = time.monotonic() + PEER_TIMEOUT
        with _tls(conn, context, server_side=server_side) as tls:
            while time.monotonic() < give_up:
                tls.sendall(chunk)

    return behave


def trickle(data: bytes) -> Iterator[bytes]:
    """``data`` one byte at a time, each a separate TCP segment."""
    for index in range(len(data)):
        time.sleep(0.002)
        yield data[index : index + 1]


def trickling_server(context: ssl.SSLContext, *, after_handshake: bytes | None) -> Behaviour:
    """A server whose flight (or, after a normal handshake, one record) arrives byte by byte.

    Driven through memory BIOs, so that it controls exactly which bytes go out when.
    """

    def behave(conn: socket.socket) -> None:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = context.wrap_bio(incoming, outgoing, server_side=True)
        send = conn.sendall if after_handshake is not None else None
        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                if outgoing.pending:
                    flight = outgoing.read()
                    if send is None:
                        for piece in trickle(flight):
                            conn.sendall(piece)
                        return  # never finish: the client's deadline must end it
                    send(flight)
                incoming.write(conn.recv(65536))
        if outgoing.pending:
            conn.sendall(outgoing.read())
        assert after_handshake is not None
        obj.write(after_handshake)
        for piece in trickle(outgoing.read()):
            conn.sendall(piece)

    return behave


@dataclass
class PlaintextCount:
    """What a :func:`counting_server` decrypted, and how the connection ended."""

    received: int = 0
    ending: str = "not yet"


def counting_server(context: ssl.SSLContext, count: PlaintextCount) -> Behaviour:
    """A server that counts the plaintext it receives until the connection ends.

    Driven through memory BIOs, so that it reads the TCP stream itself and can tell the
    endings apart: ``"FIN"``, ``"close_notify"``, or the error (a reset). Through
    ``ssl.SSLSocket`` a reset reads as ``SSLEOFError``, like a FIN, up to Python 3.12
    (and as ``ConnectionResetError`` from 3.13). The count is updated per record, so an
    error cannot lose what was read before it.
    """

    def behave(conn: socket.socket) -> None:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = context.wrap_bio(incoming, outgoing, server_side=True)
        try:
            while chunk := conn.recv(1 << 20):  # read() runs the handshake too
                incoming.write(chunk)
                with contextlib.suppress(ssl.SSLWantReadError):
                    while data := obj.read(1 << 20):
                        count.received += len(data)
                    count.ending = "close_notify"  # read() returns b"" only then
                    return
                if outgoing.pending:
                    conn.sendall(outgoing.read())
            count.ending = "FIN"
        except OSError as exc:  # ssl.SSLError included
            count.ending = repr(exc)

    return behave


@contextlib.contextmanager
def on_time(
    deadline: float = DEADLINE, *, enforced_inside: bool = False
) -> Iterator[trio.CancelScope]:
    """Run the block under ``move_on_after(deadline)``; fail if it overran or stalled.

    ``enforced_inside``: the code under test enforces ``deadline`` itself (a timeout
    argument); the scope then waits ``HANG`` longer, a net that must not be needed.
    """
    due = trio.current_time() + deadline
    with measure_stalls() as stalls:
        net = HANG if enforced_inside else 0.0
        with trio.move_on_at(due + net) as scope, lateness_after(due) as late:
            yield scope
    # A block that ends before the deadline (by an error the attack provokes) is
    # measured from its last schedule point: part of one step, bounded all the same.
    assert late.cpu < ON_TIME, f"the deadline fired after {late.cpu:.3f} s of CPU time"
    assert late.wall < HANG, f"the deadline fired {late.wall:.3f} s late"
    assert stalls.longest_cpu < ON_TIME, f"a step took {stalls.longest_cpu:.3f} s of CPU time"
    assert stalls.longest < HANG, f"the event loop was held for {stalls.longest:.3f} s"


def _held_plaintext(stream: SSLStream[trio.SocketStream]) -> int:
    # White-box on purpose: the bound is a promise about memory, which the public
    # API cannot observe.
    return len(stream._engine._plain)


def _client(
    sock: trio.SocketStream, ca: TLSTestCA, version: TLSVersionName
) -> SSLStream[trio.SocketStream]:
    return SSLStream(sock, ca.client_context(version=version), server_hostname=SERVER_NAME)


# -- receive_some ---------------------------------------------------------------------------


async def test_receive_some_keeps_its_deadline_during_a_ticket_flood(tls_ca: TLSTestCA) -> None:
    server_ctx = tls_ca.server_context(version="1.3")
    async with thread_peer(tickets_then_silence(server_ctx, TICKETS)) as sock:
        stream = _client(sock, tls_ca, "1.3")
        # A larger buffer holds more tickets ahead of the reader: about 2 MiB queued
        # is a few times the work a step may do, so a missing yield cannot hide.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        await stream.do_handshake()
        await backlogged(sock)
        with on_time() as scope:
            await stream.receive_some()
        assert scope.cancelled_caught, "no data was sent, so only the deadline ends the read"
        await trio.aclose_forcefully(stream)


async def test_receive_some_keeps_its_deadline_while_a_record_trickles_in(
    tls_ca: TLSTestCA, tls_version: TLSVersionName
) -> None:
    record = _pattern(16 * 1024)
    behave = trickling_server(tls_ca.server_context(version=tls_version), after_handshake=record)
    async with thread_peer(behave) as sock:
        stream = _client(sock, tls_ca, tls_version)
        await stream.do_handshake()
        with on_time() as scope:
            await stream.receive_some()
        assert scope.cancelled_caught
        await trio.aclose_forcefully(stream)


# -- the handshake --------------------------------------------------------------------------


# Set up as the other attacks are (peer behaviour, our client, one operation under a
# deadline): what each test attacks is the operation, so each spells out its own.
async def test_handshake_keeps_its_deadline_while_the_server_trickles(
    tls_ca: TLSTestCA, tls_version: TLSVersionName
) -> None:
    behave = trickling_server(tls_ca.server_context(version=tls_version), after_handshake=None)
    async with thread_peer(behave) as sock:
        stream = _client(sock, tls_ca, tls_version)
        with on_time() as scope:
            await stream.do_handshake()
        assert scope.cancelled_caught
        with pytest.raises(trio.BrokenResourceError):
            await stream.send_all(b"x")  # a cancelled handshake leaves the stream broken
        await trio.aclose_forcefully(stream)


# -- waiting for a ticket or a certificate, while data floods in ----------------------------


async def test_resumable_session_under_a_data_flood(
    tls_ca: TLSTestCA, tls_version: TLSVersionName
) -> None:
    server_ctx = tls_ca.server_context(version=tls_version)
    server_ctx.num_tickets = 0  # TLS 1.3: no ticket ever comes, only data
    payload = _pattern(FLOOD_SIZE)
    async with thread_peer(send_then_listen(server_ctx, payload, server_side=True)) as sock:
        stream = _client(sock, tls_ca, tls_version)
        await stream.do_handshake()
        with on_time() as scope:
            if tls_version == "1.3":
                # At the read-ahead cap the wait could never succeed: it fails at
                # once, naming the cap and the remedy, instead of at the deadline.
                with pytest.raises(NoSessionTicketError, match=r"256 KiB.*receive_some\(\)"):
                    await stream.resumable_session()
            else:
                assert await stream.resumable_session() is not None  # resumable at once
        assert not scope.cancelled_caught
        assert _held_plaintext(stream) <= READ_AHEAD_LIMIT
        # Nothing read ahead is lost: every byte comes out of receive_some, in order.
        with trio.fail_after(PEER_TIMEOUT):
            assert await receive_exactly(stream, len(payload)) == payload
        await stream.aclose()


def upload_then_read(context: ssl.SSLContext, data: bytes) -> Behaviour:
    """A client that uploads ``data``, then reads one reply (answering a certificate
    request on the way, as the stdlib does while reading) and echoes it."""

    def behave(conn: socket.socket) -> None:
        with _tls(conn, context, server_side=False) as tls:
            tls.sendall(data)
            tls.sendall(b"got " + tls.recv(65536))
            _drain(tls)

    return behave


async def test_verify_client_post_handshake_under_a_data_flood(
    tls_ca: TLSTestCA, tls_version: TLSVersionName
) -> None:
    client_ctx, server_ctx = post_handshake_auth_contexts(tls_ca, tls_version)
    payload = _pattern(FLOOD_SIZE)
    # The client reads only once its upload is done: its answer to the
    # CertificateRequest is queued behind more data than the read-ahead cap.
    async with thread_peer(upload_then_read(client_ctx, payload)) as sock:
        stream = SSLStream(sock, server_ctx, server_side=True)
        await stream.do_handshake()
        if tls_version == "1.2":
            with pytest.raises(ValueError, match=r"needs TLS 1\.3"):
                await stream.verify_client_post_handshake()
        else:
            with (
                on_time() as scope,
                pytest.raises(PostHandshakeAuthError, match=r"256 KiB.*receive_some\(\)"),
            ):
                await stream.verify_client_post_handshake()
            assert not scope.cancelled_caught, "failed at once, not at the deadline"
            assert _held_plaintext(stream) <= READ_AHEAD_LIMIT
        with trio.fail_after(PEER_TIMEOUT):
            # The stream is intact: the data in order, then the exchange goes on.
            assert await receive_exactly(stream, len(payload)) == payload
            await stream.send_all(b"ok")
            assert await receive_exactly(stream, 6) == b"got ok"
        if tls_version == "1.3":
            # The answer queued behind the data was processed on the way.
            assert stream.getpeercert() is not None
        await trio.aclose_forcefully(stream)


# -- closing while the peer floods ----------------------------------------------------------


async def test_aclose_keeps_close_timeout_during_a_flood(
    tls_ca: TLSTestCA, tls_version: TLSVersionName
) -> None:
    behave = flood_until_hung_up(tls_ca.server_context(version=tls_version), server_side=True)
    async with thread_peer(behave) as sock:
        stream = SSLStream(
            sock,
            tls_ca.client_context(version=tls_version),
            server_hostname=SERVER_NAME,
            close_timeout=DEADLINE,
        )
        await stream.do_handshake()
        await backlogged(sock)
        # close_timeout is the deadline here: the outer scope must not be needed.
        with on_time(DEADLINE, enforced_inside=True) as scope:
            await stream.aclose()
        assert not scope.cancelled_caught
        assert sock.socket.fileno() == -1


async def test_unwrap_keeps_its_deadline_during_a_flood(
    tls_ca: TLSTestCA, tls_version: TLSVersionName
) -> None:
    behave = flood_until_hung_up(tls_ca.server_context(version=tls_version), server_side=True)
    async with thread_peer(behave) as sock:
        stream = _client(sock, tls_ca, tls_version)
        await stream.do_handshake()
        with on_time(), pytest.raises(trio.BrokenResourceError) as caught:
            # OpenSSL refuses data that follows our close_notify: the flood ends
            # unwrap() with an error as soon as it is read.
            await stream.unwrap()
        assert isinstance(caught.value.__cause__, ssl.SSLError)
        with pytest.raises(trio.BrokenResourceError):
            await stream.receive_some()
        await trio.aclose_forcefully(stream)


# -- a cancelled send_all that put bytes on the wire ----------------------------------------


async def test_send_all_cancelled_mid_message_breaks_the_stream(
    tls_ca: TLSTestCA, tls_version: TLSVersionName
) -> None:
    """A cancellation between two chunks of a large send_all: the peer has a truncated
    message, so nothing may follow it, not even a clean close_notify."""
    server_ctx = tls_ca.server_context(version=tls_version)
    # Closing a socket with unread bytes makes the kernel send RST instead of FIN, and
    # RST discards whatever the peer has not read yet: bytes that would never reach the
    # count. So the peer sends nothing after its handshake (no TLS 1.3 tickets) and our
    # side closes with nothing unread; the peer checks that the end was indeed a FIN.
    server_ctx.num_tickets = 0
    count = PlaintextCount()

    warm_up = 4 * 1024 * 1024
    async with thread_peer(counting_server(server_ctx, count)) as sock:
        stream = _client(sock, tls_ca, tls_version)
        await stream.send_all(bytes(warm_up))  # lets the kernel grow the socket buffers
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                # Scheduled before send_all runs, so it cancels at send_all's first yield.
                nursery.start_soon(lambda: _cancel(scope))
                await stream.send_all(b"A" * 2**20)
        assert scope.cancelled_caught
        with pytest.raises(trio.BrokenResourceError):
            await stream.send_all(b"TAIL")
        await stream.aclose()
    # Not even a close_notify after the truncated message; and a reset could hide bytes.
    assert count.ending == "FIN"
    sent = count.received - warm_up
    assert 0 <= sent < 2**20, "the message was cut short, and nothing came after it"


async def _cancel(scope: trio.CancelScope) -> None:
    scope.cancel()
    await trio.lowlevel.checkpoint()
