"""Shared fixtures for trio_tls's own tests. Test modules never import fixtures.

Certificates and TLS versions come from the plugin's public fixtures (``tls_ca``,
``tls_version`` ...), as for any user of the testing kit.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .helpers.fds import open_fds
from .helpers.processes import child_processes, kill


@pytest.fixture
def no_fd_leak() -> Iterator[None]:
    """Every socket a test opens (ours, the peer's, listeners) is closed by its end.

    Use it for a whole module with ``pytestmark = pytest.mark.usefixtures("no_fd_leak")``.
    """
    before = open_fds()
    yield
    assert open_fds() == before, "file descriptors leaked"


@pytest.fixture(autouse=True)
def no_process_left_behind() -> Iterator[None]:
    """No test leaves a child process behind: a tool, the CLI or an inner pytest session
    still running (or never reaped) after the test and all its fixtures have ended.

    Autouse fixtures are set up first and torn down last, so the test's own clean-up
    has run by the time this checks.
    """
    before = child_processes()
    yield
    left = child_processes() - before
    kill(left)
    assert not left, f"the test left child processes behind: {sorted(left)}"
