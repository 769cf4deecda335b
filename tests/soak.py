"""Soak: one server process holds 1,000 concurrent TLS connections; every byte is checked.

Run ``make soak`` (or ``.venv/bin/python tests/soak.py --help``). Loopback only.

Layout: the server runs in a child process (``--serve``), so its memory figures are
its own; the clients run here. With two or more CPUs the server is pinned to CPU 0
and the clients to CPU 1: of a 2-core machine, one core each.

Phase 1, load: N clients connect and finish their handshakes; once all N are open
at the same time (a barrier), each sends a length-prefixed random payload. The
server hashes it (sha256) while echoing it, then sends the digest. The client
checks the echo against its own hash and the server's digest, then closes. Reported:
connections per second (ramp), throughput, p50/p99 handshake and request latency,
the server's peak RSS and RSS per open connection, and lost or corrupted bytes.

Phase 2, slowloris: M raw TCP clients connect and never finish a handshake (half
send a partial ClientHello, half nothing). While they hang on, a well-behaved
client must be served promptly; then the server's handshake deadline must close
every one of them.

Exit status 0 only if nothing was lost or corrupted and both phases met their goals.
:func:`run` is also used, in-process and smaller, by tests/test_load.py.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import secrets
import ssl
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

import trio

from trio_tls import SSLStream, open_ssl_over_tcp_listeners, open_ssl_over_tcp_stream
from trio_tls.testing import TLSTestCA

#: Length prefix of a request: the payload size, big-endian.
HEADER = struct.Struct("!Q")
DIGEST_SIZE = hashlib.sha256().digest_size
#: The server refuses to hash more than this per connection.
MAX_PAYLOAD = 64 * 1024 * 1024
#: Sent by half the slowloris clients: a handshake record header promising 512
#: bytes, and the first few of them. The server waits for the rest.
PARTIAL_HELLO = bytes.fromhex("1603010200") + b"\x01\x00\x01\xfc\x03\x03"
#: This file, run again as the server process.
SOAK_SCRIPT = os.path.abspath(__file__)


@dataclass
class SoakConfig:
    connections: int = 1000
    payload_bytes: int = 32 * 1024
    slowloris: int = 500
    #: Short, so phase 2 sees the deadline act; the library's default is 60 s.
    handshake_timeout: float = 10.0
    #: Whole run, both phases; the run fails rather than hang past it.
    time_limit: float = 300.0


@dataclass
class ServerStats:
    """Counted by the server; sent to the parent as JSON when it asks."""

    accepted: int = 0
    active: int = 0
    peak_active: int = 0
    served: int = 0
    handshake_timeouts: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    bytes_echoed: int = 0
    rss_baseline_kib: int = 0
    #: When the count of open connections first reached its peak (a handler start).
    rss_at_peak_kib: int = 0
    #: When these stats were taken; the load phase asks with every connection open
    #: and every handshake done.
    rss_now_kib: int = 0
    peak_rss_kib: int = 0

    def opened(self) -> None:
        self.accepted += 1
        self.active += 1
        if self.active > self.peak_active:
            self.peak_active = self.active
            self.rss_at_peak_kib = _rss_kib("VmRSS")

    def failed(self, exc: BaseException) -> None:
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        if isinstance(cause, trio.TooSlowError):
            self.handshake_timeouts += 1
            return
        name = type(cause).__name__
        self.failures[name] = self.failures.get(name, 0) + 1


@dataclass
class ClientResult:
    handshake_seconds: list[float] = field(default_factory=list)
    request_seconds: list[float] = field(default_factory=list)
    verified_bytes: int = 0
    corrupted: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    ramp_seconds: float = 0.0
    data_seconds: float = 0.0

    def failed(self, exc: BaseException) -> None:
        name = type(exc).__name__
        if exc.__cause__ is not None:
            name += f"({type(exc.__cause__).__name__})"
        self.failures[name] = self.failures.get(name, 0) + 1


@dataclass
class SlowlorisResult:
    attackers: int = 0
    good_client_served: bool = False
    good_client_seconds: float = 0.0
    closed_by_server: int = 0
    slowest_close_seconds: float = 0.0


def _rss_kib(key: str) -> int:
    """VmRSS (now) or VmHWM (peak) of this process, from /proc."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def raise_fd_limit() -> None:
    """Two fds per connection in one process; lift the soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def receive_exactly(stream: SSLStream[trio.SocketStream], size: int) -> bytearray:
    # Not tests.helpers.streams' (this script runs without the tests package): an early
    # EOF here is the peer's failure, counted in the report, not a failed assertion.
    buf = bytearray()
    while len(buf) < size:
        chunk = await stream.receive_some(size - len(buf))
        if not chunk:
            raise EOFError(f"EOF after {len(buf)} of {size} bytes")
        buf += chunk
    return buf


# -- the server ----------------------------------------------------------------------


async def handle(stream: SSLStream[trio.SocketStream], stats: ServerStats) -> None:
    """Echo a length-prefixed payload while hashing it, then send the digest."""
    stats.opened()
    try:
        await stream.do_handshake()
        (size,) = HEADER.unpack(await receive_exactly(stream, HEADER.size))
        if size > MAX_PAYLOAD:
            raise ValueError(f"payload of {size} bytes refused")
        digest = hashlib.sha256()
        remaining = size
        while remaining:
            chunk = await stream.receive_some(min(remaining, 65536))
            if not chunk:
                raise EOFError("client hung up mid-payload")
            digest.update(chunk)
            await stream.send_all(chunk)
            remaining -= len(chunk)
        await stream.send_all(digest.digest())
        # The client closes first; wait for its close_notify so nothing is cut off.
        if await stream.receive_some():
            raise ValueError("data after the payload")
        stats.served += 1
        stats.bytes_echoed += size
    except (trio.BrokenResourceError, EOFError, ValueError) as exc:
        stats.failed(exc)
    finally:
        stats.active -= 1
        await trio.aclose_forcefully(stream)


def server_context_from(cert_chain_path: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_chain_path)
    return context


async def serve(
    context: ssl.SSLContext,
    stats: ServerStats,
    handshake_timeout: float,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve on 127.0.0.1 until cancelled; reports the port through task_status.

    The handler counts every connection, stalled handshakes included, so it is
    served from the listeners with ``trio.serve_listeners``: their handshake is
    lazy. ``serve_ssl_over_tcp`` would drop (and log) those before any handler ran.
    """
    listeners = await open_ssl_over_tcp_listeners(
        0, context, host="127.0.0.1", handshake_timeout=handshake_timeout
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, partial(handle, stats=stats), listeners)
        stats.rss_baseline_kib = _rss_kib("VmRSS")
        transport = listeners[0].transport_listener
        assert isinstance(transport, trio.SocketListener)
        task_status.started(transport.socket.getsockname()[1])


