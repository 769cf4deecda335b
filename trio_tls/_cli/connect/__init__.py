"""``trio-tls connect``: a readable ``openssl s_client``.

:mod:`.model` holds what was asked and what was learnt, :mod:`.probe` makes the
connections, :mod:`.report` says how it went.
"""

from __future__ import annotations

import argparse

import trio

from .. import options
from ..failure import Failure
from . import probe, report
from .model import ConnectOptions


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "address",
        metavar="HOST:PORT",
        type=options.target,
        help="server to connect to: HOST:PORT, [IPv6]:PORT or an https:// URL"
        " (port 443 if omitted; a URL's path is not used)",
    )
    parser.add_argument(
        "--servername",
        metavar="NAME",
        type=options.server_name,
        help="name to send as SNI and to verify (default: HOST)",
    )
    options.add_alpn(parser, help="ALPN protocols to offer, comma separated, e.g. h2,http/1.1")
    parser.add_argument(
        "--cafile",
        metavar="FILE",
        help="also trust the CA certificates in FILE (PEM), besides the system's",
    )
    options.add_certificate(parser, whose="client")
    options.add_key(parser)
    options.add_version_flags(parser)
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
    options.add_timeout(
        parser, default=10.0, help="give up on the TCP connect and handshake after this long"
    )
    parser.add_argument(
        "--wait",
        type=options.seconds_or_zero,
        default=0.5,
        metavar="SECONDS",
        help="after the handshake (after the reply, with --send), read until the server"
        " is quiet this long (default 0.5)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    options.check_certificate(args)
    opts = ConnectOptions.from_args(args)
    # Made here, before any connection, so that a bad file is a usage error.
    ctx = probe.context(opts, insecure=opts.insecure)
    try:
        outcome = trio.run(probe.connect, opts, ctx)
    except Failure as failure:
        report.failure(opts, str(failure))
        return 1
    report.success(opts, outcome)
    return 0
