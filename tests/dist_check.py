"""Check a built release the way a packager takes it: ``python tests/dist_check.py dist``.

``make dist-check`` runs it after ``make dist``:

1. the directory holds one sdist and one wheel, of the version in ``trio_tls/_version.py``;
2. both carry LICENSE-MIT and LICENSE-APACHE, byte for byte the repository's, and the
   metadata names them and the license expression; the wheel carries ``py.typed`` and
   nothing but the ``trio_tls`` package; the sdist carries the whole test suite;
3. the wheel, installed (not editable) with its ``test`` extra into a fresh venv, runs
   ``python -m trio_tls demo`` and ``trio-tls --version``, and passes
   ``tests/test_as_installed.py`` copied alone into an empty directory, so nothing from
   this checkout can be imported in place of the installed package.
"""

from __future__ import annotations

import email.message
import email.parser
import os
import runpy
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LICENSES = ("LICENSE-MIT", "LICENSE-APACHE")
#: Bounds for a loaded 2-core machine. pip downloads (from the cache, usually) the
#: test extra's dependencies; the rest takes seconds.
INSTALL_TIMEOUT = 600
RUN_TIMEOUT = 300


class DistError(Exception):
    """What is wrong with the release, in words."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise DistError(message)


def metadata(text: bytes) -> email.message.Message:
    return email.parser.BytesParser().parsebytes(text)


def check_metadata(meta: email.message.Message, version: str, where: str) -> None:
    check(meta["Version"] == version, f"{where}: version {meta['Version']}, not {version}")
    check(
        meta["License-Expression"] == "MIT OR Apache-2.0",
        f"{where}: License-Expression is {meta['License-Expression']!r}",
    )
    files = sorted(meta.get_all("License-File") or [])
    check(files == sorted(LICENSES), f"{where}: License-File lists {files}")


def check_wheel(wheel: Path, version: str) -> None:
    info = f"trio_tls-{version}.dist-info"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for license_name in LICENSES:
            member = f"{info}/licenses/{license_name}"
            check(member in names, f"{wheel.name}: no {member}")
            same = archive.read(member) == (ROOT / license_name).read_bytes()
            check(same, f"{wheel.name}: {member} differs from the repository's")
        check("trio_tls/py.typed" in names, f"{wheel.name}: no trio_tls/py.typed")
        strays = sorted(n for n in names if n.split("/")[0] not in ("trio_tls", info))
        check(not strays, f"{wheel.name}: files outside the package: {strays}")
        check_metadata(metadata(archive.read(f"{info}/METADATA")), version, wheel.name)


def check_sdist(sdist: Path, version: str) -> None:
    top = f"trio_tls-{version}"
    with tarfile.open(sdist) as archive:
        names = set(archive.getnames())
        for license_name in LICENSES:
            member = f"{top}/{license_name}"
            check(member in names, f"{sdist.name}: no {member}")
            extracted = archive.extractfile(member)
            assert extracted is not None
            same = extracted.read() == (ROOT / license_name).read_bytes()
            check(same, f"{sdist.name}: {member} differs from the repository's")
        # Setuptools picks up tests/test*.py by itself; without the helpers and the
        # conftest they import, a packager could not run them.
        suite = {f"{top}/{path.relative_to(ROOT)}" for path in (ROOT / "tests").rglob("*.py")}
        missing = sorted(suite - names)
        check(not missing, f"{sdist.name}: the test suite lacks {missing}")
        pkg_info = archive.extractfile(f"{top}/PKG-INFO")
        check(pkg_info is not None, f"{sdist.name}: no PKG-INFO")
        assert pkg_info is not None
        check_metadata(metadata(pkg_info.read()), version, sdist.name)


def run(command: list[str], cwd: Path, timeout: float) -> str:
    """Run ``command``, echoing it; its output is returned, and shown if it fails."""
    print("dist-check: $", " ".join(command), flush=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise DistError(f"{command[:3]} exited {done.returncode}:\n{done.stdout}{done.stderr}")
    return done.stdout


def check_installed(wheel: Path, version: str, scratch: Path) -> None:
    venv, work = scratch / "venv", scratch / "work"
    work.mkdir()
    run([sys.executable, "-m", "venv", str(venv)], work, RUN_TIMEOUT)
    python = str(venv / "bin" / "python")
    run([python, "-m", "pip", "install", "-q", f"{wheel}[test]"], work, INSTALL_TIMEOUT)

    where = run([python, "-c", "import trio_tls; print(trio_tls.__file__)"], work, RUN_TIMEOUT)
    check(Path(where.strip()).is_relative_to(venv), f"trio_tls was imported from {where}")
    demo = run([python, "-m", "trio_tls", "demo"], work, RUN_TIMEOUT)
    print(demo, end="")
    script = run([str(venv / "bin" / "trio-tls"), "--version"], work, RUN_TIMEOUT)
    check(script.strip() == f"trio_tls {version}", f"trio-tls --version said {script!r}")

    shutil.copy(ROOT / "tests" / "test_as_installed.py", work)
    pytest = [python, "-m", "pytest", "-p", "no:cacheprovider", "-W", "error"]
    options = ["--strict-markers", "--timeout=120", "-v", "test_as_installed.py"]
    print(run([*pytest, *options], work, RUN_TIMEOUT), end="")


def main(directory: str) -> int:
    started = time.monotonic()
    dist = Path(directory).resolve()
    version = runpy.run_path(str(ROOT / "trio_tls" / "_version.py"))["__version__"]
    wheel = dist / f"trio_tls-{version}-py3-none-any.whl"
    sdist = dist / f"trio_tls-{version}.tar.gz"
    try:
        found = sorted(path.name for path in dist.iterdir())
        check(found == sorted([wheel.name, sdist.name]), f"{dist} holds {found}")
        check_wheel(wheel, version)
        check_sdist(sdist, version)
        with tempfile.TemporaryDirectory(prefix="trio-tls-dist-check-") as scratch:
            check_installed(wheel, version, Path(scratch))
    except (DistError, subprocess.TimeoutExpired) as exc:
        print(f"dist-check: FAILED: {exc}", file=sys.stderr)
        return 1
    took = time.monotonic() - started
    print(f"dist-check: {wheel.name} and {sdist.name} passed in {took:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
