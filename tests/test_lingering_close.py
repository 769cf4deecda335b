"""Lingering close: after a fatal alert over a socket, ``aclose()`` shuts down its
sending side and reads (and drops) what the peer still sends, for a bounded time and
amount, before it closes. A peer that is still sending then reads the alert, instead
of having its writes fail on a TCP reset (what a Java client reports as "Broken
pipe", never the reason). Real peers over loopback TCP, each in a thread with
deadlines on every socket call.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from functools import partial

import pytest
import trio

import trio_tls._wire
from trio_tls import ClientHello, SSLListener, SSLStream
from trio_tls.testing import SERVER_NAME, TLSTestCA, TLSVersionName

from .helpers.hellos import client_hello
from .helpers.streams import port_of, receive_to_eof, serving, serving_listener

pytestmark = pytest.mark.usefixtures("no_fd_leak")

#: A peer thread's bound on each blocking socket call.
PEER_TIMEOUT = 10.0
#: Both ends' socket buffers, pinned small so that the upload below cannot fit in
#: them whatever the machine's defaults: without a lingering close the server closes
#: with unread data, the kernel answers with a reset, and the upload fails.
SMALL_BUFFER = 64 * 1024
#: What the peer sends after the record the server rejects: many times the buffers,
#: well under LINGER_MAX_BYTES.
UPLOAD = 1024 * 1024
RECORD = bytes(16 * 1024)


@dataclass
class PeerReport:
    """How the connection ended for the peer."""

    send_error: OSError | None = None
    alert: ssl.SSLError | None = None
    read_error: OSError | None = None
    #: The raw bytes the peer read after it stopped sending, for peers without TLS.
    answer: bytes = b""


def _handshake(
    obj: ssl.SSLObject, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO, sock: socket.socket
) -> None:
    for _ in range(100):
        try:
            obj.do_handshake()
        except ssl.SSLWantReadError:
            sock.sendall(outgoing.read())
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("EOF during the handshake") from None
            incoming.write(data)
        else:
            sock.sendall(outgoing.read())
            return
    raise AssertionError("the handshake did not finish")


def _read_the_answer(
    obj: ssl.SSLObject, incoming: ssl.MemoryBIO, sock: socket.socket, report: PeerReport
) -> None:
    """Read until the server's alert (or the end), as a peer does once it is done."""
    for _ in range(1000):
        try:
            data = sock.recv(65536)
        except OSError as exc:
            report.read_error = exc
            return
        if data:
            incoming.write(data)
        else:
            incoming.write_eof()
        try:
            obj.read(65536)
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLError as exc:
            report.alert = exc
            return
        if not data:
            return


def uploading_client(
    context: ssl.SSLContext, port: int, report: PeerReport, *, corrupt_first: bool
) -> None:
    """Handshake, then send UPLOAD bytes of records without reading, then read.

    With ``corrupt_first`` the first record has one bit flipped, which the server must
    refuse with a bad_record_mac alert; otherwise the server is expected to refuse
    the handshake itself (TLS 1.3 clients send data before they learn of it).
    """
    with socket.create_connection(("127.0.0.1", port), timeout=PEER_TIMEOUT) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = context.wrap_bio(incoming, outgoing, server_hostname=SERVER_NAME)
        _handshake(obj, incoming, outgoing, sock)
        sent = 0
        try:
            while sent < UPLOAD:
                obj.write(RECORD)
                record = bytearray(outgoing.read())
                if corrupt_first and sent == 0:
                    record[-1] ^= 1  # in the record's authentication tag
                sock.sendall(record)
                sent += len(record)
        except OSError as exc:
            report.send_error = exc
        _read_the_answer(obj, incoming, sock, report)


def shrink_receive_buffer(listener: trio.SocketListener | SSLListener[trio.SocketStream]) -> None:
    """Pin the listener's receive buffer to SMALL_BUFFER: accepted sockets inherit it."""
    if isinstance(listener, SSLListener):
        transport = listener.transport_listener
        assert isinstance(transport, trio.SocketListener)
        listener = transport
    listener.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)


