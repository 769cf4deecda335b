"""Hostile bytes at both ends of an SSLStream: every case must end in a clear error.

What is fed (see :func:`hostile_input`): random garbage; real handshake flights and
application records captured from a live TLS 1.2 / 1.3 session, truncated or with
bits flipped; oversized records; plaintext HTTP; SSLv2- and SSLv3-format
ClientHellos. Three harnesses:

- a server-side and a client-side SSLStream read the hostile bytes from a raw peer
  over a memory transport;
- a real client and server talk through a proxy that corrupts or truncates one
  chunk of their traffic (so live handshake messages and live application records
  are damaged, not only replayed ones);
- a TCP server (``open_ssl_over_tcp_listeners`` under ``trio.serve_listeners``, so
  that the handler sees each failed handshake) receives the bytes over loopback,
  and the process's open file descriptors are counted before and after each case.

Accepted outcomes: ``trio.BrokenResourceError`` whose ``__cause__`` is an
``ssl.SSLError`` (``SSLEOFError`` for truncation included); ``b""`` from
``receive_some`` only where a ragged EOF is clean by contract (``https_compatible``);
intact data where the damage did not matter. Anything else (another exception type,
wrong data, a case that outlives ``CASE_TIMEOUT``) fails the test.

Budget: ``TRIO_TLS_FUZZ_EXAMPLES`` examples per test (default 40, derandomized, for
CI); ``make soak`` raises it and lets Hypothesis pick fresh random seeds. Run
``python tests/test_fuzz.py -runs=N`` for an atheris (libFuzzer) run of the
server-side harness when atheris is installed.
"""

from __future__ import annotations

import gc
import importlib
import os
import ssl
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from trio.abc import HalfCloseableStream, Stream

from trio_tls import SSLStream, open_ssl_over_tcp_listeners
from trio_tls.testing import SERVER_NAME, TLS_VERSIONS, TLSTestCA, TLSVersionName

