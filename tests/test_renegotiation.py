"""Re-handshakes started by the peer while data keeps flowing.

The peer (:mod:`tests.helpers.virtual_peer`) is pyOpenSSL, because the stdlib cannot start
a renegotiation. It echoes every byte and, on a schedule of echoed bytes, starts an
in-band re-handshake: a TLS 1.2 renegotiation (as server, or as client with trio_tls
as the server), or under TLS 1.3, which has none, a post-handshake client-certificate
request. Our side pushes a seeded payload through it and checks the echo by content,
then checks that every re-handshake the peer started really completed.

Two traffic shapes: request/response (send a chunk, read its echo) and full duplex
(one task sends while another receives). Full duplex is the hard one: when the
peer's HelloRequest arrives our client starts renegotiating inside a *read*, and
records of application data the peer sent before it saw our ClientHello are still
on the way. OpenSSL accepts those only inside SSL_read; if SSL_write meets one while
driving the handshake it fails with "unexpected record". trio.SSLStream fails these
cases for that reason (its source says so); a driver that lets OpenSSL consume
buffered records through SSL_read before each SSL_write passes them.

Each case runs over a ``trio.testing`` memory stream pair (virtual time, seeded random
delays in the peer and in our tasks, so the interleavings vary but reproduce) and over
a real loopback TCP connection (real scheduling and real kernel buffers).
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

import pytest
import trio
import trio.testing

from trio_tls import SSLStream
from trio_tls.testing import SERVER_NAME, TLSTestCA, TLSVersionName

from .helpers.payloads import chunks, digest, random_payload
from .helpers.streams import loopback_tcp_pair
from .helpers.virtual_peer import (
    OP_ALLOW_CLIENT_RENEGOTIATION,
    Interruption,
    PyOpenSSLEchoPeer,
    Sleeper,
)

#: Sizes are fixed so every run does the same amount of work. The peer interrupts at
#: every multiple of EVERY echoed bytes (one at a time), at most LIMIT times, so all
#: LIMIT fall inside the payload when the echo keeps pace. How many actually start
#: before the last echoed byte depends on scheduling (our sender keeps going while a
#: re-handshake holds the echo up); all 12 do in practice, and at least
#: MIN_INTERRUPTIONS must, which leaves room for a loaded machine.
PAYLOAD_SIZE = 384 * 1024
EVERY = 24 * 1024
LIMIT = 12
MIN_INTERRUPTIONS = 6
#: Largest piece handed to one ``send_all``.
CHUNK_MAX = 24 * 1024
#: Bounded number of one-byte round trips to let a re-handshake that started near
#: the end of the payload finish before we close.
SETTLE_ROUNDS = 20


@dataclass(frozen=True)
class Case:
    """Who plays which role, and what the peer interrupts with."""

    version: TLSVersionName
    #: True: trio_tls is the server and the pyOpenSSL peer the client.
    we_are_server: bool


CASES = [
    pytest.param(Case("1.2", we_are_server=False), id="tls12-peer_server_renegotiates"),
    pytest.param(Case("1.2", we_are_server=True), id="tls12-peer_client_renegotiates"),
    pytest.param(Case("1.3", we_are_server=False), id="tls13-peer_server_post_handshake_auth"),
]


def make_pair(
    ca: TLSTestCA, case: Case, transport: trio.abc.Stream, sleeper: Sleeper
) -> tuple[SSLStream[trio.abc.Stream], PyOpenSSLEchoPeer]:
    """Our SSLStream over ``transport`` and the peer that will sit on the other end."""
    if case.we_are_server:
        ctx = ca.server_context(version=case.version)
        # OpenSSL 3 refuses client-initiated renegotiation unless the server allows it.
        ctx.options |= OP_ALLOW_CLIENT_RENEGOTIATION
        peer = PyOpenSSLEchoPeer.client(ca, case.version, every=EVERY, limit=LIMIT, sleeper=sleeper)
        return SSLStream(transport, ctx, server_side=True), peer
    ctx = ca.client_context(version=case.version)
    if case.version == "1.3":
        # Answer the peer's post-handshake CertificateRequests.
        ca.client_cert.configure_cert(ctx)
        ctx.post_handshake_auth = True
    peer = PyOpenSSLEchoPeer.server(ca, case.version, every=EVERY, limit=LIMIT, sleeper=sleeper)
    return SSLStream(transport, ctx, server_hostname=SERVER_NAME), peer


class Traffic(enum.Enum):
    """How our side uses the stream while the peer re-handshakes."""

    #: One task streams the payload while another reads the echo: both directions
    #: are busy at every moment, including in the middle of each re-handshake.
    FULL_DUPLEX = "full_duplex"
    #: One task sends a chunk, then reads its whole echo, then the next chunk.
    REQUEST_RESPONSE = "request_response"


async def full_duplex(
    stream: SSLStream[trio.abc.Stream], payload: bytes, seed: int, pause: Sleeper
) -> bytes:
    echoed = bytearray()

    async def send() -> None:
        for piece in chunks(payload, seed, high=CHUNK_MAX):
            await stream.send_all(piece)
            await pause("our send")

    async def receive() -> None:
        while len(echoed) < len(payload):
            data = await stream.receive_some()
            assert data, "EOF before the whole echo arrived"
            echoed.extend(data)
            await pause("our receive")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send)
        nursery.start_soon(receive)
    return bytes(echoed)


async def request_response(
    stream: SSLStream[trio.abc.Stream], payload: bytes, seed: int, pause: Sleeper
) -> bytes:
    echoed = bytearray()
    for piece in chunks(payload, seed, high=CHUNK_MAX):
        await stream.send_all(piece)
        await pause("our send")
        expected = len(echoed) + len(piece)
        while len(echoed) < expected:
            data = await stream.receive_some(expected - len(echoed))
            assert data, "EOF before the whole echo arrived"
            echoed.extend(data)
        await pause("our receive")
    return bytes(echoed)


async def exchange_and_check(
    stream: SSLStream[trio.abc.Stream],
    peer: PyOpenSSLEchoPeer,
    case: Case,
    traffic: Traffic,
    seed: int,
    pause: Sleeper,
) -> int:
    """Push the payload through the echo peer, check content and re-handshakes, close.

    Returns how many one-byte settle round trips were needed, so the caller can check
    the peer's own byte count once it has finished.
    """
    payload = random_payload(PAYLOAD_SIZE, seed)
    run = full_duplex if traffic is Traffic.FULL_DUPLEX else request_response
    echoed = await run(stream, payload, seed, pause)

    assert len(echoed) == len(payload)
    assert digest(echoed) == digest(payload)
    peer.stop_interrupting()
    started_during_traffic = peer.started
    assert started_during_traffic >= MIN_INTERRUPTIONS, "too few re-handshakes overlapped the data"

    # A re-handshake started near the end may still be in flight: each round trip
    # makes both sides read, which is what moves it forward.
    rounds = 0
    while peer.pending and rounds < SETTLE_ROUNDS:
        rounds += 1
        await stream.send_all(b"-")
        assert await stream.receive_some(1) == b"-"
    assert peer.completed == peer.started == started_during_traffic
    if peer.interruption is Interruption.RENEGOTIATE:
        assert peer.connection.total_renegotiations() == peer.completed
    else:
        assert peer.verified_client_certificates == peer.completed
    assert stream.version() == f"TLSv{case.version}"
    stats = stream.statistics()
    assert stats.bytes_sent == stats.bytes_received == PAYLOAD_SIZE + rounds

    await stream.aclose()
    return rounds


def seeded_sleeper(seed: int, scale: float) -> Sleeper:
    """Random virtual delays (up to ``scale`` seconds) from a seeded generator."""
    r = random.Random(seed)

    async def sleeper(_where: str) -> None:
        await trio.sleep(r.uniform(0, scale))

    return sleeper


async def checkpoint_only(_where: str) -> None:
    await trio.lowlevel.checkpoint()


TRAFFIC = [pytest.param(t, id=t.value) for t in Traffic]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("traffic", TRAFFIC)
@pytest.mark.parametrize("case", CASES)
async def test_rehandshakes_memory(
    tls_ca: TLSTestCA,
    case: Case,
    traffic: Traffic,
    seed: int,
    autojump_clock: trio.testing.MockClock,
) -> None:
    ours, theirs = trio.testing.memory_stream_pair()
    sleeper = seeded_sleeper(seed, 0.01)
    stream, peer = make_pair(tls_ca, case, ours, sleeper)
    # Virtual time: a deadlock jumps straight to this deadline instead of hanging.
    with trio.fail_after(3600):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(peer.serve, theirs)
            rounds = await exchange_and_check(stream, peer, case, traffic, seed, sleeper)
    assert peer.received == peer.echoed == PAYLOAD_SIZE + rounds


@pytest.mark.parametrize("traffic", TRAFFIC)
@pytest.mark.parametrize("case", CASES)
async def test_rehandshakes_tcp(tls_ca: TLSTestCA, case: Case, traffic: Traffic) -> None:
    with trio.fail_after(30):
        ours, theirs = await loopback_tcp_pair()
        async with trio.open_nursery() as nursery, ours, theirs:
            stream, peer = make_pair(tls_ca, case, ours, checkpoint_only)
            nursery.start_soon(peer.serve, theirs)
            rounds = await exchange_and_check(stream, peer, case, traffic, 7, checkpoint_only)
    assert peer.received == peer.echoed == PAYLOAD_SIZE + rounds
