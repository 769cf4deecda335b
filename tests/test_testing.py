"""trio_tls.testing: certificates, stream pairs, the chaos transport, check_tls_stream."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing
from trio.abc import HalfCloseableStream, Stream

from trio_tls import SSLStream
from trio_tls.testing import (
    CHAOS_SEED_ENV,
    SERVER_NAME,
    TLS_VERSIONS,
    TRANSPORTS,
    ChaosDecision,
    ChaosStream,
    StreamPair,
    TLSTestCA,
    TLSVersionName,
    TransportName,
    _checks,
    chaos_stream_pair,
    check_tls_stream,
    close_pair_forcefully,
    echo_handler,
    handshake_pair,
    open_tls_stream_pair,
    open_tls_tcp_stream_pair,
    open_tls_test_server,
    pin_version,
    replay_seed,
    run_with_seeds,
    tls_lockstep_stream_pair,
    tls_memory_stream_pair,
)

from .helpers.streams import both, receive_exactly

# A message longer than one TLS record (16 KiB of plaintext), sent with one send_all.
BIG_MESSAGE = bytes(range(256)) * 100


async def exchange(pair: StreamPair, payload: bytes = b"ping") -> None:
    """Client to server and back again, checking the data both ways."""
    client, server = pair

    async def serve() -> None:
        data = await receive_exactly(server, len(payload))
        await server.send_all(data[::-1])

    async def ask() -> None:
        await client.send_all(payload)
        assert await receive_exactly(client, len(payload)) == payload[::-1]

    await both(serve, ask)


# -- TLSTestCA ------------------------------------------------------------------------------


@pytest.mark.parametrize("key_type", ["ecdsa", "rsa"])
async def test_ca_contexts_handshake_at_each_pinned_version(
    key_type: str, tls_version: TLSVersionName
) -> None:
    ca = TLSTestCA(key_type=key_type)  # type: ignore[arg-type]
    pair = tls_memory_stream_pair(ca, version=tls_version)
    await exchange(pair)
    client, server = pair
    assert client.version() == server.version() == f"TLSv{tls_version}"
    await close_pair_forcefully(pair)


async def test_pinned_versions_refuse_each_other(tls_ca: TLSTestCA) -> None:
    client, server = tls_memory_stream_pair(
        client_context=tls_ca.client_context(version="1.2"),
        server_context=tls_ca.server_context(version="1.3"),
    )

    async def fails(stream: SSLStream[Stream]) -> None:
        with pytest.raises(trio.BrokenResourceError) as info:
            await stream.do_handshake()
        assert isinstance(info.value.__cause__, ssl.SSLError)

    await both(lambda: fails(client), lambda: fails(server))


async def test_client_certificate_is_presented_on_request(tls_ca: TLSTestCA) -> None:
    client, server = tls_memory_stream_pair(
        client_context=tls_ca.client_context(with_client_cert=True),
        server_context=tls_ca.server_context(require_client_cert=True),
    )
    await handshake_pair(client, server)
    peer = server.getpeercert()
    assert peer is not None
    assert ("email", "client@trio-tls.example") in peer["subjectAltName"]


async def test_alpn_protocols_are_negotiated(tls_ca: TLSTestCA) -> None:
    client, server = tls_memory_stream_pair(
        client_context=tls_ca.client_context(alpn_protocols=["h2", "http/1.1"]),
        server_context=tls_ca.server_context(alpn_protocols=["http/1.1"]),
    )
    await handshake_pair(client, server)
    assert client.selected_alpn_protocol() == server.selected_alpn_protocol() == "http/1.1"


def test_contexts_trust_only_the_test_ca(tls_ca: TLSTestCA) -> None:
    client_context = tls_ca.client_context()
    assert len(client_context.get_ca_certs()) == 1
    assert client_context.verify_mode == ssl.CERT_REQUIRED
    assert client_context.check_hostname
    server_context = tls_ca.server_context()
    assert server_context.verify_mode == ssl.CERT_NONE
    assert tls_ca.server_context(require_client_cert=True).verify_mode == ssl.CERT_REQUIRED
    for context in (client_context, server_context):
        # Otherwise a ragged EOF would read as a clean one and truncation go unnoticed.
        assert not context.options & getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)


def test_ca_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="key_type"):
        TLSTestCA(key_type="dsa")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="hostnames"):
        TLSTestCA(hostnames="localhost")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="hostnames"):
        TLSTestCA(hostnames=())


def test_pin_version(tls_ca: TLSTestCA) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    assert pin_version(context, "1.3") is context
    assert context.minimum_version == context.maximum_version == ssl.TLSVersion.TLSv1_3
    assert pin_version(context, None) is context  # None leaves it alone
    assert context.minimum_version == ssl.TLSVersion.TLSv1_3
    with pytest.raises(ValueError, match="version"):
        pin_version(context, "1.1")  # type: ignore[arg-type]
    assert TLS_VERSIONS == ("1.2", "1.3")


async def test_server_certificate_covers_the_default_hostnames(tls_ca: TLSTestCA) -> None:
    assert SERVER_NAME in tls_ca.hostnames
    for hostname in ("localhost", "127.0.0.1"):
        client_transport, server_transport = trio.testing.memory_stream_pair()
        client = SSLStream(client_transport, tls_ca.client_context(), server_hostname=hostname)
        server = SSLStream(server_transport, tls_ca.server_context(), server_side=True)
        await handshake_pair(client, server)
        await client.aclose()


# -- stream pairs ---------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_pairs_are_connected_client_then_server(
    tls_ca: TLSTestCA, tls_version: TLSVersionName, transport: TransportName
) -> None:
    pair = await open_tls_stream_pair(transport, tls_ca, version=tls_version)
    client, server = pair
    assert isinstance(client, SSLStream)
    assert isinstance(server, SSLStream)
    assert not client.server_side
    assert server.server_side
    assert client.server_hostname == SERVER_NAME
    # Connected but lazy: nothing has been exchanged yet.
    assert client.statistics().handshake_duration is None
    assert client.statistics().wire_bytes_sent == 0
    await exchange(pair, BIG_MESSAGE)
    assert client.version() == f"TLSv{tls_version}"
    await close_pair_forcefully(pair)


async def test_tcp_pair_uses_a_real_loopback_socket(tls_ca: TLSTestCA) -> None:
    pair = await open_tls_tcp_stream_pair(tls_ca)
    client, server = pair
    for stream in pair:
        assert isinstance(stream.transport_stream, trio.SocketStream)
    client_transport = client.transport_stream
    assert isinstance(client_transport, trio.SocketStream)
    assert client_transport.socket.getpeername()[0] == "127.0.0.1"
    await exchange(pair)
    await client.aclose()
    assert await server.receive_some() == b""
    await server.aclose()


def _have_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _have_ipv6_loopback(), reason="this machine has no IPv6 loopback")
async def test_tcp_pair_over_ipv6_loopback(tls_ca: TLSTestCA) -> None:
    pair = await open_tls_tcp_stream_pair(tls_ca, host="::1")
    await exchange(pair)
    await close_pair_forcefully(pair)


async def test_https_compatible_pairs(tls_ca: TLSTestCA) -> None:
    pair = tls_lockstep_stream_pair(tls_ca, https_compatible=True)
    client, server = pair
    await exchange(pair)
    await both(client.aclose, lambda: _expect_eof(server))  # no close_notify: ragged EOF


async def _expect_eof(stream: Stream) -> None:
    assert await stream.receive_some() == b""


async def test_unknown_transport_is_refused(tls_ca: TLSTestCA) -> None:
    with pytest.raises(ValueError, match="transport"):
        await open_tls_stream_pair("udp", tls_ca)  # type: ignore[arg-type]


async def test_pair_without_a_ca_makes_its_own() -> None:
    pair = tls_memory_stream_pair()
    await exchange(pair)


# -- the chaos transport --------------------------------------------------------------------


def _chaos_memory_pair(seed: int) -> tuple[ChaosStream[Stream], ChaosStream[Stream]]:
    return chaos_stream_pair(trio.testing.memory_stream_pair(), seed)


@pytest.mark.parametrize("seed", [0, 1, 2])
async def test_chaos_stream_keeps_the_stream_contract(seed: int) -> None:
    # trio's own conformance checks, over chaos-wrapped memory and lockstep pairs.
    async def maker() -> tuple[HalfCloseableStream, HalfCloseableStream]:
        return _chaos_memory_pair(seed)

    async def clogged() -> tuple[HalfCloseableStream, HalfCloseableStream]:
        return chaos_stream_pair(trio.testing.lockstep_stream_pair(), seed)

    await trio.testing.check_half_closeable_stream(maker, clogged)


async def _chaos_exchange(
    seed: int, writes: list[bytes]
) -> tuple[list[bytes], list[ChaosDecision]]:
    """The chunks the receiver gets for ``writes`` under ``seed``, and the decisions."""
    sender, receiver = _chaos_memory_pair(seed)
    total = sum(map(len, writes))
    chunks: list[bytes] = []

    async def send() -> None:
        for data in writes:
            await sender.send_all(data)

    async def receive() -> None:
        while sum(map(len, chunks)) < total:
            chunks.append(bytes(await receiver.receive_some()))

    await both(send, receive)
    return chunks, receiver.decisions


async def _chunks_seen(seed: int, messages: list[bytes]) -> list[bytes]:
    chunks, _ = await _chaos_exchange(seed, messages)
    return chunks


async def test_chaos_splits_and_coalesces_without_changing_the_bytes() -> None:
    messages = [b"a" * 1000, b"b" * 10, b"c" * 500]
    split = coalesced = False
    for seed in range(20):
        chunks = await _chunks_seen(seed, messages)
        assert b"".join(chunks) == b"".join(messages)
        split |= any(chunk not in messages for chunk in chunks if len(chunk) < 1000)
        coalesced |= any(len(set(chunk)) > 1 for chunk in chunks)
    assert split, "no seed in 20 split a write into several reads"
    assert coalesced, "no seed in 20 delivered two writes in one read"


async def test_chaos_is_reproducible_from_its_seed() -> None:
    messages = [bytes([n]) * (100 * n + 1) for n in range(1, 8)]
    runs = {seed: [await _chunks_seen(seed, messages) for _ in range(3)] for seed in range(6)}
    for first, *again in runs.values():
        assert all(run == first for run in again)
    distinct = {tuple(map(len, first)) for first, *_ in runs.values()}
    assert len(distinct) > 1, "every seed chose the same chunking"


def _records(*body_lengths: int) -> bytes:
    """Bytes framed as TLS application_data records with bodies of these lengths."""
    return b"".join(
        b"\x17\x03\x03" + length.to_bytes(2, "big") + bytes([n % 256]) * length
        for n, length in enumerate(body_lengths)
    )


async def test_chaos_cuts_tls_records_only_at_their_middle_or_end() -> None:
    lengths = (300, 41, 1000, 7, 2000)
    stream = _records(*lengths)
    # Two flights of whole records, as TLS writes them. The places a cut may fall:
    # each record's middle and end.
    allowed: set[int] = set()
    start = 0
    for length in lengths:
        allowed |= {start + (5 + length) // 2, start + 5 + length}
        start += 5 + length
    cuts_seen = 0
    for seed in range(10):
        chunks, decisions = await _chaos_exchange(seed, [stream[:351], stream[351:]])
        assert b"".join(chunks) == stream
        offset = 0
        for chunk in chunks:
            offset += len(chunk)
            assert offset in allowed, f"seed {seed} cut at byte {offset}, inside a record"
        cuts_seen += sum(d.portion.startswith("cut ") for d in decisions)
    assert cuts_seen, "no seed in 10 cut a flight of records"


async def test_chaos_decisions_do_not_depend_on_record_sizes() -> None:
    # The same records, a few bytes longer or shorter (as a new certificate or an
    # ECDSA signature makes them): every seed makes the same decisions.
    for seed in range(10):
        _, first = await _chaos_exchange(seed, [_records(300, 41, 1000), _records(7, 2000)])
        _, second = await _chaos_exchange(seed, [_records(302, 40, 999), _records(9, 1998)])
        assert first == second, f"seed {seed} took another path when sizes changed"
        assert {d.end for d in first} == {"first", "second"}


async def test_chaos_cuts_other_streams_anywhere() -> None:
    # Not TLS records: the cut falls at any byte, as a ReceiveStream may return.
    odd_cuts = 0
    for seed in range(10):
        chunks, decisions = await _chaos_exchange(seed, [b"hello world, " * 50])
        odd_cuts += any(d.portion.endswith(" bytes") for d in decisions)
        assert b"".join(chunks) == b"hello world, " * 50
    assert odd_cuts


REPORT = b"".join(b"line %05d\n" % n for n in range(2000))  # 22 KB: two TLS records


async def _report_run(ca: TLSTestCA, seed: int, version: TLSVersionName) -> tuple[object, ...]:
    """What a request/report exchange under chaos ``seed`` looked like, end to end."""
    client, server = tls_memory_stream_pair(ca, version=version, chaos_seed=seed)
    events: list[str] = []

    async def serve() -> None:
        await server.receive_some()
        events.append("server: request")
        await server.send_all(REPORT)
        await server.aclose()

    async def ask() -> None:
        await client.send_all(b"GET report\n")
        events.append("client: sent")
        async for chunk in client:
            events.append(f"client: {len(chunk)} bytes")

    await both(serve, ask)
    transport = client.transport_stream
    assert isinstance(transport, ChaosStream)
    return tuple(events), tuple(transport.decisions)


async def test_a_seed_replays_the_same_run_with_fresh_certificates() -> None:
    # Each TLSTestCA has new certificates, of slightly different sizes, as each test
    # session does; the handshake's ECDSA signatures vary in size as well. Replay
    # must not notice: same seed, same splits, delays and task switches.
    cas = [TLSTestCA() for _ in range(6)]
    for version in TLS_VERSIONS:
        for seed in (*range(8), 26):
            runs = {await _report_run(ca, seed, version) for ca in cas}
            assert len(runs) == 1, f"TLS {version} seed {seed} took {len(runs)} paths"


async def test_chaos_stream_misuse() -> None:
    first, second = _chaos_memory_pair(0)
    with pytest.raises(ValueError, match="max_bytes"):
        await second.receive_some(0)
    await first.send_all(b"abcdef")
    assert len(await second.receive_some(2)) <= 2
    await first.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await first.send_all(b"x")
    with pytest.raises(trio.ClosedResourceError):
        await first.receive_some()
    assert first.seed == 0
    assert "seed=0" in repr(first)
    send_only, _ = trio.testing.memory_stream_one_way_pair()
    one_way = ChaosStream(send_only, 1)  # type: ignore[type-var]
    with pytest.raises(TypeError, match="HalfCloseableStream"):
        await one_way.send_eof()


def test_replay_seed_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CHAOS_SEED_ENV, raising=False)
    assert replay_seed() is None
    monkeypatch.setenv(CHAOS_SEED_ENV, " 42 ")
    assert replay_seed() == 42
    monkeypatch.setenv(CHAOS_SEED_ENV, "forty-two")
    with pytest.raises(ValueError, match=CHAOS_SEED_ENV):
        replay_seed()


# -- catching an ordering bug -----------------------------------------------------------------


async def users_order_dependent_test(pair: StreamPair) -> None:
    """What a user might write: it assumes one receive_some returns the whole message."""
    client, server = pair
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.send_all, BIG_MESSAGE)
        assert await server.receive_some() == BIG_MESSAGE


async def test_order_dependent_test_passes_without_chaos(
    tls_ca: TLSTestCA, tls_version: TLSVersionName
) -> None:
    # One send_all of two records, one transport write: on the plain memory pair the
    # reader always gets both records at once, so the bug never shows.
    for _ in range(20):
        await users_order_dependent_test(tls_memory_stream_pair(tls_ca, version=tls_version))


async def test_chaos_catches_the_order_dependent_test_and_replays_it(
    tls_ca: TLSTestCA, tls_version: TLSVersionName, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(CHAOS_SEED_ENV, raising=False)
    tried: list[int] = []

    async def under_chaos(seed: int) -> None:
        tried.append(seed)
        pair = tls_memory_stream_pair(tls_ca, version=tls_version, chaos_seed=seed)
        await users_order_dependent_test(pair)

    with pytest.raises(BaseExceptionGroup) as caught:
        await run_with_seeds(under_chaos, seeds=range(16))
    assert caught.group_contains(AssertionError)
    failing = tried[-1]  # run_with_seeds stops at the first failing seed
    notes = getattr(caught.value, "__notes__", [])
    assert any(f"chaos seed {failing}" in note for note in notes)
    assert any(f"{CHAOS_SEED_ENV}={failing}" in note for note in notes)

    # Replaying that seed, through the environment variable, fails again every time.
    monkeypatch.setenv(CHAOS_SEED_ENV, str(failing))
    for _ in range(3):
        tried.clear()
        with pytest.raises(BaseExceptionGroup) as again:
            await run_with_seeds(under_chaos, seeds=range(100))
        assert tried == [failing]
        assert again.group_contains(AssertionError)


async def test_run_with_seeds_runs_every_seed_when_nothing_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(CHAOS_SEED_ENV, raising=False)
    seen: list[int] = []

    async def record(seed: int) -> None:
        await trio.lowlevel.checkpoint()
        seen.append(seed)

    await run_with_seeds(record, seeds=[5, 3, 9])
    assert seen == [5, 3, 9]
    seen.clear()
    await run_with_seeds(record)
    assert seen == list(range(8))


# -- check_tls_stream -----------------------------------------------------------------------


@pytest.mark.parametrize("chaos_seed", [None, 3], ids=["plain", "chaos3"])
async def test_check_tls_stream_passes_over_memory_and_tcp(
    tls_ca: TLSTestCA, tls_version: TLSVersionName, chaos_seed: int | None
) -> None:
    async def memory() -> StreamPair:
        return tls_memory_stream_pair(tls_ca, version=tls_version, chaos_seed=chaos_seed)

    async def clogged() -> StreamPair:
        pair = tls_lockstep_stream_pair(tls_ca, version=tls_version, chaos_seed=chaos_seed)
        await handshake_pair(*pair)
        return pair

    async def tcp() -> StreamPair:
        return await open_tls_tcp_stream_pair(tls_ca, version=tls_version, chaos_seed=chaos_seed)

    await check_tls_stream(memory, clogged)
    await check_tls_stream(tcp)


# Lockstep in a test of its own, under a deadline: the checks must not wait out close bounds.
@pytest.mark.parametrize("chaos_seed", [None, 3], ids=["plain", "chaos3"])
async def test_check_tls_stream_passes_over_lockstep(
    tls_ca: TLSTestCA, tls_version: TLSVersionName, chaos_seed: int | None
) -> None:
    # trio's generic checks close streams nobody reads. On a zero-buffer transport
    # SSLStream.aclose() would wait out its close_notify bound (5 s) twice; the
    # checks instead stop waiting once every task is blocked, so this is quick.
    async def lockstep() -> StreamPair:
        return tls_lockstep_stream_pair(tls_ca, version=tls_version, chaos_seed=chaos_seed)

    with trio.fail_after(4):
        await check_tls_stream(lockstep)


async def test_check_tls_stream_for_https_compatible_pairs(tls_ca: TLSTestCA) -> None:
    async def https() -> StreamPair:
        return await open_tls_tcp_stream_pair(tls_ca, https_compatible=True)

    await check_tls_stream(https, https_compatible=True)
    # The same pairs, described wrongly: the ragged-EOF check notices.
    with pytest.raises(AssertionError, match="ragged EOF must raise BrokenResourceError"):
        await check_tls_stream(https, https_compatible=False)


async def test_check_tls_stream_refuses_swapped_pairs(tls_ca: TLSTestCA) -> None:
    async def swapped() -> StreamPair:
        client, server = tls_memory_stream_pair(tls_ca)
        return server, client

    with pytest.raises(ValueError, match=r"must return \(client, server\), client first"):
        await check_tls_stream(swapped)


async def test_check_tls_stream_refuses_trio_sslstream_pairs_first(tls_ca: TLSTestCA) -> None:
    made: list[trio.SSLStream[Stream]] = []

    async def trio_pair() -> tuple[trio.SSLStream[Stream], trio.SSLStream[Stream]]:
        a, b = trio.testing.memory_stream_pair()
        client = trio.SSLStream[Stream](a, tls_ca.client_context(), server_hostname=SERVER_NAME)
        server = trio.SSLStream[Stream](b, tls_ca.server_context(), server_side=True)
        made.extend((client, server))
        return client, server

    with pytest.raises(TypeError, match=r"must return trio_tls\.SSLStreams") as caught:
        await check_tls_stream(trio_pair)  # type: ignore[arg-type]
    # Before any of trio's checks ran: the first pair was refused, and closed.
    assert len(made) == 2
    assert "trio.SSLStream object" in str(caught.value)
    for stream in made:
        with pytest.raises(trio.ClosedResourceError):
            await stream.send_all(b"x")


async def test_check_tls_stream_refuses_a_bad_check_timeout(tls_ca: TLSTestCA) -> None:
    async def memory() -> StreamPair:
        return tls_memory_stream_pair(tls_ca)

    for bad, error in (
        (0, ValueError),
        (-1.0, ValueError),
        (float("inf"), ValueError),
        (float("nan"), ValueError),
        ("1", TypeError),
        (True, TypeError),
    ):
        with pytest.raises(error, match="check_timeout"):
            await check_tls_stream(memory, check_timeout=bad)  # type: ignore[arg-type]


class _FaultyTransport(HalfCloseableStream):
    """A broken transport: it drops the last byte of every write, or never really closes."""

    def __init__(self, inner: HalfCloseableStream, *, drops_last_byte: bool, closes: bool) -> None:
        self.inner = inner
        self.drops_last_byte = drops_last_byte
        self.closes = closes

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        data = bytes(data)
        await self.inner.send_all(data[:-1] if self.drops_last_byte else data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self.inner.send_eof()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        if self.closes:
            await self.inner.aclose()
        else:
            await trio.lowlevel.checkpoint()


def _faulty_maker(
    ca: TLSTestCA, *, drops_last_byte: bool = False, closes: bool = True
) -> Callable[[], Awaitable[StreamPair]]:
    async def make() -> StreamPair:
        a, b = trio.testing.memory_stream_pair()
        client_transport = _FaultyTransport(a, drops_last_byte=drops_last_byte, closes=closes)
        server_transport = _FaultyTransport(b, drops_last_byte=drops_last_byte, closes=closes)
        return (
            SSLStream[Stream](client_transport, ca.client_context(), server_hostname=SERVER_NAME),
            SSLStream[Stream](server_transport, ca.server_context(), server_side=True),
        )

    return make


@pytest.mark.parametrize(
    ("fault", "waiting_at"),
    [
        pytest.param({"drops_last_byte": True}, "do_receive_some", id="drops_last_byte"),
        pytest.param({"closes": False}, "expect_broken_stream_on_send", id="never_closes"),
    ],
)
async def test_check_tls_stream_fails_fast_on_a_faulty_transport(
    tls_ca: TLSTestCA, fault: dict[str, bool], waiting_at: str
) -> None:
    # trio's generic checks run first; they have a deadline per fresh pair too.
    with trio.fail_after(5), pytest.raises(AssertionError) as caught:
        await check_tls_stream(_faulty_maker(tls_ca, **fault), check_timeout=0.3)
    message = str(caught.value)
    assert "the generic stream checks (trio.testing.check_half_closeable_stream)" in message
    assert "did not finish within 0.3 s" in message
    assert waiting_at in message  # the line it was stuck on: what was expected


async def test_tls_checks_report_a_hang_by_name(tls_ca: TLSTestCA) -> None:
    # The kit's own checks, past trio's: a transport that never closes leaves the
    # peer waiting for the EOF of a ragged close.
    never_closes = _faulty_maker(tls_ca, closes=False)
    with trio.fail_after(5), pytest.raises(AssertionError) as caught:
        await _checks._check_ragged_eof(never_closes, 0.3, https_compatible=False)
    assert "the ragged EOF check did not finish within 0.3 s" in str(caught.value)
    assert "got = await client.receive_some()" in str(caught.value)


# -- the in-process server ----------------------------------------------------------------------


async def test_test_server_echoes(tls_ca: TLSTestCA, tls_version: TLSVersionName) -> None:
    async with open_tls_test_server(ca=tls_ca, version=tls_version) as server:
        assert server.address == ("127.0.0.1", server.port)
        for _ in range(2):
            client = await server.connect()
            await client.send_all(b"hello")
            assert await receive_exactly(client, 5) == b"hello"
            assert client.version() == f"TLSv{tls_version}"
            await client.aclose()
        await server.wait_handled(2)
        assert server.connection_errors == []


async def test_test_server_records_a_rejected_handshake(tls_ca: TLSTestCA) -> None:
    async with open_tls_test_server(
        echo_handler,
        server_context=tls_ca.server_context(require_client_cert=True),
        client_context=tls_ca.client_context(),
    ) as server:
        client = await server.connect()
        await client.do_handshake()  # TLS 1.3: the rejection comes after this
        with pytest.raises(trio.BrokenResourceError):
            await client.receive_some()
        await server.wait_handled(1)
        (error,) = server.connection_errors
        assert isinstance(error, trio.BrokenResourceError)
        assert isinstance(error.__cause__, ssl.SSLError)
        await client.aclose()


async def test_test_server_handler_bug_propagates(tls_ca: TLSTestCA) -> None:
    async def buggy(stream: SSLStream[trio.SocketStream]) -> None:
        await stream.receive_some()
        raise KeyError("handler bug")

    clients: list[SSLStream[trio.SocketStream]] = []

    async def serve_and_poke() -> None:
        async with open_tls_test_server(buggy, ca=tls_ca) as server:
            clients.append(await server.connect())
            await clients[0].send_all(b"x")
            await trio.sleep_forever()  # the handler's crash cancels this

    with pytest.raises(BaseExceptionGroup) as caught:
        await serve_and_poke()
    assert caught.group_contains(KeyError, match="handler bug")
    await trio.aclose_forcefully(clients[0])


# -- packaging ------------------------------------------------------------------------------


def test_testing_package_imports_without_pytest() -> None:
    code = (
        "import sys\n"
        "sys.modules['pytest'] = None  # any import of pytest now fails\n"
        "import trio_tls.testing\n"
        "assert 'trio_tls._pytest_plugin' not in sys.modules\n"
    )
    env = {key: value for key, value in os.environ.items() if key != "PYTEST_ADDOPTS"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)
