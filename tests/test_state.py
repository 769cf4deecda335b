"""The state table: walked exhaustively and by hypothesis."""

from __future__ import annotations

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from trio_tls._state import ALLOWED, TRANSITIONS, Op, State, StateMachine, refusal


def reach(target: State) -> StateMachine:
    """A machine moved to ``target`` along table edges."""
    paths = {
        State.IDLE: [],
        State.HANDSHAKING: [State.HANDSHAKING],
        State.OPEN: [State.HANDSHAKING, State.OPEN],
        State.SEND_CLOSED: [State.HANDSHAKING, State.OPEN, State.SEND_CLOSED],
        State.BROKEN: [State.BROKEN],
        State.CLOSED: [State.CLOSED],
    }
    sm = StateMachine()
    for step in paths[target]:
        sm.move(step)
    return sm


@pytest.mark.parametrize("start", list(State), ids=lambda s: s.name)
@pytest.mark.parametrize("end", list(State), ids=lambda s: s.name)
def test_moves_follow_the_table_exactly(start: State, end: State) -> None:
    sm = reach(start)
    if end is start or end in TRANSITIONS[start]:
        sm.move(end)
        assert sm.state is end
    else:
        with pytest.raises(AssertionError, match="trio_tls bug"):
            sm.move(end)
        assert sm.state is start


@given(st.sampled_from(list(State)), st.sampled_from(list(Op)))
def test_check_raises_exactly_when_the_table_refuses(state: State, op: Op) -> None:
    sm = reach(state)
    if state in ALLOWED[op]:
        sm.check(op)
        return
    with pytest.raises((trio.BrokenResourceError, trio.ClosedResourceError)) as info:
        sm.check(op)
    expected = trio.BrokenResourceError if state is State.BROKEN else trio.ClosedResourceError
    assert type(info.value) is expected
    assert op.value in str(info.value)


def test_every_state_can_close_and_closed_is_final() -> None:
    for state in State:
        if state is not State.CLOSED:
            assert State.CLOSED in TRANSITIONS[state]
    assert TRANSITIONS[State.CLOSED] == frozenset()


def test_fail_does_not_reopen_a_closed_stream() -> None:
    sm = reach(State.CLOSED)
    sm.fail()
    assert sm.state is State.CLOSED
    sm = reach(State.OPEN)
    sm.fail()
    assert sm.state is State.BROKEN


def test_refusal_names_the_reason() -> None:
    assert "send_eof" in str(refusal(State.SEND_CLOSED, Op.SEND))
    assert isinstance(refusal(State.SEND_CLOSED, Op.SEND), trio.ClosedResourceError)
