"""The benchmark runner: plan the matrix, run each cell in a fresh worker, report.

Method (also in notes/benchmarks.md):

* every (round, workload, TLS version, contender) is one fresh ``python -m
  trio_tls._bench._worker`` process, so no contender inherits another's imports, caches or heap;
* contenders interleave: each round runs every contender on one workload back to back, in an
  order rotated by one each round, so slow drifts of a shared machine hit all of them alike;
* each ratio is taken within a round (contender / trio.SSLStream in the same round), then the
  median and min-max of those ratios are reported alongside the medians of the raw values.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from . import _certs, _machine, _report
from ._jobs import Batch, progress, run_worker
from ._profile import profile_cells
from ._spec import (
    BASELINE,
    CONTENDERS,
    CONTENDERS_BY_NAME,
    DEFAULT_ROUNDS,
    DEFAULT_TLS,
    TLS_VERSIONS,
    WORKLOADS,
    WORKLOADS_BY_NAME,
    Contender,
    Kind,
    Mode,
    Workload,
    job_params,
    missing_requirement,
)


def names(text: str, known: Sequence[str], what: str) -> list[str]:
    """The comma-separated ``text`` as a list, each one of ``known`` (an argparse type)."""
    chosen = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in known]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown {what} {', '.join(unknown)}; choose from {', '.join(known)}"
        )
    return chosen


_MODE_HELP: Final = {
    Mode.QUICK: "small sizes, TLS 1.3, 1 round: under a minute (default)",
    Mode.FULL: "full sizes (500 idle, 1,000 concurrent), TLS 1.3 and 1.2, 3 rounds",
}


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        # The name the other commands' help uses; `python -m trio_tls bench` is the same.
        prog="trio-tls bench",
        description="Compare trio_tls with trio.SSLStream and other TLS stacks on loopback.",
    )
    size = parser.add_mutually_exclusive_group()
    for mode, text in _MODE_HELP.items():
        size.add_argument(
            f"--{mode.value}", action="store_const", const=mode, dest="mode", help=text
        )
    parser.add_argument(
        "--contenders",
        type=lambda t: names(t, list(CONTENDERS_BY_NAME), "contender"),
        help=f"comma-separated subset of: {', '.join(CONTENDERS_BY_NAME)}",
    )
    parser.add_argument(
        "--workloads",
        type=lambda t: names(t, list(WORKLOADS_BY_NAME), "workload"),
        help=f"comma-separated subset of: {', '.join(WORKLOADS_BY_NAME)}",
    )
    parser.add_argument(
        "--tls",
        type=lambda t: names(t, TLS_VERSIONS, "TLS version"),
        help="comma-separated TLS versions: 1.3, 1.2",
    )
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default: 1 quick, 3 full)")
    parser.add_argument("--json", type=Path, help="write the full report as JSON here")
    parser.add_argument("--png", type=Path, help="draw the ratio chart here (needs matplotlib)")
    add_scale(parser)
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="instead of the matrix, run each cell once under cProfile, "
        "save DIR/<contender>-<workload>-tls<v>.prof and print the top entries",
    )
    args = parse_counted(parser, argv)
    args.mode = args.mode or Mode.QUICK
    return args


def add_scale(parser: argparse.ArgumentParser) -> None:
    """``--scale F``, for the bench and the A/B comparison alike."""
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="multiply every workload count by this (the tests use 0.02-0.05)",
    )


def parse_counted(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    """Parse ``argv``, keep it as ``argv``, and refuse rounds below 1 or a scale below 0."""
    args = parser.parse_args(argv)
    args.argv = list(argv)
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if not 0 < args.scale < float("inf"):  # also false for nan
        parser.error("--scale must be a positive finite number")
    return args


def _plan(
    contenders: Sequence[Contender], workloads: Sequence[Workload], tls: Sequence[str], rounds: int
) -> list[tuple[int, Workload, str, Contender]]:
    plan = []
    for round_ in range(rounds):
        for workload in workloads:
            for version in tls:
                shift = round_ % len(contenders)
                for contender in [*contenders[shift:], *contenders[:shift]]:
                    plan.append((round_, workload, version, contender))
    return plan


def _slim(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k not in ("certs", "profile")}


def _select(args: argparse.Namespace) -> tuple[list[Contender], dict[str, str]]:
    wanted = [CONTENDERS_BY_NAME[n] for n in args.contenders] if args.contenders else CONTENDERS
    chosen, skipped = [], {}
    for contender in wanted:
        reason = missing_requirement(contender)
        if reason is None:
            chosen.append(contender)
        else:
            skipped[contender.name] = reason
    return chosen, skipped


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark described by ``argv`` (see ``--help``); 0 if every run succeeded."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    mode: Mode = args.mode
    contenders, skipped = _select(args)
    workloads = [WORKLOADS_BY_NAME[n] for n in args.workloads] if args.workloads else WORKLOADS
    tls = args.tls or list(DEFAULT_TLS[mode])
    rounds = args.rounds or DEFAULT_ROUNDS[mode]
    for name, reason in skipped.items():
        print(f"note: skipping {CONTENDERS_BY_NAME[name].label}: {reason}", file=sys.stderr)
    if not contenders:
        print("error: no contender can run", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="trio-tls-bench-") as certs:
        _certs.mint(Path(certs))
        batch = Batch(certs, {w.name: job_params(w, mode, args.scale) for w in workloads}, mode)
        if args.profile:
            return profile_cells(args.profile, batch, contenders, workloads, tls)
        return _run_matrix(args, batch, contenders, skipped, workloads, tls, rounds)


def _run_matrix(
    args: argparse.Namespace,
    batch: Batch,
    contenders: list[Contender],
    skipped: dict[str, str],
    workloads: Sequence[Workload],
    tls: Sequence[str],
    rounds: int,
) -> int:
    mode = batch.mode
    started = time.time()
    machine = _machine.describe()
    bulk = any(w.kind is Kind.BULK for w in workloads)
    ceiling = _machine.openssl_speed() if bulk else {"mb_s": None}
    plan = _plan(contenders, workloads, tls, rounds)
    results = []
    for index, (round_, workload, version, contender) in enumerate(plan, start=1):
        began = time.perf_counter()
        result = run_worker(batch.job(contender.name, workload, version, round_))
        progress(index, len(plan), result, time.perf_counter() - began)
        results.append(result)
    summaries = _report.summarize(results)
    errors = [r for r in results if not r.get("ok")]
    machine["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    report = {
        "schema": 1,
        "command": " ".join(["python -m trio_tls bench", *args.argv]),
        "mode": mode.value,
        "started": datetime.datetime.fromtimestamp(started, datetime.UTC).isoformat(),
        "duration_s": time.time() - started,
        "machine": machine,
        "baseline": BASELINE,
        "contenders": {c.name: c.label for c in contenders},
        "skipped": skipped,
        "workloads": {
            w.name: {"label": w.label, "unit": w.unit, "higher_is_better": w.higher_is_better}
            for w in workloads
        },
        "tls": list(tls),
        "rounds": rounds,
        "params": batch.params,
        "ceiling": ceiling,
        # Per-run certs path and profile flag are plumbing, not results.
        "runs": [_slim(r) for r in results if r.get("ok")],
        "errors": errors,
    }
    print(_report.table(summaries, ceiling))
    if ceilings := _report.against_ceilings(results, mode):
        print(f"\n{ceilings}")
    if chooser := _report.chooser_cost(results):
        print(f"\n{chooser}")
    for name, reason in skipped.items():
        print(f"\nSkipped {CONTENDERS_BY_NAME[name].label}: {reason}")
    if BASELINE not in {c.name for c in contenders}:
        print("\nNo ratios: trio.SSLStream (trio_ssl) was not among the contenders.")
    for error in errors:
        print(
            f"\nFAILED {error['contender']} {error['workload']} TLS {error['tls']} "
            f"round {error['round'] + 1}: {error.get('error')}"
        )
    if args.json:
        _report.write_json(args.json, report, summaries)
        print(f"\nJSON written to {args.json}")
    if args.png:
        title = f"trio_tls bench ({mode.value}, {rounds} rounds) on {machine['cpu_model']}"
        note = _report.write_png(args.png, summaries, title)
        print(f"\n{note}" if note else f"\nChart written to {args.png}")
    print(f"\nTotal time {time.time() - started:.0f} s", file=sys.stderr)
    return 1 if errors else 0
