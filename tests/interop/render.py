"""Render the interop outcomes of a real run as notes/interop.md.

Usage: python -m tests.interop.render build/interop.json notes/interop.md
(``make interop`` writes build/interop.json; ``make interop-notes`` runs this.)
"""

from __future__ import annotations

import sys
from pathlib import Path

from .support import render

COMMAND = "make interop && make interop-notes"


def main(argv: list[str]) -> int:
    """Read the results file ``argv[0]``, write the markdown to ``argv[1]``."""
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    Path(argv[1]).write_text(render(Path(argv[0]), COMMAND))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
