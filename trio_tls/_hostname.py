"""Host names as ``SSLObject`` takes them: IDNA A-labels, the way trio encodes them."""

from __future__ import annotations

import idna


def encode_hostname(hostname: str | bytes | None) -> str | None:
    """IDNA 2008 (UTS 46) like trio, which avoids the stdlib's IDNA 2003 (bpo-17305)."""
    if hostname is None:
        return None
    if isinstance(hostname, bytes):
        return hostname.decode("ascii")
    try:
        hostname.encode("ascii")
    except UnicodeEncodeError:
        return idna.encode(hostname, uts46=True).decode("ascii")
    return hostname
