"""How ``trio-tls connect`` reports: aligned text for people, JSON for scripts."""

from __future__ import annotations

import sys

from .. import output as out
from .model import ConnectOptions, Outcome


def success(opts: ConnectOptions, outcome: Outcome) -> None:
    if opts.json:
        out.emit_json(_as_json(opts, outcome))
    else:
        out.emit(_text(opts, outcome))


def failure(opts: ConnectOptions, reason: str) -> None:
    if opts.json:
        out.emit_json({"ok": False, **_target(opts), "error": reason})
    else:
        out.fail(f"connect {opts.address}: {reason}")


def _target(opts: ConnectOptions) -> dict[str, object]:
    return {"host": opts.host, "port": opts.port, "server_name": opts.expected_name}


def _as_json(opts: ConnectOptions, outcome: Outcome) -> dict[str, object]:
    now = out.now()
    return {
        "ok": True,
        **_target(opts),
        "verified": not opts.insecure,
        "reconnected": opts.reconnect,
        "tcp_connect_seconds": outcome.tcp_seconds,
        **outcome.summary.to_json(),
        "chain_complete": outcome.chain_complete,
        "chain": [cert.to_json(now) for cert in outcome.chain],
        "received": outcome.received.decode("utf-8", "backslashreplace"),
        "note": outcome.note,
    }


def _text(opts: ConnectOptions, outcome: Outcome) -> list[str]:
    verified = (
        f"yes: trusted chain, certificate matches {opts.expected_name}"
        if not opts.insecure
        else "NO: --insecure, nothing was checked"
    )
    rows = [
        ("TCP connect", out.duration(outcome.tcp_seconds)),
        *outcome.summary.rows(),
        ("verified", verified),
        *outcome.summary.traffic_rows(),
    ]
    if opts.reconnect:
        rows.insert(4, ("reconnected", "yes, offering the first connection's session"))
    lines = [
        f"connected to {opts.address} (server name {opts.expected_name})",
        *out.table(rows),
    ]
    lines += ["", *_chain_text(outcome)]
    if outcome.note:
        lines += ["", f"note: {outcome.note}"]
    if outcome.received:
        lines += [
            "",
            "received from the server:",
            outcome.received.decode("utf-8", "backslashreplace"),
        ]
    return lines


def _chain_text(outcome: Outcome) -> list[str]:
    now = out.now()
    count = out.plural(len(outcome.chain), "certificate")
    scope = ""
    if not outcome.chain_complete:
        # The stdlib has no way to the rest before 3.13 (get_unverified_chain).
        scope = "; only the leaf is visible" + (
            " before Python 3.13" if sys.version_info < (3, 13) else ""
        )
    lines = [f"certificate chain sent by the server ({count}{scope})"]
    for position, cert in enumerate(outcome.chain):
        marker = f"[{position}] "
        for i, line in enumerate(out.table(cert.rows(now), indent=0)):
            lines.append("  " + (marker if i == 0 else " " * len(marker)) + line)
    return lines
