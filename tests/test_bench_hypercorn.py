"""The hypercorn benchmark runs end to end: both sides, both protocols, real processes.

It asserts what each run was (which side, which protocol, what served it), never how
fast: speed claims come from full runs recorded in notes/benchmarks.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trio_tls._bench import _hypercorn

pytestmark = pytest.mark.slow


@pytest.mark.timeout(180)
def test_one_short_round(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "runs.json"
    argv = ["--rounds", "1", "--seconds", "0.5", "--warmup", "0.2", "--connections", "2"]
    assert _hypercorn.main([*argv, "--json", str(report)]) == 0
    runs = json.loads(report.read_text())["runs"]
    assert sorted((run["protocol"], run["side"]) for run in runs) == [
        ("h1", "patched"),
        ("h1", "unpatched"),
        ("h2", "patched"),
        ("h2", "unpatched"),
    ]
    assert all(run["requests"] > 0 for run in runs)
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("protocol")
    assert [line.split()[:2] for line in table[1:]] == [
        ["h1", "requests/s"],
        ["h1", "server"],
        ["h2", "requests/s"],
        ["h2", "server"],
    ]
