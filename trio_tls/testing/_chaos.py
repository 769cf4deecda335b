"""The ordering-chaos transport: seeded splitting, delaying and rescheduling of bytes.

A test that passes only because a message happened to arrive in one piece, or
because one task happened to run before another, is a latent bug: a real network,
a busier machine or TLS 1.3's different message order will break it one day.
:class:`ChaosStream` makes that day come now, reproducibly. From a seed it decides,
for every call, how many times to yield to the scheduler first and how much of
what arrived to hand back now. The same seed makes the same decisions, so a failure can be replayed.

Replay must survive what changes from one session to the next. A TLS handshake's
exact size does: each test session mints a new certificate, and an ECDSA signature
(in the certificate, and in every handshake) varies by a byte or two. So no decision
depends on a byte count. Each end draws the same number of values for every call,
so its k-th ``receive_some`` always makes the k-th decision whatever the earlier
calls saw; and under TLS a cut falls only at the middle or the end of a record, so
which records are complete, and so what TLS does next, is the same in every
session. :attr:`ChaosStream.decisions` is that canonical record: two runs took the
same path exactly when their records are equal.

Put it *under* SSLStream (the pair makers' ``chaos_seed=`` argument) to vary how
ciphertext reaches the TLS layer: TLS reassembles each record, so what a
``receive_some`` returns then varies at record boundaries, which is what really
happens on a network. Put it *over* any stream (:func:`chaos_stream_pair` on a pair
of SSLStreams, or on your own protocol's streams) to also split plaintext
anywhere, as the :class:`trio.abc.ReceiveStream` contract allows.
"""

from __future__ import annotations

import operator
import os
import random
import sys
from collections.abc import Awaitable, Callable, Iterable
from typing import Generic, NamedTuple, TypeVar, final

import trio
from trio.abc import HalfCloseableStream, Stream

from ._framing import RecordMarks

S = TypeVar("S", bound=Stream)

#: Environment variable that replays one seed: it replaces the seeds of
#: :func:`run_with_seeds` and of the pytest plugin's ``tls_chaos`` marker.
CHAOS_SEED_ENV = "TRIO_TLS_CHAOS_SEED"

#: How many seeds :func:`run_with_seeds` tries when given none. Each seed is one run
#: of the test body; eight catch the usual single-read and ordering assumptions in a
#: few hundred milliseconds.
DEFAULT_SEED_COUNT = 8

#: Upper bound on the scheduler yields inserted before one transport call. Each yield
#: lets every other runnable task take a step; a handful is enough to reorder any two
#: tasks, and more would only slow tests down.
MAX_EXTRA_CHECKPOINTS = 3


def replay_seed() -> int | None:
    """The seed to replay from :data:`CHAOS_SEED_ENV`, or None when it is unset."""
    value = os.environ.get(CHAOS_SEED_ENV, "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{CHAOS_SEED_ENV} must be an integer seed, not {value!r}") from None


def chaos_note(seed: int) -> str:
    """The line added to a failure that happened under chaos ``seed``."""
    return (
        f"trio_tls chaos: this failed with chaos seed {seed}. Replay only that seed with "
        f"{CHAOS_SEED_ENV}={seed} (or pytest --tls-chaos-seed={seed})."
    )


def trio_scheduler_random() -> random.Random | None:
    """The ``random.Random`` behind trio's scheduling coin flips, or None if not found.

    trio runs each batch of ready tasks forwards or backwards at random, from this
    private generator; hypothesis seeds it too (``register_random``), for the same
    reason as we do. A trio that moved it gives None.
    """
    run_module = sys.modules.get("trio._core._run")
    rng = getattr(run_module, "_r", None)
    return rng if isinstance(rng, random.Random) else None


def seed_trio_scheduler(seed: int) -> None:
    """Make trio's own scheduling coin flips repeat for ``seed`` (best effort).

    Without it, replaying a seed on in-memory transports could take a different path:
    the same tasks, run in another order.
    """
    rng = trio_scheduler_random()
    if rng is not None:
        rng.seed(f"trio_tls-chaos-scheduler:{seed}")


