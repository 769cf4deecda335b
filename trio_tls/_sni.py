"""Serving several names from one listener: pick the SSLContext from the SNI name."""

from __future__ import annotations

import ssl
from collections.abc import Mapping


def _lookup(by_name: Mapping[str, ssl.SSLContext], name: str) -> ssl.SSLContext | None:
    name = name.lower().rstrip(".")
    if name in by_name:
        return by_name[name]
    # "*.example.com" covers exactly one more label, as in certificate matching.
    _, _, parent = name.partition(".")
    return by_name.get(f"*.{parent}") if parent else None


def select_context_by_sni(
    default: ssl.SSLContext,
    by_name: Mapping[str, ssl.SSLContext],
    *,
    reject_unknown: bool = False,
) -> ssl.SSLContext:
    """Make ``default`` switch each connection to the context for its SNI name.

    Give the returned context (``default`` itself) to :class:`SSLListener` or
    :func:`serve_ssl_over_tcp`. A ClientHello naming a key of ``by_name`` (case
    insensitive; ``"*.example.com"`` matches one label) continues with that context;
    any other name, or none, stays on ``default`` unless ``reject_unknown`` is set, in
    which case the handshake fails with an ``unrecognized_name`` alert.

    Example::

        ctx = select_context_by_sni(fallback_ctx, {"a.example": a_ctx, "*.b.example": b_ctx})
        await trio_tls.serve_ssl_over_tcp(handler, 443, ctx)

    It installs ``default.sni_callback``, replacing any callback already there.
    """
    table = {name.lower().rstrip("."): ctx for name, ctx in by_name.items()}

    def choose(
        connection: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: ssl.SSLContext
    ) -> int | None:
        chosen = _lookup(table, server_name) if server_name else None
        if chosen is not None:
            connection.context = chosen
        elif reject_unknown:
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        return None

    default.sni_callback = choose
    return default
