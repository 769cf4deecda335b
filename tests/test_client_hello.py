"""Reading a whole ClientHello before OpenSSL: the fields a chooser or a router needs.

Real hellos come from real client SSLObjects; each is also cut at every byte and
re-framed over several records, since a server meets both on the wire.
"""

from __future__ import annotations

import ssl

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_tls import ClientHello, ClientHelloError
from trio_tls._hello import HelloReader, parse_client_hello
from trio_tls.testing import TLSTestCA

from .helpers.hellos import client_hello, reframe


@pytest.fixture
def hello_13(tls_ca: TLSTestCA) -> bytes:
    context = tls_ca.client_context()
    context.set_alpn_protocols(["h2", "http/1.1"])
    return client_hello(context, "bücher.example")


def test_the_fields_of_a_tls13_hello(hello_13: bytes) -> None:
    assert parse_client_hello(hello_13) == (
        ClientHello(
            server_name="xn--bcher-kva.example",
            server_name_unicode="bücher.example",
            alpn_protocols=("h2", "http/1.1"),
            tls_versions=(ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2),
        ),
        len(hello_13),
    )


def test_a_tls12_only_hello_without_sni_or_alpn(tls_ca: TLSTestCA) -> None:
    context = tls_ca.client_context()
    context.check_hostname = False
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    hello = client_hello(context, None)
    parsed = parse_client_hello(hello)
    assert parsed is not None
    assert parsed[0] == ClientHello(None, None, (), (ssl.TLSVersion.TLSv1_2,))


def test_the_hello_is_frozen(hello_13: bytes) -> None:
    parsed = parse_client_hello(hello_13)
    assert parsed is not None
    with pytest.raises(AttributeError):
        parsed[0].server_name = "other.example"  # type: ignore[misc]


def test_a_hello_cut_anywhere_asks_for_more(hello_13: bytes) -> None:
    for end in range(len(hello_13)):
        assert parse_client_hello(hello_13[:end]) is None, f"cut at {end} of {len(hello_13)}"


def test_a_reader_fed_one_byte_at_a_time_asks_for_no_more_than_the_hello(
    hello_13: bytes,
) -> None:
    framed = reframe(hello_13, 1)  # one-byte records too: the worst framing
    reader = HelloReader()
    for index in range(len(framed)):
        assert reader.hello is None
        assert 1 <= reader.wanted <= len(framed) - index
        assert reader.feed(framed[index : index + 1]) == 1
    assert reader.wanted == 0 and reader.taken == len(framed)
    assert reader.hello == parse_client_hello(hello_13)[0]  # type: ignore[index]
    assert reader.feed(b"next flight") == 0
    # Given all at once with what follows, it takes the hello's records only.
    whole = HelloReader()
    assert whole.feed(framed + b"next flight") == len(framed)
    assert whole.hello == reader.hello


def test_reader_errors_are_sticky() -> None:
    reader = HelloReader()
    with pytest.raises(ClientHelloError) as first:
        reader.feed(b"GET /")
    assert reader.taken == 0  # refused at its first byte, before taking any
    assert reader.error is first.value and reader.wanted == 0
    with pytest.raises(ClientHelloError) as again:
        reader.feed(b"\x16")
    assert again.value is first.value
    reader.follow(b"\x16")  # an engine's feed: never raises


@pytest.mark.parametrize("size", [1, 7, 100, 512])
def test_a_hello_over_several_records(hello_13: bytes, size: int) -> None:
    expected = parse_client_hello(hello_13)
    assert expected is not None
    framed = reframe(hello_13, size)
    for end in range(0, len(framed), max(1, len(framed) // 200)):
        assert parse_client_hello(framed[:end]) is None
    assert parse_client_hello(framed + b"\x14\x03\x03") == (expected[0], len(framed))


def test_what_follows_the_hello_is_not_taken(hello_13: bytes) -> None:
    next_flight = b"\x14\x03\x03\x00\x01\x01"  # a ChangeCipherSpec record
    parsed = parse_client_hello(hello_13 + next_flight)
    assert parsed is not None and parsed[1] == len(hello_13)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "not_tls", id="plain_http"),
        pytest.param(b"\x16\x03\x01\x00\x04\x02\x00\x00\x00", "malformed", id="server_hello"),
        pytest.param(b"\x16\x03\x01\x00\x04\x01\x00\x00\x00", "malformed", id="empty_body"),
        pytest.param(b"\x16\x03\x01\xff\xff", "malformed", id="record_too_long"),
        pytest.param(b"\x16\x03\x01\x00\x00", "malformed", id="empty_record"),
        pytest.param(b"\x16\x05\x01\x00\x01", "malformed", id="not_version_3"),
        pytest.param(
            b"\x16\x03\x01\x00\x04\x01\x00\x00\x02" + b"\x15\x03\x03\x00\x02\x02\x28",
            "malformed",
            id="alert_inside_hello",
        ),
    ],
)
def test_what_is_not_a_client_hello_is_named(data: bytes, reason: str) -> None:
    with pytest.raises(ClientHelloError) as caught:
        parse_client_hello(data)
    assert caught.value.reason == reason
    assert str(caught.value)


def test_plain_text_is_quoted_in_the_error() -> None:
    with pytest.raises(ClientHelloError, match="GET / HTTP"):
        parse_client_hello(b"GET / HTTP/1.1\r\n")


def test_a_hello_longer_than_the_bound(hello_13: bytes) -> None:
    with pytest.raises(ClientHelloError) as caught:
        parse_client_hello(hello_13, max_bytes=len(hello_13) - 1)
    assert caught.value.reason == "too_large"
    assert str(len(hello_13) - 1) in str(caught.value)
    # Records that never finish the message are refused at the bound, not buffered.
    endless = reframe(hello_13[:-50], 10)
    with pytest.raises(ClientHelloError, match="does not end"):
        parse_client_hello(endless, max_bytes=len(endless))


def test_a_raw_utf8_server_name_is_refused(tls_ca: TLSTestCA) -> None:
    hello = client_hello(tls_ca.client_context(), "xx.example")
    raw = hello.replace(b"xx.example", "ü.example".encode())
    assert len(raw) == len(hello)
    with pytest.raises(ClientHelloError) as caught:
        parse_client_hello(raw)
    assert caught.value.reason == "non_ascii_server_name"
    assert repr("ü.example".encode()) in str(caught.value)


def test_an_a_label_that_does_not_decode_is_passed_on(tls_ca: TLSTestCA) -> None:
    context = tls_ca.client_context()
    context.check_hostname = False
    hello = client_hello(context, "xn--zz.example")
    parsed = parse_client_hello(hello)
    assert parsed is not None
    assert parsed[0].server_name == parsed[0].server_name_unicode == "xn--zz.example"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(min_value=1, max_value=400))
def test_garbage_gives_an_answer_or_a_named_error(data: bytes, max_bytes: int) -> None:
    reasons = []
    for candidate in (data, b"\x16\x03\x01" + data):
        try:
            parse_client_hello(candidate, max_bytes=max_bytes)
        except ClientHelloError as exc:  # anything else escapes and fails the test
            reasons.append(exc.reason)
    assert set(reasons) <= {"not_tls", "malformed", "too_large", "non_ascii_server_name"}
