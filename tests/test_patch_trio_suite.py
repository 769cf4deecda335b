"""trio's own SSL test suite, run against trio_tls through ``patch_trio()``.

The two test modules are copied from the installed trio at test time (the project
keeps no copy of trio's code) into a fresh pytest run, whose conftest calls
``trio_tls.patch_trio()`` before they are imported. Their relative imports are made
absolute; the names trio_tls replaces (``SSLStream``, ``SSLListener`` and the three
TCP helpers) are imported from the patched ``trio`` module, everything else (private
helpers such as ``_is_eof``, trio's test utilities) from where trio keeps it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import trio

pytestmark = pytest.mark.slow

#: The modules copied, in trio/_tests/ of the installed trio.
SUITE = ("test_ssl", "test_highlevel_ssl_helpers")

#: trio's modules that define the names patch_trio() replaces.
PATCHED_MODULES = ("trio._ssl", "trio._highlevel_ssl_helpers")
PATCHED_NAMES = frozenset(
    {
        "SSLStream",
        "SSLListener",
        "open_ssl_over_tcp_stream",
        "open_ssl_over_tcp_listeners",
        "serve_ssl_over_tcp",
    }
)

CONFTEST = """
import warnings

import pytest
import trio

import trio_tls

# Before pytest imports the test modules. An error, not a warning, if anything
# already imported holds trio's originals: the run would not test trio_tls.
with warnings.catch_warnings():
    warnings.simplefilter("error")
    trio_tls.patch_trio()

pytest_plugins = ["trio._tests.pytest_plugin"]


@pytest.fixture(autouse=True)
def still_patched():
    assert trio.SSLStream is trio_tls.SSLStream
    yield
    assert trio.SSLStream is trio_tls.SSLStream
"""

#: Proves that the copied modules' names are trio_tls's, so that their passing tests
#: exercised trio_tls and not trio.
CARRIER = """
import trio_tls

import test_highlevel_ssl_helpers
import test_ssl


def test_the_suite_runs_on_trio_tls():
    assert test_ssl.SSLStream is trio_tls.SSLStream
    assert test_ssl.SSLListener is trio_tls.SSLListener
    helpers = test_highlevel_ssl_helpers
    assert helpers.open_ssl_over_tcp_stream is trio_tls.open_ssl_over_tcp_stream
    assert helpers.open_ssl_over_tcp_listeners is trio_tls.open_ssl_over_tcp_listeners
    assert helpers.serve_ssl_over_tcp is trio_tls.serve_ssl_over_tcp
"""


def absolute_import(node: ast.ImportFrom, siblings: tuple[str, ...]) -> list[str]:
    """The absolute import statements that replace one relative import."""
    if node.level == 1 and node.module in siblings:
        base = node.module
    elif node.level == 1:
        base = "trio._tests" + (f".{node.module}" if node.module else "")
    else:
        assert node.level == 2, ast.unparse(node)
        base = "trio" + (f".{node.module}" if node.module else "")
    patched = [a for a in node.names if base in PATCHED_MODULES and a.name in PATCHED_NAMES]
    kept = [a for a in node.names if a not in patched]
    statements = []
    if patched:
        statements.append(ast.unparse(ast.ImportFrom("trio", patched, 0)))
    if kept:
        statements.append(ast.unparse(ast.ImportFrom(base, kept, 0)))
    return statements


def without_relative_imports(source: str, siblings: tuple[str, ...]) -> str:
    """``source`` with each relative import rewritten by :func:`absolute_import`."""
    lines = source.splitlines()
    relative = [
        node
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ImportFrom) and node.level > 0
    ]
    assert relative, "trio's test modules no longer use relative imports: revisit this rewrite"
    for node in sorted(relative, key=lambda n: n.lineno, reverse=True):
        assert node.end_lineno is not None
        indent = " " * node.col_offset
        replacement = [indent + s for s in absolute_import(node, siblings)]
        lines[node.lineno - 1 : node.end_lineno] = replacement
    return "\n".join(lines) + "\n"


def trio_count(pytester: pytest.Pytester, installed: Path) -> int:
    """How many tests trio's own files hold, collected where trio installed them, unpatched."""
    result = pytester.runpytest_subprocess(
        "--collect-only",
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "trio._tests.pytest_plugin",
        "--run-slow",
        *(str(installed / f"{name}.py") for name in SUITE),
        timeout=120,
    )
    found = re.search(r"^(\d+) tests? collected", result.stdout.str(), re.MULTILINE)
    assert result.ret == 0 and found, result.stdout.str()[-3000:]
    return int(found[1])


def test_trio_ssl_suite_passes_on_trio_tls(pytester: pytest.Pytester) -> None:
    installed = Path(trio.__file__).parent / "_tests"
    # Before the copies and their patching conftest exist in the run's directory.
    expected = trio_count(pytester, installed)
    for name in SUITE:
        source = (installed / f"{name}.py").read_text(encoding="utf-8")
        pytester.makepyfile(**{name: without_relative_imports(source, SUITE)})
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_carrier=CARRIER)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--run-slow", "-q", "-rfEs", timeout=240
    )
    outcomes = result.parseoutcomes()
    # Every one of trio's tests passed (plus the carrier), nothing skipped, xfailed or
    # lost to the rewrite: a test that went missing changes the count.
    assert outcomes == {"passed": expected + 1}, result.stdout.str()[-3000:]
