"""Post-handshake client authentication (TLS 1.3): ``verify_client_post_handshake()``
asks for a client certificate in the middle of the connection."""

from __future__ import annotations

import ssl
from typing import Any

import pytest
import trio

from trio_tls import PostHandshakeAuthError, SSLStream
from trio_tls.testing import SERVER_NAME, TLSTestCA, handshake_pair, tls_memory_stream_pair

from .helpers.contexts import post_handshake_auth_contexts
from .helpers.streams import (
    MEMORY_AND_TCP,
    Forwarding,
    Transports,
    handshaken_pair,
    loopback_tcp_pair,
)


async def client_reads(client: SSLStream[Any], into: list[bytes]) -> None:
    """The client answers a CertificateRequest while it reads."""
    while chunk := await client.receive_some():
        into.append(chunk)


@pytest.mark.parametrize("transports", MEMORY_AND_TCP)
async def test_post_handshake_auth_gets_a_verified_certificate(
    tls_ca: TLSTestCA, transports: Transports
) -> None:
    client_ctx, server_ctx = post_handshake_auth_contexts(tls_ca)
    async with handshaken_pair(transports, client_ctx, server_ctx) as (client, server):
        received: list[bytes] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client_reads, client, received)
            await server.do_handshake()
            assert server.getpeercert() is None  # not asked for during the handshake
            await client.send_all(b"sent before the request")
            with trio.fail_after(10):
                await server.verify_client_post_handshake()
            peer = server.getpeercert()
            assert peer is not None
            assert ("email", "client@trio-tls.example") in peer["subjectAltName"]
            # Application data that arrived while waiting is still delivered, in order.
            assert await server.receive_some() == b"sent before the request"
            await server.send_all(b"welcome")
            await server.aclose()
        assert b"".join(received) == b"welcome"


async def test_post_handshake_auth_refused_by_client_context(tls_ca: TLSTestCA) -> None:
    client_ctx, server_ctx = post_handshake_auth_contexts(tls_ca, client_offers=False)
    client, server = tls_memory_stream_pair(client_context=client_ctx, server_context=server_ctx)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.do_handshake)
        await server.do_handshake()
    with pytest.raises(PostHandshakeAuthError, match="post_handshake_auth") as info:
        await server.verify_client_post_handshake()
    assert isinstance(info.value.__cause__, ssl.SSLError)
    await server.send_all(b"still usable")  # refusing is not a failure of the stream
    assert await client.receive_some() == b"still usable"


async def test_post_handshake_auth_with_untrusted_certificate_breaks(tls_ca: TLSTestCA) -> None:
    _, server_ctx = post_handshake_auth_contexts(tls_ca)
    stranger = TLSTestCA()
    client_ctx = tls_ca.client_context(version="1.3")
    stranger.client_cert.configure_cert(client_ctx)
    client_ctx.post_handshake_auth = True
    client, server = tls_memory_stream_pair(client_context=client_ctx, server_context=server_ctx)
    client_errors: list[BaseException | None] = []

    async def client_reads_until_told_off() -> None:
        with pytest.raises(trio.BrokenResourceError) as info:
            await client_reads(client, [])
        client_errors.append(info.value.__cause__)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(client_reads_until_told_off)
        await server.do_handshake()
        with pytest.raises(trio.BrokenResourceError) as info, trio.fail_after(10):
            await server.verify_client_post_handshake()
        assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)
    # The server's alert reached the client, which learns the reason, not a bare EOF.
    assert isinstance(client_errors[0], ssl.SSLError)
    assert not isinstance(client_errors[0], ssl.SSLEOFError)


async def test_post_handshake_auth_needs_tls13_and_a_server(tls_ca: TLSTestCA) -> None:
    client, server = tls_memory_stream_pair(tls_ca, version="1.2")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.do_handshake)
        await server.do_handshake()
    with pytest.raises(ValueError, match=r"TLS 1\.3"):
        await server.verify_client_post_handshake()
    with pytest.raises(ValueError, match="server"):
        await client.verify_client_post_handshake()


class TrickleStream(Forwarding):
    """A real socket that, once ``trickle`` is set, sends ``piece`` bytes at a time
    with a pause after each, as a TLS stack that writes its answer message by message
    (GnuTLS) or a slow network would: the other end reads it in many parts."""

    def __init__(self, sock: trio.SocketStream, piece: int) -> None:
        super().__init__(sock)
        self.piece = piece
        self.trickle = False
        self.sends = 0

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if not self.trickle:
            await self.inner.send_all(data)
            return
        view = memoryview(data)
        for start in range(0, len(view), self.piece):
            await self.inner.send_all(view[start : start + self.piece])
            self.sends += 1
            await trio.sleep(0.002)


@pytest.mark.parametrize("piece", [1, 7, 100], ids=["byte_by_byte", "chunk7", "chunk100"])
async def test_post_handshake_auth_with_the_answer_in_many_parts_over_tcp(
    tls_ca: TLSTestCA, piece: int
) -> None:
    """The server checks for the certificate after every batch of records it reads,
    so it meets OpenSSL half-way through the answer; that is "not yet", never an
    error (CPython's getpeercert() raises ValueError there)."""
    client_ctx, server_ctx = post_handshake_auth_contexts(tls_ca)
    client_sock, server_sock = await loopback_tcp_pair()
    trickle = TrickleStream(client_sock, piece)
    client = SSLStream(trickle, client_ctx, server_hostname=SERVER_NAME)
    server = SSLStream(server_sock, server_ctx, server_side=True)
    try:
        with trio.fail_after(10):
            await handshake_pair(client, server)
        trickle.trickle = True  # from now on: the answer to the request
        received: list[bytes] = []
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client_reads, client, received)
                await server.verify_client_post_handshake()
                assert server.getpeercert(binary_form=True) is not None
                await server.send_all(b"welcome")
                await server.aclose()
        assert b"".join(received) == b"welcome"
        assert trickle.sends > 3, "the answer went out in several parts"
    finally:
        await trio.aclose_forcefully(client)
        await trio.aclose_forcefully(server)
