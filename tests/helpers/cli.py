"""Running the command line as users run it, and the peers it talks to in tests.

``python -m trio_tls`` in a subprocess (or :func:`run_main` in this process, for
what happens before any connection), ``openssl s_server`` and the CLI's own
``serve`` in the background, and a trio_tls server in this process presenting
whatever certificate a test made. Everything listens on 127.0.0.1 with a
kernel-chosen port, every wait is bounded, and every child process is killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio
import trustme

import trio_tls
from trio_tls import _cli

from .streams import serving

#: Generous for one CLI run on a loaded 2-core machine; a run takes ~0.5 s.
RUN_TIMEOUT = 30.0
#: How long the CLI keeps reading once the server is quiet. Short: replies to --send
#: are waited for regardless, this only adds to every run.
WAIT = ["--wait", "0.1"]

VERSIONS = [
    pytest.param("--tls1.2", "TLSv1.2", id="tls12"),
    pytest.param("--tls1.3", "TLSv1.3", id="tls13"),
]


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "trio_tls", *args]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    # subprocess.run kills the child itself when the timeout expires.
    return subprocess.run(cli(*args), capture_output=True, text=True, timeout=RUN_TIMEOUT)


async def arun_cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    """For tests whose server runs in this process: the CLI must not block trio."""
    with trio.fail_after(RUN_TIMEOUT):  # cancelling run_process kills the child
        return await trio.run_process(
            cli(*args), capture_stdout=True, capture_stderr=True, check=False
        )


@dataclass
class Background:
    """A child process that printed what we waited for, with its output so far."""

    proc: subprocess.Popen[bytes]
    match: re.Match[bytes]
    output: bytes

    def finish(self) -> str:
        """Wait for a process that is due to exit on its own, and return its output."""
        rest, _ = self.proc.communicate(timeout=RUN_TIMEOUT)
        return (self.output + rest).decode()


@contextlib.contextmanager
def background(
    argv: Sequence[str], ready: bytes, *, stderr: int = subprocess.STDOUT
) -> Iterator[Background]:
    """Start *argv*, wait until its output matches *ready*, kill it at the end.

    stderr goes with stdout, unless *stderr* says otherwise (``subprocess.PIPE``).
    """
    # stdin stays an open pipe: s_server reads it and drops its client at EOF.
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr)
    try:
        assert proc.stdout is not None
        output = b""
        deadline = time.monotonic() + RUN_TIMEOUT
        while (match := re.search(ready, output)) is None:
            left = deadline - time.monotonic()
            assert left > 0, f"{argv[:4]} never printed {ready!r}; it said: {output!r}"
            readable, _, _ = select.select([proc.stdout], [], [], left)
            chunk = os.read(proc.stdout.fileno(), 65536) if readable else b""
            assert chunk or not readable, f"{argv[:4]} exited early: {output!r}"
            output += chunk
        yield Background(proc, match, output)
    finally:
        proc.kill()
        proc.wait(timeout=RUN_TIMEOUT)
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def s_server(*args: str) -> contextlib.AbstractContextManager[Background]:
    return background(
        ["openssl", "s_server", "-accept", "127.0.0.1:0", *args], rb"ACCEPT 127\.0\.0\.1:(\d+)"
    )


def serve(
    *args: str, stderr: int = subprocess.STDOUT
) -> contextlib.AbstractContextManager[Background]:
    # Ready once the whole banner is out: it ends with the log's column headers.
    banner = rb"on 127\.0\.0\.1:(\d+)\n(?s:.*)\btraffic\n"
    return background(cli("serve", "--port", "0", *args), banner, stderr=stderr)


def route(*args: str) -> contextlib.AbstractContextManager[Background]:
    """``trio-tls route`` on a kernel-chosen port, ready once its banner is out."""
    banner = rb"on 127\.0\.0\.1:(\d+)\n(?s:.*)\btraffic\n"
    return background(cli("route", "--port", "0", *args), banner)


def read_until(process: Background, pattern: bytes) -> re.Match[bytes]:
    """Read more of a background process's output until *pattern* matches it (bounded)."""
    assert process.proc.stdout is not None
    deadline = time.monotonic() + RUN_TIMEOUT
    while (match := re.search(pattern, process.output)) is None:
        left = deadline - time.monotonic()
        assert left > 0, f"never printed {pattern!r}; it said: {process.output!r}"
        readable, _, _ = select.select([process.proc.stdout], [], [], left)
        chunk = os.read(process.proc.stdout.fileno(), 65536) if readable else b""
        assert chunk or not readable, f"exited early: {process.output!r}"
        process.output += chunk
    return match


def port_of(server: Background) -> int:
    return int(server.match[1])


def parse_json(stdout: str | bytes) -> dict[str, object]:
    document = json.loads(stdout)
    assert isinstance(document, dict)
    return document


@dataclass(frozen=True)
class Files:
    """PEM files for the peers that need paths (openssl, curl, the CLI)."""

    ca: Path
    server: Path  # key and certificate for localhost and 127.0.0.1
    client: Path  # key and certificate signed by the same CA
    client_der: bytes


@contextlib.asynccontextmanager
async def presenting(cert: trustme.LeafCert, version: str) -> AsyncIterator[int]:
    """A TLS server in this process that presents *cert*; yields its port."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    pinned = ssl.TLSVersion.TLSv1_2 if version == "--tls1.2" else ssl.TLSVersion.TLSv1_3
    ctx.minimum_version = ctx.maximum_version = pinned

    async def drain(stream: trio_tls.SSLStream[trio.SocketStream]) -> None:
        # The client refuses the certificate (or looks and leaves): both are fine here.
        with contextlib.suppress(trio.BrokenResourceError):
            while await stream.receive_some():
                pass
        await trio.aclose_forcefully(stream)

    async with serving(drain, ctx) as port:
        yield port


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[object, str]:
    """Run the CLI in this process up to its exit status; return it and stderr."""
    try:
        status: object = _cli.main(list(argv))
    except SystemExit as exc:  # argparse's own usage errors
        status = exc.code
    return status, capsys.readouterr().err
