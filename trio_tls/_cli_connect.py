"""``trio-tls connect``: a readable ``openssl s_client``.

One connection (two with ``--reconnect``): TCP connect, handshake, optionally
send some text and wait for the reply, then read until the server has been
quiet for ``--wait`` seconds. That read is not decoration: under TLS 1.3 the session tickets and
a rejection of our client certificate both arrive after the client's
handshake has completed, so without it we would report success for a
connection the server is about to refuse.
"""

from __future__ import annotations

import argparse
import re
import ssl
import time
from dataclasses import dataclass

import trio

from . import _cli_args as types
from . import _cli_connect_report as report
from . import _cli_output as out
from ._cli_args import Address
from ._cli_certs import CertInfo, parse_chain
from ._cli_failure import (
    Failure,
    UsageError,
    explain,
    explain_verification,
    ssl_reason,
    verification_error,
)
from ._cli_tls import (
    Summary,
    add_version_flags,
    client_context,
    close_quietly,
    summarize,
)
from ._stream import SSLStream

#: Stop reading the server's reply after this much; this is a debugging tool.
MAX_RECEIVE = 1 << 20

Stream = SSLStream[trio.SocketStream]


@dataclass(frozen=True)
class ConnectOptions:
    address: Address
    servername: str | None
    alpn: tuple[str, ...]
    cafile: str | None
    cert: str | None
    key: str | None
    tls_version: ssl.TLSVersion | None
    insecure: bool
    send: bytes | None
    json: bool
    timeout: float
    wait: float
    reconnect: bool

    @property
    def host(self) -> str:
        return self.address.host

    @property
    def port(self) -> int:
        return self.address.port

    @property
    def expected_name(self) -> str:
        """The name sent as SNI and checked against the certificate."""
        return self.servername or self.host

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ConnectOptions:
        return cls(
            address=args.address,
            servername=args.servername,
            alpn=args.alpn or (),
            cafile=args.cafile,
            cert=args.cert,
            key=args.key,
            tls_version=args.tls_version,
            insecure=args.insecure,
            send=None if args.send is None else unescape(args.send).encode(),
            json=args.json,
            timeout=args.timeout,
            wait=args.wait,
            reconnect=args.reconnect,
        )


@dataclass(frozen=True)
class Outcome:
    """Everything learnt from one successful connection."""

    summary: Summary
    tcp_seconds: float
    chain: list[CertInfo]
    #: False when only the leaf could be read (Python before 3.13).
    chain_complete: bool
    received: bytes
    #: How the conversation ended, when the server ended it.
    note: str | None


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "address",
        metavar="HOST:PORT",
        type=types.target,
        help="server to connect to: HOST:PORT, [IPv6]:PORT or an https:// URL"
        " (port 443 if omitted; a URL's path is not used)",
    )
    parser.add_argument(
        "--servername",
        metavar="NAME",
        type=types.server_name,
        help="name to send as SNI and to verify (default: HOST)",
    )
    parser.add_argument(
        "--alpn",
        metavar="LIST",
        type=types.alpn,
        help="ALPN protocols to offer, comma separated, e.g. h2,http/1.1",
    )
    parser.add_argument(
        "--cafile",
        metavar="FILE",
        help="also trust the CA certificates in FILE (PEM), besides the system's",
    )
    parser.add_argument("--cert", metavar="FILE", help="client certificate chain (PEM)")
    parser.add_argument(
        "--key", metavar="FILE", help="private key for --cert (default: read it from --cert)"
    )
    add_version_flags(parser)
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="do not verify the certificate or the name (still shows them)",
    )
    parser.add_argument(
        "--send",
        metavar="TEXT",
        help=r"send TEXT after the handshake and show the reply; \r \n \t \\ are understood",
    )
    parser.add_argument(
        "--reconnect",
        action="store_true",
        help="connect a second time offering the first session, to test resumption",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the result (or the failure) as JSON"
    )
    parser.add_argument(
        "--timeout",
        type=types.seconds,
        default=10.0,
        metavar="SECONDS",
        help="give up on the TCP connect and handshake after this long (default 10)",
    )
    parser.add_argument(
        "--wait",
        type=types.seconds_or_zero,
        default=0.5,
        metavar="SECONDS",
        help="after the handshake (after the reply, with --send), read until the server"
        " is quiet this long (default 0.5)",
    )
    parser.set_defaults(run=run)


def unescape(text: str) -> str:
    escapes = {"r": "\r", "n": "\n", "t": "\t", "\\": "\\"}
    return re.sub(r"\\(.)", lambda m: escapes.get(m[1], m[0]), text)


def run(args: argparse.Namespace) -> int:
    opts = ConnectOptions.from_args(args)
    if opts.key is not None and opts.cert is None:
        raise UsageError("--key needs --cert")
    # Made here, before any connection, so that a bad file is a usage error.
    ctx = _context(opts, insecure=opts.insecure)
    try:
        outcome = trio.run(connect, opts, ctx)
    except Failure as failure:
        report.failure(opts, str(failure))
        return 1
    report.success(opts, outcome)
    return 0


class CertificateRefused(Exception):
    """We refused the server's certificate; explained once that connection is closed."""

    def __init__(self, error: ssl.SSLCertVerificationError) -> None:
        super().__init__(error.verify_message)
        self.error = error


