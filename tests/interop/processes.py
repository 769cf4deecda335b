"""Peers on other TLS stacks, as subprocesses: build them, run them, read what they saw.

Three stacks, none of them OpenSSL:

- ``go``: ``peers/peer.go`` on Go's crypto/tls, built with ``go build`` into a
  session directory (its own GOCACHE and GOPATH, so nothing outside it is touched).
- ``java``: ``peers/Peer.java`` on JSSE, compiled with ``javac`` the same way.
- ``gnutls``: GnuTLS's own ``gnutls-cli`` and ``gnutls-serv``.

The Go and Java peers take the same flags (role, version, scenario ...) and print
``key=value`` lines; a server prints ``PORT=<n>`` first. Every process is killed and
reaped when its block ends, whatever happened, and every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import trio
import trustme
from cryptography.hazmat.primitives import serialization

from trio_tls.testing import SERVER_NAME, TLSTestCA, TLSVersionName

from ..helpers.peers import SERVER_ADDRESS, free_port, require_tool

Stack = Literal["go", "java", "gnutls"]
STACKS: tuple[Stack, ...] = ("go", "java", "gnutls")

PEER_SOURCES = Path(__file__).parent / "peers"

#: Seconds a peer may take to start listening (a JVM on a loaded machine is slow).
START_DEADLINE = 30.0

#: How many times to retry ``gnutls-serv`` when the port we picked was taken between
#: our probe and its bind (it cannot listen on port 0 and report the port).
PORT_ATTEMPTS = 5


@dataclass(frozen=True)
class Credentials:
    """A certificate chain and its key as files, the key in PKCS#8 (Java reads no other)."""

    cert: Path
    key: Path


def write_credentials(chain_pem: bytes, key_pem: bytes, directory: Path, name: str) -> Credentials:
    """Write a chain and its key (any PEM private key) for the command line peers."""
    key = serialization.load_pem_private_key(key_pem, password=None)
    files = Credentials(directory / f"{name}-cert.pem", directory / f"{name}-key.pem")
    files.cert.write_bytes(chain_pem)
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


@dataclass(frozen=True)
class PeerFiles:
    """Everything a peer reads: the CA to trust, the server's and the clients' credentials.

    ``stranger`` is a client certificate from another CA, which servers must refuse.
    """

    ca: Path
    server: Credentials
    client: Credentials
    stranger: Credentials


def write_peer_files(ca: TLSTestCA, stranger: TLSTestCA, directory: Path) -> PeerFiles:
    """Write ``ca``'s files, plus a client certificate issued by ``stranger``."""
    ca_file = directory / "ca.pem"
    ca.ca.cert_pem.write_to_path(str(ca_file))

    def creds(leaf: trustme.LeafCert, name: str) -> Credentials:
        chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
        return write_credentials(chain, leaf.private_key_pem.bytes(), directory, name)

    return PeerFiles(
        ca=ca_file,
        server=creds(ca.server_cert, "server"),
        client=creds(ca.client_cert, "client"),
        stranger=creds(stranger.client_cert, "stranger"),
    )


@dataclass(frozen=True)
class Builds:
    """The compiled Go and Java peers: the command that starts each."""

    go: tuple[str, ...]
    java: tuple[str, ...]


