"""One measurement in a fresh process: ``python -m trio_tls._bench._worker JOB_JSON [TREE]``.

Prints exactly one JSON line on stdout: ``{"ok": true, ...measurement...}`` or
``{"ok": false, "error": "..."}`` (then exits with status 1). The workload itself is bounded by
``job.timeout``; the runner also kills the whole process group if the worker overruns.

With TREE (the A/B comparison), the worker first checks that ``trio_tls`` was imported from
``TREE/trio_tls`` and fails if not; the result then names the file in ``trio_tls_file``.
"""

from __future__ import annotations

import cProfile
import dataclasses
import json
import resource
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import trio_tls

from ._spec import CONTENDERS_BY_NAME, Family, Job, Measurement


class WrongTreeError(RuntimeError):
    """This process imported another ``trio_tls`` than the one it was asked to measure."""


def check_tree(tree: str) -> str:
    """The file ``trio_tls`` was imported from, which must be ``tree``'s."""
    found = Path(trio_tls.__file__).resolve()
    expected = (Path(tree) / "trio_tls" / "__init__.py").resolve()
    if found != expected:
        raise WrongTreeError(
            f"imported trio_tls from {found}, not {expected}: another checkout or install"
            " comes first on the import path"
        )
    return str(found)


def _raise_fd_limit() -> None:
    # 1,000 concurrent connections need ~2,000 descriptors in this process alone.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        wanted = 65536 if hard == resource.RLIM_INFINITY else hard
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def _measure(job: Job) -> Measurement:
    # Import only the family under test, so no contender pays for another's imports.
    family = CONTENDERS_BY_NAME[job.contender].family
    if family is Family.TRIO:
        from . import _trio_family as module
    elif family is Family.ANYIO:
        from . import _anyio_family as module  # type: ignore[no-redef]
    elif family is Family.ASYNCIO:
        from . import _asyncio_family as module  # type: ignore[no-redef]
    else:
        from . import _blocking_family as module  # type: ignore[no-redef]
    return module.run(job)


def run_job(job: Job, tree: str | None = None) -> dict[str, Any]:
    """Measure ``job`` (optionally under cProfile) and return the JSON-ready result."""
    where = {"trio_tls_file": check_tree(tree)} if tree is not None else {}
    _raise_fd_limit()
    started = time.perf_counter()
    if job.profile:
        profiler = cProfile.Profile()
        measurement = profiler.runcall(_measure, job)
        profiler.dump_stats(job.profile)
    else:
        measurement = _measure(job)
    return {
        "ok": True,
        **dataclasses.asdict(job),
        **dataclasses.asdict(measurement),
        "wall": time.perf_counter() - started,
        **where,
    }


def main(argv: list[str]) -> int:
    job = Job.from_json(argv[0])
    try:
        result = run_job(job, argv[1] if len(argv) > 1 else None)
    except BaseException as exc:  # report every failure as data; the runner decides
        error = "".join(traceback.format_exception_only(exc)).strip()
        traceback.print_exc(file=sys.stderr)
        print(json.dumps({"ok": False, **dataclasses.asdict(job), "error": error}), flush=True)
        return 1
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