async def connect(opts: ConnectOptions, ctx: ssl.SSLContext) -> Outcome:
    """Connect once, or twice with ``--reconnect``; the last outcome is reported."""
    try:
        outcome, session = await attempt(opts, ctx)
        if opts.reconnect:
            # The same context must be used: a session belongs to the context that made it.
            outcome, _ = await attempt(opts, ctx, session=session)
    except CertificateRefused as refused:
        # Only now, with the refused connection closed: a one-connection-at-a-time
        # server such as openssl s_server would not accept our second look before.
        raise Failure(await _explain_refused(opts, refused.error)) from refused.error
    return outcome


def _context(opts: ConnectOptions, *, insecure: bool) -> ssl.SSLContext:
    return client_context(
        cafile=opts.cafile,
        cert=opts.cert,
        key=opts.key,
        version=opts.tls_version,
        alpn=opts.alpn,
        insecure=insecure,
    )


async def attempt(
    opts: ConnectOptions, ctx: ssl.SSLContext, *, session: ssl.SSLSession | None = None
) -> tuple[Outcome, ssl.SSLSession | None]:
    tcp, tcp_seconds = await _open_tcp(opts)
    stream = SSLStream(tcp, ctx, server_hostname=opts.expected_name, session=session)
    try:
        await _handshake(stream, opts)
        # Read these before talking: an alert from the server afterwards leaves
        # the SSL object unable to answer (getpeercert: "handshake not done yet").
        negotiated = summarize(stream)
        chain, complete = peer_chain(stream)
        received, note = await _converse(stream, opts, negotiated.version)
        summary = negotiated.counted(stream.statistics())
        outcome = Outcome(summary, tcp_seconds, parse_chain(chain), complete, received, note)
        return outcome, stream.session
    finally:
        await close_quietly(stream)


async def _open_tcp(opts: ConnectOptions) -> tuple[trio.SocketStream, float]:
    start = time.perf_counter()
    try:
        with trio.fail_after(opts.timeout):
            tcp = await trio.open_tcp_stream(opts.host, opts.port)
    except trio.TooSlowError:
        raise Failure(
            f"timed out after {opts.timeout:g} s waiting for the TCP connection"
        ) from None
    except OSError as exc:
        raise Failure(explain(exc)) from exc
    return tcp, time.perf_counter() - start


async def _handshake(stream: Stream, opts: ConnectOptions) -> None:
    try:
        with trio.fail_after(opts.timeout):
            await stream.do_handshake()
    except trio.TooSlowError:
        raise Failure(f"timed out after {opts.timeout:g} s in the TLS handshake") from None
    except trio.BrokenResourceError as exc:
        refused = verification_error(exc)
        if refused is None:
            raise Failure(explain(exc)) from exc
        raise CertificateRefused(refused) from exc


async def _converse(
    stream: Stream, opts: ConnectOptions, version: str | None
) -> tuple[bytes, str | None]:
    """Send ``--send``, then read until the server is quiet, closes, or says too much."""
    received = bytearray()
    try:
        if opts.send:
            await stream.send_all(opts.send)
        # After --send, a reply is expected: wait for its start as long as for a
        # handshake. Then, and without --send, stop once the server is quiet.
        patience = opts.timeout if opts.send else opts.wait
        with trio.move_on_after(opts.timeout + opts.wait):
            while len(received) < MAX_RECEIVE:
                chunk: bytes | bytearray = b""
                with trio.move_on_after(patience if not received else opts.wait):
                    chunk = await stream.receive_some()
                    if not chunk:
                        return bytes(received), "the server closed the connection"
                if not chunk:  # quiet for --wait seconds
                    break
                received += chunk
    except trio.BrokenResourceError as exc:
        if _is_ragged_eof(exc):
            return bytes(received), _ragged_note(opts, version, answered=bool(received))
        raise Failure(f"after the handshake: {explain(exc)}") from exc
    return bytes(received), None


def _ragged_note(opts: ConnectOptions, version: str | None, *, answered: bool) -> str:
    note = "the server closed the connection without close_notify"
    if opts.cert is None and version == "TLSv1.3" and not answered:
        # TLS 1.3 clients finish the handshake before the server has judged the
        # client certificate; a server that wants one and does not send its
        # alert looks exactly like this.
        note += " (a TLS 1.3 server that requires a client certificate may hang up like this)"
    return note


def _is_ragged_eof(exc: trio.BrokenResourceError) -> bool:
    cause = exc.__cause__
    return isinstance(cause, ssl.SSLEOFError) or (
        isinstance(cause, ssl.SSLError) and ssl_reason(cause) == "UNEXPECTED_EOF_WHILE_READING"
    )


def peer_chain(stream: Stream) -> tuple[list[bytes], bool]:
    """The certificates the server sent, leaf first, and whether that is all of them.

    Python 3.13 added ``get_unverified_chain()``; before it the stdlib only
    gives us the leaf.
    """
    getter = getattr(stream, "get_unverified_chain", None)
    if callable(getter):
        chain = getter()
        if isinstance(chain, list) and all(isinstance(d, bytes) for d in chain):
            return list(chain), True
    leaf = stream.getpeercert(binary_form=True)
    return ([leaf] if leaf else []), False


async def _explain_refused(opts: ConnectOptions, err: ssl.SSLCertVerificationError) -> str:
    """Look at the refused certificate without verifying it, and say what is wrong."""
    chain: list[CertInfo] = []
    try:
        with trio.fail_after(opts.timeout):
            outcome, _ = await attempt(opts, _context(opts, insecure=True))
        chain = outcome.chain
    except (Failure, CertificateRefused, UsageError, trio.TooSlowError):
        pass  # explain from OpenSSL's message alone
    return explain_verification(err, chain, opts.expected_name, out.now())