#: Per test. Small and derandomized in CI (same cases every run); ``make soak`` sets
#: it high and then Hypothesis draws new random cases each time.
FUZZ_EXAMPLES = int(os.environ.get("TRIO_TLS_FUZZ_EXAMPLES", "40"))
FUZZ_SOAK = "TRIO_TLS_FUZZ_EXAMPLES" in os.environ
FUZZ = settings(
    max_examples=FUZZ_EXAMPLES,
    derandomize=not FUZZ_SOAK,
    deadline=None,  # wall-clock per example is bounded by CASE_TIMEOUT instead
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
#: A correct case ends in milliseconds: only a hang gets near this.
CASE_TIMEOUT = 5.0
#: TLS allows 2**14 bytes of plaintext plus 2048 of expansion per record.
MAX_RECORD = 2**14 + 2048

Outcome = Literal["data", "eof", "broken"]


# -- captured real traffic ---------------------------------------------------------


@dataclass(frozen=True)
class Flights:
    """What each side of one real session put on the wire, one entry per flight."""

    client: tuple[bytes, ...]
    server: tuple[bytes, ...]


@dataclass(frozen=True, repr=False)
class FuzzEnv:
    """Contexts and captured sessions shared by every example."""

    client_contexts: dict[str, ssl.SSLContext]
    server_context: ssl.SSLContext
    flights: dict[str, Flights]

    def __repr__(self) -> str:  # Hypothesis prints fixtures in failure reports
        return "FuzzEnv(...)"

    def client(
        self, transport: Stream, version: TLSVersionName, *, https_compatible: bool
    ) -> SSLStream[Stream]:
        return SSLStream[Stream](
            transport,
            self.client_contexts[version],
            server_hostname=SERVER_NAME,
            https_compatible=https_compatible,
        )

    def server(self, transport: Stream, *, https_compatible: bool) -> SSLStream[Stream]:
        return SSLStream[Stream](
            transport, self.server_context, server_side=True, https_compatible=https_compatible
        )


def _pump(src: ssl.MemoryBIO, dst: ssl.MemoryBIO, into: list[bytes]) -> None:
    data = src.read()
    if data:
        into.append(data)
        dst.write(data)


def _step(obj: ssl.SSLObject) -> bool:
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        return False
    return True


def capture_flights(ca: TLSTestCA, version: TLSVersionName) -> Flights:
    """Run one real session with bare SSLObjects and record every flight.

    The last flight of each side is an application data record, so corruption of
    encrypted records is covered as well as of handshake messages.
    """
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = ca.client_context(version=version).wrap_bio(c_in, c_out, server_hostname=SERVER_NAME)
    server = ca.server_context(version=version).wrap_bio(s_in, s_out, server_side=True)
    sent_by_client: list[bytes] = []
    sent_by_server: list[bytes] = []
    client_done = server_done = False
    for _ in range(10):  # a full handshake takes 2 round trips at most
        client_done = _step(client) or client_done
        _pump(c_out, s_in, sent_by_client)
        server_done = _step(server) or server_done
        _pump(s_out, c_in, sent_by_server)
        if client_done and server_done:
            break
    assert client_done, "capture handshake did not finish"
    assert server_done, "capture handshake did not finish"
    client.write(b"GET / HTTP/1.1\r\nHost: trio-tls.example\r\n\r\n")
    _pump(c_out, s_in, sent_by_client)
    server.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    _pump(s_out, c_in, sent_by_server)
    return Flights(tuple(sent_by_client), tuple(sent_by_server))


def make_env(ca: TLSTestCA) -> FuzzEnv:
    return FuzzEnv(
        client_contexts={v: ca.client_context(version=v) for v in TLS_VERSIONS},
        server_context=ca.server_context(),
        flights={v: capture_flights(ca, v) for v in TLS_VERSIONS},
    )


@pytest.fixture(scope="module")
def env(tls_ca: TLSTestCA) -> FuzzEnv:
    return make_env(tls_ca)


# -- hand-made hostile messages ------------------------------------------------------


def sslv2_client_hello(version: bytes = b"\x00\x02") -> bytes:
    """An SSLv2-format CLIENT-HELLO (2-byte header with the high bit set).

    ``version`` 0x0002 is SSL 2.0 itself; 0x0301 is the "SSLv2-compatible" hello
    old clients used to offer TLS 1.0.
    """
    cipher_specs = b"\x01\x00\x80" + b"\x00\x00\x2f"  # RC4_128_WITH_MD5, RSA_AES_128_SHA
    challenge = bytes(range(16))
    body = (
        b"\x01"
        + version
        + len(cipher_specs).to_bytes(2, "big")
        + (0).to_bytes(2, "big")
        + len(challenge).to_bytes(2, "big")
        + cipher_specs
        + challenge
    )
    return (0x8000 | len(body)).to_bytes(2, "big") + body


def legacy_client_hello(version: bytes) -> bytes:
    """A well-formed ClientHello record offering only ``version`` (e.g. SSLv3 0x0300)."""
    hello = (
        version
        + bytes(32)  # random
        + b"\x00"  # no session id
        + (4).to_bytes(2, "big")
        + b"\x00\x2f\x00\x0a"  # RSA_AES_128_CBC_SHA, RSA_3DES_EDE_CBC_SHA
        + b"\x01\x00"  # compression: null
    )
    handshake = b"\x01" + len(hello).to_bytes(3, "big") + hello
    return b"\x16" + version + len(handshake).to_bytes(2, "big") + handshake


SSLV2_HELLO = sslv2_client_hello()
SSLV2_COMPAT_HELLO = sslv2_client_hello(b"\x03\x01")
SSLV3_HELLO = legacy_client_hello(b"\x03\x00")
TLS10_HELLO = legacy_client_hello(b"\x03\x01")
HTTP_REQUEST = b"GET / HTTP/1.1\r\nHost: trio-tls.example\r\nConnection: close\r\n\r\n"
HTTP_RESPONSE = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"


def oversized_record(content_type: int, length: int, filler: int) -> bytes:
    """A record header announcing more than TLS allows, with the whole body."""
    return bytes([content_type, 3, 3]) + length.to_bytes(2, "big") + bytes([filler]) * length


# -- strategies ------------------------------------------------------------------------


@st.composite
def flipped(draw: st.DrawFn, message: bytes) -> bytes:
    data = bytearray(message)
    for _ in range(draw(st.integers(1, 8))):
        position = draw(st.integers(0, len(data) - 1))
        data[position] ^= 1 << draw(st.integers(0, 7))
    return bytes(data)


@st.composite
def truncated(draw: st.DrawFn, message: bytes) -> bytes:
    return message[: draw(st.integers(0, len(message) - 1))]


def hostile_input(flights: list[bytes]) -> st.SearchStrategy[bytes]:
    """Everything a hostile or confused peer might send instead of ``flights``."""
    whole = b"".join(flights)
    real = st.sampled_from([*flights, whole])
    return st.one_of(
        st.binary(min_size=0, max_size=2048),
        real.flatmap(truncated),
        real.flatmap(flipped),
        st.builds(
            oversized_record,
            st.sampled_from([20, 21, 22, 23]),
            st.integers(MAX_RECORD + 1, 0xFFFF),
            st.integers(0, 255),
        ),
        st.sampled_from([HTTP_REQUEST, HTTP_RESPONSE, SSLV2_HELLO, SSLV2_COMPAT_HELLO]),
        st.sampled_from([SSLV3_HELLO, TLS10_HELLO]),
        # A valid start followed by garbage: the failure comes mid-handshake.
        st.tuples(real, st.binary(min_size=1, max_size=512)).map(lambda t: t[0][:200] + t[1]),
    )


def client_bytes(env: FuzzEnv, version: TLSVersionName) -> st.SearchStrategy[bytes]:
    return hostile_input(list(env.flights[version].client))


def server_bytes(env: FuzzEnv, version: TLSVersionName) -> st.SearchStrategy[bytes]:
    return hostile_input(list(env.flights[version].server))


# -- checking one outcome ---------------------------------------------------------------


async def outcome_of(
    operation: Callable[[], Awaitable[bytes | bytearray]], *, https_compatible: bool
) -> Outcome:
    """Run ``operation``; a clear failure, a clean EOF or real data are the only outcomes.

    Any other exception propagates and fails the test.
    """
    failure: trio.BrokenResourceError | None = None
    try:
        data = await operation()
    except trio.BrokenResourceError as exc:
        failure = exc
    if failure is not None:
        cause = failure.__cause__
        assert isinstance(cause, ssl.SSLError), f"unexpected cause {cause!r}"
        return "broken"
    if not data:
        assert https_compatible, "b'' without close_notify is only clean in https_compatible mode"
        return "eof"
    return "data"


async def expect_failure(
    operation: Callable[[], Awaitable[bytes | bytearray]], *, https_compatible: bool
) -> Outcome:
    """Hostile input with no real peer behind it can never produce plaintext."""
    outcome = await outcome_of(operation, https_compatible=https_compatible)
    assert outcome != "data", "hostile input produced plaintext"
    return outcome


async def _assert_closed_by_aclose(stream: SSLStream[Stream]) -> None:
    __tracebackhide__ = True
    await stream.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await stream.transport_stream.send_all(b"x")


async def _feed(
    stream: SSLStream[Stream], raw_peer: HalfCloseableStream, data: bytes, *, https_compatible: bool
) -> Outcome:
    """``stream`` reads ``data`` and then EOF from ``raw_peer``: a clear failure, then
    aclose() closes its transport."""
    await raw_peer.send_all(data)
    await raw_peer.send_eof()
    with trio.fail_after(CASE_TIMEOUT):
        outcome = await expect_failure(stream.receive_some, https_compatible=https_compatible)
        await _assert_closed_by_aclose(stream)
    return outcome


async def feed_server(env: FuzzEnv, data: bytes, *, https_compatible: bool) -> Outcome:
    """A server-side SSLStream reads ``data`` and then EOF from a raw client."""
    transport, raw_client = trio.testing.memory_stream_pair()
    server = env.server(transport, https_compatible=https_compatible)
    return await _feed(server, raw_client, data, https_compatible=https_compatible)


async def feed_client(
    env: FuzzEnv, version: TLSVersionName, data: bytes, *, https_compatible: bool
) -> Outcome:
    """A client-side SSLStream sends its hello and reads ``data`` and EOF back."""
    transport, raw_server = trio.testing.memory_stream_pair()
    client = env.client(transport, version, https_compatible=https_compatible)
    return await _feed(client, raw_server, data, https_compatible=https_compatible)


@FUZZ
@given(data=st.data(), version=st.sampled_from(TLS_VERSIONS), https_compatible=st.booleans())
async def test_server_side_rejects_hostile_bytes(
    env: FuzzEnv, data: st.DataObject, version: TLSVersionName, https_compatible: bool
) -> None:
    payload = data.draw(client_bytes(env, version), label="bytes")
    await feed_server(env, payload, https_compatible=https_compatible)


# The server-side test mirrored: a test of its own, so each side gets its own examples.
@FUZZ
@given(data=st.data(), version=st.sampled_from(TLS_VERSIONS), https_compatible=st.booleans())
async def test_client_side_rejects_hostile_bytes(
    env: FuzzEnv, data: st.DataObject, version: TLSVersionName, https_compatible: bool
) -> None:
    payload = data.draw(server_bytes(env, version), label="bytes")
    await feed_client(env, version, payload, https_compatible=https_compatible)


@pytest.mark.parametrize(
    "message",
    [
        pytest.param(HTTP_REQUEST, id="plaintext_http"),
        pytest.param(SSLV2_HELLO, id="sslv2_hello"),
        pytest.param(SSLV2_COMPAT_HELLO, id="sslv2_compat_hello"),
        pytest.param(SSLV3_HELLO, id="sslv3_hello"),
        pytest.param(TLS10_HELLO, id="tls10_hello"),
        pytest.param(oversized_record(22, 0xFFFF, 0), id="oversized_handshake_record"),
        pytest.param(oversized_record(23, MAX_RECORD + 1, 7), id="oversized_data_record"),
    ],
)
async def test_server_rejects_legacy_and_malformed_hellos(env: FuzzEnv, message: bytes) -> None:
    """Each known-bad opening fails the handshake with an SSLError, in both modes."""
    assert await feed_server(env, message, https_compatible=False) == "broken"
    assert await feed_server(env, message, https_compatible=True) == "broken"


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(HTTP_RESPONSE, id="plaintext_http"),
        pytest.param(SSLV2_HELLO, id="sslv2"),
        pytest.param(SSLV3_HELLO, id="sslv3_record"),
        pytest.param(oversized_record(22, 0xFFFF, 0), id="oversized_record"),
        pytest.param(None, id="replayed_server_flights"),
    ],
)
async def test_client_rejects_malformed_answers(
    env: FuzzEnv, tls_version: TLSVersionName, answer: bytes | None
) -> None:
    """A client answered by something that is not this session's server fails clearly.

    The replayed flights are a real server's, captured from another session: their
    Finished and key exchange cannot match this client's hello.
    """
    message = answer if answer is not None else b"".join(env.flights[tls_version].server)
    assert await feed_client(env, tls_version, message, https_compatible=False) == "broken"
    assert await feed_client(env, tls_version, message, https_compatible=True) == "broken"


