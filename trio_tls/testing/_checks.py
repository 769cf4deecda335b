"""check_tls_stream(): trio's stream conformance checks plus the TLS-specific ones."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import trio
import trio.testing
from trio.abc import HalfCloseableStream, Stream

from .._stream import SSLStream
from ._pairs import AnyStreamPair, close_pair_forcefully

#: A maker of fresh ``(client, server)`` pairs, as trio's checks take.
PairMaker = Callable[[], Awaitable[AnyStreamPair]]

#: Seconds one TLS check may take before it is reported as a deadlock. Each check is
#: a handful of round trips in memory; only a hang gets anywhere near this.
CHECK_TIMEOUT = 10.0

PAYLOAD = b"trio_tls check payload \x00\xff" * 3


def _expect(condition: bool, message: str) -> None:
    __tracebackhide__ = True
    if not condition:
        raise AssertionError(f"check_tls_stream: {message}")


@contextlib.asynccontextmanager
async def _fresh_pair(maker: PairMaker, check: str) -> AsyncIterator[AnyStreamPair]:
    """A new pair for one check, force-closed after it, the check bounded in time."""
    __tracebackhide__ = True
    client, server = await maker()
    _expect(
        isinstance(client, SSLStream) and isinstance(server, SSLStream),
        f"the maker must return two trio_tls.SSLStreams, got {client!r} and {server!r}",
    )
    _expect(
        not client.server_side and server.server_side,
        "the maker must return (client, server), in that order",
    )
    try:
        with trio.fail_after(CHECK_TIMEOUT):
            yield client, server
    except trio.TooSlowError as exc:
        raise AssertionError(
            f"check_tls_stream: the {check} check did not finish within {CHECK_TIMEOUT} s "
            "(a deadlock?)"
        ) from exc
    finally:
        await close_pair_forcefully((client, server))


async def _both(
    first: Callable[[], Awaitable[object]], second: Callable[[], Awaitable[object]]
) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(first)
        nursery.start_soon(second)


async def _receive_exactly(stream: Stream, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = await stream.receive_some()
        _expect(bool(chunk), f"EOF after {len(data)} of {size} expected bytes")
        data += chunk
    return bytes(data)


async def _check_handshake(maker: PairMaker) -> None:
    async with _fresh_pair(maker, "handshake") as (client, server):
        for stream in (client, server):
            with contextlib.suppress(trio.NeedHandshakeError):
                stream.version()
                _expect(False, "version() before the handshake must raise NeedHandshakeError")
        # Two tasks on the client side: the second must wait for the first's handshake.
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.do_handshake)
            nursery.start_soon(client.do_handshake)
            nursery.start_soon(server.do_handshake)
        _expect(client.version() is not None, "version() is None after the handshake")
        _expect(client.version() == server.version(), "the two sides disagree on the version")
        _expect(client.cipher() == server.cipher(), "the two sides disagree on the cipher")
        with trio.testing.assert_checkpoints():
            await client.do_handshake()  # already done: just a checkpoint
        await _both(
            lambda: client.send_all(PAYLOAD),
            lambda: _expect_data(server, PAYLOAD, "client to server after the handshake"),
        )


async def _expect_data(stream: Stream, expected: bytes, what: str) -> None:
    __tracebackhide__ = True
    got = await _receive_exactly(stream, len(expected))
    _expect(got == expected, f"{what}: sent {expected!r}, received {got!r}")


async def _expect_eof(stream: Stream, what: str) -> None:
    __tracebackhide__ = True
    for _ in range(2):  # EOF is sticky: a second receive sees it again
        got = await stream.receive_some()
        _expect(got == b"", f"{what}: expected EOF (b''), received {got!r}")


async def _check_close_notify(maker: PairMaker) -> None:
    async with _fresh_pair(maker, "close_notify") as (client, server):

        async def server_says_goodbye() -> None:
            await server.send_all(PAYLOAD)
            await server.aclose()

        async def client_listens() -> None:
            await _expect_data(client, PAYLOAD, "data sent just before aclose()")
            await _expect_eof(client, "after the peer's aclose()")

        await _both(server_says_goodbye, client_listens)
        with contextlib.suppress(trio.ClosedResourceError):
            await server.send_all(b"x")
            _expect(False, "send_all after aclose() must raise ClosedResourceError")


async def _check_ragged_eof(maker: PairMaker, https_compatible: bool) -> None:
    async with _fresh_pair(maker, "ragged EOF") as (client, server):
        await _both(client.do_handshake, server.do_handshake)
        # Close the server's transport under it: EOF with no close_notify.
        await trio.aclose_forcefully(server.transport_stream)
        if https_compatible:
            await _expect_eof(client, "https_compatible stream after a ragged EOF")
            return
        try:
            got = await client.receive_some()
        except trio.BrokenResourceError:
            return
        _expect(False, f"a ragged EOF must raise BrokenResourceError, received {got!r}")


async def _check_half_close(maker: PairMaker) -> None:
    async with _fresh_pair(maker, "half-close") as (client, server):

        async def client_side() -> None:
            await client.send_all(PAYLOAD)
            await client.send_eof()
            with contextlib.suppress(trio.ClosedResourceError):
                await client.send_all(b"x")
                _expect(False, "send_all after send_eof() must raise ClosedResourceError")
            await _expect_data(client, PAYLOAD[::-1], "reply sent after the peer's send_eof()")
            # Both sides have now sent close_notify: OpenSSL calls that an error, it is EOF.
            await _expect_eof(client, "after both sides sent close_notify")

        async def server_side() -> None:
            await _expect_data(server, PAYLOAD, "data sent before send_eof()")
            await _expect_eof(server, "after the peer's send_eof()")
            await server.send_all(PAYLOAD[::-1])
            await server.send_eof()

        await _both(client_side, server_side)


async def _check_unwrap(maker: PairMaker) -> None:
    async with _fresh_pair(maker, "unwrap") as (client, server):
        plaintext = b"plaintext after TLS\n" * 5

        async def client_side() -> None:
            await client.send_all(PAYLOAD)
            transport, trailing = await client.unwrap()
            # Read on inside this task: on a zero-buffer transport the server's
            # plaintext send only completes when we receive it.
            rest = await _receive_exactly(transport, len(plaintext) - len(trailing))
            _expect(
                bytes(trailing) + rest == plaintext,
                "trailing bytes plus later transport reads must equal what the peer sent "
                f"in clear: got {bytes(trailing) + rest!r}",
            )
            _expect(client.transport_stream is None, "unwrap() must let go of the transport")
            await transport.aclose()  # unwrap() made it ours

        async def server_side() -> None:
            await _expect_data(server, PAYLOAD, "data sent before unwrap()")
            # Seeing the client's close_notify first keeps this working on a
            # zero-buffer transport, where two simultaneous sends would deadlock.
            await _expect_eof(server, "after the peer's unwrap()")
            transport, trailing = await server.unwrap()
            _expect(trailing == b"", f"the server's unwrap returned trailing {trailing!r}")
            await transport.send_all(plaintext)
            await transport.aclose()

        await _both(client_side, server_side)
        for operation in (client.receive_some, lambda: client.send_all(b"x")):
            with contextlib.suppress(trio.ClosedResourceError):
                await operation()
                _expect(False, "a stream must refuse to work after unwrap()")


async def check_tls_stream(
    stream_maker: PairMaker,
    clogged_stream_maker: PairMaker | None = None,
    *,
    https_compatible: bool = False,
) -> None:
    """Check that ``(client, server)`` SSLStream pairs behave as the stream contract says.

    Runs :func:`trio.testing.check_half_closeable_stream` (which includes
    ``check_two_way_stream``), then TLS checks on fresh pairs: concurrent and repeated
    handshakes, ``NeedHandshakeError`` before the handshake, close_notify ending the
    peer's stream after all data, ragged EOF (BrokenResourceError, or EOF with
    ``https_compatible``), half-close both ways, and ``unwrap()`` with plaintext
    that follows it on the transport. Each TLS check is bounded by
    :data:`CHECK_TIMEOUT`; a hang fails with the check's name.

    Use it for any transport you run SSLStream over (your own, or a wrapper)::

        async def make_pair():
            return tls_memory_stream_pair(ca, chaos_seed=7)

        await check_tls_stream(make_pair)

    Args:
      stream_maker: an async function returning a new ``(client, server)`` pair of
          :class:`trio_tls.SSLStream`, connected, with no handshake done yet.
      clogged_stream_maker: like ``stream_maker``, but over a transport where nothing
          moves unless the peer receives (e.g. ``tls_lockstep_stream_pair``), with
          both handshakes already done; see trio's ``check_two_way_stream``.
      https_compatible: whether the pairs were made with ``https_compatible=True``.
    """
    __tracebackhide__ = True

    # trio's checks are typed for HalfCloseableStream pairs; SSLStream is one.
    async def generic() -> tuple[HalfCloseableStream, HalfCloseableStream]:
        return await stream_maker()

    async def clogged() -> tuple[HalfCloseableStream, HalfCloseableStream]:
        assert clogged_stream_maker is not None
        return await clogged_stream_maker()

    await trio.testing.check_half_closeable_stream(
        generic, clogged if clogged_stream_maker is not None else None
    )
    await _check_handshake(stream_maker)
    await _check_close_notify(stream_maker)
    await _check_ragged_eof(stream_maker, https_compatible)
    await _check_half_close(stream_maker)
    await _check_unwrap(stream_maker)
