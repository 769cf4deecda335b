"""Serving several names from one listener: pick the SSLContext from the SNI name.

Clients send an internationalised name as IDNA A-labels (``bücher.example`` goes on
the wire as ``xn--bcher-kva.example``, RFC 6066), and CPython hands the callback that
ASCII form. So the table's keys are converted once, when it is built, and the
callback only lowercases and looks up: it can never raise. An exception escaping an
SNI callback would not reach the caller; CPython reports it as "unraisable" and fails
the handshake.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import TypeVar

from ._hostname import encode_hostname

_T = TypeVar("_T")


def name_table(by_name: Mapping[str, _T]) -> dict[str, _T]:
    """``by_name`` keyed as clients send names, for :func:`lookup_name`.

    Shared by :func:`select_context_by_sni` and the ``trio-tls route`` command, so
    that a name (wildcards and IDNA included) matches the same way in both.

    Raises:
      ValueError: a key is not a valid host name (the message names it).
    """
    return {_key(name): value for name, value in by_name.items()}


def _key(name: str) -> str:
    """``name`` as a client sends it: IDNA 2008 A-labels, lowercase, no final dot.

    Encoded like the client side of :class:`SSLStream` (UTS 46, as browsers and curl
    do), so a trio_tls client naming ``faß.example`` matches a key ``"faß.example"``.
    A client using the stdlib's IDNA 2003 sends ``fass.example`` for it instead.
    """
    bare = name.rstrip(".")
    prefix = "*." if bare.startswith("*.") else ""
    rest = bare.removeprefix(prefix)  # "*" is no valid label: only the rest is encoded
    if "*" in rest:
        raise ValueError(f"{name!r}: a wildcard must be the whole first label, as in '*.example'")
    try:
        encoded = encode_hostname(rest)
    except ValueError as exc:  # idna.IDNAError is one
        raise ValueError(f"{name!r} is not a valid server name: {exc}") from exc
    assert encoded is not None
    return prefix + encoded.lower()


def lookup_name(by_name: Mapping[str, _T], name: str) -> _T | None:
    """The value for the server name ``name`` in a :func:`name_table`; never raises."""
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

    Keys may be internationalised (``"bücher.example"``, ``"*.bücher.example"``):
    they are matched in the IDNA 2008 (UTS 46) form that trio_tls, browsers and curl
    send. A client that puts raw UTF-8 in the SNI extension instead of A-labels
    breaks RFC 6066; CPython could not even hand that name to a callback, so the
    server's engine refuses such a ClientHello itself, and the handshake fails with
    an error naming the server name it got.

    Example::

        ctx = select_context_by_sni(fallback_ctx, {"a.example": a_ctx, "*.b.example": b_ctx})
        await trio_tls.serve_ssl_over_tcp(handler, 443, ctx)

    It installs ``default.sni_callback``, replacing any callback already there.

    Raises:
      ValueError: a key is not a valid host name (the message names it).
    """
    table = name_table(by_name)

    def choose(
        connection: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: ssl.SSLContext
    ) -> int | None:
        chosen = lookup_name(table, server_name) if server_name else None
        if chosen is not None:
            connection.context = chosen
        elif reject_unknown:
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        return None

    default.sni_callback = choose
    return default