# -- live traffic through a corrupting proxy -------------------------------------------------


@dataclass(frozen=True)
class Tamper:
    """Damage to one chunk of live traffic: flip bits, or cut it short and hang up."""

    to_server: bool  # the client-to-server direction, else server-to-client
    chunk: int  # which chunk in that direction (0 = the first flight)
    flips: tuple[tuple[int, int], ...]  # (position modulo the chunk's length, bit)
    cut: int | None  # keep this many bytes (modulo the length), then EOF


tampers = st.builds(
    Tamper,
    to_server=st.booleans(),
    chunk=st.integers(0, 4),
    flips=st.lists(st.tuples(st.integers(0, 2**16), st.integers(0, 7)), max_size=4).map(tuple),
    cut=st.none() | st.integers(0, 2**16),
)


class TamperingProxy:
    """Forwards chunks between two memory transports, damaging one of them.

    Once :meth:`hang_up` is called it sends EOF both ways and discards whatever
    still arrives, so writers never fail on the proxy's side.
    """

    def __init__(self, tamper: Tamper) -> None:
        self.tamper = tamper
        self.hung_up = trio.Event()

    def _damage(self, data: bytes | bytearray) -> tuple[bytes | bytearray, bool]:
        buf = bytearray(data)
        for position, bit in self.tamper.flips:
            buf[position % len(buf)] ^= 1 << bit
        if self.tamper.cut is not None:
            return bytes(buf[: self.tamper.cut % len(buf)]), True
        return bytes(buf), False

    async def forward(
        self, src: HalfCloseableStream, dst: HalfCloseableStream, *, to_server: bool
    ) -> None:
        index = 0
        open_ = True
        while data := await src.receive_some():
            if open_ and self.hung_up.is_set():
                await dst.send_eof()
                open_ = False
            if not open_:
                continue  # discard
            if to_server == self.tamper.to_server and index == self.tamper.chunk:
                data, close = self._damage(data)
            else:
                close = False
            index += 1
            try:
                if data:
                    await dst.send_all(data)
            except trio.BrokenResourceError:
                open_ = False  # that side closed its transport: nothing more to deliver
                continue
            if close:
                await dst.send_eof()
                open_ = False
        if open_:
            await dst.send_eof()

    async def hang_up(self, *ends: HalfCloseableStream) -> None:
        self.hung_up.set()
        for end in ends:
            # Only the sending half: the other task keeps draining what arrives.
            await end.send_eof()


