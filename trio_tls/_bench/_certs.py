"""Test certificates for the benchmark: minted once per run by the runner, loaded by workers.

Minting happens once because RSA key generation alone costs more than some measurements; every
worker then loads the same PEM files into fresh ``SSLContext`` objects.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Final

import trustme

from ._spec import HOST, HOSTNAME

#: Key types offered; ECDSA (P-256 in trustme) is the default everywhere except handshake_rsa.
KEY_TYPES: Final = {"ecdsa": trustme.KeyType.ECDSA, "rsa": trustme.KeyType.RSA}


def mint(directory: Path) -> None:
    """Write ``<key>-ca.pem`` and ``<key>-server.pem`` (key + chain) for each key type."""
    for name, key_type in KEY_TYPES.items():
        ca = trustme.CA(key_type=key_type)
        leaf = ca.issue_cert(HOSTNAME, HOST, key_type=key_type)
        ca.cert_pem.write_to_path(str(directory / f"{name}-ca.pem"))
        leaf.private_key_and_cert_chain_pem.write_to_path(str(directory / f"{name}-server.pem"))


def _pin(ctx: ssl.SSLContext, tls: str) -> ssl.SSLContext:
    version = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}[tls]
    ctx.minimum_version = version
    ctx.maximum_version = version
    return ctx


def server_context(certs: str, tls: str, key: str = "ecdsa") -> ssl.SSLContext:
    """A default server context (as an application would build it), pinned to ``tls``."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(Path(certs) / f"{key}-server.pem"))
    return _pin(ctx, tls)


def client_context(certs: str, tls: str, key: str = "ecdsa") -> ssl.SSLContext:
    """A default verifying client context trusting the benchmark CA, pinned to ``tls``."""
    ctx = ssl.create_default_context(cafile=str(Path(certs) / f"{key}-ca.pem"))
    return _pin(ctx, tls)
