"""hypercorn patched against hypercorn unpatched: requests per second, as a ratio.

``python -m trio_tls._bench._hypercorn [--rounds N] [--seconds S] [--connections C]
[--protocols h1,h2] [--json PATH] [--profile DIR]``, or ``make bench-hypercorn``.

* Each run is a fresh server process (``_hypercorn_server``: hypercorn's trio worker
  serving a 5-byte response over TLS 1.3, with or without :func:`trio_tls.patch_trio`)
  and a fresh client process (``_http_load``: the same stdlib-only load generator for
  both sides) keeping one request in flight on each of C keep-alive connections.
* The two sides alternate (patched first in even rounds, unpatched first in odd ones),
  so a drift of the machine favours neither; each ratio patched/unpatched is taken
  within one round and protocol. The table gives the median ratio and its min-max.
  A spread that excludes 1.0 means every round went the same way, which two equal
  sides would do with probability 2 / 2**rounds (a sign test).
* ``--profile DIR`` runs each server under cProfile and prints where the time went
  (self time by function, top 12) for each side and protocol of the last round.
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from . import _certs, _machine

SIDES: Final = ("patched", "unpatched")
PROTOCOLS: Final = ("h1", "h2")
_HERE: Final = Path(__file__).resolve().parent
#: Ceiling on any one process: a run that hangs fails instead of holding the machine.
PROCESS_TIMEOUT: Final = 120.0


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m trio_tls._bench._hypercorn",
        description="hypercorn's trio worker with and without trio_tls.patch_trio(), "
        "interleaved in fresh processes; prints requests/s and the ratio per protocol.",
    )
    parser.add_argument("--rounds", type=int, default=8, help="paired rounds (default 8)")
    parser.add_argument("--seconds", type=float, default=4.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds first")
    parser.add_argument("--connections", type=int, default=8, help="keep-alive connections")
    parser.add_argument("--protocols", default="h1,h2", help="h1, h2 or both (default)")
    parser.add_argument("--json", type=Path, help="also write every run here")
    parser.add_argument("--profile", type=Path, help="profile the servers into this directory")
    args = parser.parse_args(argv)
    args.protocols = [p for p in args.protocols.split(",") if p]
    if not args.protocols or set(args.protocols) - set(PROTOCOLS):
        parser.error(f"--protocols takes {', '.join(PROTOCOLS)}")
    if args.rounds < 1 or args.connections < 1 or args.seconds <= 0:
        parser.error("--rounds, --connections and --seconds must be positive")
    return args


def run_one(
    args: argparse.Namespace, certs: Path, side: str, protocol: str, profile: Path | None
) -> dict[str, Any]:
    """One server process and one client process; what the client measured."""
    command = [sys.executable, "-m", "trio_tls._bench._hypercorn_server", side, str(certs)]
    if profile is not None:
        command.append(str(profile))
    server = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=_env()
    )
    try:
        assert server.stdout is not None and server.stdin is not None
        line = server.stdout.readline()
        if not line.startswith("port "):
            raise RuntimeError(f"the {side} server did not start: {line!r}")
        client = subprocess.run(
            [
                sys.executable,
                "-I",
                str(_HERE / "_http_load.py"),
                line.split()[1],
                protocol,
                str(args.connections),
                str(args.warmup),
                str(args.seconds),
                str(certs / "ecdsa-ca.pem"),
            ],
            capture_output=True,
            text=True,
            timeout=PROCESS_TIMEOUT,
            check=False,
        )
        if client.returncode != 0:
            raise RuntimeError(f"the load generator failed against {side}: {client.stderr}")
        server.stdin.close()
        served = json.loads(server.stdout.readline())
        server.wait(timeout=PROCESS_TIMEOUT)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    if served["listener"].startswith("trio_tls.") != (side == "patched"):
        raise RuntimeError(f"the {side} server served with {served['listener']}")
    result: dict[str, Any] = json.loads(client.stdout)
    return {"side": side, "protocol": protocol, **result}


def _env() -> dict[str, str]:
    # The server must import this checkout's trio_tls, whatever the current directory.
    env = dict(os.environ)
    root = str(_HERE.parent.parent)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return env


def summarize(runs: list[dict[str, Any]], protocols: Sequence[str]) -> list[str]:
    """The table: median requests/s per side, the median ratio and its min-max."""
    lines = [
        f"{'protocol':<9} {'patched rps':>12} {'unpatched rps':>14} "
        f"{'ratio':>7} {'min-max':>13}  verdict"
    ]
    for protocol in protocols:
        by_round: dict[int, dict[str, float]] = {}
        for run in runs:
            if run["protocol"] == protocol:
                by_round.setdefault(run["round"], {})[run["side"]] = run["rps"]
        ratios = [r["patched"] / r["unpatched"] for r in by_round.values() if len(r) == 2]
        patched = statistics.median(r["patched"] for r in by_round.values())
        unpatched = statistics.median(r["unpatched"] for r in by_round.values())
        low, high, median = min(ratios), max(ratios), statistics.median(ratios)
        if low > 1.0:
            verdict = f"patched faster in all {len(ratios)} rounds"
        elif high < 1.0:
            verdict = f"patched slower in all {len(ratios)} rounds"
        else:
            verdict = "no difference beyond this run's noise"
        lines.append(
            f"{protocol:<9} {patched:>12.0f} {unpatched:>14.0f} {median:>7.3f} "
            f"{low:>6.3f}-{high:<6.3f}  {verdict}"
        )
    return lines


def print_profiles(directory: Path, top: int = 12) -> None:
    for path in sorted(directory.glob("*.prof")):
        print(f"\n--- {path.stem}: self time, top {top} ---")
        stats = pstats.Stats(str(path))
        stats.sort_stats("tottime").print_stats(top)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="trio_tls-hypercorn-") as tmp:
        certs = Path(tmp)
        _certs.mint(certs)
        for round_ in range(args.rounds):
            for index, protocol in enumerate(args.protocols):
                order = SIDES if (round_ + index) % 2 == 0 else SIDES[::-1]
                for side in order:
                    last = round_ == args.rounds - 1
                    profile = (
                        args.profile / f"{side}-{protocol}.prof"
                        if args.profile is not None and last
                        else None
                    )
                    run = run_one(args, certs, side, protocol, profile)
                    run["round"] = round_
                    runs.append(run)
                    print(
                        f"round {round_ + 1}/{args.rounds} {protocol} {side:<9} "
                        f"{run['rps']:8.0f} requests/s",
                        file=sys.stderr,
                        flush=True,
                    )
    table = summarize(runs, args.protocols)
    print("\n".join(table))
    if args.json is not None:
        document = {"machine": _machine.describe(), "args": sys.argv, "runs": runs}
        args.json.write_text(json.dumps(document, indent=2))
    if args.profile is not None:
        print_profiles(args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
