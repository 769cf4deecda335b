"""check_tls_stream(): trio's stream conformance checks plus the TLS-specific ones.

Every check runs on fresh pairs under its own deadline, so a stream that loses data
or never closes fails with the check's name and the line it was stuck on instead of
hanging the caller. trio's generic checks are one long function with no deadline;
they get a fresh deadline with every pair they ask for.
"""

from __future__ import annotations

import contextlib
import linecache
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import trio
import trio.testing
from trio.abc import HalfCloseableStream, Stream

from .._stream import SSLStream, is_trio_tls_stream
from ._deadline import positive_seconds
from ._pairs import AnyStreamPair, close_pair_forcefully

#: A maker of fresh ``(client, server)`` pairs, as trio's checks take.
PairMaker = Callable[[], Awaitable[AnyStreamPair]]

#: Default seconds one check may take before it is reported as a deadlock. Each check
#: is a handful of round trips in memory; only a hang gets anywhere near this.
CHECK_TIMEOUT = 10.0

#: How long every task must have been blocked before a close in trio's generic checks
#: stops waiting to deliver close_notify. On memory and lockstep transports nothing
#: can change once all tasks are blocked; over TCP the kernel moves loopback data in
#: microseconds, so a peer that is reading wakes up well within this.
STUCK_CLOSE_CUSHION = 0.05

PAYLOAD = b"trio_tls check payload \x00\xff" * 3

#: Qualified-name prefixes of the code in this module that only passes calls on.
_PLUMBING = ("_ClosesWhenStuck.", "_cancel_when_stuck", "_Deadline.", "_fresh_pair")

#: Source files whose lines name what a stuck check was waiting for.
_CHECK_FILES = (
    str(Path(__file__)),
    str(Path(trio.testing.__file__).parent / "_check_streams.py"),
)


def _expect(condition: bool, message: str) -> None:
    __tracebackhide__ = True
    if not condition:
        raise AssertionError(f"check_tls_stream: {message}")


async def _validated(maker: PairMaker, what: str) -> AnyStreamPair:
    """A pair from ``maker``, refused (and closed) unless it is (client, server) SSLStreams."""
    __tracebackhide__ = True
    pair = await maker()
    error = _pair_error(pair, what)
    if error is None:
        return pair
    for stream in pair if isinstance(pair, tuple) else ():
        if isinstance(stream, trio.abc.AsyncResource):
            await trio.aclose_forcefully(stream)
    raise error


def _pair_error(pair: object, what: str) -> TypeError | ValueError | None:
    if not (isinstance(pair, tuple) and len(pair) == 2):
        return TypeError(
            f"check_tls_stream: {what} must return a (client, server) tuple of "
            f"trio_tls.SSLStreams, not {pair!r}"
        )
    client, server = pair
    # Not isinstance(): under patch_trio() trio's own streams pass that too.
    if not (is_trio_tls_stream(client) and is_trio_tls_stream(server)):
        return TypeError(
            f"check_tls_stream: {what} must return trio_tls.SSLStreams (the kit checks "
            f"trio_tls.SSLStream, not trio.SSLStream or other streams), got {client!r} "
            f"and {server!r}"
        )
    if client.server_side or not server.server_side:
        return ValueError(
            f"check_tls_stream: {what} must return (client, server), client first; "
            "it returned them the other way round"
        )
    return None


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for child in exc.exceptions for leaf in _leaves(child)]
    return [exc]


def _waiting_at(exc: BaseException) -> str | None:
    """The checks' own frames of ``exc``'s traceback: the calls, then the source line."""
    calls: list[str] = []
    where = ""
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        code = frame.f_code
        # The close-when-stuck wrapper only passes calls on; the line that made the
        # call says what was expected.
        if code.co_filename in _CHECK_FILES and not code.co_qualname.startswith(_PLUMBING):
            calls.append(code.co_name)
            # Without a trailing comment (trio's lines carry type: ignore pragmas).
            where = linecache.getline(code.co_filename, lineno).split("  #")[0].strip()
    return f"{' > '.join(calls)}: {where}" if calls else None


def _stuck_at(exc: BaseException) -> list[str]:
    """Where each task of a check was waiting when the deadline cancelled it.

    The cancellation may pass through cleanup that waits in turn (a nursery's
    ``aclose_forcefully`` ...), which raises a later exception with the original as
    its ``__context__``: the oldest one tells where the check was stuck.
    """
    found: list[str] = []
    layer = _leaves(exc)
    seen: set[int] = set()
    while layer:
        lines: list[str] = []
        older: list[BaseException] = []
        for leaf in layer:
            if id(leaf) in seen:
                continue
            seen.add(id(leaf))
            line = _waiting_at(leaf)
            if line is not None and line not in lines:
                lines.append(line)
            if leaf.__context__ is not None:
                older += _leaves(leaf.__context__)
        found = lines or found
        layer = older
    return found


class _Deadline:
    """One cancel scope whose deadline each check (or each fresh pair) renews."""

    def __init__(self, check_timeout: float) -> None:
        self.check_timeout = check_timeout
        self.scope = trio.CancelScope()
        self.stuck: list[str] = []

    def renew(self) -> None:
        self.scope.deadline = trio.current_time() + self.check_timeout

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        with self.scope:
            self.renew()
            try:
                yield
            except BaseException as exc:
                if self.scope.cancel_called:
                    self.stuck = _stuck_at(exc)
                raise

    def expired(self, check: str) -> AssertionError | None:
        if not self.scope.cancelled_caught:
            return None
        where = "".join(f"\n    {line}" for line in self.stuck) or " (nowhere in the checks)"
        return AssertionError(
            f"check_tls_stream: the {check} did not finish within {self.check_timeout:g} s "
            f"(a deadlock, or data lost on the way?). It was still waiting at:{where}"
        )


