"""The HTML reference (``make docs``): it builds with warnings as errors, offline, and
documents every public name, fixture, marker and command.

The reference pages pick names up from ``__all__`` (autodoc, and notes/_ext for the
constants and type aliases autodoc skips), so a new public name needs no docs edit;
these tests are what notice if one is left out anyway.
"""

from __future__ import annotations

import ast
import html
import importlib
import pkgutil
import re
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

import trio_tls.integrations
from trio_tls import _pytest_plugin
from trio_tls._cli import _COMMANDS

ROOT = Path(__file__).parent.parent

#: Every public module: the package, the testing kit and each integration.
PUBLIC_MODULES = [
    "trio_tls",
    "trio_tls.testing",
    *(
        f"trio_tls.integrations.{info.name}"
        for info in pkgutil.iter_modules(trio_tls.integrations.__path__)
        if not info.name.startswith("_")
    ),
]

# Building runs pytest and the CLI in subprocesses for their help texts: seconds alone,
# much longer on a loaded machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("docs")
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-E", "-q", "-b", "html"]
    done = subprocess.run(
        [*command, str(ROOT / "notes"), str(out)], capture_output=True, text=True, timeout=540
    )
    assert done.returncode == 0, done.stderr
    return out


def _inventory(path: Path) -> set[str]:
    """The object names in a Sphinx ``objects.inv`` (four header lines, then zlib)."""
    body = zlib.decompress(path.read_bytes().split(b"\n", 4)[4]).decode()
    return {line.split(" ", 1)[0] for line in body.splitlines()}


def _text(page: Path) -> str:
    # Line breaks where blocks end, as a browser shows them; inline markup just goes.
    text = re.sub(r"</(dt|dd|p|div|pre|li|h\d)>", "\n", page.read_text())
    return html.unescape(re.sub(r"<[^>]+>", "", text))


def test_every_public_name_has_an_entry(built: Path) -> None:
    documented = _inventory(built / "objects.inv")
    assert len(PUBLIC_MODULES) >= 5  # the integrations were found
    missing = [
        f"{module}.{name}"
        for module in PUBLIC_MODULES
        for name in importlib.import_module(module).__all__
        if f"{module}.{name}" not in documented
    ]
    assert missing == []
    assert {"trio_tls.SSLStream.do_handshake", "trio_tls.SSLStream.getpeercert"} <= documented


def test_async_methods_and_context_managers_read_the_trio_way(built: Path) -> None:
    """sphinxcontrib-trio: ``await`` before coroutines, ``async with`` before managers."""
    testing = _text(built / "reference" / "testing.html")
    assert re.search(r"async with\s*trio_tls\.testing\.open_tls_test_server\(", testing)
    reference = _text(built / "reference" / "trio_tls.html")
    assert re.search(r"await\s*do_handshake\(\)", reference)
    assert re.search(r"await\s*trio_tls\.open_ssl_over_tcp_stream\(", reference)


def _fixture_names() -> list[str]:
    """The plugin's fixtures, read from its source: every ``@pytest.fixture`` function."""
    tree = ast.parse(Path(_pytest_plugin.__file__).read_text())
    return [
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and any("fixture" in ast.unparse(d) for d in node.decorator_list)
    ]


def test_fixtures_markers_and_options_are_listed(built: Path) -> None:
    page = _text(built / "reference" / "pytest-plugin.html")
    fixtures = _fixture_names()
    assert "tls_stream_pair" in fixtures
    for name in fixtures:
        assert re.search(rf"^{name}( \[\w+ scope\])?$", page, re.MULTILINE), name
    for line in _pytest_plugin._MARKERS:
        assert f"@pytest.mark.{line.split(':')[0]}" in page
    assert "--tls-chaos-seed=SEED" in page
    assert "tls_deadline (string)" in page


def test_every_command_has_its_help(built: Path) -> None:
    page = _text(built / "reference" / "cli.html")
    assert "usage: trio-tls [-h] [--version] COMMAND ..." in page
    for command in [*_COMMANDS, "bench"]:
        assert f"usage: trio-tls {command} [-h]" in page, command
