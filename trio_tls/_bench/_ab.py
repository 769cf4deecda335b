"""A/B: the working tree's trio_tls against another revision's, in one interleaved run.

``python -m trio_tls._bench._ab [BASE] [--rounds N] [--tls 1.3,1.2] [--workloads a,b]
[--json PATH]``, or ``make bench-ab BASE=main~3``.

* A is BASE (any git revision; HEAD when omitted, which measures the uncommitted changes),
  B is this checkout's ``trio_tls`` as it is on disk. Both are copied into a temporary
  directory, A with ``git archive``, and both get this checkout's harness
  (``trio_tls/_bench``), so the library under test is the only thing that differs.
* Every run is a fresh worker of the ``trio_tls`` contender (``_jobs.run_worker``) with
  ``PYTHONPATH`` set to its side's copy. The worker checks that ``trio_tls`` came from that
  copy, and this runner checks the file the worker names, so a checkout or install that
  shadows the copy fails the run instead of measuring the wrong code.
* Sides alternate A B, B A, A B, ... across rounds and cells alike, so a drift of the
  machine favours neither. Each ratio B/A is taken within one round and cell; the table
  gives the median ratio and its min-max over rounds. A spread that includes 1.0 means
  no difference beyond the noise of this run. One that excludes it means every round
  went the same way, which two sides that do not differ would do with probability
  2 / 2**rounds (a sign test): 50% with 2 rounds, 0.8% with 8. Below ``MIN_ROUNDS``
  paired rounds the verdict says so instead of naming a winner.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import trio_tls

from . import _certs, _machine
from ._jobs import Batch, progress, run_worker
from ._runner import add_scale, names, parse_counted
from ._spec import WORKLOADS_BY_NAME, Mode, Workload, job_params

#: The contender both sides run.
CONTENDER: Final = "trio_tls"
#: Bulk both ways of writing, ping-pong and handshakes: trio_tls's own hot paths.
DEFAULT_WORKLOADS: Final = ("bulk_64k", "bulk_16k", "pingpong", "handshake_ecdsa")
DEFAULT_TLS: Final = ("1.3", "1.2")
#: Even, so that each cell runs A first in half of the rounds; ~2 minutes on 2 idle cores.
DEFAULT_ROUNDS: Final = 8
#: Fewest paired rounds for a verdict: 6 rounds all one way happen by chance 3% of the time.
MIN_ROUNDS: Final = 6
_IGNORE: Final = shutil.ignore_patterns("__pycache__")


class SetupError(Exception):
    """The comparison cannot start (no checkout, unknown revision) or ran the wrong code."""


@dataclass(frozen=True)
class Side:
    """One of the two trees being compared."""

    #: "A" (the base revision) or "B" (the working tree).
    name: str
    #: What the user asked for: the revision as given, or "working tree".
    label: str
    #: The commit, with "+changes" when the working tree differs from it.
    commit: str
    #: The directory whose ``trio_tls`` package this side's workers import.
    tree: Path

    @property
    def init_file(self) -> str:
        return str(self.tree / "trio_tls" / "__init__.py")

    def describe(self) -> str:
        sha, plus, rest = self.commit.partition("+")
        return f"{self.label} ({sha[:10]}{plus}{rest})"


@dataclass
class Comparison:
    """One (workload, TLS version): both sides' medians and the per-round ratios B/A."""

    workload: str
    tls: str
    a_median: float | None
    b_median: float | None
    ratios: list[float]
    ratio_median: float | None
    ratio_min: float | None
    ratio_max: float | None
    #: True when min <= 1.0 <= max: no difference beyond this run's noise.
    includes_one: bool | None
    verdict: str


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m trio_tls._bench._ab",
        description="Compare the working tree's trio_tls (B) with another revision's (A), "
        "in interleaved fresh processes; print the median ratio B/A per workload.",
    )
    parser.add_argument(
        "base", nargs="?", default="HEAD", help="git revision to compare with (default: HEAD)"
    )
    parser.add_argument(
        "--workloads",
        type=lambda t: names(t, list(WORKLOADS_BY_NAME), "workload"),
        default=list(DEFAULT_WORKLOADS),
        help=f"comma-separated (default: {','.join(DEFAULT_WORKLOADS)})",
    )
    parser.add_argument(
        "--tls",
        type=lambda t: names(t, ["1.3", "1.2"], "TLS version"),
        default=list(DEFAULT_TLS),
        help="comma-separated TLS versions (default: 1.3,1.2)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=DEFAULT_ROUNDS,
        help=f"default {DEFAULT_ROUNDS}; a verdict needs {MIN_ROUNDS}",
    )
    parser.add_argument("--json", type=Path, help="write every run and the summary here")
    add_scale(parser)
    return parse_counted(parser, argv)


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SetupError(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


def checkout_root() -> Path:
    """The git checkout whose ``trio_tls`` this process imported: side B."""
    root = Path(trio_tls.__file__).resolve().parent.parent
    try:
        top = Path(_git(root, "rev-parse", "--show-toplevel")).resolve()
    except (SetupError, OSError) as exc:
        raise SetupError(f"trio_tls is imported from {root}, not from a git checkout") from exc
    if top != root:
        raise SetupError(f"trio_tls is imported from {root}, not from the top of {top}")
    return root


def materialise(root: Path, base: str, into: Path) -> tuple[Side, Side]:
    """Copy ``base``'s and the working tree's ``trio_tls`` under ``into``, same harness."""
    try:
        commit = _git(root, "rev-parse", "--verify", "--quiet", f"{base}^{{commit}}")
    except SetupError:
        raise SetupError(f"{base!r} names no commit in {root}") from None
    a, b = into / "a", into / "b"
    a.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(root), "archive", commit, "trio_tls"], capture_output=True
    )
    if archive.returncode != 0:
        raise SetupError(f"{base!r} has no trio_tls package: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(a)], input=archive.stdout, check=True)
    shutil.rmtree(a / "trio_tls" / "_bench", ignore_errors=True)
    shutil.copytree(root / "trio_tls" / "_bench", a / "trio_tls" / "_bench", ignore=_IGNORE)
    shutil.copytree(root / "trio_tls", b / "trio_tls", ignore=_IGNORE)
    head = _git(root, "rev-parse", "HEAD")
    changed = _git(root, "status", "--porcelain", "--", "trio_tls")
    return (
        Side("A", base, commit, a.resolve()),
        Side("B", "working tree", head + ("+changes" if changed else ""), b.resolve()),
    )


def plan(
    rounds: int, workloads: Sequence[Workload], tls: Sequence[str], sides: tuple[Side, Side]
) -> list[tuple[int, Workload, str, Side]]:
    """Every run in order: per round, per cell, both sides, the order flipping each pair.

    Pair ``k`` of round ``r`` runs A first when ``r + k`` is even: the run reads A B B A
    A B ..., and with an even number of rounds each cell has A first in half of them.
    """
    a, b = sides
    runs = []
    for round_ in range(rounds):
        cells = [(w, v) for w in workloads for v in tls]
        for k, (workload, version) in enumerate(cells):
            for side in (a, b) if (round_ + k) % 2 == 0 else (b, a):
                runs.append((round_, workload, version, side))
    return runs


def _run(batch: Batch, run: tuple[int, Workload, str, Side]) -> dict[str, Any]:
    round_, workload, version, side = run
    result = run_worker(batch.job(CONTENDER, workload, version, round_), tree=side.tree)
    result["side"] = side.name
    if str(result.get("error", "")).startswith("WrongTreeError"):
        raise SetupError(f"side {side.name} ({side.label}): {result['error']}")
    # The worker checked its own import, but a shadowing checkout's worker may predate
    # that check and ignore the tree: then it does not name its file, and this fails.
    if result.get("ok") and result.get("trio_tls_file") != side.init_file:
        raise SetupError(
            f"side {side.name} ({side.label}) ran trio_tls from "
            f"{result.get('trio_tls_file', 'an unknown place')}, not {side.init_file}"
        )
    return result


def compare(results: Sequence[dict[str, Any]], workload: Workload, tls: str) -> Comparison:
    """The ratios B/A of one cell, paired by round; rounds where a side failed are skipped."""
    values: dict[tuple[str, int], float] = {
        (r["side"], r["round"]): float(r["value"])
        for r in results
        if r.get("ok") and r["workload"] == workload.name and r["tls"] == tls
    }
    rounds = sorted({n for (_, n) in values})
    paired = [n for n in rounds if ("A", n) in values and ("B", n) in values]
    ratios = [values["B", n] / values["A", n] for n in paired]
    a = [v for (side, _), v in values.items() if side == "A"]
    b = [v for (side, _), v in values.items() if side == "B"]
    low, high = (min(ratios), max(ratios)) if ratios else (None, None)
    includes_one = low <= 1.0 <= high if low is not None and high is not None else None
    median = statistics.median(ratios) if ratios else None
    return Comparison(
        workload=workload.name,
        tls=tls,
        a_median=statistics.median(a) if a else None,
        b_median=statistics.median(b) if b else None,
        ratios=ratios,
        ratio_median=median,
        ratio_min=low,
        ratio_max=high,
        includes_one=includes_one,
        verdict=_verdict(workload, median, len(ratios), includes_one),
    )


def _verdict(workload: Workload, median: float | None, n: int, includes_one: bool | None) -> str:
    if median is None:
        return "no round with both sides"
    if includes_one:
        return "no difference beyond noise"
    if n < MIN_ROUNDS:
        return f"too few rounds to tell ({n})"
    better = median > 1.0 if workload.higher_is_better else median < 1.0
    if workload.higher_is_better:
        return "B faster" if better else "B slower"
    return "B smaller" if better else "B larger"


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def table(comparisons: Sequence[Comparison], sides: tuple[Side, Side], rounds: int) -> str:
    """The comparison as markdown, headed by what A and B are."""
    a, b = sides
    lines = [
        f"A = {a.describe()}, B = {b.describe()}",
        f"{rounds} round{'s' if rounds != 1 else ''}, A and B alternated in fresh processes;"
        " ratio = B / A within a round.",
        "",
        "| workload | TLS | A median | B median | B/A median | B/A min-max | verdict |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for c in comparisons:
        workload = WORKLOADS_BY_NAME[c.workload]
        arrow = "↑" if workload.higher_is_better else "↓"
        ratio = f"{c.ratio_median:.3f}" if c.ratio_median is not None else "-"
        spread = (
            f"{c.ratio_min:.3f}-{c.ratio_max:.3f}"
            if c.ratio_min is not None and c.ratio_max is not None
            else "-"
        )
        lines.append(
            f"| {c.workload} ({workload.unit} {arrow}) | {c.tls} | {_number(c.a_median)}"
            f" | {_number(c.b_median)} | {ratio} | {spread} | {c.verdict} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the comparison described by ``argv`` (see ``--help``); 0 if every run succeeded."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        with tempfile.TemporaryDirectory(prefix="trio-tls-ab-") as scratch:
            return _compare(args, Path(scratch))
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _compare(args: argparse.Namespace, scratch: Path) -> int:
    started = time.time()
    sides = materialise(checkout_root(), args.base, scratch)
    workloads = [WORKLOADS_BY_NAME[n] for n in args.workloads]
    (scratch / "certs").mkdir()
    _certs.mint(scratch / "certs")
    params = {w.name: job_params(w, Mode.FULL, args.scale) for w in workloads}
    batch = Batch(str(scratch / "certs"), params, Mode.FULL)
    machine = _machine.describe()
    runs = plan(args.rounds, workloads, args.tls, sides)
    results = []
    for index, run in enumerate(runs, start=1):
        began = time.perf_counter()
        results.append(_run(batch, run))
        progress(index, len(runs), results[-1], time.perf_counter() - began, run[3].name)
    comparisons = [compare(results, w, v) for w in workloads for v in args.tls]
    errors = [r for r in results if not r.get("ok")]
    print(table(comparisons, sides, args.rounds))
    for error in errors:
        print(
            f"\nFAILED side {error['side']} {error['workload']} TLS {error['tls']} "
            f"round {error['round'] + 1}: {error.get('error')}"
        )
    if args.json:
        machine["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
        report = {
            "schema": 1,
            "command": " ".join(["python -m trio_tls._bench._ab", *args.argv]),
            "started": datetime.datetime.fromtimestamp(started, datetime.UTC).isoformat(),
            "duration_s": time.time() - started,
            "machine": machine,
            "contender": CONTENDER,
            "sides": {s.name: {**dataclasses.asdict(s), "tree": str(s.tree)} for s in sides},
            "workloads": list(args.workloads),
            "tls": list(args.tls),
            "rounds": args.rounds,
            "params": params,
            "runs": [{k: v for k, v in r.items() if k != "certs"} for r in results if r.get("ok")],
            "errors": errors,
            "summary": [dataclasses.asdict(c) for c in comparisons],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
        print(f"\nJSON written to {args.json}")
    print(f"\nTotal time {time.time() - started:.0f} s", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
