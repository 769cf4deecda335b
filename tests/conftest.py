"""Shared fixtures for trio_tls's own tests. Test modules never import fixtures."""

from __future__ import annotations

import pytest

from trio_tls.testing import TLSTestCA, TLSVersionName


@pytest.fixture(scope="session")
def ca() -> TLSTestCA:
    """One ECDSA CA and server certificate for the whole run (minting costs ~ms each)."""
    return TLSTestCA()


@pytest.fixture(scope="session")
def rsa_ca() -> TLSTestCA:
    return TLSTestCA(key_type="rsa")


@pytest.fixture(params=["1.2", "1.3"], ids=["tls12", "tls13"])
def version(request: pytest.FixtureRequest) -> TLSVersionName:
    """Every test that takes this runs under TLS 1.2 and under TLS 1.3."""
    value: TLSVersionName = request.param
    return value