async def _server_process_main(cert_chain_path: str, handshake_timeout: float) -> None:
    """The child: serve, answer "stats" on stdin with a JSON line, exit on EOF."""
    stats = ServerStats()
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    async with trio.open_nursery() as nursery:
        port = await nursery.start(
            serve, server_context_from(cert_chain_path), stats, handshake_timeout
        )
        print(json.dumps({"port": port}), flush=True)
        buffer = b""
        while chunk := await stdin.receive_some():
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if line.strip() == b"stats":
                    stats.rss_now_kib = _rss_kib("VmRSS")
                    stats.peak_rss_kib = _rss_kib("VmHWM")
                    print(json.dumps(asdict(stats)), flush=True)
        nursery.cancel_scope.cancel()


class ServerProcess:
    """The parent's handle on the child server: start it, ask it for its stats."""

    def __init__(self, process: trio.Process, stdout: trio.abc.ReceiveStream) -> None:
        self.process = process
        self._stdout = stdout
        self._buffer = b""

    async def _line(self) -> dict[str, Any]:
        while b"\n" not in self._buffer:
            chunk = await self._stdout.receive_some()
            if not chunk:
                raise RuntimeError("the server process exited")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        result: dict[str, Any] = json.loads(line)
        return result

    async def port(self) -> int:
        return int((await self._line())["port"])

    async def stats(self) -> ServerStats:
        assert self.process.stdin is not None
        await self.process.stdin.send_all(b"stats\n")
        return ServerStats(**await self._line())