@dataclass
class FlowResult:
    outcome: Outcome | None = None
    received: bytes = b""


async def _exchange(
    stream: SSLStream[Stream],
    payload: bytes,
    result: FlowResult,
    *,
    client: bool,
    https_compatible: bool,
) -> None:
    """Client: send, then read the echo. Server: read, then echo. Records what came."""
    got = bytearray()

    async def receive_all() -> bytes:
        while len(got) < len(payload):
            data = await stream.receive_some()
            if not data:
                return b""
            got.extend(data)
        return bytes(got)

    async def run() -> bytes:
        if client:
            await stream.send_all(payload)
            return await receive_all()
        data = await receive_all()
        if data:
            await stream.send_all(data)
        return data

    try:
        outcome = await outcome_of(run, https_compatible=https_compatible)
    finally:
        result.received = bytes(got)
        await stream.aclose()
    result.outcome = outcome


async def run_through_proxy(
    env: FuzzEnv, version: TLSVersionName, tamper: Tamper, *, https_compatible: bool
) -> tuple[FlowResult, FlowResult]:
    client_transport, proxy_client_end = trio.testing.memory_stream_pair()
    server_transport, proxy_server_end = trio.testing.memory_stream_pair()
    client = env.client(client_transport, version, https_compatible=https_compatible)
    server = env.server(server_transport, https_compatible=https_compatible)
    proxy = TamperingProxy(tamper)
    payload = bytes(range(256)) * 80  # 20 KiB: two records each way
    client_result, server_result = FlowResult(), FlowResult()
    with trio.fail_after(CASE_TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                partial(proxy.forward, proxy_client_end, proxy_server_end, to_server=True)
            )
            nursery.start_soon(
                partial(proxy.forward, proxy_server_end, proxy_client_end, to_server=False)
            )
            async with trio.open_nursery() as flows:
                for stream, result, is_client in (
                    (client, client_result, True),
                    (server, server_result, False),
                ):
                    flows.start_soon(
                        partial(
                            _exchange,
                            stream,
                            payload,
                            result,
                            client=is_client,
                            https_compatible=https_compatible,
                        )
                    )
                # Damage can leave both sides waiting for each other (a corrupted
                # length makes one wait for bytes that never come): that is what a
                # real peer's timeout resolves. Here: once everything is blocked,
                # the proxy hangs up, and both sides must end with a clear outcome.
                await trio.testing.wait_all_tasks_blocked()
                await proxy.hang_up(proxy_client_end, proxy_server_end)
            nursery.cancel_scope.cancel()
    for result in (client_result, server_result):
        # Whatever arrived is a prefix of what was sent: damage is never delivered.
        assert payload.startswith(result.received)
        assert (result.outcome == "data") == (result.received == payload)
    return client_result, server_result