@asynccontextmanager
async def peer_in_thread(
    run: Callable[[int, PeerReport], None],
) -> AsyncIterator[tuple[trio.SocketListener, PeerReport]]:
    """A listener whose sockets have SMALL_BUFFER receive buffers, and ``run(port,
    report)`` in a thread connecting to it; the thread is waited for on exit."""
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    shrink_receive_buffer(listener)
    port = listener.socket.getsockname()[1]
    report = PeerReport()
    async with listener, trio.open_nursery() as nursery:
        nursery.start_soon(partial(trio.to_thread.run_sync, run, port, report))
        yield listener, report


def assert_alert_read(report: PeerReport, reason: str) -> None:
    assert report.send_error is None, f"the upload failed: {report.send_error!r}"
    assert report.read_error is None, f"reading the answer failed: {report.read_error!r}"
    assert report.alert is not None, "the peer read no alert"
    assert reason in str(report.alert)


async def test_peer_still_sending_reads_the_alert_for_a_bad_record(
    tls_ca: TLSTestCA, tls_version: TLSVersionName
) -> None:
    client_ctx = tls_ca.client_context(version=tls_version)
    run = partial(uploading_client, client_ctx, corrupt_first=True)
    async with peer_in_thread(run) as (listener, report):
        stream = SSLStream(
            await listener.accept(), tls_ca.server_context(version=tls_version), server_side=True
        )
        with trio.fail_after(PEER_TIMEOUT):
            with pytest.raises(trio.BrokenResourceError, match="bad record mac"):
                await receive_to_eof(stream)
            await stream.aclose()
    assert_alert_read(report, "BAD_RECORD_MAC")


async def test_refused_client_certificate_reaches_a_client_still_sending(
    tls_ca: TLSTestCA,
) -> None:
    """The server helper's path (trio would close it forcefully): a TLS 1.3 client
    without a certificate uploads right after its Finished, then reads the refusal."""
    served: list[str] = []

    async def handler(stream: SSLStream[trio.SocketStream]) -> None:
        served.append("handler")  # never: the handshake fails

    client_ctx = tls_ca.client_context(version="1.3")
    run = partial(uploading_client, client_ctx, corrupt_first=False)
    server_ctx = tls_ca.server_context(version="1.3", require_client_cert=True)
    async with serving_listener(handler, server_ctx) as listener:
        shrink_receive_buffer(listener)
        report = PeerReport()
        with trio.fail_after(PEER_TIMEOUT):
            await trio.to_thread.run_sync(run, port_of(listener), report)
    assert served == []
    assert_alert_read(report, "CERTIFICATE_REQUIRED")


@contextmanager
def corrupt_record_sent(context: ssl.SSLContext, port: int) -> Iterator[socket.socket]:
    """Connect, handshake, and send one record with a bit of its authentication tag
    flipped, which the server must refuse; yields the socket, closed afterwards."""
    with socket.create_connection(("127.0.0.1", port), timeout=PEER_TIMEOUT) as sock:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = context.wrap_bio(incoming, outgoing, server_hostname=SERVER_NAME)
        _handshake(obj, incoming, outgoing, sock)
        obj.write(b"x")
        record = bytearray(outgoing.read())
        record[-1] ^= 1
        sock.sendall(record)
        yield sock


def trickling_client(context: ssl.SSLContext, port: int, report: PeerReport) -> None:
    """Sends a corrupt record, then one byte every 10 ms until the server hangs up
    (bounded by PEER_TIMEOUT): a peer the lingering close must not wait out."""
    with corrupt_record_sent(context, port) as sock:
        give_up = time.monotonic() + PEER_TIMEOUT
        try:
            while time.monotonic() < give_up:
                sock.sendall(b"\0")
                time.sleep(0.01)
        except OSError as exc:
            report.send_error = exc


async def test_lingering_close_ends_at_once_when_cancelled(
    tls_ca: TLSTestCA, monkeypatch: pytest.MonkeyPatch
) -> None:
    """trio.aclose_forcefully() (a cancelled aclose) does not linger, even for a
    peer that never stops sending: it closes the transport at once."""
    monkeypatch.setattr(trio_tls._wire, "LINGER_TIMEOUT", 3600.0)  # only cancellation ends it
    client_ctx = tls_ca.client_context(version="1.3")
    async with peer_in_thread(partial(trickling_client, client_ctx)) as (listener, report):
        stream = SSLStream(
            await listener.accept(), tls_ca.server_context(version="1.3"), server_side=True
        )
        with trio.fail_after(PEER_TIMEOUT):
            with pytest.raises(trio.BrokenResourceError):
                await stream.receive_some()
            await trio.aclose_forcefully(stream)
        assert stream.transport_stream.socket.fileno() == -1
    assert report.send_error is not None  # the trickle ended when we closed


