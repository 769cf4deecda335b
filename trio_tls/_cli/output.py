"""Formatting helpers for the command line: aligned tables and human units.

Every command prints through these so that all output reads the same way: a
label column padded to one width, then the value, with sizes, durations and
dates written the way a person would say them.
"""

from __future__ import annotations

import datetime
import json
import sys
from collections.abc import Iterable, Sequence

#: A label and its value, one line of an aligned table.
Row = tuple[str, str]


def table(rows: Iterable[Row], *, indent: int = 2) -> list[str]:
    """Lay out *rows* with the labels padded to the widest one."""
    rows = list(rows)
    width = max((len(label) for label, _ in rows), default=0)
    pad = " " * indent
    return [f"{pad}{label.ljust(width)}  {value}".rstrip() for label, value in rows]


def columns(header: Sequence[str], rows: Iterable[Sequence[str]], *, indent: int = 2) -> list[str]:
    """Lay out a table with several value columns, each padded to its widest cell."""
    grid = [list(header), *(list(row) for row in rows)]
    widths = [max(len(row[i]) for row in grid) for i in range(len(header))]
    pad = " " * indent
    return [
        pad + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip()
        for row in grid
    ]


class OutputClosed(Exception):
    """Standard output was closed by its reader (``trio-tls serve | head``).

    Not an OSError, so that no handler of socket errors can mistake it for one.
    """


def emit(lines: Iterable[str]) -> None:
    """Print *lines* and flush at once, so a pipe or a test sees them immediately."""
    _write("".join(line + "\n" for line in lines))


def emit_json(document: object) -> None:
    _write(json.dumps(document, indent=2, sort_keys=False) + "\n")


def _write(text: str) -> None:
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError as exc:
        raise OutputClosed from exc


def fail(message: str) -> None:
    """Report a failure as one line on stderr, prefixed with the program name."""
    sys.stderr.write(f"trio-tls: {message}\n")
    sys.stderr.flush()


def log_line(cells: Sequence[str], widths: Sequence[int]) -> str:
    """One line of a server's per-connection log: the first cells padded to ``widths``."""
    padded = [c.ljust(w) for c, w in zip(cells, widths, strict=False)]
    return "  ".join(padded + list(cells[len(widths) :])).rstrip()


def clock() -> str:
    """The local time of day, as a server's log lines start."""
    return datetime.datetime.now().strftime("%H:%M:%S")


def duration(seconds: float | None) -> str:
    """``0.42 ms``, ``3.1 ms``, ``1.25 s``; ``n/a`` when nothing was measured."""
    if seconds is None:
        return "n/a"
    if seconds < 0.001:
        return f"{seconds * 1000:.2f} ms"
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds:.2f} s"


def size(n: int) -> str:
    """``512 B``, ``64.0 KiB (65,536 B)``: the exact count stays visible."""
    if n < 1024:
        return f"{n:,} B"
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit} ({n:,} B)"
    raise AssertionError("unreachable")  # pragma: no cover


def plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


def span(delta: datetime.timedelta) -> str:
    """A time span in its two largest whole units: ``3 days``, ``1 day 23 hours``.

    Units are floored, so a certificate that expired 3 days and 40 minutes ago
    reads "3 days ago"; below 10 of a unit the next one is added, so that
    "1 day 23 hours" does not pass for "1 day".
    """
    seconds = int(abs(delta.total_seconds()))
    units = (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1))
    for i, (noun, unit) in enumerate(units):
        if seconds >= unit or unit == 1:
            count = seconds // unit
            text = plural(count, noun)
            if count < 10 and i + 1 < len(units):
                next_noun, next_unit = units[i + 1]
                if rest := (seconds % unit) // next_unit:
                    text += " " + plural(rest, next_noun)
            return text
    raise AssertionError("unreachable")  # pragma: no cover


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def moment(when: datetime.datetime) -> str:
    return when.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def yes_no(flag: bool) -> str:
    return "yes" if flag else "no"
