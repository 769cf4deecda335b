"""``trio-tls demo``, run as users run it."""

from __future__ import annotations

import re

import pytest

from ..helpers.cli import (
    VERSIONS,
    run_cli,
)


@pytest.mark.parametrize(("flag", "version"), VERSIONS)
def test_demo(flag: str, version: str) -> None:
    result = run_cli("demo", flag)
    assert result.returncode == 0, result.stderr
    # label, client, server: columns are separated by at least two spaces.
    block = result.stdout.split("\n\n")[1]  # between the title and the conclusion
    table = [re.split(r" {2,}", line.strip()) for line in block.splitlines()]
    assert table[0] == ["client", "server"]
    rows = {label: values for label, *values in table[1:]}
    assert rows["version"] == [version, version]
    assert rows["ALPN"] == ["trio-tls-demo", "trio-tls-demo"]
    assert all(value.endswith(" ms") for value in rows["handshake"])
    for label in ("data sent", "data received"):
        assert rows[label] == ["64.0 KiB (65,536 B)"] * 2
    # Ciphertext is the data plus the handshake and some record overhead.
    for label in ("wire sent", "wire received"):
        for value in rows[label]:
            wire = int(re.fullmatch(r".* \(([\d,]+) B\)", value)[1].replace(",", ""))  # type: ignore[index]
            assert 65_536 < wire < 70_000
    # Counted after closing: each side received exactly what the other sent, close_notify included.
    assert rows["wire sent"] == rows["wire received"][::-1]
    assert "echoed 65,536 bytes intact" in result.stdout