async def test_one_lingering_connection_does_not_delay_others(
    tls_ca: TLSTestCA, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bad client keeps its own connection's task lingering; another client is
    served meanwhile, and cancelling the server ends the linger."""
    monkeypatch.setattr(trio_tls._wire, "LINGER_TIMEOUT", 3600.0)
    broke = trio.Event()

    async def handler(stream: SSLStream[trio.SocketStream]) -> None:
        try:
            while data := await stream.receive_some():
                await stream.send_all(data)
        finally:
            broke.set()

    client_ctx = tls_ca.client_context(version="1.3")
    bad = PeerReport()
    server_ctx = tls_ca.server_context(version="1.3")
    # Leaving the block cancels the server first, which ends the linger; the clients
    # nursery then waits for the bad client's thread to see it.
    async with trio.open_nursery() as clients, serving(handler, server_ctx) as port:
        clients.start_soon(
            partial(trio.to_thread.run_sync, trickling_client, client_ctx, port, bad)
        )
        with trio.fail_after(PEER_TIMEOUT):
            await broke.wait()  # the bad client's stream broke ...
            # ... and its task now lingers; a good client is served all the same.
            tcp = await trio.open_tcp_stream("127.0.0.1", port)
            async with SSLStream(tcp, client_ctx, server_hostname=SERVER_NAME) as good:
                await good.send_all(b"ping")
                assert await good.receive_some() == b"ping"
        assert bad.send_error is None, "still lingering: the bad client can still send"
    assert bad.send_error is not None


def silent_client(
    context: ssl.SSLContext, port: int, report: PeerReport, done: threading.Event
) -> None:
    """Sends a corrupt record, then neither sends, reads nor closes until ``done``
    (bounded by PEER_TIMEOUT): the lingering close waits for an EOF that never comes."""
    with corrupt_record_sent(context, port):
        done.wait(PEER_TIMEOUT)


def flooding_client(context: ssl.SSLContext, port: int, report: PeerReport) -> None:
    """Sends a corrupt record, then zeros as fast as it can until the server hangs
    up (bounded by PEER_TIMEOUT and by 256 MiB): a peer that never stops sending."""
    with corrupt_record_sent(context, port) as sock:
        give_up = time.monotonic() + PEER_TIMEOUT
        try:
            for _ in range(256 * 1024 * 1024 // len(RECORD)):
                if time.monotonic() > give_up:
                    return
                sock.sendall(RECORD)
        except OSError as exc:
            report.send_error = exc


async def broken_by_a_bad_record(
    tls_ca: TLSTestCA, listener: trio.SocketListener, close_timeout: float | None = None
) -> SSLStream[trio.SocketStream]:
    """The server stream of the peer connecting to ``listener``, broken by the peer's
    corrupt record (so aclose() lingers)."""
    stream = SSLStream(
        await listener.accept(),
        tls_ca.server_context(version="1.3"),
        server_side=True,
        close_timeout=close_timeout,
    )
    with pytest.raises(trio.BrokenResourceError, match="bad record mac"):
        await stream.receive_some()
    return stream


@pytest.mark.parametrize("peer", ["silent", "trickling"])
async def test_close_timeout_bounds_the_lingering_close(
    tls_ca: TLSTestCA, autojump_clock: trio.testing.MockClock, peer: str
) -> None:
    """close_timeout bounds the whole aclose(), the lingering close included: a peer
    that holds the connection open, or keeps sending, gets 0.2 s, not LINGER_TIMEOUT.
    (Virtual time: no trio deadlines around the peers, which bound themselves.)"""
    assert trio_tls._wire.LINGER_TIMEOUT > 0.2
    done = threading.Event()
    client_ctx = tls_ca.client_context(version="1.3")
    if peer == "silent":
        run = partial(silent_client, client_ctx, done=done)
    else:
        run = partial(trickling_client, client_ctx)
    async with peer_in_thread(run) as (listener, report):
        try:
            stream = await broken_by_a_bad_record(tls_ca, listener, close_timeout=0.2)
            started = trio.current_time()
            await stream.aclose()
            took = trio.current_time() - started
        finally:
            done.set()
        assert stream.transport_stream.socket.fileno() == -1
    assert took == pytest.approx(0.2, abs=0.01)
    if peer == "trickling":
        assert report.send_error is not None  # the trickle ended when we closed


async def test_lingering_close_ends_after_linger_timeout(
    tls_ca: TLSTestCA, autojump_clock: trio.testing.MockClock
) -> None:
    """A peer that never stops sending (slowly, so the byte cap is far) is cut off
    LINGER_TIMEOUT (virtual) seconds into the lingering close, and the socket is closed."""
    client_ctx = tls_ca.client_context(version="1.3")
    async with peer_in_thread(partial(trickling_client, client_ctx)) as (listener, report):
        stream = await broken_by_a_bad_record(tls_ca, listener)
        started = trio.current_time()
        await stream.aclose()
        took = trio.current_time() - started
        assert stream.transport_stream.socket.fileno() == -1
    assert took == pytest.approx(trio_tls._wire.LINGER_TIMEOUT, abs=0.01)
    assert report.send_error is not None


async def test_lingering_close_ends_after_linger_max_bytes(
    tls_ca: TLSTestCA, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A peer flooding us is cut off once LINGER_MAX_BYTES were read (one receive may
    overshoot by less than a chunk), not at LINGER_TIMEOUT; statistics() counts what
    the lingering close read."""
    cap = 64 * 1024
    monkeypatch.setattr(trio_tls._wire, "LINGER_MAX_BYTES", cap)
    monkeypatch.setattr(trio_tls._wire, "LINGER_TIMEOUT", 3600.0)  # only the cap ends it
    client_ctx = tls_ca.client_context(version="1.3")
    async with peer_in_thread(partial(flooding_client, client_ctx)) as (listener, report):
        with trio.fail_after(PEER_TIMEOUT):
            stream = await broken_by_a_bad_record(tls_ca, listener)
            before = stream.statistics().wire_bytes_received
            await stream.aclose()
        lingered = stream.statistics().wire_bytes_received - before
        assert stream.transport_stream.socket.fileno() == -1
    assert cap <= lingered < cap + trio_tls._wire.RECEIVE_CHUNK
    assert report.send_error is not None  # the flood ended when we closed


def junk_after_hello_client(hello: bytes, port: int, report: PeerReport) -> None:
    """Sends a real ClientHello and then UPLOAD bytes of junk without reading (a
    client that pipelines), then reads the server's raw answer to the end."""
    with socket.create_connection(("127.0.0.1", port), timeout=PEER_TIMEOUT) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)
        sock.sendall(hello)
        try:
            for _ in range(UPLOAD // len(RECORD)):
                sock.sendall(RECORD)
        except OSError as exc:
            report.send_error = exc
        answer = bytearray()
        for _ in range(1000):
            try:
                data = sock.recv(65536)
            except OSError as exc:
                report.read_error = exc
                break
            if not data:
                break
            answer += data
        report.answer = bytes(answer)


async def test_chooser_refusal_reaches_a_client_still_sending(tls_ca: TLSTestCA) -> None:
    """A chooser that knows no context for the name refuses with unrecognized_name;
    that alert goes out the lingering way, so a client still sending reads it."""
    served: list[str] = []

    async def handler(stream: SSLStream[trio.SocketStream]) -> None:
        served.append("handler")  # never: the handshake fails

    async def chooser(hello: ClientHello) -> ssl.SSLContext:
        raise LookupError(hello.server_name)

    hello = client_hello(tls_ca.client_context(), "unknown.example")
    async with serving_listener(handler, chooser) as listener:
        shrink_receive_buffer(listener)
        report = PeerReport()
        with trio.fail_after(PEER_TIMEOUT):
            await trio.to_thread.run_sync(junk_after_hello_client, hello, port_of(listener), report)
    assert served == []
    assert report.send_error is None, f"the upload failed: {report.send_error!r}"
    assert report.read_error is None, f"reading the answer failed: {report.read_error!r}"
    # One alert record: fatal (2), unrecognized_name (112).
    assert report.answer[:1] == b"\x15"
    assert report.answer[3:] == b"\x00\x02\x02\x70"
