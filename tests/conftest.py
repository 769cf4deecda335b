"""Shared fixtures for trio_tls's own tests. Test modules never import fixtures.

Certificates and TLS versions come from the plugin's public fixtures (``tls_ca``,
``tls_version`` ...), as for any user of the testing kit.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import trio_tls

from .helpers.fds import open_fds


@pytest.fixture
def no_fd_leak() -> Iterator[None]:
    """Every socket a test opens (ours, the peer's, listeners) is closed by its end.

    Use it for a whole module with ``pytestmark = pytest.mark.usefixtures("no_fd_leak")``.
    """
    before = open_fds()
    yield
    assert open_fds() == before, "file descriptors leaked"


@pytest.fixture
def patched_trio() -> Iterator[None]:
    """``trio_tls.patch_trio()`` for one test; trio's names are back afterwards."""
    trio_tls.patch_trio()
    try:
        yield
    finally:
        trio_tls.unpatch_trio()
