"""What the benchmark measures: contenders, workloads, sizes and the job a worker runs.

Everything here is plain data so that the runner (parent process) and the worker (one fresh
process per measurement) agree on it through a JSON command line, and so that the report can
describe a run without importing any contender.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import importlib.util
import json
from dataclasses import dataclass
from typing import Any, Final

from ._peer import HOST as HOST
from ._peer import HOSTNAME as HOSTNAME

#: One size for every ``receive_some``/``recv``/``read`` call, so that no contender wins or loses
#: by reading in smaller pieces than the others: 64 KiB is trio's and anyio's usual maximum.
RECV_SIZE: Final = 65536
#: The contender every ratio is computed against.
BASELINE: Final = "trio_ssl"


class Family(enum.Enum):
    """Which worker module implements a contender: one per I/O style."""

    TRIO = "trio"
    ANYIO = "anyio"
    ASYNCIO = "asyncio"
    BLOCKING = "blocking"


@dataclass(frozen=True)
class Contender:
    """One library (or library + event loop) that runs every workload."""

    #: Short name used on the command line and in JSON.
    name: str
    #: Human-readable name for tables and charts.
    label: str
    family: Family
    #: Modules that must be importable, else the contender is skipped with a note.
    requires: tuple[str, ...] = ()
    #: False for the plain-TCP ceiling: it ignores the TLS version and certificate type.
    tls: bool = True


CONTENDERS: Final[tuple[Contender, ...]] = (
    Contender("trio_tls", "trio_tls.SSLStream", Family.TRIO),
    Contender("trio_ssl", "trio.SSLStream", Family.TRIO),
    Contender("anyio_trio", "anyio TLSStream (trio)", Family.ANYIO, ("anyio",)),
    Contender("anyio_asyncio", "anyio TLSStream (asyncio)", Family.ANYIO, ("anyio",)),
    Contender("asyncio", "asyncio streams", Family.ASYNCIO),
    Contender("uvloop", "asyncio streams + uvloop", Family.ASYNCIO, ("uvloop",)),
    Contender("blocking", "ssl.SSLSocket + threads", Family.BLOCKING),
    Contender("trio_tcp", "trio TCP, no TLS (I/O ceiling)", Family.TRIO, tls=False),
    # trio_tls's engine and socket path without its driver: the ceiling of the design.
    Contender("trio_tls_engine", "trio_tls engine, no driver (design ceiling)", Family.TRIO),
    # trio_tls whose servers choose their context per ClientHello through a warm
    # ContextCache: the cost of on-demand TLS, against trio_tls in the same run.
    Contender("trio_tls_chooser", "trio_tls.SSLStream, ContextCache (warm)", Family.TRIO),
)
CONTENDERS_BY_NAME: Final = {c.name: c for c in CONTENDERS}


class Kind(enum.Enum):
    """The shape of a workload; several workloads share one kind with different sizes."""

    BULK = "bulk"
    PINGPONG = "pingpong"
    HANDSHAKE = "handshake"
    MEMORY_SERVER = "memory_server"
    MEMORY_CLIENT = "memory_client"
    CONCURRENT = "concurrent"


@dataclass(frozen=True)
class Workload:
    """One measurement with one headline number."""

    name: str
    kind: Kind
    label: str
    unit: str
    #: True when a larger value is better (throughput); False for memory.
    higher_is_better: bool
    #: Fixed parameters of the workload (chunk size, message size, key type).
    fixed: dict[str, Any] = dataclasses.field(default_factory=dict)


WORKLOADS: Final[tuple[Workload, ...]] = (
    Workload("bulk_64k", Kind.BULK, "bulk one-way, 64 KiB writes", "MB/s", True, {"chunk": 65536}),
    Workload("bulk_16k", Kind.BULK, "bulk one-way, 16 KiB writes", "MB/s", True, {"chunk": 16384}),
    Workload(
        "pingpong",
        Kind.PINGPONG,
        "ping-pong, 100-byte messages",
        "round trips/s",
        True,
        {"size": 100},
    ),
    Workload(
        "handshake_ecdsa",
        Kind.HANDSHAKE,
        "sequential full handshakes, ECDSA P-256",
        "handshakes/s",
        True,
        {"key": "ecdsa"},
    ),
    Workload(
        "handshake_rsa",
        Kind.HANDSHAKE,
        "sequential full handshakes, RSA 2048",
        "handshakes/s",
        True,
        {"key": "rsa"},
    ),
    Workload(
        "memory_server",
        Kind.MEMORY_SERVER,
        "memory per idle connection, server side",
        "KiB/conn",
        False,
    ),
    Workload(
        "memory_client",
        Kind.MEMORY_CLIENT,
        "memory per idle connection, client side",
        "KiB/conn",
        False,
    ),
    Workload(
        "concurrent",
        Kind.CONCURRENT,
        "concurrent connections exchanging data",
        "conns/s",
        True,
        {"size": 1024},
    ),
)
WORKLOADS_BY_NAME: Final = {w.name: w for w in WORKLOADS}


class Mode(enum.Enum):
    """Sizes and repetitions: quick (< 1 minute) or full (< 15 minutes)."""

    QUICK = "quick"
    FULL = "full"


#: Per-mode sizes of each workload kind. Each worker measurement should take roughly 0.1-0.4 s
#: (quick) or 0.3-1.5 s (full) for trio.SSLStream on a 2-core machine, so that process start-up
#: does not dominate and the whole matrix fits the time budget.
# Two blocks of the same shape on purpose: each mode's sizes are tuned and read together.
SIZES: Final[dict[Mode, dict[Kind, dict[str, int]]]] = {
    Mode.QUICK: {
        Kind.BULK: {"total": 16 * 2**20},
        Kind.PINGPONG: {"count": 1000, "warmup": 100},
        Kind.HANDSHAKE: {"count": 40, "warmup": 3},
        Kind.MEMORY_SERVER: {"count": 100, "traced": 20},
        Kind.MEMORY_CLIENT: {"count": 100, "traced": 20},
        Kind.CONCURRENT: {"connections": 150, "exchanges": 4},
    },
    Mode.FULL: {
        Kind.BULK: {"total": 128 * 2**20},
        Kind.PINGPONG: {"count": 6000, "warmup": 300},
        Kind.HANDSHAKE: {"count": 300, "warmup": 5},
        Kind.MEMORY_SERVER: {"count": 500, "traced": 50},
        Kind.MEMORY_CLIENT: {"count": 500, "traced": 50},
        Kind.CONCURRENT: {"connections": 1000, "exchanges": 4},
    },
}
#: Rounds and TLS versions when the command line does not say.
DEFAULT_ROUNDS: Final = {Mode.QUICK: 1, Mode.FULL: 3}
DEFAULT_TLS: Final = {Mode.QUICK: ("1.3",), Mode.FULL: ("1.3", "1.2")}
TLS_VERSIONS: Final = ("1.2", "1.3")


def missing_requirement(contender: Contender) -> str | None:
    """Say why ``contender`` cannot run here, or return None when it can."""
    for module in contender.requires:
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install 'trio_tls[bench]')"
    # The core is written in parallel with this harness: skip rather than fail while
    # trio_tls.SSLStream does not exist yet.
    if contender.name.startswith("trio_tls") and not hasattr(
        importlib.import_module("trio_tls"), "SSLStream"
    ):
        return "trio_tls.SSLStream does not exist in this checkout yet"
    return None


@dataclass(frozen=True)
class Job:
    """Everything one worker process needs; travels as JSON on its command line."""

    contender: str
    workload: str
    tls: str
    certs: str
    params: dict[str, Any]
    timeout: float
    round: int = 0
    #: When set, the worker runs the measurement under cProfile and dumps stats to this path.
    profile: str | None = None

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Job:
        return cls(**json.loads(text))

    @property
    def kind(self) -> Kind:
        return WORKLOADS_BY_NAME[self.workload].kind

    @property
    def uses_tls(self) -> bool:
        return CONTENDERS_BY_NAME[self.contender].tls


def job_params(workload: Workload, mode: Mode, scale: float) -> dict[str, Any]:
    """The sizes of ``workload`` in ``mode``, each count multiplied by ``scale`` (at least 1)."""
    params: dict[str, Any] = {}
    for key, value in SIZES[mode][workload.kind].items():
        params[key] = value if key == "warmup" else max(1, round(value * scale))
    params.update(workload.fixed)
    return params


@dataclass
class Measurement:
    """What a workload returns: the headline value plus details for the report."""

    value: float
    extra: dict[str, float] = dataclasses.field(default_factory=dict)
    #: TLS version and cipher the client negotiated (None for plain TCP), as a sanity check.
    version: str | None = None
    cipher: str | None = None
