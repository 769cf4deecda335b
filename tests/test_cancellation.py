"""Cancellation at every checkpoint of every public SSLStream operation.

How "every checkpoint" is reached: :class:`_CancelAtStep` is a trio instrument that
counts the schedule points of the task running the operation (``after_task_step``
fires each time that task yields to the scheduler) and cancels the operation's scope
right after the k-th one. The sweep runs the whole scenario again, on a fresh pair,
for k = 1, 2, ... until the operation completes without being cancelled, so each
yield the operation makes is hit once. Everything is deterministic: memory and
lockstep transports, no clock.

After each cancellation the scenario asserts:

- the stream is either usable (a full round trip works and the data is intact) or
  reports itself broken: every later call raises ``trio.BrokenResourceError``;
- no task hangs: the peer task must finish by itself once we close, and every case
  runs under ``fail_after``;
- ``aclose()`` closes the transport, even when ``aclose()`` itself is cancelled;
- data that ``receive_some`` returned is never returned twice nor lost.

Single, hand-picked cancellations are in test_stream.py.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Awaitable, Callable
from typing import cast

import pytest
import trio
import trio.testing
from trio.abc import Stream

from trio_tls import SSLStream
from trio_tls.testing import (
    StreamPair,
    TLSTestCA,
    TLSVersionName,
    TransportName,
    handshake_pair,
    open_tls_stream_pair,
    tls_memory_stream_pair,
)

from .helpers.contexts import post_handshake_auth_contexts

#: Runs one scenario with the operation cancelled after its k-th schedule point and
#: returns True when the operation completed anyway (the sweep is then over).
Scenario = Callable[["PairMaker", "CancelAt"], Awaitable[bool]]
PairMaker = Callable[[], Awaitable[StreamPair]]
CancelAt = Callable[[Callable[[], Awaitable[object]]], Awaitable[bool]]

#: No operation here yields more than ~60 times; 200 bounds a runaway sweep.
MAX_STEPS = 200
#: Per scenario; a correct one takes milliseconds, so only a hang gets near this.
CASE_TIMEOUT = 10.0
#: Spans several TLS records (16 KiB each) in both directions.
PAYLOAD_SIZE = 40_000
#: Above SEND_CHUNK (256 KiB), so send_all's chunking loop is cancelled too.
BIG_PAYLOAD_SIZE = 300_000


class _CancelAtStep(trio.abc.Instrument):
    """Cancels ``scope`` right after ``task`` has yielded for the ``k``-th time."""

    def __init__(self, task: trio.lowlevel.Task, k: int, scope: trio.CancelScope) -> None:
        self.task = task
        self.k = k
        self.scope = scope
        self.steps = 0

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is self.task:
            self.steps += 1
            if self.steps == self.k:
                self.scope.cancel()


def _cancel_at(k: int) -> CancelAt:
    async def run(operation: Callable[[], Awaitable[object]]) -> bool:
        scope = trio.CancelScope()
        instrument = _CancelAtStep(trio.lowlevel.current_task(), k, scope)
        trio.lowlevel.add_instrument(instrument)
        try:
            with scope:
                await operation()
        finally:
            trio.lowlevel.remove_instrument(instrument)
        return not scope.cancelled_caught

    return run


def _payload(size: int, seed: int = 0) -> bytes:
    """Deterministic, position-dependent bytes: a duplicate or a gap changes them."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


async def _peer(operation: Callable[[], Awaitable[object]]) -> None:
    """Run the peer's side; it may see our side break, and nothing else."""
    with contextlib.suppress(trio.BrokenResourceError):
        await operation()


async def _receive_until_eof(stream: SSLStream[Stream], into: bytearray) -> None:
    while data := await stream.receive_some():
        into += data


async def _receive_into(stream: SSLStream[Stream], size: int, into: bytearray) -> None:
    """Read until ``into`` holds ``size`` bytes. ``into`` is the caller's, so what a
    cancelled call had read stays there, and a second call carries on from it."""
    while len(into) < size:
        data = await stream.receive_some()
        assert data, "EOF before all the data arrived"
        into += data


async def _is_broken(stream: SSLStream[Stream], *, receiver_busy: bool = False) -> bool:
    """Probe once; if broken, check that every later call says so too.

    ``receiver_busy``: another task is inside receive_some, so the receiving calls
    would (rightly) raise BusyResourceError and are left out.
    """
    try:
        await stream.do_handshake()
    except trio.BrokenResourceError:
        await _assert_broken_everywhere(stream, receiver_busy=receiver_busy)
        return True
    return False


