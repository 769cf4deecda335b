"""``trio-tls serve``: a TLS server for testing clients, a readable ``openssl s_server``.

It echoes (``--echo``, the default) or answers every request with a small
HTTP/1.1 page describing the connection (``--http``), and logs one aligned
line per connection. ``--trustme NAME`` (the default, for ``localhost``)
mints a throwaway CA and writes its certificate where ``curl --cacert`` can
find it.
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import ssl
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

import trio
import trustme

from .._contexts import TLSVersionName
from .._engine import _is_eof
from .._listener import SSLListener, open_ssl_over_tcp_listeners
from .._stream import SSLStream
from . import options
from . import output as out
from .certs import parse_der
from .failure import UsageError, explain
from .loading import identity, trust
from .options import Address
from .tls import bound_address, close_quietly, server_context, summarize

#: An HTTP request head larger than this is refused; browsers send about 1 KiB.
MAX_REQUEST_HEAD = 64 * 1024

#: The blank line that ends a request head. HTTP says CRLF, but servers accept a bare
#: LF too (RFC 9112 section 2.2), and hand-typed requests and many test clients send
#: ``\n\n``: without this they would wait for a CRLF that never comes.
_END_OF_HEAD = re.compile(rb"\r?\n\r?\n")

Stream = SSLStream[trio.SocketStream]


class BadRequest(Exception):
    """The client did not send a usable HTTP request."""


@dataclass(frozen=True)
class ServeOptions:
    host: str
    port: int
    cert: str | None
    key: str | None
    trustme: str
    ca_out: str | None
    mode: Literal["echo", "http"]
    alpn: tuple[str, ...]
    client_ca: str | None
    tls_version: TLSVersionName | None
    max_connections: int | None
    timeout: float

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ServeOptions:
        # Named one by one (like connect's options): a renamed flag then fails mypy
        # here instead of surfacing as a missing attribute at run time.
        mode: Literal["echo", "http"] = "http" if args.http else "echo"
        alpn = args.alpn if args.alpn is not None else ("http/1.1",) if mode == "http" else ()
        return cls(
            host=args.host,
            port=args.port,
            cert=args.cert,
            key=args.key,
            trustme=args.trustme,
            ca_out=args.ca_out,
            mode=mode,
            alpn=alpn,
            client_ca=args.client_ca,
            tls_version=args.tls_version,
            max_connections=args.max_connections,
            timeout=args.timeout,
        )


@dataclass
class Tally:
    """Connections finished so far, and the scope to cancel once there are enough."""

    scope: trio.CancelScope
    limit: int | None
    finished: int = 0
    failed: int = 0
    #: The signal that stopped the server, if one did.
    stopped_by: int | None = None

    def done(self, *, ok: bool) -> None:
        self.finished += 1
        self.failed += not ok
        if self.limit is not None and self.finished >= self.limit:
            self.scope.cancel()


def configure(parser: argparse.ArgumentParser) -> None:
    options.add_listen_address(parser)
    who = options.add_certificate(parser, whose="server")
    who.add_argument(
        "--trustme",
        metavar="NAME",
        type=options.certificate_name,
        default="localhost",
        help="mint a throwaway CA and a certificate for NAME, 127.0.0.1 and ::1"
        " (the default, for localhost)",
    )
    options.add_key(parser)
    parser.add_argument(
        "--ca-out",
        metavar="FILE",
        help="with --trustme: write the CA certificate here (default: a temporary file)",
    )
    what = parser.add_mutually_exclusive_group()
    what.add_argument(
        "--echo", action="store_true", help="send back whatever the client sends (the default)"
    )
    what.add_argument(
        "--http", action="store_true", help="answer each connection with a small HTTP/1.1 page"
    )
    options.add_alpn(
        parser, help="ALPN protocols to accept, by preference (default: http/1.1 with --http)"
    )
    parser.add_argument(
        "--client-ca", metavar="FILE", help="require client certificates issued by a CA in FILE"
    )
    options.add_version_flags(parser)
    parser.add_argument(
        "--max-connections",
        type=options.count,
        metavar="N",
        help="exit after N connections have finished",
    )
    options.add_timeout(parser, default=30.0, help="drop a client that stays silent this long")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    options.check_certificate(args)
    opts = ServeOptions.from_args(args)
    if opts.ca_out is not None and opts.cert is not None:
        raise UsageError("--ca-out writes the CA of a --trustme certificate, not of --cert")
    with _server_context(opts) as (ctx, description):
        return _run_server(opts, ctx, description)


def _run_server(opts: ServeOptions, ctx: ssl.SSLContext, description: list[out.Row]) -> int:
    try:
        stopped_by = trio.run(serve, opts, ctx, description)
    except OSError as exc:  # connection handlers catch their own: this is the listener
        out.fail(f"serve: cannot listen on {_address(opts.host, opts.port)}: {exc.strerror or exc}")
        return 1
    # Ctrl-C ends the server as it ends any command; `kill` (SIGTERM) is a normal stop.
    return 128 + signal.SIGINT if stopped_by == signal.SIGINT else 0


@contextmanager
def _server_context(opts: ServeOptions) -> Iterator[tuple[ssl.SSLContext, list[out.Row]]]:
    """The server's context, and rows describing its certificate for the banner.

    Raises :exc:`UsageError` naming the option whose file cannot be used.
    """
    ctx = server_context(opts.tls_version, opts.alpn)
    if opts.client_ca is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        trust(ctx, "--client-ca", opts.client_ca)
    if opts.cert is not None:
        identity(ctx, opts.cert, opts.key)
        yield ctx, [("certificate", opts.cert)]
        return
    with _ca_file(opts.ca_out) as ca_path:
        ca = trustme.CA()
        ca.issue_cert(opts.trustme, "127.0.0.1", "::1").configure_cert(ctx)
        try:
            ca.cert_pem.write_to_path(str(ca_path))
        except OSError as exc:
            raise UsageError(
                f"--ca-out {ca_path}: cannot write it: {exc.strerror or exc}"
            ) from None
        yield (
            ctx,
            [
                ("certificate", f"throwaway, for {opts.trustme}, 127.0.0.1 and ::1 (trustme)"),
                ("CA file", str(ca_path)),
            ],
        )


@contextmanager
def _ca_file(requested: str | None) -> Iterator[Path]:
    if requested is not None:
        yield Path(requested)
        return
    directory = tempfile.mkdtemp(prefix="trio-tls-")
    try:
        yield Path(directory) / "ca.pem"
    finally:
        shutil.rmtree(directory, ignore_errors=True)


async def serve(opts: ServeOptions, ctx: ssl.SSLContext, description: list[out.Row]) -> int | None:
    """Serve until ``--max-connections``, SIGTERM or Ctrl-C; the signal that stopped us."""
    # Catch the signals before the banner says we are up, so that Ctrl-C and ``kill PID``
    # are a clean stop from the first moment: the summary is printed and the throwaway
    # CA file removed. Ctrl-C would otherwise raise KeyboardInterrupt wherever the
    # program happens to be, out of the nursery as an exception group.
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        # Listen before opening the nursery, so that a port in use is a plain OSError
        # for run() to report rather than one wrapped in an exception group.
        listeners = await open_ssl_over_tcp_listeners(
            opts.port,
            ctx,
            host=opts.host,
            # Not https_compatible, even for HTTP: that would also skip our close_notify,
            # which TLS 1.3 requires (RFC 8446 section 6.1) and strict clients check for.
            # HTTP clients' own missing close_notify is tolerated where it is read.
            handshake_timeout=opts.timeout,
        )
        async with trio.open_nursery() as nursery:
            tally = Tally(nursery.cancel_scope, opts.max_connections)
            handler = partial(handle, opts=opts, tally=tally)
            nursery.start_soon(trio.serve_listeners, handler, listeners)
            nursery.start_soon(stop_on_signal, signals, tally)
            _banner(opts, listeners, description)
    out.emit([f"served {out.plural(tally.finished, 'connection')} ({tally.failed} failed)"])
    return tally.stopped_by


async def stop_on_signal(signals: AsyncIterator[int], tally: Tally) -> None:
    async for signum in signals:
        tally.stopped_by = signum
        tally.scope.cancel()
        return


def _banner(
    opts: ServeOptions,
    listeners: list[SSLListener[trio.SocketStream]],
    description: list[out.Row],
) -> None:
    addresses = [_address(*bound_address(listener)) for listener in listeners]
    first = Address(*bound_address(listeners[0]))
    rows = [*description, ("ALPN", ", ".join(opts.alpn) or "(none)")]
    if opts.client_ca:
        rows.append(("client certs", f"required, from a CA in {opts.client_ca}"))
    if opts.mode == "http" and opts.cert is None:
        rows.append(("try", _curl(opts, dict(description)["CA file"], first)))
    lines = [
        f"serving TLS ({opts.mode}) on {', '.join(addresses)}",
        *out.table(rows),
        "",
        _log_line(*_LOG_HEADER),
    ]
    out.emit(lines)


def _curl(opts: ServeOptions, ca: str, address: Address) -> str:
    """A curl command line that works, as printed, against this server."""
    words = ["curl", "--cacert", ca]
    if opts.client_ca is not None:
        # Placeholders: only the user has a certificate from their --client-ca.
        words += ["--cert", "CLIENT-CERT.pem", "--key", "CLIENT-KEY.pem"]
    name = opts.trustme.replace("*", "www", 1)  # any name a wildcard covers will do
    if name != "localhost" and not options.is_ip(name):
        # The certificate's name need not resolve to us: tell curl where it is.
        words += ["--resolve", f"{name}:{address.port}:{_curl_ip(address.host)}"]
    url_host = f"[{name}]" if ":" in name else name
    return " ".join([*words, f"https://{url_host}:{address.port}/"])


def _curl_ip(host: str) -> str:
    if host in ("0.0.0.0", "::"):  # listening everywhere: loopback reaches us
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"
    return f"[{host}]" if ":" in host else host


def _address(host: str, port: int) -> str:
    return str(Address(host, port))


async def handle(stream: Stream, *, opts: ServeOptions, tally: Tally) -> None:
    """Serve one client.

    Its failures are logged, never raised, since that would take the whole server
    down; only a closed standard output (:exc:`OutputClosed`) stops everything.
    """
    peer = _address(*stream.transport_stream.socket.getpeername()[:2])
    ok = False
    try:
        await stream.do_handshake()  # bounded by serve_ssl_over_tcp's handshake_timeout
        await (_echo if opts.mode == "echo" else _http)(stream, opts)
        s = summarize(stream)
        traffic = (
            f"in {s.bytes_received:>6,} B  out {s.bytes_sent:>6,} B"
            f"  handshake {out.duration(s.handshake_seconds)}"
        )
        if opts.client_ca is not None:
            traffic += f"  client cert {_client_subject(stream)}"
        _log(peer, s.version or "?", s.cipher or "?", s.alpn or "-", traffic)
        ok = True
    except trio.TooSlowError:
        _log(peer, f"dropped: silent for {opts.timeout:g} s")
    except BadRequest as exc:
        _log(peer, f"bad request: {exc}")
    except (trio.BrokenResourceError, OSError) as exc:
        _log(peer, f"failed: {explain(exc, peer='client')}")
    finally:
        await close_quietly(stream)
        tally.done(ok=ok)


def _client_subject(stream: Stream) -> str:
    der = stream.getpeercert(binary_form=True)
    return repr(parse_der(der).subject) if der else "(none)"


#: Log columns: time, client, version, cipher, ALPN, then the traffic. The
#: widths fit the longest common values (a full IPv6 peer, a TLS 1.2 suite name).
_LOG_WIDTHS = (8, 22, 7, 30, 10)
_LOG_HEADER = ("time", "client", "version", "cipher", "ALPN", "traffic")


def _log(peer: str, *fields: str) -> None:
    out.emit([_log_line(out.clock(), peer, *fields)])


def _log_line(*cells: str) -> str:
    return out.log_line(cells, _LOG_WIDTHS)


async def _echo(stream: Stream, opts: ServeOptions) -> None:
    # Strict: an echo client that hangs up without close_notify is logged as failing,
    # which is what someone testing a TLS client wants to know.
    while True:
        with trio.fail_after(opts.timeout):
            data = await stream.receive_some()
        if not data:
            return
        await stream.send_all(data)


async def _receive_http(stream: Stream, opts: ServeOptions) -> bytes:
    """The client's next data; ``b""`` once it is done, with or without close_notify.

    HTTP clients (browsers, curl) often just close the connection, and HTTP knows
    where a request ends, so a truncated one is caught as incomplete anyway. Such a
    close is a reset rather than a FIN when the client still holds unread input, as
    a TLS 1.3 client that never read does: the session tickets sent right after the
    handshake. Either way the client is done.
    """
    try:
        with trio.fail_after(opts.timeout):
            return await stream.receive_some()
    except trio.BrokenResourceError as exc:
        if _is_eof(exc.__cause__) or isinstance(exc.__cause__, ConnectionResetError):
            return b""
        raise


async def _http(stream: Stream, opts: ServeOptions) -> None:
    head = await _read_head(stream, opts)
    request_line = head.split(b"\n", 1)[0].rstrip(b"\r").decode("latin-1")
    summary = summarize(stream)
    body = "\n".join(
        [
            "hello from trio_tls",
            "",
            *out.table([("request", request_line), *summary.rows()[:3]], indent=0),
            "",
        ]
    ).encode()
    response = (
        b"HTTP/1.1 200 OK\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: %d\r\n"
        b"Connection: close\r\n"
        b"\r\n" % len(body)
    ) + body
    await stream.send_all(response)


async def _read_head(stream: Stream, opts: ServeOptions) -> bytes:
    head = bytearray()
    data = b""
    while not head_ends(head, len(data)):
        if len(head) > MAX_REQUEST_HEAD:
            raise BadRequest("request head too large")
        if not (data := await _receive_http(stream, opts)):
            raise BadRequest("the client closed before finishing its request")
        head += data
    return bytes(head)


def head_ends(head: bytearray, new: int) -> bool:
    """Whether ``head``, whose last ``new`` bytes just arrived, holds the blank line.

    Only where those bytes can complete one is searched (the end is at most 4 bytes
    long), so a head that arrives a byte at a time costs linear time, not quadratic.
    """
    return _END_OF_HEAD.search(head, max(0, len(head) - new - 3)) is not None