@FUZZ
@given(tamper=tampers, version=st.sampled_from(TLS_VERSIONS), https_compatible=st.booleans())
@example(  # a flipped bit in the first application record
    tamper=Tamper(to_server=True, chunk=2, flips=((100, 3),), cut=None),
    version="1.2",
    https_compatible=False,
)
@example(  # the TLS 1.3 client's Finished, cut short
    tamper=Tamper(to_server=True, chunk=1, flips=(), cut=20),
    version="1.3",
    https_compatible=True,
)
async def test_live_traffic_damage_is_detected(
    env: FuzzEnv, tamper: Tamper, version: TLSVersionName, https_compatible: bool
) -> None:
    await run_through_proxy(env, version, tamper, https_compatible=https_compatible)


async def test_proxy_without_damage_delivers_everything(env: FuzzEnv) -> None:
    """The harness itself: with a no-op tamper both sides see all the data."""
    for version in TLS_VERSIONS:
        no_damage = Tamper(to_server=True, chunk=99, flips=(), cut=None)
        results = await run_through_proxy(env, version, no_damage, https_compatible=False)
        assert [r.outcome for r in results] == ["data", "data"]


async def test_proxy_bit_flip_in_application_record_breaks_both_sides(env: FuzzEnv) -> None:
    """A damaged data record is an integrity failure, never wrong plaintext."""
    for version in TLS_VERSIONS:
        flights = env.flights[version]
        # The client's application record follows its handshake flights.
        chunk = len(flights.client) - 1
        flip = Tamper(to_server=True, chunk=chunk, flips=((40, 0),), cut=None)
        client_result, server_result = await run_through_proxy(
            env, version, flip, https_compatible=False
        )
        assert server_result.outcome == "broken"
        assert server_result.received == b""
        assert client_result.outcome == "broken"


