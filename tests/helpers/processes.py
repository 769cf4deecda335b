"""Listing this process's child processes, to catch one a test left running."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path


def child_processes() -> set[int]:
    """The process ids of this process's children, running or not yet reaped.

    Linux lists them per thread in ``/proc``; where it does not, the set is empty.
    """
    children: set[int] = set()
    for task in Path(f"/proc/{os.getpid()}/task").glob("*"):
        with contextlib.suppress(OSError):  # a thread that just ended
            children.update(int(pid) for pid in (task / "children").read_text().split())
    return children


def kill(pids: set[int]) -> None:
    """SIGKILL each of ``pids`` that still exists, so that one leak does not load the
    machine for the tests after it."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
