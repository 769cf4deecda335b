"""hypercorn patched against hypercorn unpatched: requests per second, as a ratio.

``python -m trio_tls._bench._hypercorn [--rounds N] [--seconds S] [--connections C]
[--protocols h1,h2] [--json PATH] [--profile DIR]``, or ``make bench-hypercorn``.

* Each run is a fresh server process (``_hypercorn_server``: hypercorn's trio worker
  serving a 5-byte response over TLS 1.3, with or without :func:`trio_tls.patch_trio`)
  and a fresh client process (``_http_load``: the same stdlib-only load generator for
  both sides) keeping one request in flight on each of C keep-alive connections.
* Two figures per run: the client's requests per second, and the server process's
  CPU time (user + system, from ``/proc``) per response, which other load on a shared
  machine disturbs far less.
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
    with subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=_env()
    ) as server:
        try:
            client, cpu, served = _load(args, certs, server, side, protocol)
        finally:
            if server.poll() is None:
                server.kill()
    if served["listener"].startswith("trio_tls.") != (side == "patched"):
        raise RuntimeError(f"the {side} server served with {served['listener']}")
    result: dict[str, Any] = json.loads(client.stdout)
    result["server_cpu_us"] = cpu / result["total"] * 1e6
    return {"side": side, "protocol": protocol, **result}


def _load(
    args: argparse.Namespace,
    certs: Path,
    server: subprocess.Popen[str],
    side: str,
    protocol: str,
) -> tuple[subprocess.CompletedProcess[str], float, dict[str, str]]:
    """Run the client against a started server; its result, the server's CPU, and the
    server's own report of what served."""
    assert server.stdout is not None and server.stdin is not None
    line = server.stdout.readline()
    if not line.startswith("port "):
        raise RuntimeError(f"the {side} server did not start: {line!r}")
    cpu_before = _cpu_seconds(server.pid)
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
    cpu = _cpu_seconds(server.pid) - cpu_before
    server.stdin.close()
    served: dict[str, str] = json.loads(server.stdout.readline())
    server.wait(timeout=PROCESS_TIMEOUT)
    return client, cpu, served


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far (Linux ``/proc``)."""
    with open(f"/proc/{pid}/stat") as stat:
        # Fields 14 and 15 (utime, stime), counted after the parenthesised command name.
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _env() -> dict[str, str]:
    # The server must import this checkout's trio_tls, whatever the current directory.
    env = dict(os.environ)
    root = str(_HERE.parent.parent)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return env


def summarize(runs: list[dict[str, Any]], protocols: Sequence[str]) -> list[str]:
    """The table: per protocol and metric, both medians, the median ratio and its min-max.

    Two metrics: requests per second (higher is better), and the server's CPU time per
    response (lower is better), which other load on the machine disturbs far less
    than throughput does.
    """
    lines = [
        f"{'protocol':<9} {'metric':<16} {'patched':>9} {'unpatched':>9} "
        f"{'ratio':>6} {'min-max':>13}  verdict"
    ]
    for protocol in protocols:
        for metric, label in (("rps", "requests/s"), ("server_cpu_us", "server CPU us/req")):
            lines.append(_row(runs, protocol, metric, label))
    return lines


def _row(runs: list[dict[str, Any]], protocol: str, metric: str, label: str) -> str:
    by_round: dict[int, dict[str, float]] = {}
    for run in runs:
        if run["protocol"] == protocol:
            by_round.setdefault(run["round"], {})[run["side"]] = run[metric]
    pairs = [r for r in by_round.values() if len(r) == 2]
    ratios = [r["patched"] / r["unpatched"] for r in pairs]
    patched = statistics.median(r["patched"] for r in pairs)
    unpatched = statistics.median(r["unpatched"] for r in pairs)
    low, high, median = min(ratios), max(ratios), statistics.median(ratios)
    better, worse = ("higher", "lower") if metric == "rps" else ("lower", "higher")
    if low > 1.0 or high < 1.0:
        direction = better if (low > 1.0) == (better == "higher") else worse
        verdict = f"patched {direction} in all {len(ratios)} rounds"
    else:
        verdict = "no difference beyond this run's noise"
    return (
        f"{protocol:<9} {label:<16} {patched:>9.0f} {unpatched:>9.0f} "
        f"{median:>6.3f} {low:>6.3f}-{high:<6.3f}  {verdict}"
    )


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