@pytest.mark.parametrize(
    ("version", "echo_chunk"),
    [
        # Server-to-client chunks: TLS 1.2 sends its flight, then ticket + Finished,
        # then the echo; a TLS 1.3 server's tickets wait for its first write and
        # leave together with the echo as its second chunk.
        pytest.param("1.2", 2, id="tls12"),
        pytest.param("1.3", 1, id="tls13"),
    ],
)
async def test_bad_record_after_a_good_one_keeps_the_good_data(
    env: FuzzEnv, version: TLSVersionName, echo_chunk: int
) -> None:
    """One chunk of ciphertext holding a good record and then a corrupted one: the
    reader returns the good record's plaintext, then reports the bad one as
    BrokenResourceError.

    The error is kept for the next read, and its traceback holds the frame of
    ``ssl.SSLObject.read``: an engine that read into a slice of its buffer could not
    resize that buffer while the error lived, and raised ``BufferError: Existing
    exports of data`` from receive_some, losing the good record too.
    """
    # The echo (20 KiB) is two records: 16 KiB, then 4 KiB. 100 bytes before the end
    # of the chunk is inside the second one.
    flip = Tamper(to_server=False, chunk=echo_chunk, flips=((-100, 0),), cut=None)
    client_result, _ = await run_through_proxy(env, version, flip, https_compatible=False)
    assert client_result.outcome == "broken"
    assert len(client_result.received) == 2**14


