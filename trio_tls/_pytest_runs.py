"""The pytest plugin's view of one run of a test, and what it says when runs fail.

A *run* is one collected test that uses the kit's fixtures: one test function under
one TLS version, one transport and one seed. Every run has a seed. Under
``@pytest.mark.tls_chaos`` it is the chaos seed; otherwise it is the run's *plain
seed* (:data:`DEFAULT_SEED`, or ``--tls-chaos-seed`` / the environment), which has
no chaos transport to steer and so only orders trio's task switches. Either way a
failure can be replayed exactly.

Whether a failure is worth replaying by its seed is only known once all the runs
of a test are over, so the notes are written at the end of the session: a test
that failed under every seed it ran with (for one version and transport), or that
failed without chaos too, is not failing *because of* a seed, and its notes say so
instead of sending the reader off to replay one.
"""

from __future__ import annotations

import functools
import shlex
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
import trio

from .testing import CHAOS_SEED_ENV, replay_seed, seed_trio_scheduler
from .testing._deadline import wall_clock_deadline

#: Every fixture of the kit. A test that uses any of them (directly or through
#: another fixture) is a run: it is seeded, bounded by a deadline when it is an
#: async trio test, and its failures carry a trio_tls note.
KIT_FIXTURES = frozenset(
    {
        "tls_ca",
        "tls_version",
        "tls_server_context",
        "tls_client_context",
        "tls_transport",
        "tls_chaos_seed",
        "tls_stream_pair",
        "tls_server_handler",
        "tls_server",
    }
)

#: The seed of runs without chaos unless ``--tls-chaos-seed`` or the environment
#: gives one. Fixed, so that two sessions schedule a plain run the same way.
DEFAULT_SEED = 0

#: Seconds an async test using the kit's fixtures may run before it fails as hung.
#: A kit test takes milliseconds in memory and well under a second over loopback
#: TCP; twenty seconds leaves room for a loaded CI machine while a deadlocked
#: session of 8 seeds x 2 versions still ends within minutes, not never.
DEFAULT_DEADLINE = 20.0


@dataclass(frozen=True)
class PlainSeed:
    """The seed of every run without chaos in this session, and where it came from."""

    seed: int
    #: "the default", "--tls-chaos-seed" or the environment variable's name.
    source: str

    @property
    def replaying(self) -> bool:
        """True when the user asked for this seed: marked tests then run only it."""
        return self.source != "the default"


def plain_seed(option: int | None) -> PlainSeed:
    """The session's plain seed: ``--tls-chaos-seed``, else the environment, else the default.

    Raises:
      ValueError: the environment variable is set to something that is not an integer.
    """
    if option is not None:
        return PlainSeed(option, "--tls-chaos-seed")
    from_env = replay_seed()
    if from_env is not None:
        return PlainSeed(from_env, CHAOS_SEED_ENV)
    return PlainSeed(DEFAULT_SEED, "the default")


@dataclass(frozen=True)
class Run:
    """One run of a test: which test, with which seed, TLS version and transport."""

    nodeid: str
    seed: int
    #: True when the seed drives a chaos transport (``tls_chaos``), False for a
    #: plain run, whose seed only orders trio's task switches.
    chaos: bool
    #: Where a plain run's seed came from: "the default", "--tls-chaos-seed" or
    #: the environment variable's name.
    source: str
    #: "1.2", "1.3", or None when the test does not pin one (no ``tls_version``).
    version: str | None
    #: "memory", "lockstep", "tcp", or None when the test has no ``tls_transport``.
    transport: str | None

    def seed_text(self) -> str:
        """E.g. "chaos seed 3", or "seed 0 (the default; ...)" for a plain run."""
        if self.chaos:
            return f"chaos seed {self.seed}"
        return (
            f"seed {self.seed} ({self.source}; with no chaos transport it orders "
            "trio's task switches only)"
        )

    def conditions(self) -> str:
        """E.g. "TLS 1.2, the memory transport"."""
        parts = [f"TLS {self.version}" if self.version else "no pinned TLS version"]
        if self.transport:
            parts.append(f"the {self.transport} transport")
        return ", ".join(parts)

    def describe(self) -> str:
        return f"{self.seed_text()}, {self.conditions()}"

    def replay_command(self) -> str:
        return f"pytest {shlex.quote(self.nodeid)} --tls-chaos-seed={self.seed}"

    def replay_advice(self) -> str:
        return f"Replay exactly this run with:\n    {self.replay_command()}"


def fixturenames(item: pytest.Item) -> Sequence[str]:
    names: Sequence[str] = getattr(item, "fixturenames", ())
    return names


def definition_id(item: pytest.Item) -> str:
    """The node id of the test function that ``item`` is one parametrization of."""
    parent = item.parent.nodeid if item.parent is not None else ""
    return f"{parent}::{getattr(item, 'originalname', item.name)}"


def _params(item: pytest.Item) -> Mapping[str, Any]:
    callspec = getattr(item, "callspec", None)
    params: Mapping[str, Any] = callspec.params if callspec is not None else {}
    return params


