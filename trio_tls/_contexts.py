"""Context policy that every part of trio_tls applies the same way, in one place.

- :func:`keep_truncation_detectable`: with ``OP_IGNORE_UNEXPECTED_EOF`` (a default in
  some OpenSSL builds and Python versions), OpenSSL reports a peer that hangs up
  without close_notify as a clean end of stream, so a truncation attack reads as EOF
  and ``https_compatible`` loses its meaning. trio clears it too.
- :func:`pin_version`: restrict a context to one TLS version, named as a string
  ("1.2" or "1.3") wherever a person picks it: the testing kit, the CLI, the bench.
"""

from __future__ import annotations

import ssl
from typing import Final, Literal

#: A TLS version as trio_tls's APIs and command line name it.
TLSVersionName = Literal["1.2", "1.3"]
#: Every version trio_tls supports, oldest first.
TLS_VERSIONS: Final[tuple[TLSVersionName, ...]] = ("1.2", "1.3")

_VERSIONS: Final[dict[str, ssl.TLSVersion]] = {
    "1.2": ssl.TLSVersion.TLSv1_2,
    "1.3": ssl.TLSVersion.TLSv1_3,
}


def pin_version(context: ssl.SSLContext, version: TLSVersionName | None) -> ssl.SSLContext:
    """Restrict ``context`` to exactly one TLS version ("1.2" or "1.3"); None leaves it.

    Returns ``context`` itself, so calls can be chained.
    """
    if version is not None:
        try:
            pinned = _VERSIONS[version]
        except KeyError:
            raise ValueError(f"version must be '1.2', '1.3' or None, not {version!r}") from None
        context.minimum_version = pinned
        context.maximum_version = pinned
    return context


def keep_truncation_detectable(context: ssl.SSLContext) -> ssl.SSLContext:
    """Clear ``OP_IGNORE_UNEXPECTED_EOF`` (see the module docstring); returns ``context``."""
    context.options &= ~getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
    return context
