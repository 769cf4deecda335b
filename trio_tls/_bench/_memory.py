"""Memory per idle connection: the measurement plan and the neutral peer process.

Method. The side being measured (server or client) runs in the worker process; the other side
of every connection is a *neutral peer*, a separate process using blocking stdlib ``ssl`` (see
``_peer.py``), identical for every contender. Each connection is opened, handshaken, and one
100-byte message is echoed so that it reaches its steady idle state (TLS 1.3 tickets are read).
Then, in phases:

1. ``WARMUP`` connections, untimed, so that first-use allocations (OpenSSL tables, imports,
   code objects) are not charged to the connections; then RSS is sampled;
2. ``count`` connections; RSS is sampled again. Headline: RSS delta / count, in KiB. RSS counts
   everything the process pays for, including OpenSSL's C heap and thread stacks;
3. with ``tracemalloc`` started, ``traced`` more connections; the traced-memory delta / traced
   is reported as ``py_heap_kib``: the Python-object share of the cost (tracemalloc cannot see
   OpenSSL's own allocations, which is why it is not the headline).
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Final

from ._peer import MESSAGE as MESSAGE
from ._spec import Job, Measurement

WARMUP: Final = 2
#: Time for the measured event loop to park its tasks after the peer saw its echo.
_SETTLE_S: Final = 0.02


def rss_bytes() -> int:
    """Current resident set size of this process (Linux ``/proc``; peak RSS elsewhere)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import resource

        # ru_maxrss is in KiB on Linux and bytes on macOS; only reached off Linux.
        scale = 1 if sys.platform == "darwin" else 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


class MemoryPlan:
    """The three phases above: open ``count`` connections for each count of ``batches()``."""

    def __init__(self, params: dict[str, int]) -> None:
        self.count = params["count"]
        self.traced = params["traced"]
        self._rss: list[int] = []
        self._traced: list[int] = []

    def batches(self) -> Iterator[int]:
        """How many connections to open in each phase; the samples are taken in between."""
        for phase, count in enumerate((WARMUP, self.count, self.traced)):
            self._before(phase)
            yield count
            self._after(phase)

    def _before(self, phase: int) -> None:
        if phase == 2:
            tracemalloc.start()
            self._traced.append(self._settle_traced())

    def _after(self, phase: int) -> None:
        if phase < 2:
            self._settle()
            self._rss.append(rss_bytes())
        else:
            self._traced.append(self._settle_traced())
            tracemalloc.stop()

    def result(self) -> Measurement:
        rss_kib = (self._rss[1] - self._rss[0]) / self.count / 1024
        py_kib = (self._traced[1] - self._traced[0]) / self.traced / 1024
        return Measurement(
            value=rss_kib,
            extra={"py_heap_kib": py_kib, "rss_total_mib": self._rss[1] / 2**20},
        )

    def _settle(self) -> None:
        time.sleep(_SETTLE_S)
        gc.collect()

    def _settle_traced(self) -> int:
        self._settle()
        return tracemalloc.get_traced_memory()[0]


def _peer_command(role: str, port: int, job: Job) -> list[str]:
    tls = job.tls if job.uses_tls else "none"
    # The peer ends itself after job.timeout seconds even if this process dies unannounced.
    # -I: standard library only, no site-packages, no PYTHON* variables (see _peer.py).
    args = [role, str(port), tls, job.certs, str(job.timeout)]
    return [sys.executable, "-I", str(Path(__file__).with_name("_peer.py")), *args]


class Peer:
    """A running neutral peer process, spoken to with one line per command."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self._process = process

    @property
    def _stdin(self) -> IO[str]:
        assert self._process.stdin is not None
        return self._process.stdin

    def read_line(self) -> str:
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError(f"memory peer exited early with code {self._process.poll()}")
        return line.strip()

    def open(self, count: int) -> None:
        """(client peer) Open ``count`` connections to the measured server; wait until done."""
        self._stdin.write(f"open {count}\n")
        self._stdin.flush()
        reply = self.read_line()
        if reply != f"ok {count}":
            raise RuntimeError(f"memory peer answered {reply!r}")

    def port(self) -> int:
        """(server peer) The port the peer listens on."""
        word, port = self.read_line().split()
        assert word == "port"
        return int(port)


@contextmanager
def running_peer(role: str, port: int, job: Job) -> Iterator[Peer]:
    """Start the neutral peer; always kill it on the way out (its loops are bounded too)."""
    process = subprocess.Popen(
        _peer_command(role, port, job),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield Peer(process)
    finally:
        process.kill()
        process.wait(timeout=10)


def measure_server_side(port: int, job: Job) -> Measurement:
    """Drive a client peer against the measured server on ``port`` (call from a thread)."""
    plan = MemoryPlan(job.params)
    with running_peer("client", port, job) as peer:
        for count in plan.batches():
            peer.open(count)
    return plan.result()