def run_of(item: pytest.Item, plain: PlainSeed) -> Run:
    params = _params(item)
    chaos_seed = params.get("tls_chaos_seed")
    transport = params.get("tls_transport")
    if transport is None and "tls_transport" in fixturenames(item):
        transport = "memory"
    return Run(
        nodeid=item.nodeid,
        seed=chaos_seed if isinstance(chaos_seed, int) else plain.seed,
        chaos=isinstance(chaos_seed, int),
        source="the tls_chaos marker" if isinstance(chaos_seed, int) else plain.source,
        version=params.get("tls_version"),
        transport=transport,
    )


def groups(item: pytest.Item) -> tuple[tuple[object, ...], tuple[object, ...]]:
    """``item``'s group (runs differing only by seed) and family (... and TLS version)."""
    callspec = getattr(item, "callspec", None)
    indices: dict[str, int] = dict(callspec.indices) if callspec is not None else {}
    indices.pop("tls_chaos_seed", None)
    group = (definition_id(item), tuple(sorted(indices.items())))
    indices.pop("tls_version", None)
    return group, (definition_id(item), tuple(sorted(indices.items())))


def bounded(
    test: Callable[..., Awaitable[object]], run: Run, seconds: float
) -> Callable[..., Awaitable[None]]:
    """``test``, seeded as ``run`` says and failing after ``seconds`` of real time."""

    @functools.wraps(test)
    async def run_test(**kwargs: object) -> None:
        __tracebackhide__ = True
        # Seeded here, inside trio.run and after the fixtures are set up:
        # pytest-trio starts fixture tasks in an order that varies between sessions
        # (it keeps them in a set), so a seed set before trio.run would not make the
        # test's own task switches repeat.
        seed_trio_scheduler(run.seed)
        stuck: BaseException | None = None
        with wall_clock_deadline(seconds) as scope:
            try:
                await test(**kwargs)
            except (Exception, trio.Cancelled, BaseExceptionGroup) as exc:
                if not scope.cancel_called:
                    raise
                # Whatever the cancellation turned into, the deadline is the news;
                # this exception, chained, shows where the test was stuck.
                stuck = exc
        if stuck is not None or scope.cancelled_caught:
            raise trio.TooSlowError(deadline_message(run, seconds)) from stuck

    return run_test


def deadline_message(run: Run, seconds: float) -> str:
    """What a run that outlived its deadline fails with."""
    return (
        f"trio_tls: {run.nodeid} did not finish within its {seconds:g} s deadline "
        f"(a deadlock?). It ran with {run.describe()}. {run.replay_advice()}\n"
        "Set another deadline with @pytest.mark.tls_deadline(seconds) or the "
        "tls_deadline ini option."
    )


@dataclass(frozen=True)
class Outcome:
    """The call phase of one run, kept until the session ends."""

    run: Run
    #: Runs in one group differ only by seed: same test, same parameters (the TLS
    #: version and the transport included).
    group: Hashable
    #: Runs in one family differ only by seed and TLS version.
    family: Hashable
    report: pytest.TestReport

    @property
    def failed(self) -> bool:
        return self.report.failed


def failure_note(failure: Outcome, outcomes: Sequence[Outcome]) -> str:
    """The trio_tls note for ``failure``, judged against every run of the session."""
    run = failure.run
    if not run.chaos:
        return f"trio_tls: this run had {run.describe()}. {run.replay_advice()}"
    group = [each for each in outcomes if each.group == failure.group]
    plain_failures = [each.run.nodeid for each in group if not each.run.chaos and each.failed]
    if plain_failures:
        return (
            f"trio_tls: not a chaos failure. The same test without chaos failed too "
            f"({plain_failures[0]}), so seed {run.seed} is not what makes it fail: "
            "debug that run first."
        )
    chaos_runs = [each for each in group if each.run.chaos]
    if len(chaos_runs) > 1 and all(each.failed for each in chaos_runs):
        return (
            f"trio_tls: not a chaos failure. This test failed under every one of the "
            f"{len(chaos_runs)} chaos seeds it ran with ({run.conditions()}), "
            f"so no seed is what makes it fail, and any run shows it."
            f"{_other_versions(failure, outcomes)}"
        )
    return f"trio_tls: this run had {run.describe()}. {run.replay_advice()}"


def _other_versions(failure: Outcome, outcomes: Sequence[Outcome]) -> str:
    """How the same test fared under the other TLS versions, e.g. " Under TLS 1.2: 0 of 8 failed." """
    tally: dict[str, list[bool]] = {}
    for each in outcomes:
        version = each.run.version
        if each.family == failure.family and each.run.chaos and version != failure.run.version:
            tally.setdefault(str(version), []).append(each.failed)
    return "".join(
        f" Under TLS {version}: {sum(failed)} of {len(failed)} runs failed."
        for version, failed in sorted(tally.items())
    )
