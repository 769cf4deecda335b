"""SSLStream behaviour: trio's semantics, the places trio_tls fixes, every error path.

Features with a module of their own: test_statistics.py, test_session_resumption.py,
test_post_handshake_auth.py; cancellation at every checkpoint: test_cancellation.py.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from functools import partial
from typing import cast

import pytest
import trio
import trio.testing
from trio.abc import Stream
from trio.testing import assert_checkpoints

from trio_tls import NeedHandshakeError, SSLStream
from trio_tls._closing import CLOSE_NOTIFY_SEND_TIMEOUT
from trio_tls._engine import _is_eof
from trio_tls.testing import (
    SERVER_NAME,
    StreamPair,
    TLSTestCA,
    TLSVersionName,
    handshake_pair,
    tls_lockstep_stream_pair,
    tls_memory_stream_pair,
)

from .helpers.streams import MEMORY_AND_TCP, Transports, handshaken_pair, receive_to_eof


async def expect_broken(
    call: Callable[[], Awaitable[object]], cause: type[BaseException] | None = None
) -> trio.BrokenResourceError:
    with pytest.raises(trio.BrokenResourceError) as info:
        await call()
    if cause is not None:
        assert isinstance(info.value.__cause__, cause), repr(info.value.__cause__)
    return info.value


def untrusted_pair(ca: TLSTestCA, version: TLSVersionName) -> StreamPair:
    """A client that trusts some other CA: its handshake must fail verification."""
    return tls_memory_stream_pair(
        client_context=TLSTestCA().client_context(version=version),
        server_context=ca.server_context(version=version),
    )


# -- a failed handshake ----------------------------------------------------------------


async def test_every_task_waiting_for_a_failed_lazy_handshake_gets_the_failure(
    tls_ca: TLSTestCA, tls_version: TLSVersionName
) -> None:
    """Every task waiting for the lazy handshake gets its failure; none is left
    hanging (trio leaves the second task waiting forever)."""
    client, server = untrusted_pair(tls_ca, tls_version)
    causes: list[BaseException | None] = []

    async def use(call: Callable[[], Awaitable[object]]) -> None:
        with pytest.raises(trio.BrokenResourceError) as info:
            await call()
        causes.append(info.value.__cause__)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(use, lambda: client.send_all(b"hello"))
            nursery.start_soon(use, client.receive_some)
            nursery.start_soon(use, client.do_handshake)
            nursery.start_soon(use, server.receive_some)
    client_causes = causes[:2] + causes[3:]
    assert len(causes) == 4
    assert sum(isinstance(c, ssl.SSLCertVerificationError) for c in causes) == 3
    assert all(isinstance(c, ssl.SSLError) for c in client_causes)


async def test_fatal_alert_reaches_the_peer_before_the_error_is_raised(
    tls_ca: TLSTestCA, tls_version: TLSVersionName
) -> None:
    """The client sends its fatal alert before raising, so the server learns *why*
    (an alert), not just that the client went away (a bare EOF)."""
    client, server = untrusted_pair(tls_ca, tls_version)
    server_error: list[trio.BrokenResourceError] = []

    async def server_side() -> None:
        server_error.append(await expect_broken(server.do_handshake))

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server_side)
            await expect_broken(client.do_handshake, ssl.SSLCertVerificationError)
            await client.aclose()  # closes the transport: without the alert, an EOF
    cause = server_error[0].__cause__
    assert isinstance(cause, ssl.SSLError)
    assert not _is_eof(cause) and not isinstance(cause, ssl.SSLSyscallError)


async def test_tls13_client_certificate_rejection_surfaces_as_an_alert(tls_ca: TLSTestCA) -> None:
    """TLS 1.3: the client's handshake succeeds, its first read gets the server's alert."""
    client, server = tls_memory_stream_pair(
        client_context=tls_ca.client_context(version="1.3"),
        server_context=tls_ca.server_context(version="1.3", require_client_cert=True),
    )
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(expect_broken, server.do_handshake, ssl.SSLError)
            await client.do_handshake()
            error = await expect_broken(client.receive_some, ssl.SSLError)
    assert not _is_eof(error.__cause__)


# -- session tickets -------------------------------------------------------------------


async def test_tls13_tickets_do_not_deadlock_a_lockstep_transport(tls_ca: TLSTestCA) -> None:
    """The client writes right after its handshake, while the TLS 1.3 server still
    owes it tickets: on a zero-buffer transport that must not deadlock (anyio's does)."""
    client, server = tls_lockstep_stream_pair(tls_ca, version="1.3")
    payload = b"x" * 100_000
    received = bytearray()

    async def serve() -> None:
        await server.do_handshake()
        while len(received) < len(payload):
            received.extend(await server.receive_some())

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve)
            await client.do_handshake()
            await client.send_all(payload)
    assert received == payload