# -- the clients ------------------------------------------------------------------------


async def one_client(
    port: int,
    context: ssl.SSLContext,
    payload: bytes,
    result: ClientResult,
    arrived: Callable[[], None],
    go: trio.Event,
) -> None:
    """Connect, wait at the barrier, send the payload, verify echo and digest."""
    try:
        started = time.perf_counter()
        stream = await open_ssl_over_tcp_stream("127.0.0.1", port, ssl_context=context)
    except OSError as exc:
        result.failed(exc)
        arrived()
        return
    try:
        try:
            await stream.do_handshake()
        finally:
            arrived()
        result.handshake_seconds.append(time.perf_counter() - started)
        await go.wait()
        sent_at = time.perf_counter()
        await stream.send_all(HEADER.pack(len(payload)) + payload)
        echo = await receive_exactly(stream, len(payload) + DIGEST_SIZE)
        result.request_seconds.append(time.perf_counter() - sent_at)
        expected = hashlib.sha256(payload).digest()
        if hashlib.sha256(echo[: len(payload)]).digest() == expected == echo[len(payload) :]:
            result.verified_bytes += len(payload)
        else:
            result.corrupted += 1
    except (trio.BrokenResourceError, EOFError) as exc:
        result.failed(exc)
    finally:
        await stream.aclose()


async def load_phase(
    port: int,
    context: ssl.SSLContext,
    config: SoakConfig,
    on_all_open: Callable[[], Awaitable[None]],
) -> ClientResult:
    """Open every connection, call ``on_all_open`` while all are open, then exchange."""
    result = ClientResult()
    go = trio.Event()
    waiting = config.connections
    all_arrived = trio.Event()

    def arrived() -> None:
        nonlocal waiting
        waiting -= 1
        if waiting == 0:
            all_arrived.set()

    payloads = [secrets.token_bytes(config.payload_bytes) for _ in range(config.connections)]
    ramp_started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for payload in payloads:
            nursery.start_soon(one_client, port, context, payload, result, arrived, go)
        await all_arrived.wait()
        result.ramp_seconds = time.perf_counter() - ramp_started
        await on_all_open()
        data_started = time.perf_counter()
        go.set()
    result.data_seconds = time.perf_counter() - data_started
    return result


async def slowloris_phase(
    port: int, context: ssl.SSLContext, config: SoakConfig
) -> SlowlorisResult:
    """M stalled handshakes; one good client must still be served; all get closed."""
    result = SlowlorisResult(attackers=config.slowloris)
    attackers: list[trio.SocketStream] = []
    attack_started = time.perf_counter()
    try:
        for n in range(config.slowloris):
            attacker = await trio.open_tcp_stream("127.0.0.1", port)
            attackers.append(attacker)
            if n % 2:
                await attacker.send_all(PARTIAL_HELLO)
        good = ClientResult()
        started = time.perf_counter()
        go = trio.Event()
        go.set()
        with trio.move_on_after(config.handshake_timeout / 2):
            await one_client(port, context, b"well-behaved" * 100, good, lambda: None, go)
        result.good_client_seconds = time.perf_counter() - started
        result.good_client_served = good.verified_bytes == 1200

        async def wait_closed(attacker: trio.SocketStream) -> None:
            try:
                while await attacker.receive_some():
                    pass
            except trio.BrokenResourceError:
                pass  # RST: closed all the same
            result.closed_by_server += 1
            result.slowest_close_seconds = max(
                result.slowest_close_seconds, time.perf_counter() - attack_started
            )

        with trio.move_on_after(config.handshake_timeout + 10):
            async with trio.open_nursery() as nursery:
                for attacker in attackers:
                    nursery.start_soon(wait_closed, attacker)
    finally:
        for attacker in attackers:
            await trio.aclose_forcefully(attacker)
    return result


