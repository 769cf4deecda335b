"""The integrations are optional: trio_tls never imports them, and each one names its extra.

Each check runs in a fresh interpreter, where a ``sys.modules[name] = None`` shim makes
importing the third-party package fail exactly as it does when it is not installed.
"""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

import trio_tls.integrations.httpcore
import trio_tls.integrations.httpx
import trio_tls.integrations.trio_websocket

INTEGRATIONS = [
    pytest.param("trio_tls.integrations.httpcore", "httpcore", "httpx", id="httpcore"),
    pytest.param("trio_tls.integrations.httpx", "httpx", "httpx", id="httpx"),
    pytest.param(
        "trio_tls.integrations.trio_websocket", "trio_websocket", "trio-websocket", id="websocket"
    ),
]


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize(("module", "package", "extra"), INTEGRATIONS)
def test_missing_package_names_the_extra(module: str, package: str, extra: str) -> None:
    result = run_python(
        "import sys\n"
        f"sys.modules[{package!r}] = None  # what an absent package looks like to import\n"
        "try:\n"
        f"    import {module}\n"
        "except ModuleNotFoundError as exc:\n"
        "    print(exc.name)\n"
        "    print(exc)\n"
        "    print(type(exc.__cause__).__name__)\n"
    )
    assert result.returncode == 0, result.stderr
    name, message, cause = result.stdout.splitlines()
    assert name == package
    assert message == (
        f"{module} needs {package}, which is not installed: pip install 'trio_tls[{extra}]'"
    )
    assert cause == "ModuleNotFoundError"  # the original error stays chained


def test_trio_tls_imports_no_integration_package() -> None:
    """The base install is trio-only: importing trio_tls loads none of the extras."""
    result = run_python(
        "import sys, trio_tls, trio_tls.testing, trio_tls.integrations\n"
        "print(sorted(m for m in ('httpx', 'httpcore', 'h2', 'trio_websocket', 'wsproto')"
        " if m in sys.modules))\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "module",
    [
        trio_tls.integrations.httpcore,
        trio_tls.integrations.httpx,
        trio_tls.integrations.trio_websocket,
    ],
    ids=lambda m: m.__name__.rsplit(".", 1)[1],
)
def test_public_names(module: object) -> None:
    names: list[str] = module.__all__  # type: ignore[attr-defined]
    assert names and len(set(names)) == len(names)
    for name in names:
        value = getattr(module, name)
        assert value is not None
        if inspect.isclass(value) or inspect.isfunction(value):
            # Defined here, not a third-party name re-exported by accident.
            assert value.__module__ == module.__name__  # type: ignore[attr-defined]
