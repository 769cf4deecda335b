"""``trio-tls route``: pass each TLS connection to a backend chosen by its server name.

A passthrough router, as nginx's ``ssl_preread`` or HAProxy's ``req.ssl_sni`` do it:
it reads the client's ClientHello with :func:`trio_tls.read_client_hello` (and not a
byte more), picks the backend whose ``--to NAME`` matches the server name (wildcards
and internationalised names match as in :func:`trio_tls.select_context_by_sni`, by the
same code), sends it the hello, then copies bytes both ways. TLS is never terminated:
the client verifies the backend's own certificate.

- **Backpressure.** Each direction reads at most :data:`BUFFER` bytes and sends them
  all before reading again, so a slow reader on one side slows the writer on the
  other; a connection holds at most two buffers.
- **Half-close.** When one side sends EOF, the router shuts down writing towards the
  other and keeps copying the other way; the connection ends when both ways have.
- **No route.** A name that matches nothing, with no ``--default``, gets a plaintext
  ``unrecognized_name`` alert (the server may still send one before its ServerHello),
  so the client says why instead of reporting a bare EOF. A backend that cannot be
  reached gets the client an ``internal_error`` alert. Bad hellos (plain text,
  oversized, truncated, too slow) are just closed: a client that sent no valid hello
  may not speak TLS at all.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial

import trio

from .._hello import ClientHelloError
from .._preread import DEFAULT_HELLO_TIMEOUT, read_client_hello
from .._sni import lookup_name, name_table
from . import options
from . import output as out
from .failure import UsageError, explain
from .options import Address
from .serve import Tally, stop_on_signal

#: Bytes read from one side before they are sent to the other: a TCP window's worth.
BUFFER = 64 * 1024
#: A passthrough connection may legitimately idle (a websocket, a kept-alive HTTP
#: connection); this long without a byte either way, it is dropped.
DEFAULT_IDLE_TIMEOUT = 300.0
#: TLS alert descriptions (RFC 8446 section 6).
INTERNAL_ERROR = 80
UNRECOGNIZED_NAME = 112
#: The alert is a courtesy: never let a client that does not read hold us up.
ALERT_TIMEOUT = 1.0

#: Log columns: time, client, server name, backend, then traffic and outcome.
_LOG_WIDTHS = (8, 22, 24, 22)
_LOG_HEADER = ("time", "client", "name", "backend", "traffic")


@dataclass(frozen=True)
class RouteOptions:
    host: str
    port: int
    #: Backends by name, keyed as clients send names (see ``_sni.name_table``).
    routes: dict[str, Address]
    #: As given on the command line, for the banner.
    listed: tuple[tuple[str, Address], ...]
    default: Address | None
    timeout: float
    idle_timeout: float
    max_connections: int | None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> RouteOptions:
        listed = tuple(args.to or ())
        if not listed and args.default is None:
            raise UsageError("give at least one --to NAME=HOST:PORT, or --default HOST:PORT")
        names = [name for name, _ in listed]
        routes = name_table(dict(listed))  # each name was checked by route_to()
        if len(routes) < len(names):
            raise UsageError("--to: a server name is given twice (names ignore case)")
        return cls(
            host=args.host,
            port=args.port,
            routes=routes,
            listed=listed,
            default=args.default,
            timeout=args.timeout,
            idle_timeout=args.idle_timeout,
            max_connections=args.max_connections,
        )


def route_to(text: str) -> tuple[str, Address]:
    """``--to NAME=HOST:PORT``; NAME may be a wildcard (``*.example.com``) or IDN."""
    name, equals, where = text.partition("=")
    if not equals:
        raise argparse.ArgumentTypeError(f"{text!r}: write NAME=HOST:PORT")
    try:
        name_table({name: None})
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return name, options.backend(where)


def configure(parser: argparse.ArgumentParser) -> None:
    options.add_listen_address(parser)
    parser.add_argument(
        "--to",
        action="append",
        type=route_to,
        metavar="NAME=HOST:PORT",
        help="pass connections for server name NAME to HOST:PORT (repeat for more names;"
        " '*.example.com' matches one label)",
    )
    parser.add_argument(
        "--default",
        type=options.backend,
        metavar="HOST:PORT",
        help="where connections for any other name (or none) go"
        " (default: refuse them with an unrecognized_name alert)",
    )
    parser.add_argument(
        "--max-connections",
        type=options.count,
        metavar="N",
        help="exit after N connections have finished",
    )
    options.add_timeout(
        parser,
        default=DEFAULT_HELLO_TIMEOUT,
        help="drop a client whose ClientHello has not arrived after this long, and give up"
        " on a backend that does not accept the connection within it",
    )
    parser.add_argument(
        "--idle-timeout",
        type=options.seconds,
        default=DEFAULT_IDLE_TIMEOUT,
        metavar="SECONDS",
        help=f"drop a connection that carries nothing either way this long"
        f" (default {DEFAULT_IDLE_TIMEOUT:g})",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    opts = RouteOptions.from_args(args)
    try:
        stopped_by = trio.run(route, opts)
    except OSError as exc:  # connection handlers catch their own: this is the listener
        out.fail(f"route: cannot listen on {Address(opts.host, opts.port)}: {exc.strerror or exc}")
        return 1
    return 128 + signal.SIGINT if stopped_by == signal.SIGINT else 0


async def route(opts: RouteOptions) -> int | None:
    """Route until ``--max-connections``, SIGTERM or Ctrl-C; the signal that stopped us."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        # Outside the nursery, so that a port in use is a plain OSError for run().
        listeners = await trio.open_tcp_listeners(opts.port, host=opts.host)
        async with trio.open_nursery() as nursery:
            tally = Tally(nursery.cancel_scope, opts.max_connections)
            handler = partial(handle, opts=opts, tally=tally)
            nursery.start_soon(trio.serve_listeners, handler, listeners)
            nursery.start_soon(stop_on_signal, signals, tally)
            _banner(opts, listeners)
    out.emit([f"routed {out.plural(tally.finished, 'connection')} ({tally.failed} failed)"])
    return tally.stopped_by