@pytest.mark.parametrize("https_compatible", [False, True], ids=["standard", "https"])
async def test_tickets_reach_a_client_even_if_the_server_never_writes(
    tls_ca: TLSTestCA, https_compatible: bool
) -> None:
    """A TLS 1.3 server that closes without writing still delivers its tickets
    (trio drops them with https_compatible=True)."""
    client, server = tls_memory_stream_pair(
        tls_ca, version="1.3", https_compatible=https_compatible
    )
    with trio.fail_after(5):
        await handshake_pair(client, server)
        await client.send_all(b"request")
        assert await server.receive_some() == b"request"
        await server.aclose()
        assert await client.receive_some() == b""
    session = client.session
    assert session is not None and session.has_ticket


# -- drop-in API surface ---------------------------------------------------------------

AFTER_HANDSHAKE: list[Callable[[SSLStream[Stream]], object]] = [
    lambda s: s.version(),
    lambda s: s.cipher(),
    lambda s: s.getpeercert(),
    lambda s: s.getpeercert(binary_form=True),
    lambda s: s.selected_alpn_protocol(),
    lambda s: s.shared_ciphers(),
    lambda s: s.compression(),
    lambda s: s.get_channel_binding(),
    lambda s: s.session_reused,
]


@pytest.mark.parametrize("read", AFTER_HANDSHAKE)
async def test_need_handshake_error_before_and_answers_after(
    tls_ca: TLSTestCA, tls_version: TLSVersionName, read: Callable[[SSLStream[Stream]], object]
) -> None:
    client, server = tls_memory_stream_pair(tls_ca, version=tls_version)
    with pytest.raises(NeedHandshakeError):
        read(client)
    with pytest.raises(trio.NeedHandshakeError):  # trio's own except clauses still match
        read(server)
    await handshake_pair(client, server)
    read(client)
    read(server)


async def test_forwarded_attributes(tls_ca: TLSTestCA, tls_version: TLSVersionName) -> None:
    client, server = tls_memory_stream_pair(tls_ca, version=tls_version)
    assert client.server_hostname == SERVER_NAME and server.server_hostname is None
    assert not client.server_side and server.server_side
    assert client.pending() == 0
    for name in ("context", "session", "version", "cipher", "getpeercert", "pending"):
        assert name in dir(client)
    with pytest.raises(AttributeError):
        client.no_such_attribute  # type: ignore[attr-defined]  # noqa: B018
    other = tls_ca.client_context(version=tls_version)
    client.context = other
    assert client.context is other
    await handshake_pair(client, server)
    assert client.version() == f"TLSv{tls_version}"
    peer = client.getpeercert()
    assert peer is not None and ("DNS", SERVER_NAME) in peer["subjectAltName"]
    assert client.session_reused is False


def test_unicode_server_hostname_is_idna_2008_encoded(tls_ca: TLSTestCA) -> None:
    client = SSLStream(
        trio.testing.memory_stream_pair()[0],
        tls_ca.client_context(),
        server_hostname="bücher.example",
    )
    assert client.server_hostname == "xn--bcher-kva.example"


# -- misuse ----------------------------------------------------------------------------


async def test_max_bytes_must_be_positive(tls_ca: TLSTestCA) -> None:
    client, _ = tls_memory_stream_pair(tls_ca)
    with pytest.raises(ValueError, match="max_bytes"):
        await client.receive_some(0)
    with pytest.raises(TypeError):
        await client.receive_some(1.5)  # type: ignore[arg-type]


