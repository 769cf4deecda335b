"""One measurement, one fresh process: build the job, run the worker, read its JSON line.

The matrix runner, ``--profile`` and the A/B comparison all launch workers through here, so
they agree on timeouts, on how an overrunning worker is ended and on what a result holds.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from . import _report
from ._spec import Job, Mode, Workload

#: Seconds a worker may spend on its workload, per mode; the runner kills it a little later.
JOB_TIMEOUT: Final = {Mode.QUICK: 30.0, Mode.FULL: 90.0}
_KILL_GRACE_S: Final = 15.0


@dataclass(frozen=True)
class Batch:
    """What every job of one run shares: the certificates, the sizes and the mode."""

    #: Directory of the PEM files minted for this run (see ``_certs.mint``).
    certs: str
    #: Parameters of each workload, by workload name (see ``_spec.job_params``).
    params: dict[str, dict[str, Any]]
    mode: Mode

    def job(
        self,
        contender: str,
        workload: Workload,
        tls: str,
        round_: int = 0,
        profile: str | None = None,
    ) -> Job:
        return Job(
            contender,
            workload.name,
            tls,
            self.certs,
            self.params[workload.name],
            JOB_TIMEOUT[self.mode],
            round_,
            profile,
        )


def worker_command(job: Job, tree: Path | None = None) -> tuple[list[str], dict[str, str] | None]:
    """The worker's command line, and its environment (None: this process's).

    With ``tree``, the worker is to import ``trio_tls`` from ``tree``: ``PYTHONPATH`` is that
    directory alone, and ``-P`` keeps the current directory, which may be another checkout,
    off the front of ``sys.path``. Installs can still reorder the path (a ``.pth`` file may
    insert itself first), so the worker checks which ``trio_tls`` it got and says so.
    """
    if tree is None:
        return [sys.executable, "-m", "trio_tls._bench._worker", job.to_json()], None
    command = [sys.executable, "-P", "-m", "trio_tls._bench._worker", job.to_json(), str(tree)]
    return command, {**os.environ, "PYTHONPATH": str(tree)}


def run_worker(job: Job, tree: Path | None = None) -> dict[str, Any]:
    """Run one job in a fresh process group; kill the whole group if it overruns.

    ``tree``: measure the ``trio_tls`` in that directory (see :func:`worker_command`).
    """
    command, env = worker_command(job, tree)
    with subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env=env,
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=job.timeout + _KILL_GRACE_S)
        except BaseException as exc:  # overrun, or the user pressed Ctrl-C
            # The worker is still alive, so its process group (worker + memory peer) is ours
            # to end. A worker that exits by itself has already ended its peer, and a peer
            # outlives a crashed worker only until its stdin closes or its deadline passes.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.communicate()  # reap it and drain the pipes
            if not isinstance(exc, subprocess.TimeoutExpired):
                raise
            stdout, stderr = "", f"killed after {job.timeout + _KILL_GRACE_S:.0f} s"
    lines = stdout.strip().splitlines()
    try:
        result: dict[str, Any] = json.loads(lines[-1])
    except (IndexError, ValueError):
        tail = stderr.strip().splitlines()[-1:] or [f"exit status {process.returncode}"]
        return {"ok": False, **_job_fields(job), "error": tail[0]}
    return check_version(result)


def _job_fields(job: Job) -> dict[str, Any]:
    return {
        "contender": job.contender,
        "workload": job.workload,
        "tls": job.tls,
        "round": job.round,
        "params": job.params,
    }


def check_version(result: dict[str, Any]) -> dict[str, Any]:
    """Turn a run that negotiated another TLS version than asked into a failed run."""
    # A contender that silently negotiated another TLS version would make the table a lie.
    expected = "TLSv" + str(result["tls"])
    if result.get("ok") and result.get("version") not in (None, expected):
        return {**result, "ok": False, "error": f"negotiated {result['version']}, not {expected}"}
    return result


def progress(
    index: int, total: int, result: dict[str, Any], seconds: float, who: str | None = None
) -> None:
    """One line on stderr per finished run: its place in the plan, who ran, the outcome."""
    print(_report.progress(index, total, result, seconds, who), file=sys.stderr, flush=True)
