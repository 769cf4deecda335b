"""Fixtures for the interop suite: the compiled peers, their files, the outcome record."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from trio_tls.testing import TLSTestCA

from .processes import Builds, PeerFiles, build_peers, write_peer_files
from .support import Outcome, write_results


@pytest.fixture(scope="session")
def peer_builds(tmp_path_factory: pytest.TempPathFactory) -> Builds:
    """The Go and Java peers, compiled once per session into a temporary directory."""
    return build_peers(tmp_path_factory.mktemp("peers"))


@pytest.fixture(scope="session")
def stranger_ca() -> TLSTestCA:
    """A second CA, whose client certificate every server must refuse."""
    return TLSTestCA()


@pytest.fixture(scope="session")
def peer_files(
    tls_ca: TLSTestCA, stranger_ca: TLSTestCA, tmp_path_factory: pytest.TempPathFactory
) -> PeerFiles:
    """``tls_ca``'s certificates and keys as files, for the peers."""
    return write_peer_files(tls_ca, stranger_ca, tmp_path_factory.mktemp("pems"))


@pytest.fixture(scope="session")
def interop_outcomes(pytestconfig: pytest.Config) -> Iterator[list[Outcome]]:
    """Every run's outcome; written to ``--interop-results`` when the session ends."""
    outcomes: list[Outcome] = []
    yield outcomes
    path = pytestconfig.getoption("--interop-results")
    if path is not None:
        write_results(outcomes, Path(path))
