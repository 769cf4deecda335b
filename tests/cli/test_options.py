"""Option values are checked when parsing: each bad one is a usage error naming it."""

from __future__ import annotations

import argparse
import re

import pytest

from trio_tls._cli.options import target as parse_address

from ..helpers.cli import (
    run_main,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("example.org:8443", ("example.org", 8443)),
        ("example.org", ("example.org", 443)),
        ("[::1]:4433", ("::1", 4433)),
        ("::1", ("::1", 443)),
        ("[::1]", ("::1", 443)),
        # Pasted from a browser or curl: the scheme says TLS, the path is not used.
        ("https://localhost:8443/", ("localhost", 8443)),
        ("https://Example.ORG/a/b?c=d#e", ("example.org", 443)),
        ("https://[::1]:8443/x", ("::1", 8443)),
        ("münchen.example:443", ("münchen.example", 443)),
    ],
)
def test_parse_address(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "example.org:http",
        ":443",
        "example.org:70000",
        "example.org:0",
        "example.org:+5",
        "garbage:::",
        "[::1]x",
        "[example.org]:443",
        "bad name!",
        "http://example.org/",
        "https://user@example.org/",
        "https://[::1/",
        "https://example.org:99999/",
    ],
)
def test_parse_address_rejects(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=re.escape(repr(text))):
        parse_address(text)


def test_ipv6_addresses_are_printed_in_brackets() -> None:
    assert str(parse_address("[::1]:8443")) == "[::1]:8443"
    assert str(parse_address("https://[::1]/")) == "[::1]:443"
    assert str(parse_address("localhost:8443")) == "localhost:8443"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["connect", "x:1", "--timeout", "-1"], "argument --timeout: must be more than 0 seconds"),
        (["connect", "x:1", "--timeout", "0"], "argument --timeout: must be more than 0 seconds"),
        (["connect", "x:1", "--timeout", "nan"], "argument --timeout: must be a finite number"),
        (["connect", "x:1", "--timeout", "soon"], "argument --timeout: not a number of seconds"),
        (["connect", "x:1", "--wait", "-1"], "argument --wait: must be 0 seconds or more"),
        (["connect", "x:1", "--wait", "inf"], "argument --wait: must be a finite number"),
        (["serve", "--timeout", "-1"], "argument --timeout: must be more than 0 seconds"),
        (["serve", "--port", "70000"], "argument --port: must be a port from 0 to 65535"),
        (["serve", "--port", "-5"], "argument --port: must be a port from 0 to 65535"),
        (["serve", "--max-connections", "0"], "argument --max-connections: must be a whole"),
        (["serve", "--host", "no such host"], "argument --host: 'no such host' is not a host"),
        (["connect", "garbage:::"], "argument HOST:PORT: bad address 'garbage:::'"),
        (["connect", "x:1", "--servername", ""], "argument --servername: empty"),
        (["connect", "x:1", "--alpn", "h2," + "a" * 300], "is 300 bytes long; ALPN allows 1"),
        (["serve", "--alpn", "h2,é"], "argument --alpn: protocol 'é' is not ASCII"),
        (["serve", "--trustme", "bad name!"], "argument --trustme: 'bad name!' is not a host"),
        (["connect", "x:1", "--key", "k.pem"], "trio-tls connect: error: --key needs --cert"),
        (["serve", "--key", "k.pem"], "trio-tls serve: error: --key needs --cert"),
    ],
)
def test_bad_values_are_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, err = run_main(capsys, *argv)
    assert status == 2
    assert message in err
    assert err.endswith("\n")
    assert "Traceback" not in err
