"""The pytest plugin, exercised the way users meet it: pytest sessions in a fresh
directory with no conftest, finding the plugin through the ``pytest11`` entry point.

Each inner session runs in a subprocess (``runpytest_subprocess``), as a user's
would: nothing from this session (its plugins, its trio run, its warnings filter)
leaks in.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path

import pytest

from trio_tls import _pytest_plugin
from trio_tls._pytest_runs import KIT_FIXTURES

TRIO_MODE_INI = "[pytest]\ntrio_mode = true\n"

#: The bound on one inner session, which takes 2-5 s on an idle machine: generous for a
#: loaded one. When it expires pytester kills and reaps the session itself; were this
#: test's own timeout to strike first, the child would be left running.
INNER_TIMEOUT = 60.0


def runs(sessions: int) -> pytest.MarkDecorator:
    """The timeout of a test that starts ``sessions`` inner sessions: long enough that
    each session's own bound expires first, plus one more for the work in between."""
    return pytest.mark.timeout((sessions + 1) * INNER_TIMEOUT)


def run_session(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """``pytester.runpytest_subprocess``, never outliving :data:`INNER_TIMEOUT`."""
    return pytester.runpytest_subprocess(*args, timeout=INNER_TIMEOUT)


# The user's test from the README: ten lines, no conftest, both TLS versions.
USER_TEST = """
import trio

async def test_my_protocol(tls_stream_pair, tls_version):
    client, server = tls_stream_pair
    async def server_side():
        request = await server.receive_some()
        await server.send_all(request.upper())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server_side)
        await client.send_all(b"hello")
        assert await client.receive_some() == b"HELLO"
    assert client.version() == {"1.2": "TLSv1.2", "1.3": "TLSv1.3"}[tls_version]
"""

# An ordering bug: it assumes one receive_some returns a message of two TLS records.
ORDER_DEPENDENT_TEST = """
import pytest, trio

MESSAGE = bytes(range(256)) * 100  # 25.6 KiB: more than one 16 KiB TLS record

{marker}
async def test_whole_message(tls_stream_pair):
    client, server = tls_stream_pair
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.send_all, MESSAGE)
        assert await server.receive_some() == MESSAGE
"""


@runs(1)
def test_user_test_runs_under_both_versions_with_no_conftest(pytester: pytest.Pytester) -> None:
    pytester.makeini(TRIO_MODE_INI)
    pytester.makepyfile(test_user=USER_TEST)
    assert not list(pytester.path.glob("conftest.py"))
    result = run_session(pytester, "-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "*test_my_protocol[[]tls12[]] PASSED*",
            "*test_my_protocol[[]tls13[]] PASSED*",
        ]
    )