async def _assert_broken_everywhere(stream: SSLStream[Stream], *, receiver_busy: bool) -> None:
    __tracebackhide__ = True
    calls: list[Callable[[], Awaitable[object]]] = [
        stream.do_handshake,
        lambda: stream.send_all(b"late"),
        stream.wait_send_all_might_not_block,
        stream.send_eof,
    ]
    if not receiver_busy:
        calls += [stream.receive_some, stream.unwrap]
    for call in calls:
        with pytest.raises(trio.BrokenResourceError):
            await call()


async def _assert_aclose_closes_transport(
    stream: SSLStream[Stream], idle_peer: SSLStream[Stream] | None = None
) -> None:
    """``idle_peer``: a peer no task is reading from; it reads our close_notify here,
    or on a lockstep transport aclose() would wait out its send bound."""
    __tracebackhide__ = True
    async with trio.open_nursery() as nursery:
        if idle_peer is not None:
            nursery.start_soon(_peer, lambda: _receive_until_eof(idle_peer, bytearray()))
        await stream.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await stream.transport_stream.send_all(b"x")
    with pytest.raises(trio.ClosedResourceError):
        await stream.send_all(b"x")


async def _ended_broken(stream: SSLStream[Stream], completed: bool) -> bool:
    """True if the cancelled operation left ``stream`` broken, after checking that it
    was indeed cut short and that aclose() still closes the transport."""
    if not await _is_broken(stream):
        return False
    assert not completed
    await _assert_aclose_closes_transport(stream)
    return True


async def _round_trip(client: SSLStream[Stream], server: SSLStream[Stream]) -> None:
    """Both directions carry data intact: the stream is usable."""
    got_by_server, got_by_client = bytearray(), bytearray()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.send_all, b"ping")
        nursery.start_soon(_receive_into, server, 4, got_by_server)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.send_all, b"pong")
        nursery.start_soon(_receive_into, client, 4, got_by_client)
    assert (bytes(got_by_server), bytes(got_by_client)) == (b"ping", b"pong")


# -- the scenarios: one per public operation ------------------------------------------


async def _handshake_scenario(make: PairMaker, cancel_at: CancelAt, *, client_side: bool) -> bool:
    client, server = await make()
    ours, theirs = (client, server) if client_side else (server, client)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_peer, theirs.do_handshake)
        completed = await cancel_at(ours.do_handshake)
        # If broken: closing our transport must end the peer's handshake, no task hangs.
        if await _ended_broken(ours, completed):
            return completed
    await _round_trip(client, server)
    await _assert_aclose_closes_transport(ours, theirs)
    return completed


# Each variant is a function of its own: its name is the scenario's test id.
async def handshake_client(make: PairMaker, cancel_at: CancelAt) -> bool:
    return await _handshake_scenario(make, cancel_at, client_side=True)


async def handshake_server(make: PairMaker, cancel_at: CancelAt) -> bool:
    return await _handshake_scenario(make, cancel_at, client_side=False)


async def implicit_handshake_two_tasks(make: PairMaker, cancel_at: CancelAt) -> bool:
    """send_all starts the lazy handshake while receive_some waits for it.

    Cancelling the handshaking task must not leave the waiting task hanging: it
    gets BrokenResourceError, or its data if the handshake had finished.
    """
    client, server = await make()
    received = bytearray()
    outcome: list[type[BaseException] | None] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_peer, lambda: _echo_once(server))
        async with trio.open_nursery() as inner:
            inner.start_soon(_outcome_of, lambda: _receive_into(client, 4, received), outcome)
            await trio.testing.wait_all_tasks_blocked()
            completed = await cancel_at(lambda: client.send_all(b"echo"))
            broken = await _is_broken(client, receiver_busy=True)
            if broken:
                # The waiter ends by itself if the handshake failed; if the send broke
                # the stream after the handshake, closing it ends the waiter.
                await _assert_aclose_closes_transport(client)
    if broken:
        assert not completed
        # The waiter got its echo (the cancellation hit after the data went out),
        # or learned that the stream broke; it never hangs.
        assert outcome in ([None], [trio.BrokenResourceError], [trio.ClosedResourceError])
        if outcome == [None]:
            assert received == b"echo"
        return completed
    assert outcome == [None]
    assert received == b"echo"
    await _assert_aclose_closes_transport(client, server)
    return completed