async def test_two_senders_or_two_receivers_are_busy(
    tls_ca: TLSTestCA, tls_version: TLSVersionName
) -> None:
    for use_send in (True, False):
        # A conflict cancels the other call, which breaks the stream: fresh pair each time.
        client, server = tls_lockstep_stream_pair(tls_ca, version=tls_version)
        await handshake_pair(client, server)
        call = partial(client.send_all, b"x" * 10) if use_send else client.receive_some
        with pytest.RaisesGroup(
            trio.BusyResourceError, allow_unwrapped=True, flatten_subgroups=True
        ):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(call)
                nursery.start_soon(call)


async def test_use_after_close_is_closed_resource_error(
    tls_ca: TLSTestCA, tls_version: TLSVersionName
) -> None:
    client, server = tls_memory_stream_pair(tls_ca, version=tls_version)
    await handshake_pair(client, server)
    await client.aclose()
    for call in (
        client.do_handshake,
        client.receive_some,
        lambda: client.send_all(b"x"),
        client.wait_send_all_might_not_block,
        client.unwrap,
    ):
        with pytest.raises(trio.ClosedResourceError):
            await call()
    with assert_checkpoints():
        await client.aclose()  # closing twice is fine


# -- cancellation ----------------------------------------------------------------------


async def test_cancelled_handshake_leaves_the_stream_broken(
    tls_ca: TLSTestCA, tls_version: TLSVersionName
) -> None:
    client, _server = tls_memory_stream_pair(tls_ca, version=tls_version)
    with trio.move_on_after(0.01):
        await client.do_handshake()  # the server never answers
    for call in (client.do_handshake, client.receive_some, lambda: client.send_all(b"x")):
        await expect_broken(call)
    await client.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await client.transport_stream.send_all(b"x")


async def test_cancelled_send_leaves_the_stream_broken(
    tls_ca: TLSTestCA, tls_version: TLSVersionName
) -> None:
    client, server = tls_lockstep_stream_pair(tls_ca, version=tls_version)
    await handshake_pair(client, server)
    with trio.move_on_after(0.01):
        await client.send_all(b"x" * 100_000)  # nobody reads a lockstep transport
    await expect_broken(lambda: client.send_all(b"y"))


async def test_cancelled_receive_after_handshake_loses_nothing(
    tls_ca: TLSTestCA, tls_version: TLSVersionName
) -> None:
    client, server = tls_memory_stream_pair(tls_ca, version=tls_version)
    await handshake_pair(client, server)
    for round_ in range(3):
        with trio.move_on_after(0.01):
            await client.receive_some()
        message = f"message {round_}".encode()
        await server.send_all(message)
        assert await client.receive_some() == message


async def test_receive_with_data_ready_returns_it_even_when_cancelled(tls_ca: TLSTestCA) -> None:
    """The shielded final checkpoint: decrypted data is returned, never dropped."""
    client, server = tls_memory_stream_pair(tls_ca)
    await handshake_pair(client, server)
    await server.send_all(b"ready")
    await trio.testing.wait_all_tasks_blocked()
    # Pull the ciphertext into the engine without decrypting it.
    client._engine.feed(await client.transport_stream.receive_some())
    with trio.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(trio.Cancelled):
            await client.receive_some()  # cancelled before it starts: nothing consumed
    assert await client.receive_some() == b"ready"


# Shaped like the tests around it (a pair, its handshake, one call): each checks one call.
async def test_cancelled_unwrap_leaves_the_stream_broken(
    tls_ca: TLSTestCA, tls_version: TLSVersionName
) -> None:
    client, server = tls_memory_stream_pair(tls_ca, version=tls_version)
    await handshake_pair(client, server)
    with trio.move_on_after(0.01):
        await client.unwrap()  # the server never sends its close_notify
    await expect_broken(client.receive_some)


