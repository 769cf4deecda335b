"""Turning a failed connection into one line a person can act on.

trio wraps the real cause: ``BrokenResourceError`` from an ``ssl.SSLError``,
``OSError`` from an ``ExceptionGroup`` of per-address connect errors. We dig
the cause out and phrase it; OpenSSL's own reason codes are kept as a
fallback so nothing is ever reduced to "something went wrong". Used by the
server helper's log and by the command line.
"""

from __future__ import annotations

import errno
import re
import socket
import ssl
from collections.abc import Iterator, Sequence

import trio

from ._choosing import ContextChoiceError
from ._engine import _is_eof
from ._hello import ClientHelloError

# OpenSSL reason codes (ssl.SSLError.reason) with a plainer explanation, as
# seen by a client (about the server) ...
_CLIENT_VIEW = {
    "WRONG_VERSION_NUMBER": "the server did not answer with TLS (is this a TLS port?)",
    "RECORD_LAYER_FAILURE": "the server did not answer with TLS (is this a TLS port?)",
    "UNSUPPORTED_PROTOCOL": "no TLS version in common with the server",
    "NO_PROTOCOLS_AVAILABLE": "no TLS version in common with the server",
    "TLSV1_ALERT_PROTOCOL_VERSION": "no TLS version in common with the server",
    "SSLV3_ALERT_HANDSHAKE_FAILURE": (
        "the server refused the handshake (no cipher, version or ALPN protocol in common,"
        " or it wants a client certificate?)"
    ),
    "TLSV1_ALERT_NO_APPLICATION_PROTOCOL": "no ALPN protocol in common with the server",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": (
        "the server requires a client certificate (give one with --cert and --key)"
    ),
    "TLSV1_ALERT_UNKNOWN_CA": "the server does not trust the CA of our client certificate",
    "SSLV3_ALERT_BAD_CERTIFICATE": "the server rejected our client certificate",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "the server says our client certificate has expired",
    "TLSV1_ALERT_DECRYPT_ERROR": "the server could not check our client certificate's signature",
    "TLSV1_UNRECOGNIZED_NAME": "the server does not serve that name (SNI)",
    "TLSV1_ALERT_UNRECOGNIZED_NAME": "the server does not serve that name (SNI)",
}

# ... and as seen by a server (about the client), for the log of `serve`.
_SERVER_VIEW = {
    "WRONG_VERSION_NUMBER": "the client did not speak TLS",
    "HTTP_REQUEST": "the client spoke plain HTTP to this TLS port",
    "UNSUPPORTED_PROTOCOL": "no TLS version in common with the client",
    "NO_SHARED_CIPHER": "no cipher suite in common with the client",
    "NO_APPLICATION_PROTOCOL": "no ALPN protocol in common with the client",
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": "the client sent no certificate",
    "TLSV1_ALERT_UNKNOWN_CA": "the client does not trust our CA",
    "SSLV3_ALERT_BAD_CERTIFICATE": "the client rejected our certificate",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "the client says our certificate has expired",
}


def causes(exc: BaseException) -> Iterator[BaseException]:
    """*exc*, then what it was raised from, flattening exception groups.

    Only explicit causes (``raise ... from``) are followed, which is how trio
    chains them. Implicit ``__context__`` would wander into whatever was being
    handled at the time, such as an earlier, unrelated failure.
    """
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, BaseExceptionGroup):
            todo.extend(current.exceptions)
        if current.__cause__ is not None:
            todo.append(current.__cause__)


def verification_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    for cause in causes(exc):
        if isinstance(cause, ssl.SSLCertVerificationError):
            return cause
    return None


def explain(exc: BaseException, *, peer: str = "server") -> str:
    """One line saying why a connection failed.

    *peer* names the other side: the client reads about "the server", the
    server's log about "the client". A client that refused the server's
    certificate should use :func:`explain_verification`, which says why.
    """
    found = list(causes(exc))
    for cause in found:
        # Our own wording already names the server name, or what the bytes were.
        if isinstance(cause, ContextChoiceError | ClientHelloError):
            return str(cause)
    if any(isinstance(e, trio.TooSlowError) for e in found):
        # trio_tls's handshake_timeout: BrokenResourceError from TooSlowError.
        return f"the {peer} took too long to complete the handshake"
    refused = verification_error(exc)
    if refused is not None and peer == "client":
        return f"client certificate refused: {refused.verify_message}"
    for cause in found:
        if isinstance(cause, socket.gaierror):
            return f"cannot resolve the host name: {cause.strerror or cause}"
    # SSLError is an OSError too, with an errno that means nothing to a person.
    os_errors = [
        e
        for e in found
        if isinstance(e, OSError) and not isinstance(e, ssl.SSLError) and e.errno is not None
    ]
    if os_errors:
        return _os_error(os_errors, peer)
    for cause in found:
        if isinstance(cause, ssl.SSLError):
            return _ssl_error(cause, peer)
    return str(exc) or f"the connection to the {peer} broke"


def _os_error(errors: Sequence[OSError], peer: str) -> str:
    if all(e.errno == errno.ECONNREFUSED for e in errors):
        return "connection refused"
    first = errors[0]
    if first.errno in (errno.ECONNRESET, errno.EPIPE):
        return f"connection reset by the {peer}"
    return first.strerror.lower() if first.strerror else str(first)


def _ssl_error(err: ssl.SSLError, peer: str) -> str:
    if _is_eof(err):
        return f"the {peer} closed the connection"
    reason = ssl_reason(err)
    view = _CLIENT_VIEW if peer == "server" else _SERVER_VIEW
    if reason in view:
        return view[reason]
    text = reason.replace("_", " ").lower() if reason else str(err)
    return f"TLS failed: {text}"


def ssl_reason(err: ssl.SSLError) -> str:
    """OpenSSL's reason code, e.g. ``TLSV1_ALERT_UNKNOWN_CA``, or ``""``.

    ``SSLError.reason`` is None when the stdlib's table predates the code (3.11
    with OpenSSL 3 misses several alerts); the message then still carries it in
    words, as in "[SSL] tlsv1 alert no application protocol (_ssl.c:1006)".
    """
    if err.reason:
        return err.reason
    match = re.search(r"\] ([a-z0-9 ]+?) \(_ssl\.c", str(err))
    return match[1].upper().replace(" ", "_") if match else ""
