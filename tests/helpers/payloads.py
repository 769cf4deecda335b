"""Checkable payloads: reproducible random bytes, their pieces, and short fingerprints."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator


def random_payload(size: int, seed: int) -> bytes:
    """``size`` reproducible random bytes (same seed, same bytes, every run)."""
    return random.Random(seed).randbytes(size)


def random_lines(count: int, width: int, seed: int) -> bytes:
    r"""``count`` reproducible lines of ``width`` hex digits, each ending in ``\n``.

    For line-oriented peers such as ``openssl s_server -rev``: no line is a command
    word and none contains a newline of its own.
    """
    r = random.Random(seed)
    return b"".join(r.randbytes(width // 2).hex().encode() + b"\n" for _ in range(count))


def reverse_lines(data: bytes) -> bytes:
    """What ``openssl s_server -rev`` answers to ``data``: every line reversed."""
    return b"".join(line[::-1] + b"\n" for line in data.splitlines())


def digest(data: bytes | bytearray) -> str:
    """Short content fingerprint for assertions that must not dump 500 KiB on failure."""
    return hashlib.sha256(data).hexdigest()


def chunks(data: bytes, seed: int, *, low: int = 1, high: int = 65536) -> Iterator[bytes]:
    """Split ``data`` into reproducible random-sized pieces (``low``..``high`` bytes)."""
    r = random.Random(seed)
    view = memoryview(data)
    offset = 0
    while offset < len(data):
        size = r.randint(low, high)
        yield bytes(view[offset : offset + size])
        offset += size