async def test_cancelled_aclose_still_closes_the_transport(
    tls_ca: TLSTestCA, tls_version: TLSVersionName
) -> None:
    client, server = tls_lockstep_stream_pair(tls_ca, version=tls_version)
    await handshake_pair(client, server)
    with trio.CancelScope() as scope:
        scope.cancel()
        await client.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await client.transport_stream.send_all(b"x")
    with pytest.raises(trio.ClosedResourceError):
        await client.send_all(b"x")


# -- https_compatible and EOF ----------------------------------------------------------


async def test_ragged_eof_is_an_error_in_standard_mode(
    tls_ca: TLSTestCA, tls_version: TLSVersionName
) -> None:
    client, server = tls_memory_stream_pair(tls_ca, version=tls_version)
    await handshake_pair(client, server)
    await server.transport_stream.aclose()  # no close_notify
    error = await expect_broken(client.receive_some)
    assert _is_eof(error.__cause__)


async def test_ragged_eof_reads_as_eof_in_https_mode(
    tls_ca: TLSTestCA, tls_version: TLSVersionName
) -> None:
    client, server = tls_memory_stream_pair(tls_ca, version=tls_version, https_compatible=True)
    await handshake_pair(client, server)
    await server.send_all(b"last words")
    await server.aclose()  # https_compatible: no close_notify
    assert await client.receive_some() == b"last words"
    assert await client.receive_some() == b""
    assert await client.receive_some() == b""


@pytest.mark.parametrize("https_compatible", [False, True], ids=["standard", "https"])
async def test_eof_during_handshake(
    tls_ca: TLSTestCA, tls_version: TLSVersionName, https_compatible: bool
) -> None:
    """The server reads the ClientHello and hangs up: EOF in https mode, else broken."""
    client, server = tls_memory_stream_pair(
        tls_ca, version=tls_version, https_compatible=https_compatible
    )

    async def hang_up_after_hello() -> None:
        await server.transport_stream.receive_some()
        await server.transport_stream.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(hang_up_after_hello)
        if https_compatible:
            assert await client.receive_some() == b""
        else:
            error = await expect_broken(client.receive_some, ssl.SSLError)
            assert _is_eof(error.__cause__) or isinstance(error.__cause__, ssl.SSLSyscallError)


async def test_close_notify_then_eof_reads_as_eof(
    tls_ca: TLSTestCA, tls_version: TLSVersionName
) -> None:
    client, server = tls_memory_stream_pair(tls_ca, version=tls_version)
    await handshake_pair(client, server)
    await server.send_all(b"bye")
    await server.aclose()
    assert await client.receive_some() == b"bye"
    assert await client.receive_some() == b""
    assert await client.receive_some() == b""


# -- unwrap, STARTTLS, TLS in TLS ------------------------------------------------------


async def test_unwrap_returns_trailing_plaintext(
    tls_ca: TLSTestCA, tls_version: TLSVersionName
) -> None:
    client, server = tls_memory_stream_pair(tls_ca, version=tls_version)
    await handshake_pair(client, server)
    wrapped = client.transport_stream
    client_transport: list[Stream] = []

    async def client_unwrap() -> None:
        transport, trailing = await client.unwrap()
        # The server's plaintext arrives right behind its close_notify.
        data = bytearray(trailing)
        while len(data) < len(b"plain again"):
            data += await transport.receive_some()
        assert data == b"plain again"
        client_transport.append(transport)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(client_unwrap)
        server_transport, server_trailing = await server.unwrap()
        assert server_trailing == b""
        await server_transport.send_all(b"plain again")
    # The caller owns the transport now; the stream lets go of it, as trio's does.
    assert client_transport == [wrapped]
    assert cast(object, client.transport_stream) is None
    assert cast(object, server.transport_stream) is None