async def _outcome_of(
    operation: Callable[[], Awaitable[object]], into: list[type[BaseException] | None]
) -> None:
    try:
        await operation()
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        into.append(type(exc))
    else:
        into.append(None)


async def _echo_once(stream: SSLStream[Stream]) -> None:
    data = bytearray()
    while len(data) < 4:
        chunk = await stream.receive_some()
        if not chunk:
            return  # https_compatible: the client's ragged EOF reads as a clean end
        data += chunk
    await stream.send_all(data)


async def receive_some(make: PairMaker, cancel_at: CancelAt) -> bool:
    """Cancelled after the handshake, receive_some loses and repeats nothing."""
    client, server = await make()
    await handshake_pair(client, server)
    payload = _payload(PAYLOAD_SIZE)
    got = bytearray()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.send_all, payload)
        completed = await cancel_at(lambda: _receive_into(client, len(payload), got))
        # Not broken, by contract: carry on from where the cancellation hit.
        await _receive_into(client, len(payload), got)
    assert got == payload
    await _round_trip(client, server)
    await _assert_aclose_closes_transport(client, server)
    return completed


async def _send_scenario(make: PairMaker, cancel_at: CancelAt, size: int) -> bool:
    client, server = await make()
    await handshake_pair(client, server)
    payload = _payload(size, seed=size)
    seen = bytearray()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_peer, lambda: _receive_until_eof(server, seen))
        completed = await cancel_at(lambda: client.send_all(payload))
        broken = await _is_broken(client)
        if not broken:
            await client.send_all(b"END")
        await _assert_aclose_closes_transport(client)
    await trio.aclose_forcefully(server)
    if broken:
        # Documented: an unknown part went out. It must be a prefix, never garbage.
        assert not completed
        assert payload.startswith(seen)
    elif completed:
        assert seen == payload + b"END"
    else:
        assert seen == b"END", "cancelled, not broken, yet some data went out"
    return completed


# Each variant is a function of its own: its name is the scenario's test id.
async def send_all(make: PairMaker, cancel_at: CancelAt) -> bool:
    return await _send_scenario(make, cancel_at, PAYLOAD_SIZE)


async def send_all_chunked(make: PairMaker, cancel_at: CancelAt) -> bool:
    return await _send_scenario(make, cancel_at, BIG_PAYLOAD_SIZE)


async def wait_send_all_might_not_block(make: PairMaker, cancel_at: CancelAt) -> bool:
    client, server = await make()
    await handshake_pair(client, server)
    got = bytearray()
    async with trio.open_nursery() as nursery:
        # A receiving peer is what unblocks the wait on a lockstep transport.
        nursery.start_soon(_receive_into, server, 4, got)
        completed = await cancel_at(client.wait_send_all_might_not_block)
        assert not await _is_broken(client), "a cancelled wait must not break the stream"
        await client.send_all(b"more")
    assert got == b"more"
    await _assert_aclose_closes_transport(client, server)
    return completed


async def send_eof(make: PairMaker, cancel_at: CancelAt) -> bool:
    client, server = await make()
    await handshake_pair(client, server)
    seen = bytearray()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_peer, lambda: _receive_until_eof(server, seen))
        completed = await cancel_at(client.send_eof)
        if await _ended_broken(client, completed):
            return completed
        await client.send_eof()  # finishes the job, or does nothing the second time
    assert seen == b""
    # Half-closed: the other direction still works.
    got = bytearray()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.send_all, b"after")
        nursery.start_soon(_receive_into, client, 5, got)
    assert got == b"after"
    await _assert_aclose_closes_transport(client)
    return completed