class ChaosDecision(NamedTuple):
    """One call's decisions, as kept in :attr:`ChaosStream.decisions`.

    Nothing in it is a byte count that varies between sessions, so the records of
    two runs of the same seed compare equal exactly when the runs took the same path.
    """

    #: The ``name`` of the stream that decided ("first" or "second" in a pair).
    end: str
    #: Which method decided ("send_all", "wait_send_all_might_not_block", "send_eof"
    #: or "receive_some").
    operation: str
    #: How many times it yielded to the scheduler before going on.
    checkpoints: int
    #: For ``receive_some``, how much of what had arrived it returned: "all", "eof",
    #: "cut k/n" (the k-th of the n record middles and ends inside it, under TLS) or
    #: "b/n bytes" (for a stream that is not TLS). Empty for the other methods.
    portion: str = ""


@final
class ChaosStream(HalfCloseableStream, Generic[S]):
    """Wraps a stream so that timing and chunking vary from ``seed``, reproducibly.

    * ``send_all`` yields a random number of times before writing, so the tasks on
      both sides interleave differently.
    * ``receive_some`` yields a random number of times before waiting on the
      transport (so the peer may write more first: chunks coalesce), then returns a
      random prefix of what arrived and keeps the rest for the next call (chunks split).
      Over TLS records the prefix ends at the middle or the end of a record.

    Writes are never split: on a lockstep transport a write still completes when the
    peer receives it, as one piece, and the receiving side hands it out in pieces.
    (Split writes there would add deadlocks no real network has: a peer that fails
    halfway through reading a small flight would block its sender forever, where a
    kernel buffer would have absorbed it.)

    Nothing is reordered, lost or duplicated: the byte stream is exactly the
    transport's. Every method is a checkpoint, concurrent use is refused with
    :exc:`trio.BusyResourceError`, and data is never lost to a cancellation.
    ``send_eof`` requires the wrapped stream to be a :class:`~trio.abc.HalfCloseableStream`.

    Args:
      transport: the stream to wrap.
      seed: decides every choice; the same seed and the same calls give the same choices.
      name: mixed into the seed, so the two ends of a pair make different choices.
      decisions: the list to record decisions in; :func:`chaos_stream_pair` gives
          both ends one list, so it also shows how their calls interleaved.
    """

    def __init__(
        self,
        transport: S,
        seed: int,
        *,
        name: str = "",
        decisions: list[ChaosDecision] | None = None,
    ) -> None:
        #: The wrapped stream.
        self.transport: S = transport
        #: The seed it was made with.
        self.seed: int = operator.index(seed)
        #: The name mixed into the seed.
        self.name: str = name
        #: A :class:`ChaosDecision` per call, in the order they were made.
        self.decisions: list[ChaosDecision] = [] if decisions is None else decisions
        # One generator per direction: the sending and the receiving task call in
        # an order of their own, and neither may shift the other's draws.
        self._send_random = random.Random(f"trio_tls-chaos:{self.seed}:{name}:send")
        self._receive_random = random.Random(f"trio_tls-chaos:{self.seed}:{name}:receive")
        self._pending = bytearray()
        self._consumed = 0  # bytes handed out so far: the offset of _pending[0]
        self._marks = RecordMarks()
        self._closed = False
        self._sending = False
        self._receiving = False

    def __repr__(self) -> str:
        return f"<ChaosStream seed={self.seed} over {self.transport!r}>"

    @staticmethod
    def _checkpoint_count(draw: float) -> int:
        # Always at least one: every Stream method must be a checkpoint, even when
        # the transport is not called (data already pending).
        return 1 + int(draw * (MAX_EXTRA_CHECKPOINTS + 1))

    def _start_sending(self) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is currently sending on this ChaosStream")
        self._check_open()
        self._sending = True

    async def _send_jitter(self, operation: str) -> None:
        """Decide and record a sending call, and yield as decided."""
        checkpoints = self._checkpoint_count(self._send_random.random())
        self.decisions.append(ChaosDecision(self.name, operation, checkpoints))
        for _ in range(checkpoints):
            await trio.lowlevel.checkpoint()

    def _cut(self, limit: int, take_all: bool, where: float) -> tuple[int, str]:
        """How many of ``limit`` available bytes to return now, and how to record it."""
        if self._marks.framed:
            cuts = self._marks.cuts(self._consumed, limit)
            if take_all or not cuts:
                return limit, "all"
            index = int(where * len(cuts))
            return cuts[index], f"cut {index + 1}/{len(cuts)}"
        if take_all or limit == 1:
            return limit, "all"
        count = 1 + int(where * (limit - 1))
        return count, f"{count}/{limit} bytes"

    def _check_open(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("this ChaosStream was closed")

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Yield to the scheduler a seeded number of times, then send *data* whole."""
        self._start_sending()
        try:
            await self._send_jitter("send_all")
            await self.transport.send_all(data)
        finally:
            self._sending = False

    async def wait_send_all_might_not_block(self) -> None:
        """Yield a seeded number of times, then wait on the transport."""
        self._start_sending()
        try:
            await self._send_jitter("wait_send_all_might_not_block")
            await self.transport.wait_send_all_might_not_block()
        finally:
            self._sending = False

    async def send_eof(self) -> None:
        """Yield a seeded number of times, then half-close the transport.

        Raises :exc:`TypeError` if the transport is not a
        :class:`~trio.abc.HalfCloseableStream`.
        """
        self._start_sending()
        try:
            transport = self.transport
            if not isinstance(transport, HalfCloseableStream):
                raise TypeError(f"send_eof needs a HalfCloseableStream, not {transport!r}")
            await self._send_jitter("send_eof")
            await transport.send_eof()
        finally:
            self._sending = False

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        """Yield a seeded number of times, then return a seeded prefix of what arrived.

        What is not returned is kept, in order, for the next call; over TLS the
        prefix ends inside or at the end of a record. ``b""`` at the transport's EOF.
        """
        if self._receiving:
            raise trio.BusyResourceError("another task is currently receiving on this ChaosStream")
        self._check_open()
        if max_bytes is not None:
            max_bytes = operator.index(max_bytes)
            if max_bytes < 1:
                raise ValueError("max_bytes must be >= 1")
        self._receiving = True
        try:
            # Three draws on every call, used or not: the next call's draws must not
            # depend on what this one saw.
            draw = self._receive_random.random
            checkpoints, take_all, where = self._checkpoint_count(draw()), draw() < 0.5, draw()
            for _ in range(checkpoints):
                await trio.lowlevel.checkpoint()
            if not self._pending:
                # Nothing may happen after this await: whatever it returns is kept
                # (in _pending) even if we are cancelled later.
                data = await self.transport.receive_some()
                if not data:
                    self._record("receive_some", checkpoints, "eof")
                    return b""
                self._pending += data
                self._marks.feed(data)
            limit = len(self._pending) if max_bytes is None else min(max_bytes, len(self._pending))
            count, portion = self._cut(limit, take_all, where)
            self._record("receive_some", checkpoints, portion)
            chunk = bytes(self._pending[:count])
            del self._pending[:count]
            self._consumed += count
            return chunk
        finally:
            self._receiving = False

    def _record(self, operation: str, checkpoints: int, portion: str) -> None:
        self.decisions.append(ChaosDecision(self.name, operation, checkpoints, portion))

    async def aclose(self) -> None:
        """Close the transport and drop anything received but not yet returned."""
        self._closed = True
        self._pending.clear()
        await self.transport.aclose()


def chaos_stream_pair(pair: tuple[S, S], seed: int) -> tuple[ChaosStream[S], ChaosStream[S]]:
    """Wrap both ends of a connected pair in :class:`ChaosStream` with one seed.

    It also seeds trio's own scheduling (see :func:`seed_trio_scheduler`), so on
    in-memory transports the whole run repeats for the same seed. Both ends record
    their decisions in one list (``first.decisions is second.decisions``), in the
    order they were made.
    """
    seed_trio_scheduler(seed)
    first, second = pair
    decisions: list[ChaosDecision] = []
    return (
        ChaosStream(first, seed, name="first", decisions=decisions),
        ChaosStream(second, seed, name="second", decisions=decisions),
    )


async def run_with_seeds(
    test: Callable[[int], Awaitable[object]],
    seeds: Iterable[int] | None = None,
) -> None:
    """Run ``await test(seed)`` once per seed, stopping at the first failure.

    The failing seed is added to the exception as a note (shown in its traceback),
    and :data:`CHAOS_SEED_ENV`, when set, replaces ``seeds`` with that one seed, so a
    failure can be replayed alone. ``seeds`` defaults to ``range(DEFAULT_SEED_COUNT)``.

    Example::

        async def exchange(seed: int) -> None:
            client, server = tls_memory_stream_pair(ca, chaos_seed=seed)
            ...

        await run_with_seeds(exchange, seeds=range(20))
    """
    __tracebackhide__ = True
    replay = replay_seed()
    if replay is not None:
        chosen: Iterable[int] = [replay]
    elif seeds is None:
        chosen = range(DEFAULT_SEED_COUNT)
    else:
        chosen = seeds
    for seed in chosen:
        seed_trio_scheduler(seed)
        try:
            await test(seed)
        except Exception as exc:
            exc.add_note(chaos_note(seed))
            raise
