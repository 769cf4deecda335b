"""Fixtures for the command-line tests: certificate files, good and bad.

Files, not contexts: the CLI and the tools it is tested against (openssl, curl) read paths.
Every certificate comes from the session's CA (the ``tls_ca`` fixture).
"""

from __future__ import annotations

import ssl

import pytest
from cryptography.hazmat.primitives import serialization

from trio_tls.testing import TLSTestCA

from ..helpers.cli import Files


@pytest.fixture(scope="session")
def files(tls_ca: TLSTestCA, tmp_path_factory: pytest.TempPathFactory) -> Files:
    issuer = tls_ca.ca
    root = tmp_path_factory.mktemp("pem")
    client = issuer.issue_cert("client@example.org")
    client_der = ssl.PEM_cert_to_DER_cert(client.cert_chain_pems[0].bytes().decode())
    result = Files(root / "ca.pem", root / "server.pem", root / "client.pem", client_der)
    issuer.cert_pem.write_to_path(str(result.ca))
    server = issuer.issue_cert("localhost", "127.0.0.1")
    server.private_key_and_cert_chain_pem.write_to_path(str(result.server))
    client.private_key_and_cert_chain_pem.write_to_path(str(result.client))
    return result


@pytest.fixture(scope="session")
def pems(tls_ca: TLSTestCA, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Files that are wrong in one way each, by name."""
    issuer = tls_ca.ca
    root = tmp_path_factory.mktemp("bad-pem")
    leaf = issuer.issue_cert("client@example.org")
    other = issuer.issue_cert("other@example.org")
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), password=None)
    contents = {
        "cert_only": leaf.cert_chain_pems[0].bytes(),
        "key_only": leaf.private_key_pem.bytes(),
        "other_key": other.private_key_pem.bytes(),
        "encrypted_key": key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        ),
        "der": ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode()),
        "notes": b"not a certificate\n",
    }
    paths = {}
    for name, data in contents.items():
        (root / f"{name}.pem").write_bytes(data)
        paths[name] = str(root / f"{name}.pem")
    paths["missing"] = str(root / "missing.pem")
    paths["directory"] = str(root)
    return paths
