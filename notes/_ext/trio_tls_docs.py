"""Sphinx directives that put the real tools' own help into the reference.

- ``trio-tls-cli``: ``trio-tls --help`` and each command's ``--help``, the commands
  taken from the real argparse parser, so a new one appears without a docs edit.
- ``trio-tls-pytest-plugin``: the plugin's fixtures, markers and options, as
  ``pytest --fixtures``, ``--markers`` and ``--help`` print them.
- ``trio-tls-data MODULE``: the constants and type aliases in ``MODULE.__all__``.
  autodoc skips them: a re-exported value carries no trace of the module that
  defines it, so neither its ``#:`` comment nor its source is found. This directive
  follows the package's ``from ._x import NAME as NAME`` lines to them.

Both run the commands in a subprocess, exactly as a user would, with a fixed
terminal width so that the wrapping does not depend on the machine building the
docs. Anything missing from that output fails the build instead of leaving an
empty section.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import os
import re
import subprocess
import sys
import tempfile
import textwrap
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.errors import ExtensionError
from sphinx.pycode import ModuleAnalyzer
from sphinx.util.docutils import SphinxDirective

_COLUMNS = "88"


def _run(*argv: str) -> str:
    env = {**os.environ, "COLUMNS": _COLUMNS, "PYTHONWARNINGS": "ignore"}
    env.pop("PYTEST_ADDOPTS", None)
    with tempfile.TemporaryDirectory() as empty:  # no conftest or ini of ours applies
        done = subprocess.run(
            [sys.executable, *argv], capture_output=True, text=True, env=env, cwd=empty, timeout=120
        )
    if done.returncode != 0:
        raise ExtensionError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr}")
    return done.stdout


def _commands() -> list[str]:
    from trio_tls._cli import build_parser

    for action in build_parser()._actions:  # argparse has no public accessor for these
        if isinstance(action, argparse._SubParsersAction):
            return list(action.choices)
    raise ExtensionError("trio-tls has no subcommands?")


class _HelpDirective(SphinxDirective):
    def _parsed(self, rst: str) -> list[nodes.Node]:
        """Parse *rst* as if it were written here."""
        node = nodes.container()
        self.state.nested_parse(StringList(rst.splitlines(), self.get_source_info()[0]), 0, node)
        return list(node.children)

    @staticmethod
    def _block(text: str) -> nodes.literal_block:
        block = nodes.literal_block(text, text)
        block["language"] = "text"
        return block


class CliHelp(_HelpDirective):
    """``trio-tls --help``, then each command's ``--help``, each under a rubric."""

    def run(self) -> list[nodes.Node]:
        out: list[nodes.Node] = [self._block(_run("-m", "trio_tls", "--help"))]
        for command in _commands():
            rubric = nodes.rubric("", "", nodes.literal(text=f"trio-tls {command}"))
            rubric["ids"].append(f"cli-{command}")
            out += [rubric, self._block(_run("-m", "trio_tls", command, "--help"))]
        return out


