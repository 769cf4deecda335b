"""Real TLS peers for the interoperability tests.

Two families, both on 127.0.0.1 only and both bounded in time:

- stdlib blocking :mod:`ssl` sockets, meant to run in a worker thread via
  ``trio.to_thread.run_sync``. Every socket carries a timeout, so a thread whose
  trio counterpart died still ends on its own (threads cannot be cancelled).
- OpenSSL's own command line tools and ``curl``, run as subprocesses. They are killed
  in ``finally`` blocks and every wait on them is under a deadline.
"""

from __future__ import annotations

import hashlib
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from trio_tls.testing import SERVER_NAME, TLSTestCA, TLSVersionName

#: Where every peer listens; the kit's server certificate is valid for this address
#: and for :data:`~trio_tls.testing.SERVER_NAME`, the name clients connect by.
SERVER_ADDRESS = "127.0.0.1"

#: Upper bound for any single blocking socket operation in a peer thread. Generous
#: because the suite shares two cores with other jobs; a healthy run never gets near it.
SOCKET_TIMEOUT = 15.0

#: How many times to retry starting ``s_server`` when the port we picked was taken
#: between our probe and its bind (another process won the race).
PORT_ATTEMPTS = 5


# --- files and switches for the command line tools ---------------------------------------


@dataclass(frozen=True)
class PemFiles:
    """A :class:`~trio_tls.testing.TLSTestCA` written out for tools that only read files."""

    ca: Path
    cert: Path
    key: Path


def write_pem_files(ca: TLSTestCA, directory: Path) -> PemFiles:
    """Write ``ca``'s certificate, its server chain and that key into ``directory``."""
    leaf = ca.server_cert
    files = PemFiles(
        ca=directory / "ca.pem", cert=directory / "cert.pem", key=directory / "key.pem"
    )
    ca.ca.cert_pem.write_to_path(str(files.ca))
    # The chain file may hold the leaf plus intermediates; trustme issues directly
    # from the root, so this is one certificate, but writing all keeps it general.
    files.cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(files.key))
    return files


def openssl_flag(version: TLSVersionName) -> str:
    """The ``openssl s_server`` / ``s_client`` switch that pins ``version``."""
    return {"1.2": "-tls1_2", "1.3": "-tls1_3"}[version]


def curl_flags(version: TLSVersionName) -> tuple[str, ...]:
    """The ``curl`` switches that pin exactly ``version``."""
    return (f"--tlsv{version}", "--tls-max", version)


def require_tool(name: str) -> str:
    """Absolute path of a system binary the test needs; fail (never skip) if absent.

    The project's CI promises ``openssl`` and ``curl``; a missing binary is a broken
    environment, and a skip would let the interop coverage silently disappear.
    """
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name!r} is not on PATH; the interop tests need the real binary")
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for tools that cannot use 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((SERVER_ADDRESS, 0))
        port: int = probe.getsockname()[1]
        return port


