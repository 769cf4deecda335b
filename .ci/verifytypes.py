"""Fail unless ``pyright --verifytypes trio_tls`` finds the public API type-complete and documented.

pyright's exit status covers only the types: a public function or class without a
docstring is counted in its report but still exits 0. So this runs it with
``--outputjson`` and fails on either, listing each symbol with its file and line.

Usage: python verifytypes.py PYRIGHT [PACKAGE]. Run it with the interpreter whose
site-packages hold a regular (non-editable) install of the package, from outside
the source checkout, with that interpreter's bin directory first on PATH (pyright
looks for ``python`` there).
"""

from __future__ import annotations

import json
import subprocess
import sys


def main(pyright: str, package: str = "trio_tls") -> int:
    command = [pyright, "--verifytypes", package, "--ignoreexternal", "--outputjson"]
    report = json.loads(subprocess.run(command, capture_output=True, text=True).stdout)
    completeness = report["typeCompleteness"]
    print(f"{package} from {completeness['packageRootDirectory']}")
    problems = 0
    for symbol in completeness["symbols"]:
        for diagnostic in symbol["diagnostics"]:
            line = diagnostic.get("range", {}).get("start", {}).get("line", -1) + 1
            print(f"{diagnostic['file']}:{line}: {symbol['name']}: {diagnostic['message']}")
            problems += 1
    undocumented = (
        completeness["missingFunctionDocStringCount"] + completeness["missingClassDocStringCount"]
    )
    score = completeness["completenessScore"]
    print(
        f"type completeness {score:.1%}, {undocumented} public functions or classes "
        f"without a docstring, {problems} diagnostics"
    )
    return 0 if score == 1 and undocumented == 0 and problems == 0 else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