async def unwrap(make: PairMaker, cancel_at: CancelAt) -> bool:
    client, server = await make()
    await handshake_pair(client, server)
    async with trio.open_nursery() as nursery:
        # The peer answers our close_notify; unwrapping at the same moment on both
        # sides would deadlock a zero-buffer transport (both send before reading).
        nursery.start_soon(_peer, lambda: _answer_close_notify(server))
        transport, server_transport = client.transport_stream, server.transport_stream
        completed = await cancel_at(client.unwrap)
        if not completed:
            assert await _is_broken(client), "a cancelled unwrap must leave the stream broken"
            await _assert_aclose_closes_transport(client)
            return completed
    # The plain transport is handed back intact: raw bytes still flow both ways.
    assert cast(object, client.transport_stream) is None, (
        "after unwrap() the caller owns the transport"
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(transport.send_all, b"raw")
        assert await server_transport.receive_some() == b"raw"
    # The transport now belongs to the caller: aclose() leaves it alone.
    await client.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await client.send_all(b"x")
    await transport.aclose()
    return completed


async def _answer_close_notify(stream: SSLStream[Stream]) -> None:
    await _receive_until_eof(stream, bytearray())
    await stream.unwrap()


async def _aclose_scenario(make: PairMaker, cancel_at: CancelAt, *, handshake: bool) -> bool:
    client, server = await make()
    if handshake:
        await handshake_pair(client, server)
    seen = bytearray()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_peer, lambda: _receive_until_eof(server, seen))
        completed = await cancel_at(client.aclose)
        # Whatever happened, the transport is closed: the peer must see the end.
        with pytest.raises(trio.ClosedResourceError):
            await client.transport_stream.send_all(b"x")
    assert seen == b""
    await _assert_aclose_closes_transport(client)  # a second aclose is harmless
    return completed


# Each variant is a function of its own: its name is the scenario's test id.
async def aclose(make: PairMaker, cancel_at: CancelAt) -> bool:
    return await _aclose_scenario(make, cancel_at, handshake=True)


async def aclose_before_handshake(make: PairMaker, cancel_at: CancelAt) -> bool:
    return await _aclose_scenario(make, cancel_at, handshake=False)


async def resumable_session(make: PairMaker, cancel_at: CancelAt) -> bool:
    """Waiting for the session ticket reads ahead; the data it read must survive."""
    client, server = await make()
    await handshake_pair(client, server)
    payload = _payload(PAYLOAD_SIZE, seed=7)
    got = bytearray()
    async with trio.open_nursery() as nursery:
        # A trio_tls server sends its TLS 1.3 tickets with its first write.
        nursery.start_soon(server.send_all, payload)
        completed = await cancel_at(client.resumable_session)
        assert not await _is_broken(client), "a cancelled read-ahead must not break the stream"
        session = await client.resumable_session()
        assert session.has_ticket
        await _receive_into(client, len(payload), got)
    assert got == payload
    await _assert_aclose_closes_transport(client, server)
    return completed


SCENARIOS: list[Scenario] = [
    handshake_client,
    handshake_server,
    implicit_handshake_two_tasks,
    receive_some,
    send_all,
    send_all_chunked,
    wait_send_all_might_not_block,
    resumable_session,
    send_eof,
    unwrap,
    aclose,
    aclose_before_handshake,
]


def _pair_maker(
    ca: TLSTestCA, transport: TransportName, version: TLSVersionName, https_compatible: bool
) -> PairMaker:
    client_ctx = ca.client_context(version=version)
    server_ctx = ca.server_context(version=version)

    async def make() -> StreamPair:
        pair = await open_tls_stream_pair(
            transport,
            client_context=client_ctx,
            server_context=server_ctx,
            https_compatible=https_compatible,
        )
        return await _warmed_up(pair) if transport == "tcp" else pair

    return make


#: Sent once before a TCP scenario: Linux grows a connection's socket buffers as it
#: carries data, and only then does the kernel take a whole SEND_CHUNK without a wait.
WARM_UP_SIZE = 4 * 1024 * 1024


async def _warmed_up(pair: StreamPair) -> StreamPair:
    client, server = pair
    await handshake_pair(client, server)
    got = bytearray()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.send_all, bytes(WARM_UP_SIZE))
        await _receive_into(server, WARM_UP_SIZE, got)
    return pair


async def sweep(scenario: Scenario, make: PairMaker) -> int:
    """Cancel at k = 1, 2, ... until the operation completes; return that k."""
    for k in range(1, MAX_STEPS + 1):
        with trio.fail_after(CASE_TIMEOUT):
            if await scenario(make, _cancel_at(k)):
                return k
    pytest.fail(f"{scenario.__name__} still cancelled after {MAX_STEPS} schedule points")


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
@pytest.mark.parametrize("transport", ["memory", "lockstep"])
@pytest.mark.parametrize("https_compatible", [False, True], ids=["standard", "https"])
async def test_cancel_at_every_checkpoint(
    scenario: Scenario,
    transport: TransportName,
    tls_version: TLSVersionName,
    https_compatible: bool,
    tls_ca: TLSTestCA,
) -> None:
    make = _pair_maker(tls_ca, transport, tls_version, https_compatible)
    points = await sweep(scenario, make)
    # The operation yielded at least once, so at least one cancellation was tested.
    assert points >= 2
    # Counted for notes/reliability.md: pytest -s tests/test_cancellation.py | grep points
    print(f"cancellation points: {points - 1}")


