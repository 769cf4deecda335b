"""SSLStream.statistics(): a TLSStatistics snapshot, before the handshake and after
real traffic over loopback TCP."""

from __future__ import annotations

import pytest
import trio

from trio_tls.testing import TLSTestCA, TLSVersionName, tls_memory_stream_pair

from .helpers.streams import handshaken_pair, loopback_tcp_pair


def test_statistics_before_the_handshake(tls_ca: TLSTestCA) -> None:
    client, _ = tls_memory_stream_pair(tls_ca)
    stats = client.statistics()
    assert (stats.version, stats.cipher, stats.alpn_protocol) == (None, None, None)
    assert stats.handshake_duration is None and not stats.session_reused
    assert stats.bytes_sent == stats.wire_bytes_sent == stats.transport_sends == 0
    with pytest.raises(AttributeError):
        stats.bytes_sent = 1  # type: ignore[misc]  # frozen


async def test_statistics_count_plaintext_and_wire_bytes(
    tls_ca: TLSTestCA, tls_version: TLSVersionName
) -> None:
    client_ctx = tls_ca.client_context(version=tls_version)
    server_ctx = tls_ca.server_context(version=tls_version)
    async with handshaken_pair(loopback_tcp_pair, client_ctx, server_ctx) as (client, server):
        payload = b"z" * 50_000
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.send_all, payload)
            got = bytearray()
            while len(got) < len(payload):
                got += await server.receive_some()
        stats = client.statistics()
        assert stats.version == f"TLSv{tls_version}"
        assert stats.cipher == client.cipher()[0]  # type: ignore[index]
        assert stats.bytes_sent == len(payload) and stats.bytes_received == 0
        assert stats.wire_bytes_sent > len(payload)  # records add framing and tags
        assert stats.handshake_duration is not None and stats.handshake_duration > 0
        assert stats.transport_sends >= 2 and stats.transport_receives >= 1
        assert server.statistics().bytes_received == len(payload)
        assert server.statistics().wire_bytes_received == stats.wire_bytes_sent
