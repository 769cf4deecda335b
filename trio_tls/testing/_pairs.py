"""Connected (client, server) SSLStream pairs over memory, lockstep and loopback TCP."""

from __future__ import annotations

import ssl
from typing import Any, Literal

import trio
import trio.testing
from trio.abc import Stream

from .._contexts import TLSVersionName
from .._stream import SSLStream
from ._certs import TLSTestCA
from ._chaos import chaos_stream_pair

#: The name clients send (SNI) and verify in the pairs made here.
SERVER_NAME = "trio-tls.example"

#: A connected ``(client, server)`` pair of SSLStreams, as the makers here return it.
StreamPair = tuple[SSLStream[Stream], SSLStream[Stream]]

#: Any ``(client, server)`` pair, whatever its transport type; what the helpers that
#: take pairs accept. (SSLStream is invariant in its transport type, so a pair over
#: ``trio.SocketStream`` is not a :data:`StreamPair`.)
AnyStreamPair = tuple[SSLStream[Any], SSLStream[Any]]

#: A transport the pair makers and the ``tls_transport`` fixture can use.
TransportName = Literal["memory", "lockstep", "tcp"]

#: Every transport :func:`open_tls_stream_pair` knows, in order of strictness:
#: "memory" buffers without limit, "lockstep" has no buffer at all (a send waits for
#: the peer's receive), "tcp" is a real loopback socket with kernel buffers.
TRANSPORTS: tuple[TransportName, ...] = ("memory", "lockstep", "tcp")


def _contexts(
    ca: TLSTestCA | None,
    version: TLSVersionName | None,
    client_context: ssl.SSLContext | None,
    server_context: ssl.SSLContext | None,
) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    if client_context is None or server_context is None:
        ca = ca if ca is not None else TLSTestCA()
        client_context = client_context or ca.client_context(version=version)
        server_context = server_context or ca.server_context(version=version)
    return client_context, server_context


# The pair makers spell out the same keyword arguments on purpose: each is public,
# and its own signature is what a reader, an IDE and a type checker see.
def tls_memory_stream_pair(
    ca: TLSTestCA | None = None,
    *,
    version: TLSVersionName | None = None,
    https_compatible: bool = False,
    client_context: ssl.SSLContext | None = None,
    server_context: ssl.SSLContext | None = None,
    chaos_seed: int | None = None,
) -> StreamPair:
    """``(client, server)`` over :func:`trio.testing.memory_stream_pair` (buffered).

    Nothing is exchanged yet: the handshake runs on first use. With no ``ca`` and no
    contexts a fresh :class:`TLSTestCA` is made (slower; share one across tests).
    With ``chaos_seed``, the transports are wrapped in :class:`ChaosStream`.
    """
    client_ctx, server_ctx = _contexts(ca, version, client_context, server_context)
    transports = trio.testing.memory_stream_pair()
    return _wrap(transports, client_ctx, server_ctx, https_compatible, chaos_seed)


def tls_lockstep_stream_pair(
    ca: TLSTestCA | None = None,
    *,
    version: TLSVersionName | None = None,
    https_compatible: bool = False,
    client_context: ssl.SSLContext | None = None,
    server_context: ssl.SSLContext | None = None,
    chaos_seed: int | None = None,
) -> StreamPair:
    """``(client, server)`` over :func:`trio.testing.lockstep_stream_pair`.

    The transport has no buffer at all: a send completes only when the other side
    receives. Code that only works because some buffer absorbed a write deadlocks
    here, which is the point. Arguments as for :func:`tls_memory_stream_pair`.
    """
    client_ctx, server_ctx = _contexts(ca, version, client_context, server_context)
    transports = trio.testing.lockstep_stream_pair()
    return _wrap(transports, client_ctx, server_ctx, https_compatible, chaos_seed)