def listening_socket() -> socket.socket:
    """A blocking listening socket on 127.0.0.1 with a kernel-chosen port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((SERVER_ADDRESS, 0))
        sock.listen(1)
        sock.settimeout(SOCKET_TIMEOUT)
    except BaseException:
        sock.close()
        raise
    return sock


# --- stdlib blocking ssl peers (run these in a thread) ----------------------------------


@dataclass(frozen=True)
class EchoReport:
    """What a blocking peer saw, for the test to compare with what trio_tls saw."""

    version: str | None
    byte_count: int
    sha256: str


def blocking_echo_server(listener: socket.socket, ctx: ssl.SSLContext) -> EchoReport:
    """Accept one connection on ``listener``, echo it until close_notify, report.

    ``suppress_ragged_eofs=False`` makes a truncation raise instead of looking like a
    clean end: a report is only returned when the client closed the TLS layer properly.
    """
    conn, _ = listener.accept()
    conn.settimeout(SOCKET_TIMEOUT)
    with ctx.wrap_socket(conn, server_side=True, suppress_ragged_eofs=False) as tls:
        seen = hashlib.sha256()
        count = 0
        while data := tls.recv(65536):
            seen.update(data)
            count += len(data)
            tls.sendall(data)
        # The client closes its transport right after its close_notify (trio does), so
        # there is nobody left to answer; just close.
        return EchoReport(tls.version(), count, seen.hexdigest())


def blocking_echo_client(
    port: int, ctx: ssl.SSLContext, payload: bytes, *, chunk_size: int = 16384
) -> tuple[bytes, str | None]:
    """Connect, send ``payload`` in chunks reading each echo back, close cleanly.

    One thread cannot send and receive at once, so it waits for the echo of every
    chunk before sending the next: the server never blocks writing to a client that
    is not reading. Returns the echoed bytes and the negotiated version.
    """
    with (
        socket.create_connection((SERVER_ADDRESS, port), timeout=SOCKET_TIMEOUT) as raw,
        ctx.wrap_socket(raw, server_hostname=SERVER_NAME, suppress_ragged_eofs=False) as tls,
    ):
        echoed = bytearray()
        for offset in range(0, len(payload), chunk_size):
            piece = payload[offset : offset + chunk_size]
            tls.sendall(piece)
            while len(echoed) < offset + len(piece):
                data = tls.recv(65536)
                if not data:
                    raise ConnectionError("server closed before echoing everything")
                echoed += data
        version = tls.version()
        # Sends our close_notify and waits for the server's: exercises the server's
        # clean-close path, not just a socket close.
        tls.unwrap()
        return bytes(echoed), version


# --- OpenSSL command line tools and curl --------------------------------------------------


def s_server_command(pems: PemFiles, version: TLSVersionName, port: int, *extra: str) -> list[str]:
    """``openssl s_server`` on 127.0.0.1:``port`` pinned to ``version``."""
    return [
        require_tool("openssl"),
        "s_server",
        "-accept",
        f"{SERVER_ADDRESS}:{port}",
        "-cert",
        str(pems.cert),
        "-key",
        str(pems.key),
        openssl_flag(version),
        *extra,
    ]


async def _wait_for_accept_line(stdout: trio.abc.ReceiveStream) -> bool:
    """Read s_server's stdout until it announces ``ACCEPT`` (True) or exits (False).

    The ``ACCEPT`` line is printed right after the listening socket is bound, so it
    is a precise readiness signal; a probing connect would instead consume one of
    s_server's accepts and could hit another process that grabbed the port.
    """
    seen = bytearray()
    while b"ACCEPT\n" not in seen:
        data = await stdout.receive_some()
        if not data:
            return False
        seen += data
    return True


@asynccontextmanager
async def openssl_s_server(
    pems: PemFiles, version: TLSVersionName, *extra: str, log: Path
) -> AsyncIterator[tuple[int, trio.Process]]:
    """Run ``openssl s_server`` until the block exits; yield ``(port, process)``.

    The process is killed on exit whatever happens. Its stderr goes to ``log`` so
    a failing test can show what OpenSSL said.
    """
    for _ in range(PORT_ATTEMPTS):
        port = free_port()
        with log.open("wb") as stderr:
            proc = await trio.lowlevel.open_process(
                s_server_command(pems, version, port, *extra),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
            )
        try:
            assert proc.stdout is not None
            with trio.fail_after(10):
                ready = await _wait_for_accept_line(proc.stdout)
            if ready:
                yield port, proc
                return
        finally:
            await _kill(proc)
    # The tool's own words are the useful part of this failure; the file is tiny.
    message = log.read_text()  # noqa: ASYNC240
    pytest.fail(f"openssl s_server did not start in {PORT_ATTEMPTS} attempts:\n{message}")


async def _kill(proc: trio.Process) -> None:
    """Kill ``proc`` and reap it, even from a cancelled scope, for at most 5 seconds."""
    if proc.returncode is None:
        proc.kill()
    with trio.move_on_after(5) as scope:
        scope.shield = True
        await proc.wait()
        if proc.stdout is not None:
            await proc.stdout.aclose()


def s_client_command(pems: PemFiles, version: TLSVersionName, port: int) -> list[str]:
    """``openssl s_client`` that verifies the chain *and* the host name strictly.

    ``-quiet`` keeps stdout to the application data and implies ``-ign_eof``: the
    client keeps reading after its stdin ends, until the server closes. ``-nocommands``
    stops lines starting with ``Q``/``R``/``k`` being taken as commands.
    """
    return [
        require_tool("openssl"),
        "s_client",
        "-connect",
        f"{SERVER_ADDRESS}:{port}",
        "-CAfile",
        str(pems.ca),
        "-verify_return_error",
        "-servername",
        SERVER_NAME,
        "-verify_hostname",
        SERVER_NAME,
        openssl_flag(version),
        "-quiet",
        "-nocommands",
    ]


def curl_command(pems: PemFiles, version: TLSVersionName, port: int, *extra: str) -> list[str]:
    """``curl`` against ``https://{SERVER_NAME}:{port}/``, resolved to 127.0.0.1, pinned to ``version``."""
    return [
        require_tool("curl"),
        "--silent",
        "--show-error",
        "--fail",
        "--http1.1",
        "--cacert",
        str(pems.ca),
        "--resolve",
        f"{SERVER_NAME}:{port}:{SERVER_ADDRESS}",
        "--max-time",
        "20",
        *curl_flags(version),
        *extra,
        f"https://{SERVER_NAME}:{port}/",
    ]


async def run_tool(
    command: Sequence[str], *, stdin: bytes = b""
) -> subprocess.CompletedProcess[bytes]:
    """Run a client tool to completion, capturing output; killed if the caller's deadline hits."""
    return await trio.run_process(
        list(command), stdin=stdin, capture_stdout=True, capture_stderr=True, check=False
    )
