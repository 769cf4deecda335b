"""The entry points: help, the console script, exit statuses, forwarding to bench."""

from __future__ import annotations

import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

from trio_tls import _cli

from ..helpers.cli import (
    RUN_TIMEOUT,
    run_cli,
)


@pytest.mark.parametrize("command", [[], ["demo"], ["connect"], ["serve"]])
def test_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        _cli.main([*command, "--help"])
    assert info.value.code == 0
    usage = capsys.readouterr().out
    assert usage.startswith(f"usage: {' '.join(['trio-tls', *command])}")
    if not command:
        for name in ("demo", "connect", "serve", "bench"):
            assert re.search(rf"^\s+{name}\s+\S", usage, re.MULTILINE), name


def test_console_script_and_module_agree() -> None:
    script = Path(sys.executable).parent / "trio-tls"
    installed = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, timeout=RUN_TIMEOUT
    )
    assert installed.returncode == 0
    assert installed.stdout == run_cli("--version").stdout
    assert installed.stdout.startswith("trio_tls ")


def test_bench_forwards_its_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []

    def main(argv: list[str]) -> int:
        seen.append(argv)
        return 7

    bench = types.ModuleType("trio_tls._bench")
    bench.main = main  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "trio_tls._bench", bench)
    assert _cli.main(["bench", "--quick", "--json", "out.json"]) == 7
    assert _cli.main(["bench", "--help"]) == 7
    assert seen == [["--quick", "--json", "out.json"], ["--help"]]


def test_bench_missing(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # None in sys.modules makes the import fail exactly as an absent module does.
    monkeypatch.setitem(sys.modules, "trio_tls._bench", None)
    assert _cli.main(["bench", "--quick"]) == 2
    assert "no benchmark module (trio_tls._bench)" in capsys.readouterr().err