@runs(1)
def test_fixtures_markers_and_overrides(pytester: pytest.Pytester) -> None:
    # --strict-markers: the plugin registers its markers, users need not.
    pytester.makeini(TRIO_MODE_INI + "addopts = --strict-markers\n")
    pytester.makepyfile(
        test_features="""
        import ssl
        import pytest
        import trio
        from trio_tls import SSLStream
        from trio_tls.testing import TLSTestCA, TLSTestServer

        def test_ca_is_shared(tls_ca, request):
            assert isinstance(tls_ca, TLSTestCA)
            assert request.getfixturevalue("tls_ca") is tls_ca

        def test_contexts_are_pinned(tls_server_context, tls_client_context, tls_version):
            expected = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
            for context in (tls_server_context, tls_client_context):
                assert context.maximum_version == expected[tls_version]

        @pytest.mark.tls_versions("1.3")
        def test_only_13(tls_version):
            assert tls_version == "1.3"

        @pytest.mark.parametrize("tls_version", ["1.2"])
        def test_user_parametrized(tls_version):
            assert tls_version == "1.2"

        def test_dynamic_version_request(request):
            request.getfixturevalue("tls_version")

        def test_default_transport_and_seed(tls_transport, tls_chaos_seed):
            assert (tls_transport, tls_chaos_seed) == ("memory", None)

        @pytest.mark.tls_versions("1.2")
        @pytest.mark.tls_transports("memory", "lockstep", "tcp")
        @pytest.mark.tls_chaos(seeds=[7], plain=True)
        async def test_pair_matrix(tls_stream_pair, tls_transport, tls_chaos_seed):
            client, server = tls_stream_pair
            assert isinstance(client, SSLStream) and isinstance(server, SSLStream)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(server.send_all, b"hi")
                assert await client.receive_some() == b"hi"
            transport = client.transport_stream
            if tls_chaos_seed is not None:
                assert transport.seed == tls_chaos_seed
                transport = transport.transport
            assert isinstance(transport, trio.SocketStream) == (tls_transport == "tcp")

        async def shout(stream):
            async for data in stream:
                await stream.send_all(data.upper())

        @pytest.fixture
        def tls_server_handler():
            return shout

        @pytest.mark.tls_versions("1.3")
        @pytest.mark.tls_chaos(seeds=[4])
        def test_sync_with_an_async_fixture(tls_stream_pair):
            pass

        @pytest.mark.tls_versions("1.3")
        async def test_server_with_my_handler(tls_server):
            assert isinstance(tls_server, TLSTestServer)
            assert tls_server.host == "127.0.0.1" and tls_server.port > 0
            client = await tls_server.connect()
            await client.send_all(b"quiet")
            assert await client.receive_some() == b"QUIET"
            assert client.version() == "TLSv1.3"
            await client.aclose()
        """
    )
    result = run_session(pytester, "-v")
    result.assert_outcomes(passed=13, failed=1, errors=1)
    result.stdout.fnmatch_lines_random(
        [
            "*tls_version is parametrized at collection time*",
            "*trio_tls plugin: test_sync_with_an_async_fixture[[]tls13-chaos4[]] is a regular "
            "(sync) test function, but it uses the async fixture tls_stream_pair, which only "
            "works in an async trio test. To fix it, make it an async def test.",
        ]
    )
    # trio_mode is on already, and a usage error is not something a seed did.
    assert "trio_mode" not in result.stdout.str()
    assert "trio_tls: this run had" not in result.stdout.str()
    result.stdout.fnmatch_lines_random(
        [
            "*test_only_13[[]tls13[]] PASSED*",
            "*test_user_parametrized[[]1.2[]] PASSED*",
            "*test_pair_matrix[[]tls12-memory-nochaos[]] PASSED*",
            "*test_pair_matrix[[]tls12-lockstep-chaos7[]] PASSED*",
            "*test_pair_matrix[[]tls12-tcp-chaos7[]] PASSED*",
            "*test_server_with_my_handler[[]tls13[]] PASSED*",
        ]
    )
    assert "test_only_13[tls12]" not in result.stdout.str()


@runs(1)
def test_works_without_trio_mode_with_the_trio_marker(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_marked="""
        import pytest
        import trio

        @pytest.mark.trio
        async def test_marked(tls_stream_pair):
            client, server = tls_stream_pair
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client.send_all, b"x")
                assert await server.receive_some() == b"x"

        async def test_unmarked(tls_stream_pair):
            pass

        def test_sync(tls_stream_pair):
            pass
        """
    )
    result = run_session(pytester, "-v")
    result.assert_outcomes(passed=2, errors=4)
    result.stdout.fnmatch_lines_random(
        [
            "*trio_tls plugin: test_unmarked[[]tls12[]] uses the async fixture "
            "tls_stream_pair, which only works in a trio test. To fix it, mark it "
            "@pytest.mark.trio, or set trio_mode = true.",
            "*trio_tls plugin: test_sync[[]tls12[]] is a regular (sync) test function, but it "
            "uses the async fixture tls_stream_pair, which only works in an async trio test. "
            "To fix it, make it an async def test marked @pytest.mark.trio (or set trio_mode "
            "= true).",
        ]
    )


@runs(1)
def test_sync_fixtures_work_without_pytest_trio(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_plain="""
        import pytest

        def test_contexts(tls_ca, tls_client_context, tls_server_context):
            assert tls_client_context.check_hostname

        def test_pair(tls_stream_pair):
            pass

        @pytest.mark.trio
        async def test_marked(tls_stream_pair, tls_server):
            pass
        """
    )
    # As if pytest-trio were not installed: the kit's rule comes first, for a test
    # marked trio too, before pytest's own complaint about async fixtures.
    result = run_session(pytester, "-p", "no:trio", "-v")
    result.assert_outcomes(passed=2, errors=4)
    result.stdout.fnmatch_lines_random(
        [
            "*trio_tls plugin: test_pair[[]tls12[]] uses the async fixture tls_stream_pair, "
            "which pytest-trio runs, and pytest-trio is not installed (or was disabled with "
            "-p no:trio). To fix it, install pytest-trio (pip install pytest-trio).",
            "*trio_tls plugin: test_marked[[]tls13[]] uses the async fixtures tls_stream_pair "
            "and tls_server, which pytest-trio runs*",
        ]
    )
    output = result.stdout.str()
    assert "requested an async fixture" not in output
    assert "AssertionError" not in output


