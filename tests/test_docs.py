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
import inspect
import itertools
import pkgutil
import re
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import pytest
import trio

import trio_tls.integrations
import trio_tls.testing
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
# much longer on a loaded machine. For the tests that use the build.
slow_build = pytest.mark.timeout(600)


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


@pytest.mark.slow
@slow_build
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


@pytest.mark.slow
@slow_build
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


@pytest.mark.slow
@slow_build
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


@pytest.mark.slow
@slow_build
def test_every_command_has_its_help(built: Path) -> None:
    page = _text(built / "reference" / "cli.html")
    assert "usage: trio-tls [-h] [--version] COMMAND ..." in page
    for command in [*_COMMANDS, "bench"]:
        assert f"usage: trio-tls {command} [-h]" in page, command


# -- the examples in docstrings, which the reference shows -----------------------------------

#: Examples that cannot run here as written, and why.
NOT_RUNNABLE = {
    "trio_tls.select_context_by_sni": "serves port 443 until cancelled",
}


def _docstring_examples() -> dict[str, str]:
    """``{public name: code}`` for every ``Example::`` block in a public docstring."""
    found = {}
    for module in PUBLIC_MODULES:
        for name in importlib.import_module(module).__all__:
            doc = inspect.getdoc(getattr(importlib.import_module(module), name)) or ""
            if "Example::" in doc:
                block = doc.split("Example::\n\n", 1)[1]
                lines = itertools.takewhile(
                    lambda x: not x or x.startswith("    "), block.split("\n")
                )
                found[f"{module}.{name}"] = textwrap.dedent("\n".join(lines))
    return found


EXAMPLES = _docstring_examples()


def test_every_docstring_example_is_run_or_excused() -> None:
    assert len(EXAMPLES) >= 4
    assert set(NOT_RUNNABLE) <= set(EXAMPLES)


@pytest.mark.parametrize("name", sorted(set(EXAMPLES) - set(NOT_RUNNABLE)))
async def test_docstring_example_runs(name: str) -> None:
    """Each runs as the body of an async function, given a ``ca`` and the kit's names."""
    namespace: dict[str, object] = {"trio": trio, "trio_tls": trio_tls}
    namespace.update((n, getattr(trio_tls.testing, n)) for n in trio_tls.testing.__all__)
    namespace["ca"] = trio_tls.testing.TLSTestCA()
    exec("async def example():\n" + textwrap.indent(EXAMPLES[name], "    "), namespace)
    example = namespace["example"]
    assert callable(example)
    with trio.fail_after(30):
        await example()
