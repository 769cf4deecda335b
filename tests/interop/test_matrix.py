"""The matrix's own bookkeeping: every scenario is played, every exception names a real cell."""

from __future__ import annotations

import json
from pathlib import Path

from .processes import STACKS
from .scenarios import SCENARIO_FUNCTIONS
from .support import (
    REFUSED_BY_OPENSSL,
    SCENARIOS,
    UNSUPPORTED,
    Outcome,
    all_cases,
    render,
    runnable_cases,
    write_results,
)


def test_every_scenario_has_our_side() -> None:
    assert SCENARIO_FUNCTIONS.keys() == SCENARIOS.keys()


def test_exceptions_name_real_cells() -> None:
    for stack, role, scenario in [*UNSUPPORTED, *REFUSED_BY_OPENSSL]:
        assert stack in STACKS
        assert role in ("client", "server")
        assert scenario in SCENARIOS
    assert not UNSUPPORTED.keys() & REFUSED_BY_OPENSSL.keys()


def test_versions_follow_the_protocol() -> None:
    cases = all_cases()
    assert {c.version for c in cases if c.scenario == "renegotiate"} == {"1.2"}
    assert {c.version for c in cases if c.scenario.startswith("keyupdate")} == {"1.3"}
    assert {c.version for c in cases if c.scenario == "duplex"} == {"1.2", "1.3"}
    assert len({c.id for c in cases}) == len(cases)


def test_render_shows_every_cell(tmp_path: Path) -> None:
    runnable = runnable_cases()
    first, second = runnable[0], runnable[1]
    outcomes = [
        Outcome(first.id, "trio_tls", True, ""),
        Outcome(first.id, "trio", False, "Unsupported: no | pipe"),
        Outcome(second.id, "trio_tls", True, "completed"),
    ]
    results = tmp_path / "r.json"
    write_results(outcomes, results)
    assert len(json.loads(results.read_text())) == 3
    text = render(results, "make interop")
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 1 + len(all_cases())  # the header, then one row per case
    assert "FAIL: Unsupported: no / pipe" in text
    assert "pass: completed" in text
    assert text.count("not run") == 2 * (len(runnable) - 2) + 1
    unsupported = len(all_cases()) - len(runnable)
    assert text.count("not supported by the peer") == 2 * unsupported