def _section(text: str, start: str) -> list[str]:
    """The lines after the line matching *start*, up to the next ``---- x ----`` header."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if re.fullmatch(start, line):
            rest = lines[index + 1 :]
            end = next(
                (i for i, x in enumerate(rest) if re.fullmatch(r"[-=]{3,} .* [-=]{3,}", x)), None
            )
            return rest[:end]
    raise ExtensionError(f"no line matching {start!r} in pytest's output")


def _entries(lines: list[str], head: str) -> list[tuple[str, str]]:
    """``(first line, the indented text below it)`` for each entry in *lines*.

    An entry starts at a line matching *head*; any other line indented less than
    three spaces ends it.
    """
    found: list[tuple[str, list[str]]] = []
    body: list[str] | None = None
    for line in lines:
        if re.match(head, line):
            body = []
            found.append((line.strip(), body))
        elif body is not None and (not line.strip() or line.startswith("   ")):
            body.append(line)
        else:
            body = None
    return [(term, textwrap.dedent("\n".join(body)).strip()) for term, body in found]


class PytestPluginHelp(_HelpDirective):
    """The plugin's fixtures, markers, command-line and ini options, from pytest itself."""

    def run(self) -> list[nodes.Node]:
        fixtures = _section(
            _run("-m", "pytest", "-p", "no:cacheprovider", "--fixtures"),
            r"-+ fixtures defined from trio_tls\._pytest_plugin -+",
        )
        markers = [
            line
            for line in _run("-m", "pytest", "-p", "no:cacheprovider", "--markers").splitlines()
            if line.startswith("@pytest.mark.tls_")
        ]
        usage = _run("-m", "pytest", "-p", "no:cacheprovider", "--help")
        options = _entries(_after(usage, "trio_tls testing kit:"), r"  --")
        inis = [
            e
            for e in _entries(_after(usage, r"\[pytest\] .*:"), r"  \w")
            if e[0].startswith("tls_")
        ]
        if not (fixtures and markers and options and inis):
            raise ExtensionError(
                "pytest did not list the trio_tls plugin's fixtures/markers/options"
            )
        rst: list[str] = [".. rubric:: Fixtures", ""]
        for term, body in _entries(fixtures, r"\w"):
            name = term.split(" -- ")[0]
            rst += [f"``{name}``", textwrap.indent(body or "(no description)", "   "), ""]
        rst += [".. rubric:: Markers", ""]
        for line in markers:
            signature, _, text = line.partition(": ")
            rst += [f"``{signature}``", textwrap.indent(text, "   "), ""]
        rst += [".. rubric:: Command-line and ini options", ""]
        for term, body in options + inis:
            rst += [f"``{term}``", textwrap.indent(body, "   "), ""]
        return self._parsed("\n".join(rst))


def _after(text: str, header: str) -> list[str]:
    """The block of lines after the line matching *header*, up to a blank line."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if re.fullmatch(header, line):
            block = lines[index + 1 :]
            while block and not block[0].strip():
                del block[0]
            end = next((i for i, x in enumerate(block) if not x.strip()), len(block))
            return block[:end]
    raise ExtensionError(f"pytest --help has no {header!r} section")


def _origins(module: str) -> dict[str, tuple[str, str]]:
    """``{exported name: (defining module, name there)}`` from *module*'s imports."""
    tree = ast.parse(inspect.getsource(importlib.import_module(module)))
    package = module if module.count(".") == 0 or _is_package(module) else module.rpartition(".")[0]
    found = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            source = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
            for alias in node.names:
                found[alias.asname or alias.name] = (source, alias.name)
    return found


def _is_package(module: str) -> bool:
    return hasattr(importlib.import_module(module), "__path__")


def _assigned(module: str, name: str) -> str:
    """The source text of the value assigned to *name* at the top of *module*."""
    source = inspect.getsource(importlib.import_module(module))
    for node in ast.parse(source).body:
        target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
        if isinstance(target, ast.Name) and target.id == name and node.value is not None:  # type: ignore[attr-defined]
            return " ".join((ast.get_source_segment(source, node.value) or "").split())  # type: ignore[attr-defined]
    raise ExtensionError(f"{module} does not assign {name}")


class DataHelp(_HelpDirective):
    """``py:data`` entries for the values in a module's ``__all__`` (not classes or functions)."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        module = self.arguments[0]
        exported = importlib.import_module(module)
        origins = _origins(module)
        rst: list[str] = []
        for name in exported.__all__:
            value = getattr(exported, name)
            if inspect.isclass(value) or inspect.isroutine(value) or inspect.ismodule(value):
                continue  # autodoc's
            if name not in origins:
                continue  # defined in *module* itself: autodoc finds its #: comment
            source, original = origins[name]
            comment: list[str] | None
            if name == "__version__":  # a release's number, whatever code computes it
                comment, shown = (
                    [f"The version of {module}, as in its package metadata."],
                    repr(value),
                )
            else:
                comment = ModuleAnalyzer.for_module(source).find_attr_docs().get(("", original))
                shown = _assigned(source, original)
            if not comment:
                raise ExtensionError(
                    f"{module}.{name} needs a #: comment where {source} defines it"
                )
            rst += [f".. py:data:: {name}", f"   :module: {module}", f"   :value: {shown}", ""]
            rst += [f"   {line}" if line else "" for line in comment] + [""]
        return self._parsed("\n".join(rst))


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("trio-tls-data", DataHelp)
    app.add_directive("trio-tls-cli", CliHelp)
    app.add_directive("trio-tls-pytest-plugin", PytestPluginHelp)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
