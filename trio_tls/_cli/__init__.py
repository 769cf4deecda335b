"""``python -m trio_tls`` / ``trio-tls``: TLS debugging built on trio_tls itself.

Each command has its own module (``demo``, ``connect``, ``serve``, ``route``) providing
``configure(parser)`` and a ``run(args) -> int`` that it registers with
``parser.set_defaults(run=...)``. What they share: ``options`` (option
definitions and argument types), ``output`` (how everything is printed),
``failure`` (why something failed, in words), ``loading`` (the user's
certificate files), ``certs`` (the peer's certificates), ``tls`` (contexts and
summaries). ``bench`` belongs to ``trio_tls._bench`` and only gets its
arguments forwarded here.

Exit status: 0 success, 1 the connection or the TLS handshake failed,
2 bad usage (or ``bench`` is not available), 130 interrupted (Ctrl-C),
141 standard output was closed (as for a process killed by SIGPIPE).
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from collections.abc import Callable, Sequence

from .._version import __version__
from . import connect, demo, route, serve
from . import output as out
from .failure import UsageError

_DESCRIPTION = (
    "TLS debugging tools built on trio_tls: a friendlier openssl s_client / s_server, "
    "a self-contained demo, and the benchmarks."
)

_COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None]]] = {
    "demo": ("run a TLS client and server against each other in one process", demo.configure),
    "connect": ("connect to a TLS server and show what was negotiated", connect.configure),
    "serve": ("run a TLS server for testing clients (echo or HTTP)", serve.configure),
    "route": ("pass TLS connections to backends chosen by server name", route.configure),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trio-tls", description=_DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"trio_tls {__version__}")
    commands = parser.add_subparsers(
        title="commands", metavar="COMMAND", dest="command", required=True
    )
    for name, (summary, configure) in _COMMANDS.items():
        configure(commands.add_parser(name, help=summary, description=summary + "."))
    # Listed for --help only: main() hands "bench ..." to trio_tls._bench before parsing.
    commands.add_parser(
        "bench",
        help="benchmark trio_tls (run 'trio-tls bench --help' for its options)",
        add_help=False,
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["bench"]:
        return run_bench(args[1:])
    namespace = build_parser().parse_args(args)
    run: Callable[[argparse.Namespace], int] = namespace.run
    try:
        return run(namespace)
    except UsageError as exc:
        # The same form as argparse's own usage errors, and the same status.
        sys.stderr.write(f"trio-tls {namespace.command}: error: {exc}\n")
        return 2
    except BaseException as exc:
        # trio delivers these wrapped in exception groups when they hit a nursery.
        if _only(exc, KeyboardInterrupt):
            return 130
        if _only(exc, out.OutputClosed):
            # Piped into something like `head` that stopped reading: stop quietly, with
            # the status of a process killed by SIGPIPE, as other Unix tools do. Point
            # stdout at devnull so that the interpreter's final flush is quiet too.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 128 + signal.SIGPIPE
        raise


def _only(exc: BaseException, kind: type[BaseException]) -> bool:
    """Whether *exc* is a *kind*, or a group of nothing else."""
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(kind)[1] is None
    return isinstance(exc, kind)


def run_bench(argv: list[str]) -> int:
    """Forward to ``trio_tls._bench.main(argv)``, imported only when asked for.

    The benchmark pulls in optional dependencies (the ``bench`` extra), which
    must not be needed for the other commands.
    """
    try:
        bench = importlib.import_module("trio_tls._bench")
    except ModuleNotFoundError as exc:
        if exc.name == "trio_tls._bench":
            out.fail("bench: this build of trio_tls has no benchmark module (trio_tls._bench)")
        else:
            out.fail(
                f"bench: missing dependency {exc.name!r}; install it with: pip install 'trio_tls[bench]'"
            )
        return 2
    status = bench.main(argv)
    return status if isinstance(status, int) else 0
