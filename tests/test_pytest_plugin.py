"""The pytest plugin, exercised the way users meet it: pytest sessions in a fresh
directory with no conftest, finding the plugin through the ``pytest11`` entry point.

Each inner session runs in a subprocess (``runpytest_subprocess``), as a user's
would: nothing from this session (its plugins, its trio run, its warnings filter)
leaks in.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

import pytest

TRIO_MODE_INI = "[pytest]\ntrio_mode = true\n"

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


def test_user_test_runs_under_both_versions_with_no_conftest(pytester: pytest.Pytester) -> None:
    pytester.makeini(TRIO_MODE_INI)
    pytester.makepyfile(test_user=USER_TEST)
    assert not list(pytester.path.glob("conftest.py"))
    result = pytester.runpytest_subprocess("-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "*test_my_protocol[[]tls12[]] PASSED*",
            "*test_my_protocol[[]tls13[]] PASSED*",
        ]
    )


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
    result = pytester.runpytest_subprocess("-v")
    result.assert_outcomes(passed=13, failed=1)
    result.stdout.fnmatch_lines(["*tls_version is parametrized at collection time*"])
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
    result = pytester.runpytest_subprocess("-v")
    result.assert_outcomes(passed=2, errors=4)
    result.stdout.fnmatch_lines(
        [
            "*trio_tls plugin: test_unmarked[[]tls12[]] uses tls_stream_pair, which are trio "
            "fixtures: they only work in a trio test. To fix it, make it an async test marked "
            "@pytest.mark.trio, or set trio_mode = true.*"
        ]
    )


def test_sync_fixtures_work_without_pytest_trio(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_plain="""
        def test_contexts(tls_ca, tls_client_context, tls_server_context):
            assert tls_client_context.check_hostname

        def test_pair(tls_stream_pair):
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:trio", "-v")
    result.assert_outcomes(passed=2, errors=2)
    result.stdout.fnmatch_lines(["*To fix it, install pytest-trio*"])


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
}


def test_marker_misuse_states_the_rule(pytester: pytest.Pytester) -> None:
    # One module per misuse, all in one session: each is its own collection error.
    pytester.makepyfile(
        **{
            f"test_{name}": f"import pytest\n\n{source}\n"
            for name, (source, _) in MARKER_MISUSES.items()
        }
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(errors=len(MARKER_MISUSES))
    result.stdout.fnmatch_lines_random([message for _, message in MARKER_MISUSES.values()])


def test_markers_and_option_are_documented(pytester: pytest.Pytester) -> None:
    # In-process: nothing runs, so nothing can leak into this session.
    result = pytester.runpytest_inprocess("--markers")
    result.stdout.fnmatch_lines_random(
        ["@pytest.mark.tls_versions(*", "@pytest.mark.tls_transports(*", "@pytest.mark.tls_chaos(*"]
    )
    result = pytester.runpytest_inprocess("--help")
    result.stdout.fnmatch_lines(["*--tls-chaos-seed=SEED*"])


def _failing_runs(output: str) -> list[tuple[str, int]]:
    return [
        (version, int(seed))
        for version, seed in re.findall(
            r"test_whole_message\[(tls1[23])-chaos(\d+)\] FAILED", output
        )
    ]


def test_chaos_catches_an_ordering_bug_and_replays_it(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TRIO_TLS_CHAOS_SEED", raising=False)
    pytester.makeini(TRIO_MODE_INI)

    # Without chaos the bug never shows: one write, one read, both records at once.
    pytester.makepyfile(test_order=ORDER_DEPENDENT_TEST.format(marker=""))
    pytester.runpytest_subprocess().assert_outcomes(passed=2)

    # Under chaos some seeds split the delivery, and the failure names its seed.
    pytester.makepyfile(test_order=ORDER_DEPENDENT_TEST.format(marker="@pytest.mark.tls_chaos"))
    result = pytester.runpytest_subprocess("-v")
    failing = _failing_runs(result.stdout.str())
    assert failing, "no chaos seed caught the ordering bug"
    outcomes = result.parseoutcomes()
    assert outcomes["failed"] == len(failing)
    assert outcomes["failed"] + outcomes.get("passed", 0) == 16  # 2 versions x 8 seeds
    version, seed = failing[0]
    result.stdout.fnmatch_lines(
        [
            f"*trio_tls chaos: this failed with chaos seed {seed}. Replay only that seed "
            f"with TRIO_TLS_CHAOS_SEED={seed} (or pytest --tls-chaos-seed={seed}).*"
        ]
    )

    # Replaying the seed runs exactly that run, and it fails again.
    again = pytester.runpytest_subprocess("-v", f"--tls-chaos-seed={seed}", "-k", version)
    again.assert_outcomes(failed=1)
    assert _failing_runs(again.stdout.str()) == [(version, seed)]
    monkeypatch.setenv("TRIO_TLS_CHAOS_SEED", str(seed))
    by_env = pytester.runpytest_subprocess("-v", "-k", version)
    by_env.assert_outcomes(failed=1)
    assert _failing_runs(by_env.stdout.str()) == [(version, seed)]


# -- the documentation's examples ---------------------------------------------------------------

ROOT = Path(__file__).parent.parent
EXAMPLE = re.compile(r"<!-- example: (\S+) ([^>]+?) -->\n```python\n(.*?)```", re.DOTALL)


def _examples() -> list[tuple[str, str, str]]:
    """The tagged examples of notes/testing.md and of the README's testing section."""
    found = []
    for doc, minimum in (("notes/testing.md", 5), ("README.md", 1)):
        examples = EXAMPLE.findall((ROOT / doc).read_text())
        assert len(examples) >= minimum, f"expected the tagged examples in {doc}"
        found += examples
    return found


def _outcomes_by_file(output: str) -> dict[str, Counter[str]]:
    counts: dict[str, Counter[str]] = {}
    for name, outcome in re.findall(r"^(\S+\.py)::\S+ (PASSED|FAILED)", output, re.MULTILINE):
        counts.setdefault(name, Counter())[outcome] += 1
    return counts


def test_docs_examples(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRIO_TLS_CHAOS_SEED", raising=False)
    pytester.makeini(TRIO_MODE_INI)
    expected: dict[str, str] = {}
    for name, kind, code in _examples():
        (pytester.path / name).write_text(code)
        if kind == "script":
            result = pytester.run(sys.executable, name, timeout=60)
            assert result.ret == 0, result.stderr.str()
        else:
            expected[name] = kind
    assert set(expected.values()) >= {"chaos-fails"}
    assert any(kind.startswith("passes=") for kind in expected.values())

    # Every pytest example in one session, as a user with all of them would run it.
    counts = _outcomes_by_file(pytester.runpytest_subprocess("-v", *expected).stdout.str())
    for name, kind in expected.items():
        if kind.startswith("passes="):
            assert counts[name] == Counter(PASSED=int(kind.split("=")[1])), name
        elif kind == "chaos-fails":
            assert counts[name]["FAILED"] >= 1, f"the chaos transport missed the bug in {name}"
            assert counts[name].total() == 16, name  # 2 versions x 8 seeds
            # Without the marker the same test passes: only chaos shows the bug.
            code = (pytester.path / name).read_text()
            (pytester.path / name).write_text(code.replace("@pytest.mark.tls_chaos\n", ""))
            pytester.runpytest_subprocess(name).assert_outcomes(passed=2)
        else:
            raise AssertionError(f"unknown example kind {kind!r} for {name}")