@contextlib.asynccontextmanager
async def _fresh_pair(
    maker: PairMaker, check: str, check_timeout: float
) -> AsyncIterator[AnyStreamPair]:
    """A new pair for one check, force-closed after it, the check bounded in time."""
    __tracebackhide__ = True
    client, server = await _validated(maker, "the stream maker")
    deadline = _Deadline(check_timeout)
    try:
        with deadline.running():
            yield client, server
    finally:
        await close_pair_forcefully((client, server))
    error = deadline.expired(f"{check} check")
    if error is not None:
        raise error


class _ClosesWhenStuck(HalfCloseableStream):
    """An SSLStream as trio's generic checks get it: ``aclose`` stops waiting when stuck.

    Several of trio's checks close one end while nobody reads the other. On a
    zero-buffer transport the close_notify send then cannot complete, and
    SSLStream.aclose() waits out its bound before closing the transport. Here the
    close gives up as soon as every task is blocked, the one state in which nobody
    can ever read it; the transport is closed either way. Everything else is the
    SSLStream's own behaviour, passed through.
    """

    def __init__(self, stream: SSLStream[Stream]) -> None:
        self.stream = stream

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self.stream.send_eof()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.stream.receive_some(max_bytes)

    async def aclose(self) -> None:
        failure: Exception | None = None
        with trio.CancelScope() as give_up:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_cancel_when_stuck, give_up)
                try:
                    await self.stream.aclose()
                except Exception as exc:
                    # Raised as it is below, not wrapped in the nursery's ExceptionGroup:
                    # trio's checks look at aclose()'s own exception.
                    failure = exc
                nursery.cancel_scope.cancel()
        if failure is not None:
            raise failure


async def _cancel_when_stuck(scope: trio.CancelScope) -> None:
    await trio.testing.wait_all_tasks_blocked(STUCK_CLOSE_CUSHION)
    scope.cancel()


#: What trio's generic checks get from their stream makers.
_GenericPair = tuple[HalfCloseableStream, HalfCloseableStream]


async def _check_generic(maker: PairMaker, clogged: PairMaker | None, check_timeout: float) -> None:
    """trio's check_half_closeable_stream, each fresh pair under a fresh deadline."""
    __tracebackhide__ = True
    deadline = _Deadline(check_timeout)
    pairs = 0

    def fresh(source: PairMaker, what: str) -> Callable[[], Awaitable[_GenericPair]]:
        async def make() -> _GenericPair:
            nonlocal pairs
            pairs += 1
            deadline.renew()
            client, server = await _validated(source, what)
            return _ClosesWhenStuck(client), _ClosesWhenStuck(server)

        return make

    with deadline.running():
        await trio.testing.check_half_closeable_stream(
            fresh(maker, "the stream maker"),
            fresh(clogged, "the clogged stream maker") if clogged is not None else None,
        )
    error = deadline.expired(
        f"generic stream checks (trio.testing.check_half_closeable_stream), on their "
        f"fresh pair #{pairs},"
    )
    if error is not None:
        raise error


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


async def _check_handshake(maker: PairMaker, check_timeout: float) -> None:
    async with _fresh_pair(maker, "handshake", check_timeout) as (client, server):
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


async def _check_close_notify(maker: PairMaker, check_timeout: float) -> None:
    async with _fresh_pair(maker, "close_notify", check_timeout) as (client, server):

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


async def _check_ragged_eof(maker: PairMaker, check_timeout: float, https_compatible: bool) -> None:
    async with _fresh_pair(maker, "ragged EOF", check_timeout) as (client, server):
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


async def _check_half_close(maker: PairMaker, check_timeout: float) -> None:
    async with _fresh_pair(maker, "half-close", check_timeout) as (client, server):

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


async def _check_unwrap(maker: PairMaker, check_timeout: float) -> None:
    async with _fresh_pair(maker, "unwrap", check_timeout) as (client, server):
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
    check_timeout: float = CHECK_TIMEOUT,
) -> None:
    """Check that ``(client, server)`` SSLStream pairs behave as the stream contract says.

    Runs :func:`trio.testing.check_half_closeable_stream` (which includes
    ``check_two_way_stream``), then TLS checks on fresh pairs: concurrent and repeated
    handshakes, ``NeedHandshakeError`` before the handshake, close_notify ending the
    peer's stream after all data, ragged EOF (BrokenResourceError, or EOF with
    ``https_compatible``), half-close both ways, and ``unwrap()`` with plaintext
    that follows it on the transport.

    Every pair is checked first: a maker that returns anything but ``(client,
    server)`` trio_tls SSLStreams gets a :exc:`TypeError` (or :exc:`ValueError` for
    ``(server, client)``) before any check runs. Each check, and each fresh pair of
    trio's generic checks, has ``check_timeout`` seconds: a stream that loses data or never
    closes fails with an :exc:`AssertionError` naming the check and the line it was
    waiting at, instead of hanging. In trio's generic checks a close whose
    close_notify nobody can ever read (every task is blocked, as on a zero-buffer
    transport whose peer is not reading) stops waiting at once rather than after
    SSLStream's bound.

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
      check_timeout: seconds each check may take (default 10).
    """
    __tracebackhide__ = True
    check_timeout = positive_seconds(check_timeout, "check_timeout")
    await _check_generic(stream_maker, clogged_stream_maker, check_timeout)
    await _check_handshake(stream_maker, check_timeout)
    await _check_close_notify(stream_maker, check_timeout)
    await _check_ragged_eof(stream_maker, check_timeout, https_compatible)
    await _check_half_close(stream_maker, check_timeout)
    await _check_unwrap(stream_maker, check_timeout)