async def open_tls_tcp_stream_pair(
    ca: TLSTestCA | None = None,
    *,
    version: TLSVersionName | None = None,
    https_compatible: bool = False,
    client_context: ssl.SSLContext | None = None,
    server_context: ssl.SSLContext | None = None,
    chaos_seed: int | None = None,
    host: str = "127.0.0.1",
) -> StreamPair:
    """``(client, server)`` over a real TCP connection on the loopback interface.

    A listening socket is opened on ``host`` (``"127.0.0.1"`` or ``"::1"``) with a
    port the kernel picks, one connection is made and accepted, and the listener is
    closed again. Other arguments as for :func:`tls_memory_stream_pair`. Close both
    streams when done (``aclose``), as with any socket.
    """
    client_ctx, server_ctx = _contexts(ca, version, client_context, server_context)
    listener = (await trio.open_tcp_listeners(0, host=host))[0]
    try:
        # The kernel completes the TCP handshake from the listen backlog, so
        # connecting before accepting needs no second task.
        client_transport = await trio.testing.open_stream_to_socket_listener(listener)
        try:
            server_transport = await listener.accept()
        except BaseException:
            await trio.aclose_forcefully(client_transport)
            raise
    finally:
        await listener.aclose()
    transports: tuple[Stream, Stream] = (client_transport, server_transport)
    return _wrap(transports, client_ctx, server_ctx, https_compatible, chaos_seed)


async def open_tls_stream_pair(
    transport: TransportName = "memory",
    ca: TLSTestCA | None = None,
    *,
    version: TLSVersionName | None = None,
    https_compatible: bool = False,
    client_context: ssl.SSLContext | None = None,
    server_context: ssl.SSLContext | None = None,
    chaos_seed: int | None = None,
) -> StreamPair:
    """A ``(client, server)`` pair over the transport named by ``transport``.

    One entry point for tests parametrized over :data:`TRANSPORTS`; the other
    arguments are those of :func:`tls_memory_stream_pair`.
    """
    if transport == "tcp":
        return await open_tls_tcp_stream_pair(
            ca,
            version=version,
            https_compatible=https_compatible,
            client_context=client_context,
            server_context=server_context,
            chaos_seed=chaos_seed,
        )
    if transport == "memory":
        maker = tls_memory_stream_pair
    elif transport == "lockstep":
        maker = tls_lockstep_stream_pair
    else:
        raise ValueError(f"transport must be one of {TRANSPORTS}, not {transport!r}")
    await trio.lowlevel.checkpoint()
    return maker(
        ca,
        version=version,
        https_compatible=https_compatible,
        client_context=client_context,
        server_context=server_context,
        chaos_seed=chaos_seed,
    )


async def handshake_pair(client: SSLStream[Any], server: SSLStream[Any]) -> None:
    """Run both handshakes concurrently, as they must be on a lockstep transport.

    Which one finishes first is not defined (it differs between TLS 1.2 and 1.3) and
    this does not tell. A failure on either side propagates as an ExceptionGroup.
    """
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.do_handshake)
        nursery.start_soon(server.do_handshake)


async def close_pair_forcefully(pair: AnyStreamPair) -> None:
    """Close both streams and their transports at once, without any goodbye.

    A stream that was unwrapped has handed its transport to whoever called
    ``unwrap()`` (its ``transport_stream`` is None): closing that one is theirs.
    """
    for stream in pair:
        transport = stream.transport_stream
        await trio.aclose_forcefully(stream)
        if transport is not None:
            await trio.aclose_forcefully(transport)


def _wrap(
    transports: tuple[Stream, Stream],
    client_ctx: ssl.SSLContext,
    server_ctx: ssl.SSLContext,
    https_compatible: bool,
    chaos_seed: int | None,
) -> StreamPair:
    client_transport, server_transport = (
        transports if chaos_seed is None else chaos_stream_pair(transports, chaos_seed)
    )
    client = SSLStream[Stream](
        client_transport,
        client_ctx,
        server_hostname=SERVER_NAME,
        https_compatible=https_compatible,
    )
    server = SSLStream[Stream](
        server_transport, server_ctx, server_side=True, https_compatible=https_compatible
    )
    return client, server