def build_peers(directory: Path) -> Builds:
    """Compile the Go and Java peers into ``directory``; a failure says what the compiler said."""
    env = {
        **os.environ,
        "GOCACHE": str(directory / "gocache"),
        "GOPATH": str(directory / "gopath"),
        "GOFLAGS": "",
        "CGO_ENABLED": "0",
    }
    go_binary = directory / "go-peer"
    subprocess.run(
        [require_tool("go"), "build", "-o", str(go_binary), str(PEER_SOURCES / "peer.go")],
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    classes = directory / "java"
    subprocess.run(
        [require_tool("javac"), "-d", str(classes), str(PEER_SOURCES / "Peer.java")],
        check=True,
        capture_output=True,
        timeout=300,
    )
    # A short-lived JVM starts fastest with the client compiler and a small heap.
    java = (
        require_tool("java"),
        "-XX:TieredStopAtLevel=1",
        "-XX:+UseSerialGC",
        "-Xss512k",
        "-cp",
        str(classes),
        "Peer",
    )
    return Builds(go=(str(go_binary),), java=java)


# --- running a peer -----------------------------------------------------------------------


@dataclass
class Peer:
    """A running peer process and everything it has printed so far."""

    process: trio.Process
    log: Path
    output: bytearray = field(default_factory=bytearray)
    output_ended: trio.Event = field(default_factory=trio.Event)
    #: Where the peer writes its own messages, if not to stderr (gnutls-cli --logfile).
    info: Path | None = None
    _grew: trio.Event = field(default_factory=trio.Event)

    async def _collect(self) -> None:
        assert self.process.stdout is not None
        try:
            while data := await self.process.stdout.receive_some(65536):
                self.output += data
                self._grew.set()
                self._grew = trio.Event()
        finally:
            self.output_ended.set()
            self._grew.set()

    async def wait_for(self, marker: bytes) -> None:
        """Wait until the output contains ``marker``; fail if the peer exits first."""
        while marker not in self.output:
            if self.output_ended.is_set():
                raise AssertionError(f"peer exited before printing {marker!r}: {self.describe()}")
            await self._grew.wait()

    async def wait_for_size(self, size: int) -> None:
        """Wait until the output holds ``size`` bytes, or the peer has exited."""
        while len(self.output) < size and not self.output_ended.is_set():
            await self._grew.wait()

    async def finish(self) -> dict[str, str]:
        """Wait for the peer to exit by itself; return its ``key=value`` report."""
        await self.process.wait()
        await self.output_ended.wait()
        return self.report()

    def report(self) -> dict[str, str]:
        """The ``key=value`` lines printed so far (a later line wins)."""
        pairs = (line.partition("=") for line in self.output.decode(errors="replace").splitlines())
        return {key: value for key, eq, value in pairs if eq}

    def describe(self) -> str:
        """Exit status, output and log, for an assertion message."""
        logs = [path for path in (self.log, self.info) if path is not None and path.exists()]
        text = "".join(path.read_text(errors="replace") for path in logs)[-3000:]
        shown = bytes(self.output[-2000:]).decode(errors="replace")
        return f"exit {self.process.returncode}; stdout: {shown!r}; log: {text!r}"


@asynccontextmanager
async def run_peer(
    command: Sequence[str], log: Path, *, stdin: bool = False, merge_stderr: bool = False
) -> AsyncIterator[Peer]:
    """Run ``command`` until the block ends; its output is collected as it comes.

    stderr goes to ``log``, or with ``merge_stderr`` joins stdout. The process is
    killed and reaped on exit, even from a cancelled scope.
    """
    with log.open("ab") as stderr:
        process = await trio.lowlevel.open_process(
            list(command),
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merge_stderr else stderr,
        )
    peer = Peer(process, log)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(peer._collect)
            try:
                yield peer
            finally:
                # Once the process is gone its stdout ends, and so does the collector.
                await _kill(process)
    finally:
        await _kill(process)
        with trio.CancelScope(shield=True):
            for pipe in (process.stdin, process.stdout):
                if pipe is not None:
                    await pipe.aclose()


async def _kill(process: trio.Process) -> None:
    """Kill and reap ``process`` within 5 seconds, shielded from cancellation."""
    with trio.move_on_after(5) as scope:
        scope.shield = True
        if process.returncode is None:
            process.kill()
        await process.wait()


async def started_server_port(peer: Peer) -> int:
    """The port a Go or Java server peer announced."""
    with trio.fail_after(START_DEADLINE):
        await peer.wait_for(b"\n")
    return int(peer.report()["PORT"])


# --- the flags -----------------------------------------------------------------------------


def peer_command(
    build: Sequence[str],
    files: PeerFiles,
    *,
    role: Literal["client", "server"],
    version: TLSVersionName,
    scenario: str,
    port: int = 0,
    credentials: Credentials | None = None,
    require_client_cert: bool = False,
    alpn: Sequence[str] = (),
    extra: Sequence[str] = (),
) -> list[str]:
    """The Go or Java peer's command line (both take the same ``--name value`` flags)."""
    command = [*build]
    options: list[tuple[str, str | None]] = [
        ("role", role),
        ("version", version),
        ("scenario", scenario),
        ("ca", str(files.ca)),
        ("name", SERVER_NAME),
    ]
    if role == "client":
        options.append(("port", str(port)))
    if credentials is not None:
        options += [("cert", str(credentials.cert)), ("key", str(credentials.key))]
    if require_client_cert:
        options.append(("require-client-cert", None))
    if alpn:
        options.append(("alpn", ",".join(alpn)))
    for name, value in options:
        command.append("--" + name)
        if value is not None:
            command.append(value)
    command += extra
    return command


def gnutls_priority(version: TLSVersionName) -> str:
    """A GnuTLS priority string that allows exactly ``version``."""
    return f"NORMAL:-VERS-ALL:+VERS-TLS{version}"


def gnutls_cli_command(
    files: PeerFiles,
    version: TLSVersionName,
    port: int,
    log: Path,
    *,
    credentials: Credentials | None = None,
    alpn: Sequence[str] = (),
    extra: Sequence[str] = (),
) -> list[str]:
    """``gnutls-cli`` to 127.0.0.1:``port``, verifying the chain and the name strictly.

    Its informational messages go to ``log`` (``--logfile``), so stdout carries only
    the application data the server sent.
    """
    command = [
        require_tool("gnutls-cli"),
        SERVER_ADDRESS,
        "--port",
        str(port),
        "--x509cafile",
        str(files.ca),
        "--sni-hostname",
        SERVER_NAME,
        "--verify-hostname",
        SERVER_NAME,
        "--priority",
        gnutls_priority(version),
        "--logfile",
        str(log),
    ]
    if credentials is not None:
        command += ["--x509certfile", str(credentials.cert)]
        command += ["--x509keyfile", str(credentials.key)]
    command += [f"--alpn={name}" for name in alpn]
    return command + list(extra)


def gnutls_serv_command(
    files: PeerFiles,
    version: TLSVersionName,
    port: int,
    *,
    require_client_cert: bool = False,
    alpn: Sequence[str] = (),
) -> list[str]:
    """``gnutls-serv --echo`` on ``port``.

    gnutls-serv has no option to choose its address: it listens on every interface.
    The tests only ever connect to it over 127.0.0.1.
    """
    command = [
        require_tool("gnutls-serv"),
        "--echo",
        "--port",
        str(port),
        "--x509certfile",
        str(files.server.cert),
        "--x509keyfile",
        str(files.server.key),
        "--priority",
        gnutls_priority(version),
    ]
    if require_client_cert:
        command += ["--require-client-cert", "--verify-client-cert"]
        command += ["--x509cafile", str(files.ca)]
    command += [f"--alpn={name}" for name in alpn]
    return command


@asynccontextmanager
async def run_gnutls_serv(
    files: PeerFiles,
    version: TLSVersionName,
    log: Path,
    *,
    require_client_cert: bool = False,
    alpn: Sequence[str] = (),
) -> AsyncIterator[tuple[Peer, int]]:
    """Run ``gnutls-serv --echo`` on a free port until the block ends; yield it and the port."""
    for _ in range(PORT_ATTEMPTS):
        port = free_port()
        command = gnutls_serv_command(
            files, version, port, require_client_cert=require_client_cert, alpn=alpn
        )
        # Its readiness line ("... port N...done") goes to stderr, unbuffered.
        async with run_peer(command, log, merge_stderr=True) as peer:
            with trio.move_on_after(START_DEADLINE), contextlib.suppress(AssertionError):
                await peer.wait_for(b"...done\n")
            if f"IPv4 0.0.0.0 port {port}...done".encode() in peer.output:
                yield peer, port
                return
    raise AssertionError(f"gnutls-serv did not start in {PORT_ATTEMPTS} attempts")
