"""Shared fixtures for trio_tls's own tests. Test modules never import fixtures.

Certificates and TLS versions come from the plugin's public fixtures (``tls_ca``,
``tls_version`` ...), as for any user of the testing kit.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import trio_tls

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


@pytest.fixture
def patched_trio() -> Iterator[None]:
    """``trio_tls.patch_trio()`` for one test; trio's names are back afterwards."""
    trio_tls.patch_trio()
    try:
        yield
    finally:
        trio_tls.unpatch_trio()


# --- the interop suite (tests/interop): not collected by a plain `pytest` -----------------
# It needs Go, Java and GnuTLS, which `make test` does not promise; `make interop`
# installs them and passes --interop. Naming a path inside tests/interop also runs it.

INTEROP_DIR = Path(__file__).parent / "interop"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("trio_tls interop")
    group.addoption(
        "--interop",
        action="store_true",
        help="collect tests/interop: peers on Go, Java and GnuTLS (see `make interop`)",
    )
    group.addoption(
        "--interop-results",
        metavar="PATH",
        default=None,
        help="write the interop outcomes (trio_tls and trio.SSLStream) as JSON to PATH",
    )


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path == INTEROP_DIR and not _interop_requested(config):
        return True
    return None


def _interop_requested(config: pytest.Config) -> bool:
    """--interop, or a path inside tests/interop named on the command line."""
    if config.getoption("--interop"):
        return True
    here = config.invocation_params.dir
    named = ((here / arg.split("::")[0]).resolve() for arg in config.args)
    return any(path.is_relative_to(INTEROP_DIR) for path in named)


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
