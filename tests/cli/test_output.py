"""How the command line writes numbers and spans for people."""

from __future__ import annotations

import datetime

import pytest

from trio_tls._cli.output import span


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (3 * 86400 + 5, "3 days"),
        (2 * 86400 - 1, "1 day 23 hours"),
        (400 * 86400 + 7200, "400 days"),
        (61, "1 minute 1 second"),
        (0, "0 seconds"),
    ],
)
def test_span(seconds: int, text: str) -> None:
    assert span(datetime.timedelta(seconds=seconds)) == text
    assert span(datetime.timedelta(seconds=-seconds)) == text
