"""pytest plugin: fixtures for in-process TLS tests, registered through ``pytest11``.

Installing trio_tls is enough; no conftest is needed. This module provides fixtures
and markers only. Running async tests is pytest-trio's job: set ``trio_mode = true``
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
  per chaos seed (ids ``chaos0`` ...). A failure names its seed; ``--tls-chaos-seed=N``
  or ``TRIO_TLS_CHAOS_SEED=N`` replays only that seed.
- ``tls_stream_pair`` (async): a connected ``(client, server)`` pair of SSLStreams
  over ``tls_transport``, under chaos when ``tls_chaos_seed`` is set. The handshake
  runs on first use; both streams are force-closed after the test.
- ``tls_server_handler``: what ``tls_server`` runs per connection; echo unless you
  override this fixture.
- ``tls_server`` (async): a running :class:`~trio_tls.testing.TLSTestServer` on
  127.0.0.1 (``.host``, ``.port``, ``.connect()``, ``.client_context`` ...).
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Generator, Iterable, Mapping, Sequence
from typing import Any, NoReturn

import pytest

from .testing import (
    TLS_VERSIONS,
    TRANSPORTS,
    Handler,
    StreamPair,
    TLSTestCA,
    TLSTestServer,
    TLSVersionName,
    TransportName,
    chaos_note,
    echo_handler,
    open_tls_stream_pair,
    open_tls_test_server,
    replay_seed,
    seed_trio_scheduler,
)
from .testing._chaos import DEFAULT_SEED_COUNT
from .testing._pairs import close_pair_forcefully

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
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("trio_tls", "trio_tls testing kit")
    group.addoption(
        "--tls-chaos-seed",
        type=int,
        default=None,
        metavar="SEED",
        help="run tests marked tls_chaos with only this chaos seed, to replay a failure "
        "(same as the TRIO_TLS_CHAOS_SEED environment variable)",
    )


def pytest_configure(config: pytest.Config) -> None:
    for line in _MARKERS:
        config.addinivalue_line("markers", line)


# -- parametrization ----------------------------------------------------------------------


def _usage_error(message: str) -> NoReturn:
    """Fail collection with ``message`` alone: it states the rule, a traceback would not help."""
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


def _marker_args(
    metafunc: pytest.Metafunc, marker: str, fixture: str
) -> tuple[Sequence[Any], Mapping[str, Any]] | None:
    """The closest ``marker``'s arguments, or None; refuses a marker with no effect."""
    mark = metafunc.definition.get_closest_marker(marker)
    if mark is None:
        return None
    if fixture not in metafunc.fixturenames:
        # Only a marker on the test itself is an error: one on a class or module
        # legitimately covers tests that do not use TLS at all.
        if any(own.name == marker for own in metafunc.definition.own_markers):
            _usage_error(
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
        _usage_error("@pytest.mark.tls_versions takes one or more of '1.2', '1.3' as arguments.")
    chosen: list[TLSVersionName] = []
    for version in args:
        if version not in TLS_VERSIONS:
            _usage_error(
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
        _usage_error(f"@pytest.mark.tls_transports takes one or more of {TRANSPORTS}.")
    chosen: list[TransportName] = []
    for name in args:
        if name not in TRANSPORTS:
            _usage_error(f"@pytest.mark.tls_transports accepts only {TRANSPORTS}, not {name!r}.")
        chosen.append(name)
    return chosen


def _seeds(metafunc: pytest.Metafunc) -> list[int | None] | None:
    found = _marker_args(metafunc, "tls_chaos", "tls_chaos_seed")
    if found is None:
        return None
    args, kwargs = found
    unknown = set(kwargs) - {"count", "seeds", "plain"}
    if args or unknown:
        _usage_error(
            "@pytest.mark.tls_chaos takes only the keywords count=, seeds= and plain=, "
            f"got {args!r} {sorted(unknown)!r}."
        )
    replay = metafunc.config.getoption("tls_chaos_seed")
    if replay is None:
        replay = replay_seed()
    if replay is not None:
        return [replay]  # replaying: exactly the failing run, nothing else
    seeds: Iterable[int] = kwargs.get("seeds") or range(kwargs.get("count", DEFAULT_SEED_COUNT))
    chosen: list[int | None] = [None] if kwargs.get("plain", False) else []
    for seed in seeds:
        if not isinstance(seed, int) or isinstance(seed, bool):
            _usage_error(f"@pytest.mark.tls_chaos seeds must be integers, not {seed!r}.")
        chosen.append(seed)
    if not chosen:
        _usage_error("@pytest.mark.tls_chaos needs count >= 1 or at least one seed.")
    return chosen


def _parametrize(
    metafunc: pytest.Metafunc, argname: str, values: Sequence[object], ids: list[str]
) -> None:
    if argname in metafunc.fixturenames and not _directly_parametrized(metafunc, argname):
        metafunc.parametrize(argname, values, ids=ids, indirect=True)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    versions = _versions(metafunc)
    _parametrize(metafunc, "tls_version", versions, [_VERSION_IDS[v] for v in versions])
    transports = _transports(metafunc)
    if transports is not None:
        _parametrize(metafunc, "tls_transport", transports, list(transports))
    seeds = _seeds(metafunc)
    if seeds is not None:
        ids = ["nochaos" if seed is None else f"chaos{seed}" for seed in seeds]
        _parametrize(metafunc, "tls_chaos_seed", seeds, ids)


# -- reporting and rules ----------------------------------------------------------------


def _chaos_seed_of(item: pytest.Item) -> int | None:
    callspec = getattr(item, "callspec", None)
    seed = callspec.params.get("tls_chaos_seed") if callspec is not None else None
    return seed if isinstance(seed, int) else None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    seed = _chaos_seed_of(item)
    if seed is not None and report.failed:
        report.sections.append(("trio_tls chaos", chaos_note(seed)))
    return report


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    used = [name for name in ASYNC_FIXTURES if name in getattr(item, "fixturenames", ())]
    if not used or item.get_closest_marker("trio") is not None:
        return
    if not item.config.pluginmanager.hasplugin("trio"):
        how = "install pytest-trio (pip install pytest-trio) and mark the test"
    else:
        how = "make it an async test marked @pytest.mark.trio, or set trio_mode = true"
    _usage_error(
        f"{item.name} uses {', '.join(used)}, which are trio fixtures: they only work in "
        f"a trio test. To fix it, {how}."
    )


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
    if seed is not None:
        # Before trio.run starts, so the whole run's scheduling repeats for this seed.
        seed_trio_scheduler(seed)
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
