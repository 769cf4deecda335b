"""pytest plugin: fixtures for in-process TLS tests, registered through ``pytest11``.

Installing trio_tls is enough; no conftest is needed. This module provides fixtures,
markers and the rules around them. Running async tests is pytest-trio's job: set ``trio_mode = true``
or mark tests with ``@pytest.mark.trio``.

Fixtures (all public API):

- ``tls_ca`` (session): a :class:`~trio_tls.testing.TLSTestCA`.
- ``tls_version``: ``"1.2"`` or ``"1.3"``. A test that uses it, directly or through
  the fixtures below, runs once per version (ids ``tls12``, ``tls13``);
  ``@pytest.mark.tls_versions("1.3")`` restricts that.
- ``tls_server_context`` / ``tls_client_context``: new contexts from ``tls_ca``
  pinned to ``tls_version``; the client trusts the server and checks its name
  (:data:`~trio_tls.testing.SERVER_NAME`).
- ``tls_transport``: ``"memory"`` unless ``@pytest.mark.tls_transports(...)`` runs
  the test over several of ``"memory"``, ``"lockstep"``, ``"tcp"``.
- ``tls_chaos_seed``: None unless ``@pytest.mark.tls_chaos(...)`` runs the test once
  per chaos seed (ids ``chaos0`` ...). ``--tls-chaos-seed=N`` or
  ``TRIO_TLS_CHAOS_SEED=N`` replays only seed N.
- ``tls_stream_pair`` (async): a connected ``(client, server)`` pair of SSLStreams
  over ``tls_transport``, under chaos when ``tls_chaos_seed`` is set. The handshake
  runs on first use; both streams are force-closed after the test.
- ``tls_server_handler``: what ``tls_server`` runs per connection; echo unless you
  override this fixture.
- ``tls_server`` (async): a running :class:`~trio_tls.testing.TLSTestServer` on
  127.0.0.1 (``.host``, ``.port``, ``.connect()``, ``.client_context`` ...).

Every test that uses one of these is a *run* (see ``trio_tls._pytest_runs``): it
has a seed (the chaos seed, or the session's plain seed, which orders trio's task
switches), an async one has a deadline (``tls_deadline`` ini option, or
``@pytest.mark.tls_deadline(seconds)``), and a failure says how to replay it.
"""

from __future__ import annotations

import ssl
from collections.abc import (
    AsyncIterator,
    Callable,
    Generator,
    Iterable,
    Mapping,
    Sequence,
)
from typing import Any, NoReturn, TypeGuard, TypeVar

import pytest

from ._pytest_rules import is_async, trio_problem
from ._pytest_runs import (
    DEFAULT_DEADLINE,
    KIT_FIXTURES,
    Outcome,
    PlainSeed,
    bounded,
    definition_id,
    failure_note,
    fixturenames,
    groups,
    plain_seed,
    run_of,
)
from .testing import (
    TLS_VERSIONS,
    TRANSPORTS,
    Handler,
    StreamPair,
    TLSTestCA,
    TLSTestServer,
    TLSVersionName,
    TransportName,
    echo_handler,
    open_tls_stream_pair,
    open_tls_test_server,
    seed_trio_scheduler,
)
from .testing._chaos import DEFAULT_SEED_COUNT, trio_scheduler_random
from .testing._deadline import positive_seconds
from .testing._pairs import close_pair_forcefully

_T = TypeVar("_T")

#: The fixtures that are async and so need a trio test (pytest-trio).
ASYNC_FIXTURES = ("tls_stream_pair", "tls_server")

_VERSION_IDS = {"1.2": "tls12", "1.3": "tls13"}

_MARKERS = (
    "tls_versions(*versions): run a test that uses the tls_version fixture only under "
    "these TLS versions ('1.2', '1.3'); without it the test runs under both.",
    "tls_transports(*names): run a test that uses tls_transport or tls_stream_pair once "
    "per transport ('memory', 'lockstep', 'tcp'); without it, 'memory' only.",
    "tls_chaos(count=8, seeds=None, plain=False): run a test that uses tls_chaos_seed or "
    "tls_stream_pair once per chaos seed (seeds, or range(count)); plain=True adds a run "
    "without chaos. --tls-chaos-seed=N or TRIO_TLS_CHAOS_SEED=N runs only seed N.",
    "tls_deadline(seconds): fail an async test that uses the kit's fixtures if it runs "
    "longer than this (default: the tls_deadline ini option).",
)


