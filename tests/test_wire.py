"""The socket fast path (SocketWire) against real loopback sockets, and its fallback."""

from __future__ import annotations

import socket
import struct
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
import trio
import trio.testing
from trio.testing import assert_checkpoints

from trio_tls import SSLStream
from trio_tls._wire import SocketWire, StreamWire, wire_for
from trio_tls.testing import TLSTestCA, TLSVersionName, tls_memory_stream_pair

from .helpers.streams import handshaken_pair, loopback_tcp_pair


def tcp_tls_pair(
    ca: TLSTestCA, version: TLSVersionName
) -> AbstractAsyncContextManager[tuple[SSLStream[Any], SSLStream[Any]]]:
    """A handshaken pair over a plain loopback socket: the fast path's transport."""
    return handshaken_pair(
        loopback_tcp_pair, ca.client_context(version=version), ca.server_context(version=version)
    )


async def test_the_fast_path_is_taken_only_for_a_plain_socket_stream(tls_ca: TLSTestCA) -> None:
    async with tcp_tls_pair(tls_ca, "1.3") as (client, _):
        assert isinstance(wire_for(client.transport_stream), SocketWire)
        # Anything else, even an SSLStream over a socket, goes through its methods.
        assert isinstance(wire_for(client), StreamWire)
    memory_client, _ = tls_memory_stream_pair(tls_ca)
    assert isinstance(wire_for(memory_client.transport_stream), StreamWire)


async def test_backpressure_partial_sends_deliver_everything_in_order(
    tls_ca: TLSTestCA, tls_version: TLSVersionName
) -> None:
    """A slow reader fills the kernel buffers, so sends go through wait_writable."""
    blob = bytes(range(256)) * (2 * 1024 * 1024 // 256)
    async with tcp_tls_pair(tls_ca, tls_version) as (client, server):
        client.transport_stream.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        received = bytearray()

        async def slow_reader() -> None:
            while len(received) < len(blob):
                received.extend(await server.receive_some(50_000))
                await trio.sleep(0.001)

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(slow_reader)
                await client.send_all(blob)
        assert received == blob


async def test_closing_the_transport_wakes_a_waiting_receive(tls_ca: TLSTestCA) -> None:
    async with tcp_tls_pair(tls_ca, "1.3") as (client, _server):

        async def receive_expecting_closed() -> None:
            with pytest.raises(trio.ClosedResourceError):
                await client.receive_some()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive_expecting_closed)
            await trio.testing.wait_all_tasks_blocked()
            await client.transport_stream.aclose()


async def test_sending_on_a_closed_transport_is_closed_resource_error(tls_ca: TLSTestCA) -> None:
    async with tcp_tls_pair(tls_ca, "1.2") as (client, _server):
        await client.transport_stream.aclose()
        with pytest.raises(trio.ClosedResourceError):
            await client.send_all(b"x")


async def test_peer_reset_is_broken_resource_error_with_the_os_error(tls_ca: TLSTestCA) -> None:
    async with tcp_tls_pair(tls_ca, "1.3") as (client, server):
        # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
        server.transport_stream.setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
        )
        await server.transport_stream.aclose()

        async def keep_talking() -> None:
            for _ in range(100):
                await client.send_all(b"x" * 65536)
                await client.receive_some()

        with trio.fail_after(5), pytest.raises(trio.BrokenResourceError) as info:
            await keep_talking()
        assert isinstance(info.value.__cause__, (ConnectionResetError, BrokenPipeError))


async def test_fast_path_calls_are_still_checkpoints(
    tls_ca: TLSTestCA, tls_version: TLSVersionName
) -> None:
    async with tcp_tls_pair(tls_ca, tls_version) as (client, server):
        await server.send_all(b"ready")
        await trio.sleep(0.05)  # the record is in the kernel: receive will not block
        with assert_checkpoints():
            assert await client.receive_some() == b"ready"
        with assert_checkpoints():
            await client.send_all(b"fits in the socket buffer")
        assert await server.receive_some() == b"fits in the socket buffer"


async def test_a_cancelled_fast_path_receive_loses_nothing(tls_ca: TLSTestCA) -> None:
    async with tcp_tls_pair(tls_ca, "1.3") as (client, server):
        for round_ in range(5):
            with trio.move_on_after(0.01):
                await client.receive_some()
            await server.send_all(f"message {round_}".encode())
            assert await client.receive_some() == f"message {round_}".encode()
