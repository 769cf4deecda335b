"""The states of an :class:`~trio_tls.SSLStream`, as data.

Rule 1: only :class:`StateMachine` changes a stream's state, and only along an edge of
:data:`TRANSITIONS`; anything else is a bug in trio_tls and raises ``AssertionError``.
Rule 2: whether an operation may start is decided by :data:`ALLOWED`; a refused
operation raises the trio exception that :func:`refusal` names, so the caller learns
whose fault it was (``BrokenResourceError``: the peer or the transport failed;
``ClosedResourceError``: this side closed the stream).

::

    IDLE --> HANDSHAKING --> OPEN --> SEND_CLOSED
      |           |           |           |
      +-----------+-----+-----+-----------+
                        v
                     BROKEN ----> CLOSED   (every state may go to CLOSED)
"""

from __future__ import annotations

import enum

import trio


class State(enum.Enum):
    IDLE = "idle"  #: created; the handshake has not started
    HANDSHAKING = "handshaking"  #: a task is running the initial handshake
    OPEN = "open"  #: handshake done; data flows both ways
    SEND_CLOSED = "send_closed"  #: we sent close_notify (send_eof); receiving still works
    BROKEN = "broken"  #: a failure or cancellation left the TLS state unknown
    CLOSED = "closed"  #: aclose() or unwrap() ran; the stream is finished


class Op(enum.Enum):
    HANDSHAKE = "do_handshake"
    RECEIVE = "receive_some"
    SEND = "send_all"
    WAIT_SEND = "wait_send_all_might_not_block"
    SEND_EOF = "send_eof"
    UNWRAP = "unwrap"


TRANSITIONS: dict[State, frozenset[State]] = {
    State.IDLE: frozenset({State.HANDSHAKING, State.BROKEN, State.CLOSED}),
    State.HANDSHAKING: frozenset({State.OPEN, State.BROKEN, State.CLOSED}),
    State.OPEN: frozenset({State.SEND_CLOSED, State.BROKEN, State.CLOSED}),
    State.SEND_CLOSED: frozenset({State.BROKEN, State.CLOSED}),
    State.BROKEN: frozenset({State.CLOSED}),
    State.CLOSED: frozenset(),
}

_LIVE = frozenset({State.IDLE, State.HANDSHAKING, State.OPEN})

ALLOWED: dict[Op, frozenset[State]] = {
    Op.HANDSHAKE: _LIVE | {State.SEND_CLOSED},
    Op.RECEIVE: _LIVE | {State.SEND_CLOSED},
    Op.SEND: _LIVE,
    Op.WAIT_SEND: _LIVE,
    Op.SEND_EOF: _LIVE | {State.SEND_CLOSED},  # a second send_eof is a no-op
    Op.UNWRAP: _LIVE,
}


def refusal(state: State, op: Op) -> trio.BrokenResourceError | trio.ClosedResourceError:
    """The exception for starting ``op`` in ``state`` (which must not allow it)."""
    if state is State.BROKEN:
        return trio.BrokenResourceError(
            f"can't {op.value}: this SSLStream is broken by an earlier failure or cancellation"
        )
    if state is State.SEND_CLOSED:
        return trio.ClosedResourceError(f"can't {op.value}: send_eof() already closed sending")
    return trio.ClosedResourceError(f"can't {op.value}: this SSLStream is closed")


class StateMachine:
    """Holds one stream's state; the only code that assigns it."""

    __slots__ = ("state",)

    def __init__(self) -> None:
        self.state = State.IDLE

    def check(self, op: Op) -> None:
        """Raise the right trio exception if ``op`` may not start now."""
        # OPEN allows every operation: the common case skips the table.
        if self.state is not State.OPEN and self.state not in ALLOWED[op]:
            raise refusal(self.state, op)

    def move(self, new: State) -> None:
        if new is not self.state and new not in TRANSITIONS[self.state]:
            raise AssertionError(f"trio_tls bug: no transition {self.state.name} -> {new.name}")
        self.state = new

    def fail(self) -> None:
        """Mark the stream broken, unless it is already closed (closing wins)."""
        if self.state is not State.CLOSED:
            self.move(State.BROKEN)