async def test_starttls_plaintext_then_tls_then_plaintext(
    tls_ca: TLSTestCA, tls_version: TLSVersionName
) -> None:
    client_raw, server_raw = trio.testing.memory_stream_pair()

    async def server() -> None:
        assert await server_raw.receive_some() == b"STARTTLS\r\n"
        await server_raw.send_all(b"220 go ahead\r\n")
        tls = SSLStream(server_raw, tls_ca.server_context(version=tls_version), server_side=True)
        assert await tls.receive_some() == b"secret"
        await tls.send_all(b"ok")
        plain, _ = await tls.unwrap()
        await plain.send_all(b"QUIT\r\n")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server)
        await client_raw.send_all(b"STARTTLS\r\n")
        assert await client_raw.receive_some() == b"220 go ahead\r\n"
        tls = SSLStream(
            client_raw, tls_ca.client_context(version=tls_version), server_hostname=SERVER_NAME
        )
        await tls.send_all(b"secret")
        assert await tls.receive_some() == b"ok"
        plain, trailing = await tls.unwrap()
        data = bytes(trailing)
        while len(data) < 6:
            data += await plain.receive_some()
        assert data == b"QUIT\r\n"


async def test_tls_inside_tls(tls_ca: TLSTestCA, tls_version: TLSVersionName) -> None:
    outer_client, outer_server = tls_memory_stream_pair(tls_ca, version=tls_version)
    inner_client = SSLStream(
        outer_client, tls_ca.client_context(version=tls_version), server_hostname=SERVER_NAME
    )
    inner_server = SSLStream(
        outer_server, tls_ca.server_context(version=tls_version), server_side=True
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(inner_client.send_all, b"nested")
        assert await inner_server.receive_some() == b"nested"
    assert inner_server.version() == outer_server.version() == f"TLSv{tls_version}"
    async with trio.open_nursery() as nursery:
        nursery.start_soon(inner_client.aclose)
        nursery.start_soon(inner_server.aclose)
    with pytest.raises(trio.ClosedResourceError):
        await outer_client.send_all(b"x")


# -- half-close ------------------------------------------------------------------------


@pytest.mark.parametrize("transports", MEMORY_AND_TCP)
async def test_half_close_request_then_reply(
    tls_ca: TLSTestCA, tls_version: TLSVersionName, transports: Transports
) -> None:
    """send_eof() ends our direction; the peer still answers. Under TLS 1.2 this is
    trio_tls's lenient mode (RFC 5246 wants an immediate close_notify in reply, but
    OpenSSL peers, trio_tls included, keep sending)."""
    client_ctx = tls_ca.client_context(version=tls_version)
    server_ctx = tls_ca.server_context(version=tls_version)
    async with handshaken_pair(transports, client_ctx, server_ctx) as (client, server):
        with trio.fail_after(10):
            await client.send_all(b"request")
            await client.send_eof()
            await client.send_eof()  # a second call does nothing
            with pytest.raises(trio.ClosedResourceError, match="send_eof"):
                await client.send_all(b"more")
            assert await receive_to_eof(server) == b"request"
            await server.send_all(b"reply after your EOF")
            await server.aclose()
            assert await receive_to_eof(client) == b"reply after your EOF"
            assert await client.receive_some() == b""  # both close_notifys: still EOF


async def test_is_a_half_closeable_stream(tls_ca: TLSTestCA) -> None:
    client, _ = tls_memory_stream_pair(tls_ca)
    assert isinstance(client, trio.abc.HalfCloseableStream)


# -- checkpoints and full duplex -------------------------------------------------------


async def test_every_public_method_is_a_checkpoint(
    tls_ca: TLSTestCA, tls_version: TLSVersionName
) -> None:
    client, server = tls_memory_stream_pair(tls_ca, version=tls_version)
    await handshake_pair(client, server)
    await server.send_all(b"data")
    await trio.testing.wait_all_tasks_blocked()
    with assert_checkpoints():
        await client.do_handshake()  # already done
    with assert_checkpoints():
        await client.send_all(b"")
    with assert_checkpoints():
        await client.send_all(b"x")
    with assert_checkpoints():
        assert await client.receive_some() == b"data"
    with assert_checkpoints():
        await client.wait_send_all_might_not_block()
    with assert_checkpoints():
        await client.aclose()
    with assert_checkpoints():
        await client.aclose()


async def test_full_duplex_one_sender_one_receiver_each_side(
    tls_ca: TLSTestCA, tls_version: TLSVersionName
) -> None:
    client, server = tls_lockstep_stream_pair(tls_ca, version=tls_version)
    size = 300_000
    blob = bytes(range(256)) * (size // 256)

    async def pump(sender: SSLStream[Stream], data: bytes) -> None:
        view = memoryview(data)
        for start in range(0, len(data), 7000):
            await sender.send_all(view[start : start + 7000])

    async def drain(receiver: SSLStream[Stream], expected: bytes) -> None:
        got = bytearray()
        while len(got) < len(expected):
            got += await receiver.receive_some()
        assert got == expected

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pump, client, blob)
            nursery.start_soon(pump, server, blob[::-1])
            nursery.start_soon(drain, server, blob)
            nursery.start_soon(drain, client, blob[::-1])


async def test_send_all_larger_than_one_chunk_and_non_byte_memoryview(tls_ca: TLSTestCA) -> None:
    client, server = tls_memory_stream_pair(tls_ca)
    data = bytes(range(256)) * 4096 * 2  # 2 MiB, several SEND_CHUNKs
    words = memoryview(bytearray(data)).cast("I")
    got = bytearray()

    async def drain() -> None:
        while len(got) < len(data):
            got.extend(await server.receive_some())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(drain)
        await client.send_all(words)
    assert got == data
    assert client.statistics().bytes_sent == len(data)


# -- deadlines and bounded closing -----------------------------------------------------


async def test_handshake_timeout_raises_broken_caused_by_too_slow(tls_ca: TLSTestCA) -> None:
    client_raw, _silent = trio.testing.memory_stream_pair()
    server = SSLStream(
        client_raw, tls_ca.server_context(), server_side=True, handshake_timeout=0.05
    )
    error = await expect_broken(server.do_handshake, trio.TooSlowError)
    assert "0.05" in str(error)
    await expect_broken(server.receive_some)


async def test_close_timeout_waits_for_the_peer_close_notify(
    tls_ca: TLSTestCA, tls_version: TLSVersionName
) -> None:
    client_transport, server_transport = trio.testing.memory_stream_pair()
    client = SSLStream(
        client_transport,
        tls_ca.client_context(version=tls_version),
        server_hostname=SERVER_NAME,
        close_timeout=5,
    )
    server = SSLStream(
        server_transport, tls_ca.server_context(version=tls_version), server_side=True
    )
    await handshake_pair(client, server)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.aclose)
        await trio.testing.wait_all_tasks_blocked()
        # The client is still waiting, transport open, until the server answers.
        assert client.statistics().transport_sends >= 1
        assert await server.receive_some() == b""
        await server.aclose()


