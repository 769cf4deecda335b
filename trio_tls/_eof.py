"""The one decision on what a transport EOF without close_notify looks like."""

from __future__ import annotations

import ssl


def _is_eof(exc: BaseException | None) -> bool:
    """Whether ``exc`` means the peer closed the transport without close_notify.

    Python 3.10 sometimes reported this as a plain ``SSLError`` whose reason is
    ``UNEXPECTED_EOF_WHILE_READING`` instead of ``SSLEOFError`` (bpo-43794 era);
    3.11+ with OpenSSL 3 raises ``SSLEOFError``, but the text check is kept because a
    CPython built against another OpenSSL may still take the old path. This is the
    only place that makes this decision.
    """
    if isinstance(exc, ssl.SSLEOFError):
        return True
    # ``reason`` is only set on errors that came from OpenSSL itself.
    reason = getattr(exc, "reason", None)
    return isinstance(exc, ssl.SSLError) and reason == "UNEXPECTED_EOF_WHILE_READING"
