"""Post-handshake client authentication (TLS 1.3): ``verify_client_post_handshake()``
asks for a client certificate in the middle of the connection."""

from __future__ import annotations

import ssl
from typing import Any

import pytest
import trio

from trio_tls import PostHandshakeAuthError, SSLStream
from trio_tls.testing import TLSTestCA, tls_memory_stream_pair

from .helpers.contexts import post_handshake_auth_contexts
from .helpers.streams import MEMORY_AND_TCP, Transports, handshaken_pair


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