# -- over real sockets, counting file descriptors -------------------------------------


def open_fds() -> int:
    # tests.helpers.fds.open_fds, repeated: this file also runs as a script (atheris),
    # where the tests package cannot be imported.
    gc.collect()
    return len(os.listdir("/proc/self/fd"))


async def _attack_tcp_server(env: FuzzEnv, data: bytes, https_compatible: bool) -> Outcome:
    outcomes: list[Outcome] = []
    handled = trio.Event()

    async def handler(stream: SSLStream[trio.SocketStream]) -> None:
        try:
            outcomes.append(
                await expect_failure(stream.receive_some, https_compatible=https_compatible)
            )
        finally:
            await stream.aclose()
            handled.set()

    listeners = await open_ssl_over_tcp_listeners(
        0,
        env.server_context,
        host="127.0.0.1",
        https_compatible=https_compatible,
        handshake_timeout=CASE_TIMEOUT,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handler, listeners)
        transport = listeners[0].transport_listener
        assert isinstance(transport, trio.SocketListener)
        port = transport.socket.getsockname()[1]
        attacker = await trio.open_tcp_stream("127.0.0.1", port)
        try:
            # The server may reset us while we write or read: that is its right.
            try:
                await attacker.send_all(data)
                await attacker.send_eof()
                while await attacker.receive_some():
                    pass
            except trio.BrokenResourceError:
                pass
        finally:
            await attacker.aclose()
        with trio.fail_after(CASE_TIMEOUT):
            await handled.wait()
        nursery.cancel_scope.cancel()
    return outcomes[0]


@settings(FUZZ, max_examples=max(FUZZ_EXAMPLES // 2, 10))
@given(data=st.data(), https_compatible=st.booleans())
async def test_tcp_server_rejects_hostile_bytes_without_leaking_fds(
    env: FuzzEnv, data: st.DataObject, https_compatible: bool
) -> None:
    payload = data.draw(client_bytes(env, "1.3"), label="bytes")
    before = open_fds()
    await _attack_tcp_server(env, payload, https_compatible)
    assert open_fds() == before


# -- atheris ---------------------------------------------------------------------------


def _atheris_main(argv: list[str]) -> None:
    """libFuzzer-driven run of the server-side harness (``make soak``).

    OpenSSL is C code that atheris does not instrument, so coverage guidance only
    sees trio_tls's Python; the seeds are the captured flights and hand-made hellos.
    """
    atheris: Any = importlib.import_module("atheris")
    # Coverage feedback for the Python already imported (trio_tls, trio, ssl.py).
    atheris.instrument_all()
    fuzz_env = make_env(TLSTestCA())

    def one_input(data: bytes) -> None:
        https_compatible = bool(data[:1]) and data[0] & 1 == 1
        trio.run(partial(feed_server, fuzz_env, data[1:], https_compatible=https_compatible))

    with tempfile.TemporaryDirectory() as seeds:
        flights = fuzz_env.flights["1.3"].client + fuzz_env.flights["1.2"].client
        for n, seed in enumerate((*flights, HTTP_REQUEST, SSLV2_HELLO, SSLV3_HELLO)):
            with open(os.path.join(seeds, f"seed{n}"), "wb") as f:
                f.write(b"\x00" + seed)
        atheris.Setup([argv[0], *argv[1:], seeds], one_input)
        atheris.Fuzz()


if __name__ == "__main__":
    _atheris_main(sys.argv)
