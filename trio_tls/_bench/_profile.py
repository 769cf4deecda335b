"""``--profile DIR``: where does a contender's time go? cProfile around one worker run each."""

from __future__ import annotations

import io
import pstats
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from ._spec import Contender, Job, Mode, Workload

#: How many functions to print per profile, by own time (tottime).
TOP: Final = 25


def profile_cells(
    directory: Path,
    contenders: Sequence[Contender],
    workloads: Sequence[Workload],
    tls: Sequence[str],
    certs: str,
    params: dict[str, dict[str, Any]],
    mode: Mode,
) -> int:
    """Run each (contender, workload) once per TLS version under cProfile; print the top."""
    from ._runner import JOB_TIMEOUT, run_worker

    directory.mkdir(parents=True, exist_ok=True)
    failed = 0
    for contender in contenders:
        for workload in workloads:
            for version in tls:
                path = directory / f"{contender.name}-{workload.name}-tls{version}.prof"
                job = Job(
                    contender.name,
                    workload.name,
                    version,
                    certs,
                    params[workload.name],
                    JOB_TIMEOUT[mode],
                    profile=str(path),
                )
                result = run_worker(job)
                header = f"== {contender.label}, {workload.name}, TLS {version}"
                if not result.get("ok"):
                    print(f"{header}: FAILED: {result.get('error')}", file=sys.stderr)
                    failed += 1
                    continue
                print(f"{header}: {result['value']:,.1f} {workload.unit} under cProfile")
                print(summarize_profile(path))
    return 1 if failed else 0


def summarize_profile(path: Path, top: int = TOP) -> str:
    """The ``top`` functions by own time, with the share of the total each one takes."""
    out = io.StringIO()
    stats = pstats.Stats(str(path), stream=out)
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    return out.getvalue()