def _banner(opts: RouteOptions, listeners: list[trio.SocketListener]) -> None:
    addresses = [str(Address(*listener.socket.getsockname()[:2])) for listener in listeners]
    rows = [(name, f"-> {backend}") for name, backend in opts.listed]
    rows.append(
        ("(any other)", f"-> {opts.default}" if opts.default else "refused (unrecognized_name)")
    )
    lines = [
        f"routing TLS by server name on {', '.join(addresses)}",
        *out.table(rows),
        "",
        out.log_line(_LOG_HEADER, _LOG_WIDTHS),
    ]
    out.emit(lines)


@dataclass
class Connection:
    """One client's connection through the router, as its log line tells it."""

    peer: str
    name: str = "-"
    backend: str = "-"
    #: Bytes from the client to the backend, and back.
    bytes_in: int = 0
    bytes_out: int = 0
    started: float = field(default_factory=trio.current_time)
    #: Why it ended early, if it did; the first failure wins.
    failure: str | None = None

    def fail(self, why: str) -> None:
        self.failure = self.failure or why

    def log(self) -> None:
        traffic = (
            f"in {self.bytes_in:>7,} B  out {self.bytes_out:>7,} B"
            f"  {out.duration(trio.current_time() - self.started)}"
        )
        outcome = f"failed: {self.failure}" if self.failure else "closed"
        cells = (out.clock(), self.peer, self.name, self.backend, f"{traffic}  {outcome}")
        out.emit([out.log_line(cells, _LOG_WIDTHS)])


async def handle(client: trio.SocketStream, *, opts: RouteOptions, tally: Tally) -> None:
    """Route one client. Its failures are logged, never raised: others carry on."""
    try:
        peer = str(Address(*client.socket.getpeername()[:2]))
    except OSError:  # reset between accept() and here: its line still gets logged
        peer = "(gone)"
    connection = Connection(peer)
    try:
        await _route_one(client, connection, opts)
    except ClientHelloError as exc:
        connection.fail(f"bad ClientHello ({exc.reason}): {exc}")
    except trio.TooSlowError as exc:
        connection.fail(str(exc))
    except (trio.BrokenResourceError, OSError) as exc:
        connection.fail(explain(exc, peer="client"))
    except BaseException as exc:
        # Stopping cancels every connection: in _route_one as a bare Cancelled, from the
        # splice's nursery as a group of them (trio's strict exception groups).
        if _is_cancellation(exc):
            connection.fail("cut short: the router is stopping")
        raise
    finally:
        # Logged and counted before closing: under cancellation aclose()'s checkpoint
        # raises Cancelled again, and nothing after it in this block would run.
        connection.log()
        tally.done(ok=connection.failure is None)
        await client.aclose()