@pytest.mark.parametrize("scenario", [send_all, send_all_chunked], ids=lambda s: s.__name__)
async def test_cancel_sends_at_every_checkpoint_over_tcp(
    scenario: Scenario, tls_version: TLSVersionName, tls_ca: TLSTestCA
) -> None:
    """Over a socket the kernel usually takes a whole chunk without a wait, so send_all
    yields between chunks on its own, and a cancellation there must break the stream
    as surely as one inside a transport send (memory streams always wait inside)."""
    points = await sweep(scenario, _pair_maker(tls_ca, "tcp", tls_version, False))
    # A multi-chunk send yields at least between its chunks (and at its end).
    assert points > (1 if scenario is send_all_chunked else 0)
    print(f"cancellation points: {points - 1}")


async def test_instrument_cancels_at_the_requested_step() -> None:
    """The harness itself: cancelling after step k leaves exactly k steps done."""
    steps_done = 0

    async def three_checkpoints() -> None:
        nonlocal steps_done
        for _ in range(3):
            await trio.lowlevel.checkpoint()
            steps_done += 1

    for k in (1, 2, 3):
        steps_done = 0
        assert not await _cancel_at(k)(three_checkpoints)
        assert steps_done == k - 1
    steps_done = 0
    assert await _cancel_at(4)(three_checkpoints)
    assert steps_done == 3


async def test_unwrap_cancelled_after_close_notify_reports_broken(tls_ca: TLSTestCA) -> None:
    """unwrap() cancelled while it waits for the peer's close_notify leaves the stream
    broken, as its other cancellation points do. Our close_notify is already out, so
    the TLS connection cannot carry data any more; a stream still "open" would accept
    do_handshake() and then fail send_all() with an SSLError that blames the peer."""
    client, server = tls_memory_stream_pair(
        client_context=tls_ca.client_context(), server_context=tls_ca.server_context()
    )
    await handshake_pair(client, server)
    with trio.move_on_after(0.05) as scope:
        await client.unwrap()  # the peer never answers: blocks after sending
    assert scope.cancelled_caught
    assert await server.receive_some() == b"", "our close_notify did go out"
    await _assert_broken_everywhere(client, receiver_busy=False)
    await _assert_aclose_closes_transport(client)


def _pha_pair_maker(ca: TLSTestCA, transport: TransportName, https_compatible: bool) -> PairMaker:
    client_ctx, server_ctx = post_handshake_auth_contexts(ca)

    async def make() -> StreamPair:
        return await open_tls_stream_pair(
            transport,
            client_context=client_ctx,
            server_context=server_ctx,
            https_compatible=https_compatible,
        )

    return make


async def verify_client_post_handshake(make: PairMaker, cancel_at: CancelAt) -> bool:
    """TLS 1.3 post-handshake auth, cancelled on the server while the client reads."""
    client, server = await make()
    await handshake_pair(client, server)
    seen_by_client = bytearray()
    async with trio.open_nursery() as nursery:
        # The client answers the CertificateRequest while it reads.
        nursery.start_soon(_peer, lambda: _receive_until_eof(client, seen_by_client))
        completed = await cancel_at(server.verify_client_post_handshake)
        if await _ended_broken(server, completed):
            return completed
        if completed:
            assert server.getpeercert() is not None
        # Usable: both directions carry intact data (the client's reader is running).
        got = bytearray()
        async with trio.open_nursery() as both:
            both.start_soon(client.send_all, b"ping")
            both.start_soon(_receive_into, server, 4, got)
        await server.send_all(b"pong")
        await _assert_aclose_closes_transport(server)
    assert got == b"ping"
    assert seen_by_client == b"pong"
    return completed


@pytest.mark.parametrize("transport", ["memory", "lockstep"])
@pytest.mark.parametrize("https_compatible", [False, True], ids=["standard", "https"])
async def test_cancel_post_handshake_auth_at_every_checkpoint(
    transport: TransportName, https_compatible: bool, tls_ca: TLSTestCA
) -> None:
    """Post-handshake auth exists only in TLS 1.3, hence its own test."""
    make = _pha_pair_maker(tls_ca, transport, https_compatible)
    points = await sweep(verify_client_post_handshake, make)
    assert points >= 2
    print(f"cancellation points: {points - 1}")
