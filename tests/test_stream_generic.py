"""trio's own stream conformance checks, run against trio_tls.SSLStream."""

from __future__ import annotations

import pytest
from trio.testing import check_half_closeable_stream, check_two_way_stream

# test_stream.py's list too: both make their pairs with the kit's makers, as users do.
from trio_tls.testing import (
    StreamPair,
    TLSTestCA,
    TLSVersionName,
    handshake_pair,
    tls_lockstep_stream_pair,
    tls_memory_stream_pair,
)


async def handshaken(pair: StreamPair) -> StreamPair:
    """Handshake both ends first. On a lockstep transport the conformance check has
    one side block in wait_send_all_might_not_block until the other receives; if that
    receive had to start the handshake, it would first need to *send* its hello and
    both would wait forever. trio's own SSLStream tests do the same."""
    await handshake_pair(*pair)
    return pair


@pytest.mark.parametrize("https_compatible", [False, True], ids=["standard", "https"])
async def test_two_way_stream_conformance(
    tls_ca: TLSTestCA, tls_version: TLSVersionName, https_compatible: bool
) -> None:
    async def buffered() -> StreamPair:
        return tls_memory_stream_pair(
            tls_ca, version=tls_version, https_compatible=https_compatible
        )

    async def clogged() -> StreamPair:
        return await handshaken(
            tls_lockstep_stream_pair(tls_ca, version=tls_version, https_compatible=https_compatible)
        )

    await check_two_way_stream(buffered, clogged)


async def test_half_closeable_stream_conformance_tls13(tls_ca: TLSTestCA) -> None:
    async def buffered() -> StreamPair:
        return tls_memory_stream_pair(tls_ca, version="1.3")

    async def clogged() -> StreamPair:
        return await handshaken(tls_lockstep_stream_pair(tls_ca, version="1.3"))

    await check_half_closeable_stream(buffered, clogged)