async def test_close_timeout_gives_up_on_a_silent_peer(tls_ca: TLSTestCA) -> None:
    client_transport, server_transport = trio.testing.memory_stream_pair()
    client = SSLStream(
        client_transport, tls_ca.client_context(), server_hostname=SERVER_NAME, close_timeout=0.05
    )
    server = SSLStream(server_transport, tls_ca.server_context(), server_side=True)
    await handshake_pair(client, server)
    with trio.fail_after(5):
        await client.aclose()  # the server never answers; aclose returns anyway
    with pytest.raises(trio.ClosedResourceError):
        await client_transport.send_all(b"x")


async def test_aclose_does_not_hang_on_a_peer_that_stopped_reading(
    tls_ca: TLSTestCA, autojump_clock: trio.testing.MockClock
) -> None:
    """Sending close_notify to a peer that stopped reading is bounded: aclose() gives
    up after CLOSE_NOTIFY_SEND_TIMEOUT and closes the transport (trio's blocks forever)."""
    client, server = tls_lockstep_stream_pair(tls_ca, version="1.3")
    await handshake_pair(client, server)
    start = trio.current_time()
    await client.aclose()  # the server never reads: bounded by CLOSE_NOTIFY_SEND_TIMEOUT
    assert trio.current_time() - start == pytest.approx(CLOSE_NOTIFY_SEND_TIMEOUT)
    with pytest.raises(trio.ClosedResourceError):
        await client.transport_stream.send_all(b"x")