# -- putting it together -------------------------------------------------------------------


@dataclass
class SoakReport:
    config: SoakConfig
    clients: ClientResult
    server_at_peak: ServerStats
    server_final: ServerStats
    slowloris: SlowlorisResult
    server_in_subprocess: bool

    @property
    def expected_bytes(self) -> int:
        return self.config.connections * self.config.payload_bytes

    def problems(self) -> list[str]:
        """Everything that makes this run a failure; empty means it passed."""
        found = []
        c, s, sl = self.clients, self.server_final, self.slowloris
        if c.verified_bytes != self.expected_bytes or c.corrupted or c.failures:
            found.append(
                f"clients verified {c.verified_bytes} of {self.expected_bytes} bytes; "
                f"corrupted={c.corrupted} failures={c.failures}"
            )
        if self.server_at_peak.active < self.config.connections:
            found.append(f"only {self.server_at_peak.active} connections were open at once")
        if s.failures or s.served < self.config.connections + (1 if sl.attackers else 0):
            found.append(f"server served {s.served}, failures={s.failures}")
        if sl.attackers:
            if not sl.good_client_served:
                found.append("the well-behaved client was not served during slowloris")
            if sl.closed_by_server != sl.attackers or s.handshake_timeouts != sl.attackers:
                found.append(
                    f"slowloris: {sl.closed_by_server}/{sl.attackers} closed, "
                    f"{s.handshake_timeouts} handshake timeouts"
                )
        if s.active != 0:
            found.append(f"{s.active} connections still open on the server at the end")
        return found

    def figures(self) -> dict[str, Any]:
        c, sl = self.clients, self.slowloris
        peak = self.server_at_peak
        moved = 2 * c.verified_bytes  # the payload goes out and comes back
        figures: dict[str, Any] = {
            "connections": self.config.connections,
            "payload_bytes": self.config.payload_bytes,
            "peak_concurrent_connections": peak.peak_active,
            "connections_per_second": round(self.config.connections / c.ramp_seconds, 1),
            "throughput_mib_per_s": round(moved / c.data_seconds / 2**20, 2),
            "handshake_p50_ms": _ms(c.handshake_seconds, 50),
            "handshake_p99_ms": _ms(c.handshake_seconds, 99),
            "request_p50_ms": _ms(c.request_seconds, 50),
            "request_p99_ms": _ms(c.request_seconds, 99),
            "verified_bytes": c.verified_bytes,
            "lost_or_corrupted_bytes": self.expected_bytes - c.verified_bytes,
            "slowloris_attackers": sl.attackers,
            "slowloris_good_client_ms": round(sl.good_client_seconds * 1000, 1),
            "slowloris_closed_by_deadline": sl.closed_by_server,
            "slowloris_slowest_close_s": round(sl.slowest_close_seconds, 2),
            "handshake_timeout_s": self.config.handshake_timeout,
        }
        if self.server_in_subprocess:
            # Taken at the barrier: every connection open, every handshake done, idle.
            per_conn = (peak.rss_now_kib - peak.rss_baseline_kib) / max(peak.peak_active, 1)
            figures |= {
                "server_rss_baseline_mib": round(peak.rss_baseline_kib / 1024, 1),
                "server_rss_all_open_mib": round(peak.rss_now_kib / 1024, 1),
                "server_peak_rss_mib": round(self.server_final.peak_rss_kib / 1024, 1),
                "server_rss_per_connection_kib": round(per_conn, 1),
                # Peak includes every connection's buffers mid-echo, not just idle state.
                "server_peak_rss_per_connection_kib": round(
                    (self.server_final.peak_rss_kib - peak.rss_baseline_kib)
                    / max(peak.peak_active, 1),
                    1,
                ),
            }
        return figures


