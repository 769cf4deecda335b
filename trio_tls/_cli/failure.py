"""The command line's failures: its own error type, and why a certificate was refused.

The one-line explanation of any failed connection is :func:`trio_tls._failure.explain`,
shared with the server helper's log and re-exported here for the commands.
"""

from __future__ import annotations

import datetime
import ssl
from collections.abc import Sequence

from .._failure import causes as causes
from .._failure import explain as explain
from .._failure import ssl_reason as ssl_reason
from .._failure import verification_error as verification_error
from . import output as out
from .certs import CertInfo

# OpenSSL X509_V_ERR_* codes (include/openssl/x509_vfy.h); stable across 1.1 and 3.x.
_UNABLE_TO_GET_ISSUER_CERT = 2
_CERT_NOT_YET_VALID = 9
_CERT_HAS_EXPIRED = 10
_DEPTH_ZERO_SELF_SIGNED_CERT = 18
_SELF_SIGNED_CERT_IN_CHAIN = 19
_UNABLE_TO_GET_ISSUER_CERT_LOCALLY = 20
_UNABLE_TO_VERIFY_LEAF_SIGNATURE = 21
_HOSTNAME_MISMATCH = 62
_IP_ADDRESS_MISMATCH = 64

_UNTRUSTED_ISSUER = {
    _UNABLE_TO_GET_ISSUER_CERT,
    _UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
    _UNABLE_TO_VERIFY_LEAF_SIGNATURE,
}


class Failure(Exception):
    """A command failed for a reason the user caused or can fix; ``str()`` says it."""


class UsageError(Exception):
    """The command line asks for something that cannot be done (exit status 2).

    ``str()`` names the option and what is wrong with its value, as argparse does
    for the errors it can see itself.
    """


def explain_verification(
    err: ssl.SSLCertVerificationError,
    chain: Sequence[CertInfo],
    expected_name: str,
    now: datetime.datetime,
) -> str:
    """Why the server's certificate was refused, from its own dates and names.

    *chain* is what an unverified second look at the server returned (may be
    only the leaf, or empty if that look failed too); the reason is computed
    from it rather than trusted from OpenSSL's text, which says "certificate
    has expired" but not since when or which certificate.
    """
    code = err.verify_code
    if code == _CERT_HAS_EXPIRED:
        return _expired(chain, now) or "a certificate in the chain has expired"
    if code == _CERT_NOT_YET_VALID:
        return _not_yet_valid(chain, now) or "a certificate in the chain is not valid yet"
    if code in (_HOSTNAME_MISMATCH, _IP_ADDRESS_MISMATCH) and chain:
        kind = "hostname" if code == _HOSTNAME_MISMATCH else "IP address"
        names = _listing(chain[0].names) or "no name at all"
        return f"{kind} mismatch: certificate is for {names}, not {expected_name}"
    if code == _DEPTH_ZERO_SELF_SIGNED_CERT:
        return "untrusted certificate: it is self-signed and not in the trust store"
    if code == _SELF_SIGNED_CERT_IN_CHAIN:
        return "untrusted certificate: the chain ends in a root CA that is not trusted"
    if code in _UNTRUSTED_ISSUER:
        issuer = f'"{chain[-1].issuer}"' if chain else "its issuer"
        return (
            f"untrusted certificate: issued by {issuer}, a CA that is not trusted"
            " (or an intermediate the server did not send)"
        )
    return f"certificate verification failed: {err.verify_message}"


def _expired(chain: Sequence[CertInfo], now: datetime.datetime) -> str | None:
    for position, cert in enumerate(chain):
        if (ago := cert.expired_for(now)) is not None:
            which = "certificate" if position == 0 else f"CA certificate {cert.subject!r}"
            return f"{which} has expired {out.span(ago)} ago (on {out.moment(cert.not_after)})"
    return None


def _not_yet_valid(chain: Sequence[CertInfo], now: datetime.datetime) -> str | None:
    for position, cert in enumerate(chain):
        if (ahead := cert.not_yet_valid_for(now)) is not None:
            which = "certificate" if position == 0 else f"CA certificate {cert.subject!r}"
            return (
                f"{which} is not valid yet: it starts in {out.span(ahead)}"
                f" (on {out.moment(cert.not_before)})"
            )
    return None


def _listing(names: Sequence[str]) -> str:
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]
