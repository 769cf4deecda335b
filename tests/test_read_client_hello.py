"""``read_client_hello``: the hello off a real stream, exactly, and clear errors for the rest.

Hellos come from real client SSLObjects. The stream is a loopback TCP pair where what
is left unread matters, and a memory pair read one byte per receive where the cut
points matter; slow clients run on trio's virtual clock.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable

import pytest
import trio
import trio.testing

import trio_tls
from trio_tls import ClientHelloError, SSLStream, read_client_hello
from trio_tls.testing import SERVER_NAME, TLSTestCA

from .helpers.hellos import client_hello, reframe
from .helpers.streams import Forwarding, OneByteAtATime, both, loopback_tcp_pair, receive_to_eof


class _Replay(Forwarding):
    """``first``, then the rest of ``inner``: what a server behind a preread reads."""

    def __init__(self, first: bytes, inner: trio.abc.Stream) -> None:
        super().__init__(inner)
        self.first = first

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self.first:
            size = len(self.first) if max_bytes is None else max_bytes
            chunk, self.first = self.first[:size], self.first[size:]
            await trio.lowlevel.checkpoint()
            return chunk
        return bytes(await self.inner.receive_some(max_bytes))


@pytest.fixture(params=[ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["tls12", "tls13"])
def client_context(tls_ca: TLSTestCA, request: pytest.FixtureRequest) -> ssl.SSLContext:
    context = tls_ca.client_context()
    context.maximum_version = request.param
    context.set_alpn_protocols(["h2", "http/1.1"])
    return context


async def test_the_hello_and_not_one_byte_more(client_context: ssl.SSLContext) -> None:
    hello = client_hello(client_context, "bücher.example")
    client, server = await loopback_tcp_pair()
    async with client, server:
        # The client's next flight is already behind the hello in the socket.
        await client.send_all(hello + b"\x17\x03\x03\x00\x04next")
        with trio.fail_after(10):
            parsed, raw = await read_client_hello(server)
            assert raw == hello
            assert (parsed.server_name, parsed.server_name_unicode) == (
                "xn--bcher-kva.example",
                "bücher.example",
            )
            assert parsed.alpn_protocols == ("h2", "http/1.1")
            await client.send_eof()
            rest = await receive_to_eof(server)
    assert rest == b"\x17\x03\x03\x00\x04next"


async def test_one_byte_per_receive_then_a_server_completes_the_handshake(
    tls_ca: TLSTestCA, client_context: ssl.SSLContext
) -> None:
    client_end, server_end = trio.testing.memory_stream_pair()
    slow = OneByteAtATime(server_end)
    client = SSLStream(client_end, client_context, server_hostname=SERVER_NAME)

    async def talk() -> None:
        await client.send_all(b"ping")
        assert await client.receive_some() == b"pong"

    async def serve() -> None:
        parsed, raw = await read_client_hello(slow)
        assert parsed.server_name == SERVER_NAME
        # Asked for a header, then the rest of the record: never past the hello.
        assert all(asked is not None and asked <= len(raw) for asked in slow.asked)
        server = SSLStream(_Replay(raw, slow), tls_ca.server_context(), server_side=True)
        assert await server.receive_some() == b"ping"
        await server.send_all(b"pong")

    with trio.fail_after(30):
        await both(talk, serve)


@pytest.mark.parametrize("size", [1, 100])
async def test_a_hello_over_many_small_records(client_context: ssl.SSLContext, size: int) -> None:
    hello = reframe(client_hello(client_context, SERVER_NAME), size)
    client, server = trio.testing.memory_stream_pair()
    await client.send_all(hello + b"after")
    with trio.fail_after(10):
        parsed, raw = await read_client_hello(server)
        assert (parsed.server_name, raw) == (SERVER_NAME, hello)
        assert await server.receive_some() == b"after"


async def _refused(
    data: bytes, *, max_bytes: int = 2**16, one_byte: bool = True
) -> tuple[ClientHelloError, bytes]:
    """The error for a client that sends ``data`` and closes; and what stayed unread."""
    client, server = trio.testing.memory_stream_pair()
    await client.send_all(data)
    await client.aclose()
    reader = OneByteAtATime(server) if one_byte else server
    with trio.fail_after(10), pytest.raises(ClientHelloError) as caught:
        await read_client_hello(reader, max_bytes=max_bytes)
    rest = await receive_to_eof(server)
    # What was read is on the error, the rest still in the stream: nothing is lost.
    assert caught.value.received + rest == data
    return caught.value, rest


async def test_plain_http_is_refused_at_its_first_byte() -> None:
    error, rest = await _refused(b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n")
    assert error.reason == "not_tls"
    assert "plain text" in str(error)
    assert rest == b"ET / HTTP/1.1\r\nHost: a.example\r\n\r\n"
    assert error.received == b"G"  # so a plain-text fallback can still have it all


async def test_a_hello_larger_than_max_bytes(client_context: ssl.SSLContext) -> None:
    hello = client_hello(client_context, SERVER_NAME)
    error, rest = await _refused(hello, max_bytes=100)
    assert error.reason == "too_large"
    assert "100 bytes" in str(error)
    # Refused on the record header: the body was never read into memory.
    assert rest == hello[5:]


async def test_an_endless_chain_of_records_stops_at_max_bytes() -> None:
    # A handshake message that claims 16 MiB, sent in full records.
    record = b"\x16\x03\x01\x40\x00" + b"\x01\xff\xff\xff" + bytes(2**14 - 4)
    error, rest = await _refused(record * 5, max_bytes=3 * len(record), one_byte=False)
    assert error.reason == "too_large"
    assert len(rest) == 2 * len(record)  # full at max_bytes: nothing more is read


@pytest.mark.parametrize(
    ("data", "words"),
    [
        pytest.param(b"", "before sending anything", id="nothing"),
        pytest.param(b"\x16\x03\x01", "after 3 bytes", id="inside_header"),
    ],
)
async def test_a_client_that_closes_early(data: bytes, words: str) -> None:
    error, _ = await _refused(data)
    assert error.reason == "truncated"
    assert words in str(error)


async def test_a_client_that_closes_inside_its_hello(client_context: ssl.SSLContext) -> None:
    hello = client_hello(client_context, SERVER_NAME)
    error, _ = await _refused(hello[:-1])
    assert error.reason == "truncated"
    assert f"after {len(hello) - 1} bytes" in str(error)


async def test_a_bad_record_header_is_malformed() -> None:
    error, _ = await _refused(b"\x16\x09\x09\x00\x10" + bytes(16))
    assert error.reason == "malformed"
    assert "160909" in str(error)


async def test_a_raw_utf8_server_name(client_context: ssl.SSLContext) -> None:
    hello = client_hello(client_context, "xn--bcher-kva.example")
    raw = hello.replace(b"xn--bcher-kva", b"xn--bcher-k\xc3\xa4")  # same length
    assert len(raw) == len(hello)
    error, _ = await _refused(raw)
    assert error.reason == "non_ascii_server_name"


async def test_one_byte_a_second_times_out(
    client_context: ssl.SSLContext, autojump_clock: trio.testing.MockClock
) -> None:
    hello = client_hello(client_context, SERVER_NAME)
    client, server = trio.testing.memory_stream_pair()

    async def trickle() -> None:
        for byte in hello[:30]:  # bounded: the reader gives up long before
            await client.send_all(bytes([byte]))
            await trio.sleep(1)

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trickle)
        with pytest.raises(trio.TooSlowError, match=r"within 5 s \(5 bytes of it came\)"):
            await read_client_hello(server, timeout=5)
        nursery.cancel_scope.cancel()
    assert trio.current_time() - start == pytest.approx(5)


async def test_the_caller_cancelling_is_not_a_timeout() -> None:
    _, server = trio.testing.memory_stream_pair()
    with trio.move_on_after(0.01) as scope:
        await read_client_hello(server)
    assert scope.cancelled_caught


@pytest.mark.parametrize(
    ("kwargs", "check"),
    [
        pytest.param({"max_bytes": 0}, "max_bytes must be at least 1", id="max_bytes"),
        pytest.param({"timeout": -1.0}, "timeout must be 0 seconds or more", id="timeout"),
        pytest.param({"timeout": float("nan")}, "not nan", id="nan"),
    ],
)
async def test_bad_arguments(kwargs: dict[str, float], check: str) -> None:
    _, server = trio.testing.memory_stream_pair()
    with pytest.raises(ValueError, match=check):
        await read_client_hello(server, **kwargs)  # type: ignore[arg-type]


def test_exported() -> None:
    reader: Callable[..., object] = trio_tls.read_client_hello
    assert reader is read_client_hello
    assert "read_client_hello" in trio_tls.__all__