MARKER_MISUSES = {
    "unknown_version": (
        '@pytest.mark.tls_versions("1.4")\ndef test_x(tls_version): pass',
        "*tls_versions accepts only '1.2' and '1.3' (as strings), not '1.4'*",
    ),
    "float_version": (
        "@pytest.mark.tls_versions(1.3)\ndef test_x(tls_version): pass",
        "*tls_versions accepts only '1.2' and '1.3' (as strings), not 1.3*",
    ),
    "marker_without_fixture": (
        '@pytest.mark.tls_versions("1.3")\ndef test_x(): pass',
        "*tls_versions on test_x has no effect: the test does not use the tls_version*",
    ),
    "unknown_transport": (
        '@pytest.mark.tls_transports("udp")\ndef test_x(tls_transport): pass',
        "*tls_transports accepts only ('memory', 'lockstep', 'tcp'), not 'udp'*",
    ),
    "bad_seed": (
        "@pytest.mark.tls_chaos(seeds=['a'])\ndef test_x(tls_chaos_seed): pass",
        "*tls_chaos seeds must be integers, not 'a'*",
    ),
    "positional_chaos": (
        "@pytest.mark.tls_chaos(3)\ndef test_x(tls_chaos_seed): pass",
        "*tls_chaos takes only the keywords count=, seeds= and plain=*",
    ),
    "zero_deadline": (
        "@pytest.mark.tls_deadline(0)\nasync def test_x(tls_ca): pass",
        "*tls_deadline's seconds must be a positive, finite number of seconds, not 0.",
    ),
    "deadline_on_sync_test": (
        "@pytest.mark.tls_deadline(5)\ndef test_x(tls_ca): pass",
        "*tls_deadline on test_x has no effect: only async tests that use a tls_* fixture*",
    ),
}


@runs(1)
def test_marker_misuse_states_the_rule_on_each_test(pytester: pytest.Pytester) -> None:
    # All in one module, with tests that are fine: every misuse is reported on its
    # own test, and the rest of the module still runs.
    misuses = "\n\n".join(
        source.replace("def test_x", f"def test_{name}")
        for name, (source, _) in MARKER_MISUSES.items()
    )
    pytester.makepyfile(
        test_misuses=f"""
import pytest

def test_fine(tls_version):
    pass

{misuses}

@pytest.mark.tls_versions("1.1")
@pytest.mark.tls_chaos(seeds=[1.5])
def test_two_misuses(tls_stream_pair):
    pass

def test_also_fine(tls_ca):
    pass
"""
    )
    result = run_session(pytester, "-v")
    result.assert_outcomes(passed=3, errors=len(MARKER_MISUSES) + 1)
    result.stdout.fnmatch_lines_random(
        [f"*test_misuses.py::test_{name} ERROR*" for name in [*MARKER_MISUSES, "two_misuses"]]
    )
    messages = [
        message.replace("test_x", f"test_{name}") for name, (_, message) in MARKER_MISUSES.items()
    ]
    result.stdout.fnmatch_lines_random(messages)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_two_misuses*",
            "*tls_versions accepts only '1.2' and '1.3' (as strings), not '1.1'.",
            "*tls_chaos seeds must be integers, not 1.5.",
        ]
    )


def test_markers_and_option_are_documented(pytester: pytest.Pytester) -> None:
    # In-process: nothing runs, so nothing can leak into this session.
    result = pytester.runpytest_inprocess("--markers")
    result.stdout.fnmatch_lines_random(
        [
            "@pytest.mark.tls_versions(*",
            "@pytest.mark.tls_transports(*",
            "@pytest.mark.tls_chaos(*",
            "@pytest.mark.tls_deadline(*",
        ]
    )
    result = pytester.runpytest_inprocess("--help")
    result.stdout.fnmatch_lines_random(["*--tls-chaos-seed=SEED*", "*tls_deadline (string)*"])


