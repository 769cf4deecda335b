"""Test certificates for the benchmark: minted once per run by the runner, loaded by workers.

Minting happens once because RSA key generation alone costs more than some measurements; every
worker then loads the same PEM files into fresh ``SSLContext`` objects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import trustme

from ._peer import HOST, HOSTNAME
from ._peer import client_context as client_context
from ._peer import server_context as server_context

#: Key types offered; ECDSA (P-256 in trustme) is the default everywhere except handshake_rsa.
KEY_TYPES: Final = {"ecdsa": trustme.KeyType.ECDSA, "rsa": trustme.KeyType.RSA}


def mint(directory: Path) -> None:
    """Write ``<key>-ca.pem`` and ``<key>-server.pem`` (key + chain) for each key type."""
    for name, key_type in KEY_TYPES.items():
        ca = trustme.CA(key_type=key_type)
        leaf = ca.issue_cert(HOSTNAME, HOST, key_type=key_type)
        ca.cert_pem.write_to_path(str(directory / f"{name}-ca.pem"))
        leaf.private_key_and_cert_chain_pem.write_to_path(str(directory / f"{name}-server.pem"))
