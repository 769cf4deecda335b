"""The benchmark harness, end to end on a tiny workload, plus its statistics on known data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from trio_tls._bench import _ab, _jobs, _report, _runner
from trio_tls._bench._certs import mint
from trio_tls._bench._jobs import check_version, run_worker
from trio_tls._bench._runner import _plan
from trio_tls._bench._spec import (
    CONTENDERS_BY_NAME,
    WORKLOADS_BY_NAME,
    Contender,
    Family,
    Job,
    Mode,
    job_params,
    missing_requirement,
)

BENCH = [sys.executable, "-m", "trio_tls._bench"]
AB = [sys.executable, "-m", "trio_tls._bench._ab"]


def _run_bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BENCH, *args], capture_output=True, text=True, timeout=90, check=False)


def _bench_report(
    tmp_path: Path, options: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """Run the bench with ``options`` and ``--json``; it must succeed with no failed run."""
    out = tmp_path / "bench.json"
    done = _run_bench(*options.split(), "--json", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    report: dict[str, Any] = json.loads(out.read_text())
    assert report["errors"] == []
    return done, report


def test_quick_run_writes_json_with_per_round_ratios(tmp_path: Path) -> None:
    done, report = _bench_report(
        tmp_path,
        "--quick --contenders trio_ssl,trio_tcp --workloads pingpong,memory_server"
        " --tls 1.3 --rounds 2 --scale 0.05",
    )
    assert report["mode"] == "quick"
    assert report["baseline"] == "trio_ssl"
    assert set(report["contenders"]) == {"trio_ssl", "trio_tcp"}
    assert report["machine"]["cpu_count"] >= 1
    assert report["machine"]["openssl"].startswith("OpenSSL")
    runs = report["runs"]
    # Fresh process per (workload, contender, round): 2 x 2 x 2.
    assert sorted((r["workload"], r["contender"], r["round"]) for r in runs) == [
        (workload, contender, round_)
        for workload in ("memory_server", "pingpong")
        for contender in ("trio_ssl", "trio_tcp")
        for round_ in (0, 1)
    ]
    assert all(r["value"] > 0 for r in runs)
    pingpong = [r for r in runs if r["workload"] == "pingpong"]
    assert {r["version"] for r in pingpong if r["contender"] == "trio_ssl"} == {"TLSv1.3"}
    assert {r["version"] for r in pingpong if r["contender"] == "trio_tcp"} == {None}
    # Memory: RSS headline plus the tracemalloc share, both per connection.
    memory = [r for r in runs if r["workload"] == "memory_server"]
    assert all(r["extra"]["py_heap_kib"] > 0 for r in memory)

    by_round = {(r["contender"], r["round"]): r["value"] for r in pingpong}
    summary = {s["contender"]: s for s in report["summary"] if s["workload"] == "pingpong"}
    assert summary["trio_ssl"]["ratios"] == [1.0, 1.0]
    expected = [by_round[("trio_tcp", n)] / by_round[("trio_ssl", n)] for n in (0, 1)]
    assert summary["trio_tcp"]["ratios"] == pytest.approx(expected)
    assert summary["trio_tcp"]["ratio_min"] <= summary["trio_tcp"]["ratio_median"]
    assert summary["trio_tcp"]["ratio_median"] <= summary["trio_tcp"]["ratio_max"]
    values = [by_round[("trio_tcp", n)] for n in (0, 1)]
    assert summary["trio_tcp"]["median"] == pytest.approx(sum(values) / 2)
    # The table on stdout names both contenders and the ratio column.
    assert "vs trio.SSLStream" in done.stdout
    assert CONTENDERS_BY_NAME["trio_tcp"].label in done.stdout


def test_unknown_contender_is_a_usage_error() -> None:
    done = _run_bench("--contenders", "trio_ssl,nonesuch")
    assert done.returncode == 2
    assert "nonesuch" in done.stderr


def test_help_names_the_command_as_the_cli_does() -> None:
    done = _run_bench("--help")
    assert done.returncode == 0
    assert done.stdout.startswith("usage: trio-tls bench ")


def _result(contender: str, round_: int, value: float, **extra: float) -> dict[str, Any]:
    return {
        "ok": True,
        "contender": contender,
        "workload": "bulk_64k",
        "tls": "1.3",
        "round": round_,
        "value": value,
        "extra": extra,
    }


def test_ratios_pair_rounds_and_skip_rounds_without_baseline() -> None:
    results = [
        _result("trio_ssl", 0, 100.0),
        _result("trio_ssl", 1, 200.0),
        _result("uvloop", 0, 300.0, seconds=1.0),
        _result("uvloop", 1, 300.0, seconds=3.0),
        _result("uvloop", 2, 999.0, seconds=2.0),  # baseline failed in round 2
        {"ok": False, "contender": "trio_ssl", "workload": "bulk_64k", "tls": "1.3", "round": 2},
    ]
    cells = {s.contender: s for s in _report.summarize(results)}
    assert cells["uvloop"].ratios == [3.0, 1.5]
    assert cells["uvloop"].ratio_median == pytest.approx(2.25)
    assert (cells["uvloop"].ratio_min, cells["uvloop"].ratio_max) == (1.5, 3.0)
    assert (cells["uvloop"].median, cells["uvloop"].n) == (300.0, 3)
    assert cells["uvloop"].extra_median == {"seconds": 2.0}
    assert cells["trio_ssl"].ratio_median == 1.0


def test_table_marks_direction_and_ceiling() -> None:
    summaries = _report.summarize([_result("trio_ssl", 0, 100.0), _result("blocking", 0, 50.0)])
    text = _report.table(summaries, {"mb_s": 3600.0})
    assert "| bulk_64k (MB/s ↑) | ssl.SSLSocket + threads | 50.0 |" in text
    assert "0.50x" in text
    assert "1,800 MB/s" in text


def test_plan_interleaves_contenders_and_rotates_each_round() -> None:
    contenders = [CONTENDERS_BY_NAME[n] for n in ("trio_ssl", "asyncio", "blocking")]
    plan = _plan(contenders, [WORKLOADS_BY_NAME["pingpong"]], ["1.3"], rounds=2)
    order = [(round_, c.name) for round_, _, _, c in plan]
    assert order == [
        (0, "trio_ssl"),
        (0, "asyncio"),
        (0, "blocking"),
        (1, "asyncio"),
        (1, "blocking"),
        (1, "trio_ssl"),
    ]


def test_a_wrong_negotiated_version_is_an_error() -> None:
    ok = {"ok": True, "tls": "1.2", "version": "TLSv1.2"}
    assert check_version(ok) is ok
    wrong = check_version({"ok": True, "tls": "1.2", "version": "TLSv1.3"})
    assert wrong["ok"] is False
    assert "TLSv1.3" in wrong["error"]
    assert check_version({"ok": True, "tls": "1.3", "version": None})["ok"] is True


def test_a_contender_with_a_missing_package_is_skipped_with_the_reason() -> None:
    absent = Contender("ghost", "ghost", Family.ASYNCIO, requires=("no_such_module_for_bench",))
    reason = missing_requirement(absent)
    assert reason is not None
    assert "no_such_module_for_bench" in reason
    assert missing_requirement(CONTENDERS_BY_NAME["trio_ssl"]) is None
    # The core has landed, so trio_tls itself is no longer skipped.
    assert missing_requirement(CONTENDERS_BY_NAME["trio_tls"]) is None


def _job(
    certs: Path, workload: str, mode: Mode, timeout: float, contender: str = "trio_ssl"
) -> Job:
    params = job_params(WORKLOADS_BY_NAME[workload], mode, 1.0)
    return Job(contender, workload, "1.3", str(certs), params, timeout=timeout)


def test_a_worker_that_overruns_its_timeout_reports_an_error(tmp_path: Path) -> None:
    mint(tmp_path)
    # 1,000 TLS connections cannot finish in 0.3 s here: the worker's own deadline fires.
    result = run_worker(_job(tmp_path, "concurrent", Mode.FULL, timeout=0.3))
    assert result["ok"] is False
    assert "TooSlowError" in result["error"]
    assert (result["contender"], result["workload"]) == ("trio_ssl", "concurrent")


def test_a_worker_past_the_grace_period_is_killed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_jobs, "_KILL_GRACE_S", 0.0)
    # 50 ms is less than a Python start-up, so the runner must kill the worker's group.
    result = run_worker(_job(tmp_path, "pingpong", Mode.QUICK, timeout=0.05))
    assert result["ok"] is False
    assert result["error"].startswith("killed after")


def test_engine_without_driver_runs_every_trio_workload_over_tls(tmp_path: Path) -> None:
    # The design-ceiling contender must really do TLS (it reports the version it
    # negotiated) and finish every workload, or its ratios would mean nothing.
    done, report = _bench_report(
        tmp_path,
        "--quick --contenders trio_ssl,trio_tls,trio_tls_engine"
        " --workloads bulk_16k,pingpong,handshake_ecdsa,concurrent --tls 1.2 --scale 0.05",
    )
    engine_runs = [r for r in report["runs"] if r["contender"] == "trio_tls_engine"]
    assert len(engine_runs) == 4
    assert {r["version"] for r in engine_runs} == {"TLSv1.2"}
    assert "share of trio_tls engine, no driver" in done.stdout


@pytest.mark.slow
def test_every_family_runs_every_kind_of_workload(tmp_path: Path) -> None:
    # One contender per family module besides trio (which the tests above run): the
    # workloads are written once over each family's adapter, so each adapter must carry
    # every kind of workload end to end, over TLS.
    kinds = "bulk_16k,pingpong,handshake_ecdsa,memory_server,memory_client,concurrent"
    _, report = _bench_report(
        tmp_path,
        f"--quick --contenders anyio_trio,asyncio,blocking --workloads {kinds}"
        " --tls 1.2 --scale 0.02",
    )
    runs = report["runs"]
    assert sorted((r["contender"], r["workload"]) for r in runs) == sorted(
        (contender, workload)
        for contender in ("anyio_trio", "asyncio", "blocking")
        for workload in kinds.split(",")
    )
    memory = [r for r in runs if r["workload"].startswith("memory")]
    # RSS over a handful of connections may not grow by a page; the traced heap does.
    assert all("py_heap_kib" in r["extra"] for r in memory)
    assert all(r["value"] > 0 for r in runs if r not in memory)
    described = [r for r in runs if r["workload"] != "memory_server"]
    assert {r["version"] for r in described} == {"TLSv1.2"}


def _cell(contender: str, workload: str, round_: int, value: float) -> dict[str, Any]:
    return {**_result(contender, round_, value), "workload": workload}


def test_trio_tls_is_set_against_the_baseline_and_both_ceilings() -> None:
    results = [
        # bulk: two rounds, so each ratio is a median of per-round ratios.
        *(_cell(c, "bulk_64k", 0, v) for c, v in [("trio_ssl", 100), ("trio_tls", 170)]),
        *(_cell(c, "bulk_64k", 0, v) for c, v in [("trio_tcp", 400), ("trio_tls_engine", 200)]),
        *(_cell(c, "bulk_64k", 1, v) for c, v in [("trio_ssl", 100), ("trio_tls", 190)]),
        *(_cell(c, "bulk_64k", 1, v) for c, v in [("trio_tcp", 400), ("trio_tls_engine", 200)]),
        # memory: lower is better, so a share is the ceiling's size over trio_tls's.
        *(_cell(c, "memory_server", 0, v) for c, v in [("trio_ssl", 20), ("trio_tls", 16)]),
        *(_cell(c, "memory_server", 0, v) for c, v in [("trio_tcp", 4), ("trio_tls_engine", 16)]),
    ]
    text = _report.against_ceilings(results, Mode.FULL)
    assert "| bulk_64k (MB/s ↑) | 1.80x | 45% | 90% |" in text
    assert "| memory_server (KiB/conn ↓) | 0.80x | 25% | 100% |" in text
    assert "smoke test" not in text
    assert "issue" not in text.lower() and "target" not in text.lower()


def test_quick_mode_says_its_ratios_are_a_smoke_test() -> None:
    results = [_cell("trio_ssl", "pingpong", 0, 10), _cell("trio_tls", "pingpong", 0, 20)]
    lines = _report.against_ceilings(results, Mode.QUICK).splitlines()
    row = lines.index("| pingpong (round trips/s ↑) | 2.00x | - | - |")
    # Next to the ratios: right above their table.
    assert "smoke test" in lines[row - 4]
    assert _report.against_ceilings(results[:1], Mode.QUICK) == ""  # trio_tls did not run


def test_progress_values_form_one_column() -> None:
    lines = [
        _report.progress(index, 100, {**_cell(name, workload, 0, 1234.5), "tls": "1.3"}, 0.4)
        for index, name in enumerate(CONTENDERS_BY_NAME, start=1)
        for workload in WORKLOADS_BY_NAME
    ]
    failed = {"ok": False, "contender": "trio_tls_engine", "workload": "concurrent"}
    lines.append(_report.progress(100, 100, {**failed, "tls": "1.2", "round": 0}, 0.1))
    # Values are right-aligned in a 12-wide field; a failure starts where the field does.
    starts = {
        line.index("FAILED") if "FAILED" in line else line.index("1,234.5") + 7 - 12
        for line in lines
    }
    assert len(starts) == 1, lines


def test_help_names_the_command_people_type() -> None:
    done = _run_bench("--help")
    assert done.returncode == 0
    assert done.stdout.startswith("usage: trio-tls bench ")
    assert "issue" not in done.stdout.lower()


@pytest.mark.parametrize("scale", ["0", "-1", "nan", "inf"])
def test_scale_must_be_positive_and_finite(scale: str) -> None:
    with pytest.raises(SystemExit) as info:
        _runner.parse_args(["--scale", scale])
    assert info.value.code == 2


def _checkout() -> Path:
    try:
        return _ab.checkout_root()
    except _ab.SetupError as exc:
        pytest.fail(f"the A/B comparison needs a git checkout: {exc}")


def _git_show(root: Path, path: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(root), "show", f"HEAD:{path}"], capture_output=True, text=True, check=True
    )
    return done.stdout


def test_ab_copies_the_base_revision_and_the_working_tree_with_one_harness(
    tmp_path: Path,
) -> None:
    root = _checkout()
    a, b = _ab.materialise(root, "HEAD", tmp_path)
    assert (a.name, a.label, b.name, b.label) == ("A", "HEAD", "B", "working tree")
    assert (
        a.commit
        == subprocess.check_output(["git", "-C", str(root), "rev-parse", "HEAD"], text=True).strip()
    )
    # A is the revision as committed; B is the files as they are on disk.
    engine = "trio_tls/_engine.py"
    assert (a.tree / engine).read_text() == _git_show(root, engine)
    assert (b.tree / engine).read_text() == (root / engine).read_text()
    # Both run this checkout's harness, so only the library differs.
    harness = "trio_tls/_bench/_workloads.py"
    assert (a.tree / harness).read_text() == (root / harness).read_text()
    assert not list(a.tree.rglob("__pycache__"))


def test_ab_rejects_a_revision_that_is_not_a_commit(tmp_path: Path) -> None:
    root = _checkout()
    with pytest.raises(_ab.SetupError, match="no-such-revision"):
        _ab.materialise(root, "no-such-revision", tmp_path)


def test_ab_alternates_the_sides_abba() -> None:
    sides = (
        _ab.Side("A", "base", "0" * 40, Path("/a")),
        _ab.Side("B", "working tree", "1" * 40, Path("/b")),
    )
    workloads = [WORKLOADS_BY_NAME["bulk_64k"], WORKLOADS_BY_NAME["pingpong"]]
    runs = _ab.plan(2, workloads, ["1.3"], sides)
    assert [(round_, w.name, side.name) for round_, w, _, side in runs] == [
        (0, "bulk_64k", "A"),
        (0, "bulk_64k", "B"),
        (0, "pingpong", "B"),
        (0, "pingpong", "A"),
        (1, "bulk_64k", "B"),
        (1, "bulk_64k", "A"),
        (1, "pingpong", "A"),
        (1, "pingpong", "B"),
    ]


def _side_result(
    side: str, round_: int, value: float, workload: str = "pingpong"
) -> dict[str, Any]:
    return {
        "ok": True,
        "side": side,
        "round": round_,
        "workload": workload,
        "tls": "1.3",
        "value": value,
    }


@pytest.mark.parametrize(
    ("a", "b", "verdict"),
    [
        pytest.param([100.0] * 6, [110.0, 120, 105, 130, 101, 115], "B faster", id="faster"),
        pytest.param([100.0] * 6, [90.0, 95, 80, 99, 92, 85], "B slower", id="slower"),
        pytest.param(
            [100.0] * 6, [90.0, 110, 105, 95, 101, 99], "no difference beyond noise", id="noise"
        ),
        pytest.param([100.0] * 2, [110.0, 120], "too few rounds to tell (2)", id="too_few"),
    ],
)
def test_ab_ratios_pair_rounds_and_call_a_difference_only_beyond_the_spread(
    a: list[float], b: list[float], verdict: str
) -> None:
    results = [_side_result("A", n, v) for n, v in enumerate(a)]
    results += [_side_result("B", n, v) for n, v in enumerate(b)]
    comparison = _ab.compare(results, WORKLOADS_BY_NAME["pingpong"], "1.3")
    assert comparison.ratios == pytest.approx([vb / va for va, vb in zip(a, b, strict=True)])
    assert comparison.ratio_min == min(comparison.ratios)
    assert comparison.ratio_max == max(comparison.ratios)
    assert comparison.verdict == verdict


def test_ab_skips_rounds_where_one_side_failed_and_knows_memory_is_lower_better() -> None:
    results = [_side_result("A", n, 20.0, "memory_server") for n in range(7)]
    results += [_side_result("B", n, 18.0, "memory_server") for n in range(6)]
    results.append(
        {"ok": False, "side": "B", "round": 6, "workload": "memory_server", "tls": "1.3"}
    )
    comparison = _ab.compare(results, WORKLOADS_BY_NAME["memory_server"], "1.3")
    assert comparison.ratios == pytest.approx([0.9] * 6)
    assert (comparison.a_median, comparison.b_median) == (20.0, 18.0)
    assert comparison.includes_one is False
    assert comparison.verdict == "B smaller"


def test_a_worker_refuses_to_measure_a_tree_it_did_not_import(tmp_path: Path) -> None:
    # PYTHONPATH names a directory with no trio_tls, so the worker imports the installed
    # one instead: the shadowing the A/B comparison must never measure.
    job = _job(tmp_path, "pingpong", Mode.QUICK, timeout=30.0, contender="trio_tls")
    result = run_worker(job, tree=tmp_path)
    assert result["ok"] is False
    assert result["error"].startswith("WrongTreeError: imported trio_tls from ")
    assert str(tmp_path.resolve() / "trio_tls" / "__init__.py") in result["error"]


def test_ab_runs_head_against_the_working_tree_from_the_intended_trees(tmp_path: Path) -> None:
    _checkout()
    out = tmp_path / "ab.json"
    options = ["--rounds", "2", "--workloads", "pingpong", "--tls", "1.3", "--scale", "0.02"]
    done = subprocess.run(
        [*AB, "HEAD", *options, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(out.read_text())
    sides = report["sides"]
    assert (sides["A"]["label"], sides["B"]["label"]) == ("HEAD", "working tree")
    assert sides["A"]["tree"] != sides["B"]["tree"]
    runs = report["runs"]
    # Two rounds of one cell, A first in round 1 and B first in round 2, each side's
    # workers importing trio_tls from that side's copy.
    assert [(r["round"], r["side"]) for r in runs] == [(0, "A"), (0, "B"), (1, "B"), (1, "A")]
    for run in runs:
        assert run["trio_tls_file"] == str(
            Path(sides[run["side"]]["tree"]) / "trio_tls" / "__init__.py"
        )
        assert run["version"] == "TLSv1.3"
    (summary,) = report["summary"]
    by = {(r["side"], r["round"]): r["value"] for r in runs}
    assert summary["ratios"] == pytest.approx([by["B", n] / by["A", n] for n in (0, 1)])
    assert summary["verdict"] in ("no difference beyond noise", "too few rounds to tell (2)")
    assert done.stdout.startswith("A = HEAD (")
    assert (
        "| workload | TLS | A median | B median | B/A median | B/A min-max | verdict |"
        in done.stdout
    )
    assert "| pingpong (round trips/s ↑) | 1.3 |" in done.stdout
