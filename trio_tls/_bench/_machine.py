"""Describe the machine a run happened on, and measure the crypto ceiling with openssl."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import shutil
import ssl
import subprocess
import sys
from typing import Any


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _checkout() -> str | None:
    """The git commit of the trio_tls being measured (``+dirty`` if modified), if known."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        head = subprocess.run(
            ["git", "-C", here, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        dirty = subprocess.run(
            ["git", "-C", here, "status", "--porcelain", "--", ".."],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (subprocess.SubprocessError, OSError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def describe() -> dict[str, Any]:
    """Everything a reader needs to judge the numbers, including the load when they started."""
    return {
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {sys.version.split()[0]}",
        "openssl": ssl.OPENSSL_VERSION,
        "packages": {
            name: _version(name) for name in ("trio", "anyio", "uvloop", "trustme", "matplotlib")
        },
        "trio_tls_commit": _checkout(),
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def openssl_speed(seconds: int = 1) -> dict[str, Any]:
    """AES-256-GCM throughput of the system ``openssl`` on one core, 16 KiB blocks, in MB/s.

    This is the most any TLS 1.3 stream can move per core with the default cipher: the record
    layer's own work, with no Python and no I/O.
    """
    binary = shutil.which("openssl")
    if binary is None:
        return {"mb_s": None, "note": "openssl binary not found: crypto ceiling not measured"}
    command = [binary, "speed", "-evp", "aes-256-gcm", "-seconds", str(seconds), "-bytes", "16384"]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=seconds * 10 + 10, check=True
        )
    except (subprocess.SubprocessError, OSError) as exc:
        return {"mb_s": None, "note": f"`{' '.join(command)}` failed: {exc}"}
    # The result line looks like "AES-256-GCM    3583230.45k" (1000s of bytes per second).
    match = re.search(r"^aes-256-gcm\s+([\d.]+)k\s*$", done.stdout, re.IGNORECASE | re.MULTILINE)
    if match is None:
        return {"mb_s": None, "note": "could not parse `openssl speed` output"}
    return {
        "mb_s": float(match.group(1)) * 1000 / 1e6,
        "command": " ".join(["openssl", *command[1:]]),
        "openssl": _openssl_version(binary),
    }


def _openssl_version(binary: str) -> str:
    done = subprocess.run([binary, "version"], capture_output=True, text=True, timeout=10)
    return done.stdout.strip()
