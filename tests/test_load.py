"""Load, in the CI's budget: the soak's two phases, smaller, plus the soak script itself.

The full run (1,000 connections, 500 slowloris clients, server in its own process)
is ``make soak``; see tests/soak.py and notes/reliability.md for its figures.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import pytest
import trio
import trio.testing

from trio_tls import SSLListener, open_ssl_over_tcp_listeners, serve_ssl_over_tcp
from trio_tls.testing import TLSTestCA

from .helpers.fds import open_fds
from .helpers.streams import serving
from .soak import SOAK_SCRIPT, ServerStats, SoakConfig, SoakReport, handle, run, serve


def _snapshots(stats: ServerStats) -> Callable[[], Awaitable[ServerStats]]:
    """In-process stand-in for asking the server process for its stats."""

    async def snapshot() -> ServerStats:
        await trio.lowlevel.checkpoint()
        return dataclasses.replace(stats, failures=dict(stats.failures))

    return snapshot


async def _run_in_process(ca: TLSTestCA, config: SoakConfig) -> SoakReport:
    stats = ServerStats()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve, ca.server_context(), stats, config.handshake_timeout)
        report = await run(
            config, port, ca.client_context(), _snapshots(stats), server_in_subprocess=False
        )
        nursery.cancel_scope.cancel()
    return report


async def test_hundred_concurrent_connections_lose_nothing(tls_ca: TLSTestCA) -> None:
    """100 connections open at once, each echoing 16 KiB checked with sha256."""
    before = open_fds()
    config = SoakConfig(connections=100, payload_bytes=16 * 1024, slowloris=0, time_limit=60)
    report = await _run_in_process(tls_ca, config)
    assert report.problems() == []
    assert report.server_at_peak.active == 100
    assert report.clients.verified_bytes == 100 * 16 * 1024
    assert report.figures()["lost_or_corrupted_bytes"] == 0
    assert open_fds() == before, "a connection leaked a file descriptor"


async def test_slowloris_does_not_starve_a_good_client(tls_ca: TLSTestCA) -> None:
    """100 stalled handshakes: a good client is still served, and the handshake
    deadline (1 s here) closes every stalled connection."""
    before = open_fds()
    config = SoakConfig(
        connections=10, payload_bytes=1024, slowloris=100, handshake_timeout=1.0, time_limit=60
    )
    report = await _run_in_process(tls_ca, config)
    assert report.problems() == []
    assert report.slowloris.good_client_served
    assert report.slowloris.closed_by_server == 100
    assert report.server_final.handshake_timeouts == 100
    assert open_fds() == before


def test_servers_have_a_handshake_deadline_by_default() -> None:
    """Without one, each stalled client would hold a task and a socket forever."""
    for helper in (SSLListener, open_ssl_over_tcp_listeners, serve_ssl_over_tcp):
        default = inspect.signature(helper).parameters["handshake_timeout"].default
        assert default == 60.0, helper


async def test_default_deadline_closes_a_silent_client(
    tls_ca: TLSTestCA, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The 60 s default of serve_ssl_over_tcp really acts (virtual time: the clock
    jumps while all wait); the client is logged and never reaches the handler."""
    caplog.set_level(logging.INFO, logger="trio_tls.server")
    stats = ServerStats()
    async with serving(partial(handle, stats=stats), tls_ca.server_context()) as port:
        silent = await trio.open_tcp_stream("127.0.0.1", port)
        started = trio.current_time()
        assert await silent.receive_some() == b""
        assert 60.0 <= trio.current_time() - started < 61.0
        await silent.aclose()
    assert stats.accepted == 0
    [dropped] = [r.getMessage() for r in caplog.records if r.name == "trio_tls.server"]
    assert dropped.endswith("the client took too long to complete the handshake")


async def test_soak_script_end_to_end(tmp_path: Path) -> None:
    """``make soak``'s script, tiny: server subprocess, figures, exit status."""
    figures_path = tmp_path / "soak.json"
    command = [
        sys.executable,
        SOAK_SCRIPT,
        "--connections=20",
        "--slowloris=10",
        "--handshake-timeout=1",
        "--time-limit=60",
        f"--json={figures_path}",
    ]
    with trio.fail_after(90):
        result = await trio.run_process(command, capture_stdout=True, check=False)
    assert result.returncode == 0, result.stdout.decode()
    report = json.loads(figures_path.read_text())
    assert report["problems"] == []
    figures = report["figures"]
    assert figures["lost_or_corrupted_bytes"] == 0
    assert figures["peak_concurrent_connections"] == 20
    assert figures["slowloris_closed_by_deadline"] == 10
    assert figures["server_rss_per_connection_kib"] > 0