#: Per session: the plain seed, the default deadline, marker misuses, run outcomes.
_PLAIN_SEED = pytest.StashKey[PlainSeed]()
_DEADLINE = pytest.StashKey[float]()
_MISUSES = pytest.StashKey[dict[str, list[str]]]()
_OUTCOMES = pytest.StashKey[list[Outcome]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("trio_tls", "trio_tls testing kit")
    group.addoption(
        "--tls-chaos-seed",
        type=int,
        default=None,
        metavar="SEED",
        help="run tests marked tls_chaos with only this chaos seed, to replay a failure, "
        "and give it to runs without chaos (same as the TRIO_TLS_CHAOS_SEED environment "
        "variable)",
    )
    parser.addini(
        "tls_deadline",
        "seconds an async test using trio_tls's fixtures may run before it fails as hung "
        f"(default {DEFAULT_DEADLINE:g})",
        default=f"{DEFAULT_DEADLINE:g}",
    )


def pytest_configure(config: pytest.Config) -> None:
    for line in _MARKERS:
        config.addinivalue_line("markers", line)
    try:
        config.stash[_PLAIN_SEED] = plain_seed(config.getoption("tls_chaos_seed"))
    except ValueError as exc:
        raise pytest.UsageError(f"trio_tls plugin: {exc}") from None
    config.stash[_DEADLINE] = _ini_deadline(config)
    config.stash[_MISUSES] = {}
    config.stash[_OUTCOMES] = []


def _ini_deadline(config: pytest.Config) -> float:
    raw = config.getini("tls_deadline")
    try:
        return positive_seconds(float(raw), "the tls_deadline ini option")
    except (TypeError, ValueError):
        raise pytest.UsageError(
            "trio_tls plugin: the tls_deadline ini option must be a positive, finite "
            f"number of seconds, not {raw!r}"
        ) from None


# -- parametrization ----------------------------------------------------------------------


class _Misuse(Exception):
    """A marker used against its rule; reported on the test, not at collection."""


def _usage_error(message: str) -> NoReturn:
    """Fail with ``message`` alone: it states the rule, a traceback would not help."""
    __tracebackhide__ = True
    pytest.fail(f"trio_tls plugin: {message}", pytrace=False)


def _directly_parametrized(metafunc: pytest.Metafunc, argname: str) -> bool:
    for mark in metafunc.definition.iter_markers("parametrize"):
        names = mark.args[0] if mark.args else mark.kwargs.get("argnames", ())
        if isinstance(names, str):
            names = [name.strip() for name in names.split(",")]
        if argname in names:
            return True
    return False


def _own_marker(metafunc: pytest.Metafunc, marker: str) -> bool:
    # Only a marker on the test itself can be an error: one on a class or module
    # legitimately covers tests that do not use TLS at all.
    return any(own.name == marker for own in metafunc.definition.own_markers)


def _marker_args(
    metafunc: pytest.Metafunc, marker: str, fixture: str
) -> tuple[Sequence[Any], Mapping[str, Any]] | None:
    """The closest ``marker``'s arguments, or None; refuses a marker with no effect."""
    mark = metafunc.definition.get_closest_marker(marker)
    if mark is None:
        return None
    if fixture not in metafunc.fixturenames:
        if _own_marker(metafunc, marker):
            raise _Misuse(
                f"@pytest.mark.{marker} on {metafunc.definition.name} has no effect: "
                f"the test does not use the {fixture} fixture (directly or through "
                "another tls_* fixture)."
            )
        return None
    return mark.args, mark.kwargs


def _versions(metafunc: pytest.Metafunc) -> list[TLSVersionName]:
    found = _marker_args(metafunc, "tls_versions", "tls_version")
    if found is None:
        return list(TLS_VERSIONS)
    args, kwargs = found
    if kwargs or not args:
        raise _Misuse("@pytest.mark.tls_versions takes one or more of '1.2', '1.3' as arguments.")
    chosen: list[TLSVersionName] = []
    for version in args:
        if version not in TLS_VERSIONS:
            raise _Misuse(
                f"@pytest.mark.tls_versions accepts only '1.2' and '1.3' (as strings), "
                f"not {version!r}."
            )
        chosen.append(version)
    return chosen


def _transports(metafunc: pytest.Metafunc) -> list[TransportName] | None:
    found = _marker_args(metafunc, "tls_transports", "tls_transport")
    if found is None:
        return None
    args, kwargs = found
    if kwargs or not args:
        raise _Misuse(f"@pytest.mark.tls_transports takes one or more of {TRANSPORTS}.")
    chosen: list[TransportName] = []
    for name in args:
        if name not in TRANSPORTS:
            raise _Misuse(f"@pytest.mark.tls_transports accepts only {TRANSPORTS}, not {name!r}.")
        chosen.append(name)
    return chosen


def _seeds(metafunc: pytest.Metafunc) -> list[int | None] | None:
    found = _marker_args(metafunc, "tls_chaos", "tls_chaos_seed")
    if found is None:
        return None
    args, kwargs = found
    unknown = set(kwargs) - {"count", "seeds", "plain"}
    if args or unknown:
        raise _Misuse(
            "@pytest.mark.tls_chaos takes only the keywords count=, seeds= and plain=, "
            f"got {args!r} {sorted(unknown)!r}."
        )
    chosen: list[int | None] = [None] if kwargs.get("plain", False) else []
    given = metafunc.config.stash[_PLAIN_SEED]
    if given.replaying:
        # Replaying: only that seed (and the plain run, which then has that seed too).
        return [*chosen, given.seed]
    seeds: Iterable[int] = kwargs.get("seeds") or range(kwargs.get("count", DEFAULT_SEED_COUNT))
    for seed in seeds:
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise _Misuse(f"@pytest.mark.tls_chaos seeds must be integers, not {seed!r}.")
        chosen.append(seed)
    if not chosen:
        raise _Misuse("@pytest.mark.tls_chaos needs count >= 1 or at least one seed.")
    return chosen


def _check_deadline_marker(metafunc: pytest.Metafunc) -> None:
    mark = metafunc.definition.get_closest_marker("tls_deadline")
    if mark is None:
        return
    name = metafunc.definition.name
    if KIT_FIXTURES.isdisjoint(metafunc.fixturenames) or not is_async(metafunc.function):
        if _own_marker(metafunc, "tls_deadline"):
            raise _Misuse(
                f"@pytest.mark.tls_deadline on {name} has no effect: only async tests "
                "that use a tls_* fixture have a deadline."
            )
        return
    if mark.kwargs or len(mark.args) != 1:
        raise _Misuse("@pytest.mark.tls_deadline takes one argument, the seconds.")
    try:
        positive_seconds(mark.args[0], "@pytest.mark.tls_deadline's seconds")
    except (TypeError, ValueError) as exc:
        raise _Misuse(f"{exc}.") from None


def _parametrize(
    metafunc: pytest.Metafunc, argname: str, values: Sequence[object], ids: list[str]
) -> None:
    if argname in metafunc.fixturenames and not _directly_parametrized(metafunc, argname):
        metafunc.parametrize(argname, values, ids=ids, indirect=True)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    misuses: list[str] = []

    def attempt(read: Callable[[pytest.Metafunc], _T]) -> _T | None:
        try:
            return read(metafunc)
        except _Misuse as exc:
            misuses.append(str(exc))
            return None

    versions = attempt(_versions)
    transports = attempt(_transports)
    seeds = attempt(_seeds)
    attempt(_check_deadline_marker)
    if misuses:
        # Collected as one unparametrized test that reports all of them (see
        # pytest_runtest_setup); the rest of the module still runs.
        metafunc.config.stash[_MISUSES][metafunc.definition.nodeid] = misuses
        return
    assert versions is not None
    _parametrize(metafunc, "tls_version", versions, [_VERSION_IDS[v] for v in versions])
    if transports is not None:
        _parametrize(metafunc, "tls_transport", transports, list(transports))
    if seeds is not None:
        ids = ["nochaos" if seed is None else f"chaos{seed}" for seed in seeds]
        _parametrize(metafunc, "tls_chaos_seed", seeds, ids)


# -- rules -------------------------------------------------------------------------------


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # tryfirst: before any fixture is set up, so the rule comes before whatever the
    # broken setup would have raised.
    misuses = item.config.stash[_MISUSES].get(definition_id(item))
    if misuses:
        _usage_error("\n".join(misuses))
    used = [name for name in ASYNC_FIXTURES if name in fixturenames(item)]
    problem = trio_problem(item, used) if used else None
    if problem is not None:
        _usage_error(problem)


# -- runs: seed, deadline, notes --------------------------------------------------------


def _deadline_of(item: pytest.Item) -> float:
    mark = item.get_closest_marker("tls_deadline")
    if mark is not None:  # checked at collection
        return positive_seconds(mark.args[0], "@pytest.mark.tls_deadline's seconds")
    return item.config.stash[_DEADLINE]


def _is_trio_test(item: pytest.Item) -> TypeGuard[pytest.Function]:
    return (
        isinstance(item, pytest.Function)
        and item.config.pluginmanager.hasplugin("trio")
        and item.get_closest_marker("trio") is not None
        and is_async(item.obj)  # not a hypothesis wrapper: those get a seed only
    )


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    # tryfirst: outside pytest-trio's own wrapper, which builds its trio.run around
    # item.obj; the seeded, bounded test has to be in place by then.
    __tracebackhide__ = True
    if KIT_FIXTURES.isdisjoint(fixturenames(item)):
        return (yield)
    run = run_of(item, item.config.stash[_PLAIN_SEED])
    scheduler = trio_scheduler_random()
    saved = scheduler.getstate() if scheduler is not None else None
    original = getattr(item, "obj", None)
    if _is_trio_test(item):
        item.obj = bounded(item.obj, run, _deadline_of(item))
    else:
        seed_trio_scheduler(run.seed)
    try:
        return (yield)
    finally:
        if isinstance(item, pytest.Function):
            item.obj = original
        if scheduler is not None and saved is not None:
            # Tests that do not use the kit keep trio's scheduling as it was.
            scheduler.setstate(saved)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    # The call phase only: a setup error is a usage error, not something a seed did.
    if call.when == "call" and not KIT_FIXTURES.isdisjoint(fixturenames(item)):
        group, family = groups(item)
        item.config.stash[_OUTCOMES].append(
            Outcome(run_of(item, item.config.stash[_PLAIN_SEED]), group, family, report)
        )
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    # Only now are all the runs of each test known. The terminal reporter shows
    # failures after this hook, so the notes reach it.
    outcomes = session.config.stash.get(_OUTCOMES, [])
    for outcome in outcomes:
        if outcome.failed:
            outcome.report.sections.append(("trio_tls", failure_note(outcome, outcomes)))


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tls_ca() -> TLSTestCA:
    """One throwaway CA (ECDSA) for the whole session: minting certificates is slow."""
    return TLSTestCA()


@pytest.fixture
def tls_version(request: pytest.FixtureRequest) -> TLSVersionName:
    """The TLS version this run of the test uses: "1.2" or "1.3"."""
    version: TLSVersionName | None = getattr(request, "param", None)
    if version is None:
        _usage_error(
            "tls_version is parametrized at collection time: request it as a test or "
            "fixture argument, not with request.getfixturevalue()."
        )
    return version


@pytest.fixture
def tls_server_context(tls_ca: TLSTestCA, tls_version: TLSVersionName) -> ssl.SSLContext:
    """A new server context from ``tls_ca`` allowing only ``tls_version``."""
    return tls_ca.server_context(version=tls_version)


@pytest.fixture
def tls_client_context(tls_ca: TLSTestCA, tls_version: TLSVersionName) -> ssl.SSLContext:
    """A new client context trusting ``tls_ca``, allowing only ``tls_version``."""
    return tls_ca.client_context(version=tls_version)


@pytest.fixture
def tls_transport(request: pytest.FixtureRequest) -> TransportName:
    """The transport ``tls_stream_pair`` uses: "memory" unless parametrized."""
    transport: TransportName = getattr(request, "param", "memory")
    return transport


@pytest.fixture
def tls_chaos_seed(request: pytest.FixtureRequest) -> int | None:
    """The chaos seed for this run, or None (no chaos) unless the test is marked tls_chaos."""
    seed: int | None = getattr(request, "param", None)
    return seed


@pytest.fixture
async def tls_stream_pair(
    tls_client_context: ssl.SSLContext,
    tls_server_context: ssl.SSLContext,
    tls_transport: TransportName,
    tls_chaos_seed: int | None,
) -> AsyncIterator[StreamPair]:
    """A connected ``(client, server)`` SSLStream pair; the handshake runs on first use."""
    client, server = await open_tls_stream_pair(
        tls_transport,
        client_context=tls_client_context,
        server_context=tls_server_context,
        chaos_seed=tls_chaos_seed,
    )
    try:
        yield client, server
    finally:
        await close_pair_forcefully((client, server))


@pytest.fixture
def tls_server_handler() -> Handler:
    """The handler ``tls_server`` runs per connection; override this fixture to change it."""
    return echo_handler


@pytest.fixture
async def tls_server(
    tls_server_handler: Handler,
    tls_server_context: ssl.SSLContext,
    tls_client_context: ssl.SSLContext,
) -> AsyncIterator[TLSTestServer]:
    """A TLS server on 127.0.0.1 running ``tls_server_handler``, for the test's duration."""
    async with open_tls_test_server(
        tls_server_handler,
        server_context=tls_server_context,
        client_context=tls_client_context,
    ) as server:
        yield server
