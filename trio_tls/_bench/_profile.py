"""``--profile DIR``: where does a contender's time go? cProfile around one worker run each."""

from __future__ import annotations

import io
import pstats
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from ._jobs import Batch, run_worker
from ._spec import Contender, Workload

#: How many functions to print per profile, by own time (tottime).
TOP: Final = 25


def profile_cells(
    directory: Path,
    batch: Batch,
    contenders: Sequence[Contender],
    workloads: Sequence[Workload],
    tls: Sequence[str],
) -> int:
    """Run each (contender, workload) once per TLS version under cProfile; print the top."""
    directory.mkdir(parents=True, exist_ok=True)
    failed = 0
    for contender in contenders:
        for workload in workloads:
            for version in tls:
                path = directory / f"{contender.name}-{workload.name}-tls{version}.prof"
                job = batch.job(contender.name, workload, version, profile=str(path))
                result = run_worker(job)
                header = f"== {contender.label}, {workload.name}, TLS {version}"
                if not result.get("ok"):
                    print(f"{header}: FAILED: {result.get('error')}", file=sys.stderr)
                    failed += 1
                    continue
                print(f"{header}: {result['value']:,.1f} {workload.unit} under cProfile")
                print(summarize_profile(path))
    return 1 if failed else 0


#: (category, test on "filename:function") in priority order; the first match wins.
_CATEGORIES: Final[tuple[tuple[str, tuple[str, ...]], ...]] = (
    # Built-ins show as "~:<method 'read' of '_ssl._SSLSocket' objects>".
    ("OpenSSL via _ssl (C)", ("'_ssl.",)),
    # Socket methods, or os.write/os.readv on the socket's descriptor (trio_tls's fast path).
    ("socket syscalls (C)", ("'_socket.socket'", "epoll", "select.", "posix.write", "posix.read")),
    ("benchmark harness", ("_bench/",)),
    ("trio_tls Python", ("trio_tls/",)),
    ("trio.SSLStream Python", ("trio/_ssl.py",)),
    ("stdlib ssl.py wrappers", ("/ssl.py",)),
    ("trio socket layer", ("trio/_socket.py", "trio/_highlevel_socket.py")),
    ("trio scheduler and traps", ("trio/_core/", "trio._core", "outcome", "_contextvars.Context")),
    ("anyio", ("anyio/",)),
    ("asyncio", ("asyncio/",)),
    ("contextlib", ("contextlib.py",)),
)


def _category(filename: str, function: str) -> str:
    where = f"{filename}:{function}"
    for name, needles in _CATEGORIES:
        if any(needle in where for needle in needles):
            return name
    return "other (builtins, enum, collections, ...)"


def categorize(path: Path) -> dict[str, float]:
    """Own time (tottime) per category, in seconds, largest first."""
    stats: dict[tuple[str, int, str], tuple[Any, ...]] = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    totals: dict[str, float] = {}
    for (filename, _, function), (_, _, tottime, *_) in stats.items():
        category = _category(filename, function)
        totals[category] = totals.get(category, 0.0) + float(tottime)
    return dict(sorted(totals.items(), key=lambda item: -item[1]))


def summarize_profile(path: Path, top: int = TOP) -> str:
    """Own time by category, then the ``top`` functions by own time."""
    totals = categorize(path)
    grand = sum(totals.values()) or 1.0
    lines = [f"  {share / grand:6.1%}  {category}" for category, share in totals.items()]
    out = io.StringIO()
    stats = pstats.Stats(str(path), stream=out)
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    return "Own time by category:\n" + "\n".join(lines) + "\n" + out.getvalue()