def test_bad_settings_are_usage_errors(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # In-process: pytest stops at configuration, before anything runs.
    pytester.makeini("[pytest]\ntls_deadline = soon\n")
    result = pytester.runpytest_inprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*trio_tls plugin: the tls_deadline ini option must be a positive, finite "
            "number of seconds, not 'soon'"
        ]
    )
    pytester.makeini("[pytest]\n")
    monkeypatch.setenv("TRIO_TLS_CHAOS_SEED", "five")
    result = pytester.runpytest_inprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*TRIO_TLS_CHAOS_SEED must be an integer seed, not 'five'"])


def test_every_fixture_of_the_kit_makes_a_run() -> None:
    # A fixture missing from KIT_FIXTURES would give its tests no seed and no deadline.
    defined = {name for name in vars(_pytest_plugin) if name.startswith("tls_")}
    assert defined == KIT_FIXTURES


def _failing_runs(output: str) -> list[tuple[str, int]]:
    return [
        (version, int(seed))
        for version, seed in re.findall(
            r"test_whole_message\[(tls1[23])-chaos(\d+)\] FAILED", output
        )
    ]


@runs(4)
def test_chaos_catches_an_ordering_bug_and_replays_it(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TRIO_TLS_CHAOS_SEED", raising=False)
    pytester.makeini(TRIO_MODE_INI)

    # Without chaos the bug never shows: one write, one read, both records at once.
    pytester.makepyfile(test_order=ORDER_DEPENDENT_TEST.format(marker=""))
    run_session(pytester).assert_outcomes(passed=2)

    # Under chaos some seeds split the delivery, and the failure names its seed.
    pytester.makepyfile(test_order=ORDER_DEPENDENT_TEST.format(marker="@pytest.mark.tls_chaos"))
    result = run_session(pytester, "-v")
    failing = _failing_runs(result.stdout.str())
    assert failing, "no chaos seed caught the ordering bug"
    outcomes = result.parseoutcomes()
    assert outcomes["failed"] == len(failing)
    assert outcomes["failed"] + outcomes.get("passed", 0) == 16  # 2 versions x 8 seeds
    version, seed = failing[0]
    result.stdout.fnmatch_lines(
        [
            f"*trio_tls: this run had chaos seed {seed}, TLS 1.{version[-1]}, the memory "
            "transport. Replay exactly this run with:",
            f"    pytest 'test_order.py::test_whole_message[[]{version}-chaos{seed}[]]' "
            f"--tls-chaos-seed={seed}",
        ]
    )

    # Replaying the seed runs exactly that run, and it fails again.
    again = run_session(pytester, "-v", f"--tls-chaos-seed={seed}", "-k", version)
    again.assert_outcomes(failed=1)
    assert _failing_runs(again.stdout.str()) == [(version, seed)]
    monkeypatch.setenv("TRIO_TLS_CHAOS_SEED", str(seed))
    by_env = run_session(pytester, "-v", "-k", version)
    by_env.assert_outcomes(failed=1)
    assert _failing_runs(by_env.stdout.str()) == [(version, seed)]


# -- replay across sessions ---------------------------------------------------------------

# Each session mints its own CA, so handshake sizes differ from one to the next; the
# runs must not. The plain test races three tasks: what order they run in is decided
# by trio's scheduler, which the kit seeds for every run.
RECORDING_TEST = """
import json, os
import pytest, trio

REPORT = bytes(range(256)) * 100  # two TLS records

def record(request, value):
    with open(os.environ["TRACE_FILE"], "a") as out:
        out.write(json.dumps([request.node.name, value]) + "\\n")

@pytest.mark.tls_versions("1.2")
@pytest.mark.tls_transports("memory", "lockstep")
@pytest.mark.tls_chaos(seeds=[5, 26])
async def test_chaos_run(tls_stream_pair, request):
    client, server = tls_stream_pair
    events = []
    async def serve():
        await server.receive_some()
        events.append("server: request")
        await server.send_all(REPORT)
        await server.aclose()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        await client.send_all(b"GET report")
        events.append("client: sent")
        async for chunk in client:
            events.append(len(chunk))
    record(request, [events, [list(d) for d in client.transport_stream.decisions]])

async def test_plain_run(tls_stream_pair, request):
    order = []
    async def racer(name):
        for _ in range(12):
            await trio.lowlevel.checkpoint()
            order.append(name)
    async with trio.open_nursery() as nursery:
        for name in "abc":
            nursery.start_soon(racer, name)
    record(request, "".join(order))
"""


def _session_trace(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    *args: str,
    passed: int = 6,
) -> dict[str, object]:
    """What each test of RECORDING_TEST recorded in one fresh session."""
    trace_file = pytester.path / f"{name}.jsonl"
    monkeypatch.setenv("TRACE_FILE", str(trace_file))
    run_session(pytester, *args).assert_outcomes(passed=passed)
    return dict(json.loads(line) for line in trace_file.read_text().splitlines())


@runs(3)
def test_a_seed_replays_the_same_run_in_fresh_sessions(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TRIO_TLS_CHAOS_SEED", raising=False)
    pytester.makeini(TRIO_MODE_INI)
    pytester.makepyfile(test_recording=RECORDING_TEST)
    first = _session_trace(pytester, monkeypatch, "first")
    second = _session_trace(pytester, monkeypatch, "second")
    assert sorted(first) == [
        "test_chaos_run[tls12-lockstep-chaos26]",
        "test_chaos_run[tls12-lockstep-chaos5]",
        "test_chaos_run[tls12-memory-chaos26]",
        "test_chaos_run[tls12-memory-chaos5]",
        "test_plain_run[tls12]",
        "test_plain_run[tls13]",
    ]
    # Same splits, delays and task switches, chaos or not, with new certificates.
    assert first == second
    # Replaying seed 26 on its own repeats its runs; the plain runs get seed 26 too.
    replay = _session_trace(pytester, monkeypatch, "replay", "--tls-chaos-seed=26", passed=4)
    for name in ("test_chaos_run[tls12-memory-chaos26]", "test_chaos_run[tls12-lockstep-chaos26]"):
        assert replay[name] == first[name]
    assert replay["test_plain_run[tls12]"] != first["test_plain_run[tls12]"]


# -- failing runs: deadlines and notes ------------------------------------------------------

HANGING_TESTS = """
import pytest, trio

@pytest.mark.tls_versions("1.2")
@pytest.mark.tls_transports("lockstep")
@pytest.mark.tls_chaos(seeds=[3])
async def test_both_wait_for_the_other(tls_stream_pair):
    client, server = tls_stream_pair
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.receive_some)
        nursery.start_soon(server.receive_some)

@pytest.mark.tls_deadline(0.2)
@pytest.mark.tls_versions("1.3")
async def test_sleeps_forever(tls_stream_pair):
    await trio.sleep_forever()

async def test_virtual_hours_are_not_wall_clock_time(tls_ca, autojump_clock):
    await trio.sleep(3600)
"""

# A TLS 1.3 client cannot tell from its handshake that the server rejected its
# (missing) certificate; this test assumes it can, and fails under every seed.
NOTED_TESTS = """
import pytest, trio

@pytest.fixture
def tls_server_context(tls_ca, tls_version):
    return tls_ca.server_context(version=tls_version, require_client_cert=True)

@pytest.mark.tls_chaos(count=3)
async def test_client_without_certificate(tls_stream_pair):
    client, server = tls_stream_pair
    async def server_side():
        with pytest.raises(trio.BrokenResourceError):
            await server.do_handshake()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server_side)
        with pytest.raises(trio.BrokenResourceError):
            await client.do_handshake()

@pytest.mark.tls_versions("1.2")
@pytest.mark.tls_chaos(count=2, plain=True)
async def test_always_fails(tls_stream_pair):
    assert False, "broken everywhere"

@pytest.mark.tls_versions("1.2")
async def test_plain_failure(tls_stream_pair):
    assert False, "broken"
"""


def _failure_blocks(output: str) -> dict[str, str]:
    """The FAILURES section of pytest's output, one block of text per failed test."""
    blocks: dict[str, str] = {}
    name = ""
    for line in output.splitlines():
        header = re.fullmatch(r"_{3,} (\S+) _{3,}", line)
        if header:
            name = header.group(1)
            blocks[name] = ""
        elif name:
            blocks[name] += line + "\n"
    return blocks


@runs(1)
def test_failing_runs_say_how_to_replay_them_and_whether_the_seed_matters(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TRIO_TLS_CHAOS_SEED", raising=False)
    pytester.makeini(TRIO_MODE_INI + "tls_deadline = 0.5\n")
    pytester.makepyfile(test_hanging=HANGING_TESTS, test_noted=NOTED_TESTS)
    result = run_session(pytester)
    result.assert_outcomes(passed=4, failed=9)
    blocks = _failure_blocks(result.stdout.str())

    # A hang fails at its deadline (ini option or marker), naming what to replay.
    hung = blocks["test_both_wait_for_the_other[tls12-lockstep-chaos3]"]
    assert (
        "trio.TooSlowError: trio_tls: test_hanging.py::test_both_wait_for_the_other"
        "[tls12-lockstep-chaos3] did not finish within its 0.5 s deadline (a deadlock?). "
        "It ran with chaos seed 3, TLS 1.2, the lockstep transport. Replay exactly this run "
        "with:" in hung
    )
    assert (
        "pytest 'test_hanging.py::test_both_wait_for_the_other[tls12-lockstep-chaos3]' "
        "--tls-chaos-seed=3" in hung
    )
    slept = blocks["test_sleeps_forever[tls13]"]
    assert "did not finish within its 0.2 s deadline" in slept
    assert "seed 0 (the default; with no chaos transport" in slept

    # Every seed fails under TLS 1.3, none under 1.2: the seed is not the cause.
    for seed in range(3):
        block = blocks[f"test_client_without_certificate[tls13-chaos{seed}]"]
        assert "trio_tls: not a chaos failure. This test failed under every one of the 3 " in block
        assert "(TLS 1.3, the memory transport)" in block
        assert "Under TLS 1.2: 0 of 3 runs failed." in block
        assert "Replay exactly" not in block
    # The run without chaos fails as well: the chaos runs point at it.
    for seed in range(2):
        block = blocks[f"test_always_fails[tls12-chaos{seed}]"]
        assert "The same test without chaos failed too (test_noted.py::test_always_fails" in block
    # A plain run names its seed and how to replay it.
    plain = blocks["test_plain_failure[tls12]"]
    assert "trio_tls: this run had seed 0 (the default; with no chaos transport" in plain
    assert "pytest 'test_noted.py::test_plain_failure[tls12]' --tls-chaos-seed=0" in plain


# -- the documentation's examples ---------------------------------------------------------------

ROOT = Path(__file__).parent.parent
EXAMPLE = re.compile(r"<!-- example: (\S+) ([^>]+?) -->\n```python\n(.*?)```", re.DOTALL)


def _examples() -> list[tuple[str, str, str]]:
    """The tagged examples of notes/testing.md, of the docs index and of the README."""
    found = []
    for doc, minimum in (("notes/testing.md", 5), ("notes/index.md", 1), ("README.md", 1)):
        examples = EXAMPLE.findall((ROOT / doc).read_text())
        assert len(examples) >= minimum, f"expected the tagged examples in {doc}"
        found += examples
    return found


def _outcomes_by_file(output: str) -> dict[str, Counter[str]]:
    counts: dict[str, Counter[str]] = {}
    for name, outcome in re.findall(r"^(\S+\.py)::\S+ (PASSED|FAILED)", output, re.MULTILINE):
        counts.setdefault(name, Counter())[outcome] += 1
    return counts


# At most one process per example: a script each, one session for all the pytest
# examples, and one more for each chaos-fails example.
@runs(len(_examples()) + 1)
def test_docs_examples(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRIO_TLS_CHAOS_SEED", raising=False)
    pytester.makeini(TRIO_MODE_INI)
    expected: dict[str, str] = {}
    for name, kind, code in _examples():
        (pytester.path / name).write_text(code)
        if kind == "script":
            result = pytester.run(sys.executable, name, timeout=INNER_TIMEOUT)
            assert result.ret == 0, result.stderr.str()
        else:
            expected[name] = kind
    assert set(expected.values()) >= {"chaos-fails"}
    assert any(kind.startswith("passes=") for kind in expected.values())

    # Every pytest example in one session, as a user with all of them would run it.
    counts = _outcomes_by_file(run_session(pytester, "-v", *expected).stdout.str())
    for name, kind in expected.items():
        if kind.startswith("passes="):
            assert counts[name] == Counter(PASSED=int(kind.split("=")[1])), name
        elif kind == "chaos-fails":
            assert counts[name]["FAILED"] >= 1, f"the chaos transport missed the bug in {name}"
            assert counts[name].total() == 16, name  # 2 versions x 8 seeds
            # Without the marker the same test passes: only chaos shows the bug.
            code = (pytester.path / name).read_text()
            (pytester.path / name).write_text(code.replace("@pytest.mark.tls_chaos\n", ""))
            run_session(pytester, name).assert_outcomes(passed=2)
        else:
            raise AssertionError(f"unknown example kind {kind!r} for {name}")