def _ms(samples: list[float], percentile: int) -> float | None:
    if len(samples) < 2:
        return round(samples[0] * 1000, 2) if samples else None
    return round(statistics.quantiles(samples, n=100)[percentile - 1] * 1000, 2)


async def run(
    config: SoakConfig,
    port: int,
    client_context: ssl.SSLContext,
    server_stats: Callable[[], Awaitable[ServerStats]],
    *,
    server_in_subprocess: bool,
) -> SoakReport:
    """Both phases against a server already listening on ``port``."""
    at_peak: list[ServerStats] = []

    async def snapshot() -> None:
        at_peak.append(await server_stats())

    with trio.fail_after(config.time_limit):
        clients = await load_phase(port, client_context, config, snapshot)
        slowloris = SlowlorisResult()
        if config.slowloris:
            slowloris = await slowloris_phase(port, client_context, config)
        # Let the server finish its last handlers (close_notify exchanges).
        final = await server_stats()
        for _ in range(100):
            if final.active == 0:
                break
            await trio.sleep(0.05)
            final = await server_stats()
    return SoakReport(config, clients, at_peak[0], final, slowloris, server_in_subprocess)


async def run_with_server_process(config: SoakConfig) -> SoakReport:
    ca = TLSTestCA()
    client_context = ca.client_context()
    with tempfile.TemporaryDirectory() as tmp:
        chain = os.path.join(tmp, "server.pem")
        ca.server_cert.private_key_and_cert_chain_pem.write_to_path(chain)
        command = [
            sys.executable,
            SOAK_SCRIPT,
            "--serve",
            chain,
            "--handshake-timeout",
            str(config.handshake_timeout),
        ]
        process = await trio.lowlevel.open_process(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        try:
            assert process.stdout is not None
            server = ServerProcess(process, process.stdout)
            with trio.fail_after(30):
                port = await server.port()
            return await run(config, port, client_context, server.stats, server_in_subprocess=True)
        finally:
            process.kill()
            await process.wait()


def _pin_to_cpu(cpu: int) -> None:
    if len(os.sched_getaffinity(0)) >= 2:
        os.sched_setaffinity(0, {cpu})


def print_report(report: SoakReport) -> None:
    for key, value in report.figures().items():
        print(f"  {key:34} {value}")
    problems = report.problems()
    print("RESULT:", "PASS" if not problems else "FAIL")
    for problem in problems:
        print("  -", problem)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = SoakConfig()
    parser.add_argument("--connections", type=int, default=defaults.connections)
    parser.add_argument("--payload-bytes", type=int, default=defaults.payload_bytes)
    parser.add_argument("--slowloris", type=int, default=defaults.slowloris)
    parser.add_argument("--handshake-timeout", type=float, default=defaults.handshake_timeout)
    parser.add_argument("--time-limit", type=float, default=defaults.time_limit)
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--serve", metavar="CERT_CHAIN", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    raise_fd_limit()
    if args.serve:
        _pin_to_cpu(0)
        trio.run(_server_process_main, args.serve, args.handshake_timeout)
        return 0
    _pin_to_cpu(1)
    config = SoakConfig(
        connections=args.connections,
        payload_bytes=args.payload_bytes,
        slowloris=args.slowloris,
        handshake_timeout=args.handshake_timeout,
        time_limit=args.time_limit,
    )
    print(
        f"soak: {config.connections} connections x {config.payload_bytes} B, "
        f"{config.slowloris} slowloris clients, server in a subprocess"
    )
    report = trio.run(run_with_server_process, config)
    print_report(report)
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"figures": report.figures(), "problems": report.problems()}, out, indent=2)
    return 0 if not report.problems() else 1


if __name__ == "__main__":
    sys.exit(main())