def _is_cancellation(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return all(_is_cancellation(inner) for inner in exc.exceptions)
    return isinstance(exc, trio.Cancelled)


async def _route_one(client: trio.SocketStream, connection: Connection, opts: RouteOptions) -> None:
    hello, first_flight = await read_client_hello(client, timeout=opts.timeout)
    name = hello.server_name
    connection.name = name or "(no name)"
    backend = (lookup_name(opts.routes, name) if name else None) or opts.default
    if backend is None:
        connection.fail("no backend for this name (sent unrecognized_name)")
        await _alert(client, UNRECOGNIZED_NAME)
        return
    connection.backend = str(backend)
    try:
        with trio.fail_after(opts.timeout):
            server = await trio.open_tcp_stream(*backend)
    except (OSError, trio.TooSlowError) as exc:
        reason = (
            f"did not accept within {opts.timeout:g} s"
            if isinstance(exc, trio.TooSlowError)
            else explain(exc, peer="backend")
        )
        connection.fail(f"backend {backend}: {reason} (sent internal_error)")
        await _alert(client, INTERNAL_ERROR)
        return
    async with server:
        await _splice(client, server, first_flight, connection, opts.idle_timeout)


async def _splice(
    client: trio.SocketStream,
    server: trio.SocketStream,
    first_flight: bytes,
    connection: Connection,
    idle_timeout: float,
) -> None:
    """Copy both ways until both are done, one breaks, or nothing moves for too long."""
    with trio.CancelScope(deadline=trio.current_time() + idle_timeout) as idle:

        async def pump(source: trio.SocketStream, sink: trio.SocketStream, inbound: bool) -> None:
            source_side, sink_side = ("client", "backend") if inbound else ("backend", "client")
            data = first_flight if inbound else b""
            try:
                while True:
                    if data:
                        with _blaming(sink_side):
                            await sink.send_all(data)
                        if inbound:
                            connection.bytes_in += len(data)
                        else:
                            connection.bytes_out += len(data)
                        idle.deadline = trio.current_time() + idle_timeout
                    with _blaming(source_side):
                        data = await source.receive_some(BUFFER)
                    if not data:
                        break
                ended.add(source_side)
                # The half-close: a FIN towards the other side, which may still send.
                with _blaming(sink_side):
                    await sink.send_eof()
            except _Broken as exc:
                if exc.side == source_side or exc.side not in ended:
                    connection.fail(str(exc))
                    nursery.cancel_scope.cancel()
                # Else the side we were sending to had already closed, and reset what
                # came after: an HTTP server that closes after its response, say,
                # meeting the client's close_notify. Its own data all went through.

        ended: set[str] = set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(pump, client, server, True)
            nursery.start_soon(pump, server, client, False)
    if idle.cancelled_caught:
        connection.fail(f"nothing moved either way for {idle_timeout:g} s")


class _Broken(Exception):
    """One side of a spliced connection failed; ``str()`` says which and why."""

    def __init__(self, side: str, message: str) -> None:
        super().__init__(message)
        self.side = side


@contextlib.contextmanager
def _blaming(side: str) -> Iterator[None]:
    try:
        yield
    except trio.BrokenResourceError as exc:
        raise _Broken(side, f"{side}: {explain(exc, peer=side)}") from exc


async def _alert(client: trio.SocketStream, description: int) -> None:
    """Send a fatal plaintext alert, as a server may before its ServerHello."""
    # content type alert (21), legacy version TLS 1.2, length 2, level fatal (2).
    record = bytes([21, 3, 3, 0, 2, 2, description])
    # If the client has gone, nothing is left to tell it.
    with trio.move_on_after(ALERT_TIMEOUT), contextlib.suppress(trio.BrokenResourceError):
        await client.send_all(record)
