"""Sphinx configuration: ``make docs`` builds notes/ (these notes, plus the API reference).

The build must work offline, so there is no intersphinx: names from other packages
(ssl, trio, httpx ...) are left unlinked, and nitpicky mode checks our own references.
"""

from __future__ import annotations

import sys
from pathlib import Path

import trio_tls

sys.path.insert(0, str(Path(__file__).parent / "_ext"))

project = "trio_tls"
author = "the trio_tls authors"
release = version = trio_tls.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinxcontrib_trio",
    "trio_tls_docs",
]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", "_ext"]
root_doc = "index"

nitpicky = True
# Without inventories, references to other packages' names cannot resolve; ours must.
nitpick_ignore_regex = [
    (
        r"py:.*",
        r"(ssl|_ssl|trio|trustme|httpx|httpcore|h2|trio_websocket|socket|contextlib|enum"
        r"|collections|typing|types|os|pathlib|random)(\..*)?",
    ),
    # Type variables, which have no entry of their own.
    (r"py:class", r"trio_tls\.(\w+\.)*_\w+\.(T_Stream|S)"),
    # ...also spelled bare where autodoc reads an instance attribute's annotation.
    (r"py:class", r"T_Stream"),
    # Builtins, and typing's names as annotations spell them.
    (r"py:.*", r"(int|str|bytes|bytearray|memoryview|float|bool|object|dict|list|tuple|set)"),
    (r"py:.*", r"(None|Any|Literal|TypeAlias|NamedTuple|Exception|BaseException|ValueError)"),
    (r"py:.*", r"(TypeError|OSError|Callable|Awaitable|AsyncIterator|Iterable|Sequence|Mapping)"),
]

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# "Attributes:" sections as fields of the class: autodoc documents the attributes too.
napoleon_use_ivar = True

myst_heading_anchors = 3

html_theme = "alabaster"
html_title = f"trio_tls {release}"
html_static_path: list[str] = []

# sphinxcontrib-trio marks async context managers ("async with"), async iterators and
# the like by replacing autodoc's documenter classes, which Sphinx 9 uses only in this
# class-based mode (tests/test_docs.py checks the marks are there).
autodoc_use_legacy_class_based = True
