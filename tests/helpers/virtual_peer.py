"""A pyOpenSSL TLS peer that echoes everything and keeps re-running handshakes.

The stdlib :mod:`ssl` module can answer a renegotiation but has no way to start one,
so the peer that starts them is written with pyOpenSSL, driven in memory-BIO mode
over any trio :class:`~trio.abc.Stream` (a ``trio.testing`` memory stream or a real
loopback TCP socket): no threads, so every interleaving is decided by trio's
scheduler and, in the memory variant, by a seeded ``sleeper``.

Which "interruption" the peer performs depends on the protocol version:

- TLS 1.2: ``renegotiate()``. As a server that sends HelloRequest; as a client it
  sends a new ClientHello (OpenSSL 3 servers refuse those unless allowed, see
  :data:`OP_ALLOW_CLIENT_RENEGOTIATION`).
- TLS 1.3 has no renegotiation; its closest equivalent is post-handshake client
  authentication: the server sends a CertificateRequest in the middle of the
  application data and the client must answer while traffic flows in both directions.

Design rule that keeps the peer itself correct: it feeds all received bytes to
OpenSSL and drains every readable record with ``recv()`` before it ``send()``\\ s,
so OpenSSL never meets application data inside a write (which OpenSSL treats as a
fatal "unexpected record" during a renegotiation). It also never stops reading while
it has output queued: reading and writing are separate tasks, like any real
full-duplex peer, so backpressure on one direction cannot stall the other.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Awaitable, Callable
from typing import Final

import trio
from OpenSSL import SSL
from OpenSSL._util import lib as _openssl_lib

from trio_tls.testing import SERVER_NAME, TLSTestCA, TLSVersionName

#: ``SSL_OP_ALLOW_CLIENT_RENEGOTIATION`` (OpenSSL >= 3.0, ``SSL_OP_BIT(8)``). OpenSSL 3
#: servers reject client-initiated renegotiation by default; neither :mod:`ssl` nor
#: pyOpenSSL names this flag, so tests that need it set the bit by value.
OP_ALLOW_CLIENT_RENEGOTIATION: Final = 1 << 8

#: ``SSL_VERIFY_POST_HANDSHAKE``: ask for the client certificate only after the
#: handshake, on demand (pyOpenSSL has no name for it either).
VERIFY_POST_HANDSHAKE: Final = 0x08

#: Largest plaintext piece handed to ``Connection.send`` at once (one TLS record).
SEND_CHUNK: Final = 16384

Sleeper = Callable[[str], Awaitable[None]]


async def no_sleep(where: str) -> None:
    """Default sleeper: just a checkpoint, so the scheduler may still switch tasks."""
    await trio.lowlevel.checkpoint()


class Interruption(enum.Enum):
    """What the peer does every ``every`` echoed bytes."""

    #: TLS 1.2 renegotiation started by this peer (server: HelloRequest, client: ClientHello).
    RENEGOTIATE = "renegotiate"
    #: TLS 1.3 post-handshake CertificateRequest (server role only).
    POST_HANDSHAKE_AUTH = "post-handshake-auth"


def interruption_for(version: TLSVersionName) -> Interruption:
    """The in-band re-handshake each protocol version offers."""
    return Interruption.RENEGOTIATE if version == "1.2" else Interruption.POST_HANDSHAKE_AUTH


def _pyopenssl_version(version: TLSVersionName) -> int:
    return SSL.TLS1_2_VERSION if version == "1.2" else SSL.TLS1_3_VERSION


def _pinned_context(method: int, version: TLSVersionName) -> SSL.Context:
    ctx = SSL.Context(method)
    ctx.set_min_proto_version(_pyopenssl_version(version))
    ctx.set_max_proto_version(_pyopenssl_version(version))
    return ctx


class PyOpenSSLEchoPeer:
    """One pyOpenSSL connection that echoes and interrupts itself; see the module doc.

    Example::

        peer = PyOpenSSLEchoPeer.server(TLSTestCA(), "1.2", every=65536, limit=8)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(peer.serve, transport_end)
            ...  # talk TLS on the other end, then close it
        assert peer.completed == peer.started
    """

    def __init__(
        self,
        ctx: SSL.Context,
        *,
        server_side: bool,
        interruption: Interruption,
        every: int,
        limit: int,
        sleeper: Sleeper = no_sleep,
    ) -> None:
        self.interruption: Final = interruption
        self._every = every
        self._limit = limit
        self._sleeper = sleeper
        #: Interruptions this peer started / that OpenSSL reports finished.
        self.started = 0
        self.completed = 0
        #: Client certificates the peer verified (post-handshake auth only).
        self.verified_client_certificates = 0
        #: Plaintext bytes received from and echoed back to the other side.
        self.received = 0
        self.echoed = 0
        self._handshakes_done = 0
        self._next_interruption = every
        self._backlog = bytearray()
        self._closing = False
        self._output_ready = trio.Event()

        ctx.set_info_callback(self._on_info)
        self._conn = SSL.Connection(ctx, None)
        if server_side:
            self._conn.set_accept_state()
        else:
            self._conn.set_connect_state()
            self._conn.set_tlsext_host_name(SERVER_NAME.encode())

    # --- construction ---------------------------------------------------------------

    @classmethod
    def server(
        cls,
        ca: TLSTestCA,
        version: TLSVersionName,
        *,
        every: int,
        limit: int,
        sleeper: Sleeper = no_sleep,
    ) -> PyOpenSSLEchoPeer:
        """A server presenting ``ca``'s server certificate; under TLS 1.3 it will
        demand (and verify against ``ca``) a client certificate after the handshake,
        repeatedly."""
        ctx = _pinned_context(SSL.TLS_SERVER_METHOD, version)
        ca.server_cert.configure_cert(ctx)
        ca.ca.configure_trust(ctx)
        peer = cls(
            ctx,
            server_side=True,
            interruption=interruption_for(version),
            every=every,
            limit=limit,
            sleeper=sleeper,
        )
        if peer.interruption is Interruption.POST_HANDSHAKE_AUTH:
            mode = SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT | VERIFY_POST_HANDSHAKE
            peer._conn.set_verify(mode, peer._on_verify)
        return peer

    # server()'s parameters again: the two roles differ in how they set up OpenSSL.
    @classmethod
    def client(
        cls,
        ca: TLSTestCA,
        version: TLSVersionName,
        *,
        every: int,
        limit: int,
        sleeper: Sleeper = no_sleep,
    ) -> PyOpenSSLEchoPeer:
        """A client verifying against ``ca``; only TLS 1.2 has a client-started
        re-handshake."""
        if version != "1.2":
            raise ValueError("a client can only start re-handshakes in TLS 1.2")
        ctx = _pinned_context(SSL.TLS_CLIENT_METHOD, version)
        ca.ca.configure_trust(ctx)
        ctx.set_verify(SSL.VERIFY_PEER)
        return cls(
            ctx,
            server_side=False,
            interruption=Interruption.RENEGOTIATE,
            every=every,
            limit=limit,
            sleeper=sleeper,
        )

    # --- state the tests look at ------------------------------------------------------

    @property
    def pending(self) -> bool:
        """An interruption was started and OpenSSL has not reported it finished."""
        return self.completed < self.started

    @property
    def connection(self) -> SSL.Connection:
        """The pyOpenSSL connection, for assertions (``total_renegotiations()``...)."""
        return self._conn

    def stop_interrupting(self) -> None:
        """Start no further interruptions (those in flight still finish)."""
        self._limit = self.started

    def _on_info(self, conn: SSL.Connection, where: int, _ret: int) -> None:
        if self._is_end_of_handshake(conn, where):
            self._handshakes_done += 1
            # The first end is the initial handshake; every later one is ours.
            self.completed = max(0, self._handshakes_done - 1)

    def _is_end_of_handshake(self, conn: SSL.Connection, where: int) -> bool:
        if self.interruption is Interruption.RENEGOTIATE:
            # HANDSHAKE_DONE ends every TLS 1.2 handshake, but a server also gets one
            # right after writing a HelloRequest, before the renegotiation has begun.
            # OpenSSL clears "renegotiate pending" before it calls us at a real end.
            return bool(where & SSL.SSL_CB_HANDSHAKE_DONE) and not conn.renegotiate_pending()
        # TLS 1.3 post-handshake auth raises no HANDSHAKE_DONE; its end is the server
        # reading the client's Finished, as the initial handshake's end is.
        return bool(where & SSL.SSL_CB_ACCEPT_LOOP) and (
            conn.get_state_string() == b"SSLv3/TLS read finished"
        )

    def _on_verify(
        self, _conn: SSL.Connection, _cert: object, _errno: int, depth: int, ok: int
    ) -> bool:
        # Depth 0 is the client's own certificate, verified once per post-handshake auth.
        if depth == 0 and ok:
            self.verified_client_certificates += 1
        return bool(ok)

    # --- driving ----------------------------------------------------------------------

    async def serve(self, transport: trio.abc.Stream) -> None:
        """Talk TLS over ``transport`` until the other side closes; then close too."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._write_loop, transport)
            try:
                await self._read_loop(transport)
            finally:
                self._closing = True
                self._output_ready.set()

    async def _read_loop(self, transport: trio.abc.Stream) -> None:
        self._advance()  # a client peer must speak first
        while not self._closing:
            await self._sleeper("peer receive")
            try:
                data = await transport.receive_some()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if not data:
                return
            self._conn.bio_write(data)
            self._advance()

    async def _write_loop(self, transport: trio.abc.Stream) -> None:
        while True:
            if not self._closing:
                await self._output_ready.wait()
            # Re-arm before draining, with no checkpoint in between, so output queued
            # while we are sending wakes us again.
            self._output_ready = trio.Event()
            out = self._drain_outgoing()
            if out:
                await self._sleeper("peer send")
                try:
                    await transport.send_all(out)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
            elif self._closing:
                await transport.aclose()
                return

    def _advance(self) -> None:
        """Let OpenSSL consume all input, echo what it decrypted, maybe interrupt."""
        if self._handshakes_done == 0:
            # Only the first handshake is driven explicitly. Afterwards recv() drives
            # re-handshakes: it is the one call in which OpenSSL accepts application
            # data arriving in the middle of one.
            self._try_handshake()
        self._read_plaintext()
        self._echo_backlog()
        self._maybe_interrupt()
        self._output_ready.set()

    def _try_handshake(self) -> None:
        with contextlib.suppress(SSL.WantReadError):
            self._conn.do_handshake()

    def _read_plaintext(self) -> None:
        while True:
            try:
                data = self._conn.recv(65536)
            except SSL.WantReadError:
                return
            except SSL.ZeroReturnError:
                # close_notify from the other side: answer it, then wind down.
                self._conn.shutdown()
                self._closing = True
                return
            self.received += len(data)
            self._backlog += data

    def _echo_backlog(self) -> None:
        while self._backlog and not self._closing:
            piece = bytes(self._backlog[:SEND_CHUNK])
            try:
                sent = self._conn.send(piece)
            except SSL.WantReadError:
                # A re-handshake is in progress and needs the other side's next
                # flight; the backlog waits for it (OpenSSL wants the same bytes again).
                return
            del self._backlog[:sent]
            self.echoed += sent

    def _maybe_interrupt(self) -> None:
        if self._closing or self.started >= self._limit or self.pending:
            return
        if self.echoed < self._next_interruption:
            return
        # A fixed schedule (not "every bytes after the last one"): an interruption
        # held back by a pending one fires as soon as it may, so they keep coming
        # back to back while the echo lags behind.
        self._next_interruption += self._every
        self.started += 1
        if self.interruption is Interruption.RENEGOTIATE:
            assert self._conn.renegotiate(), "OpenSSL refused to start a renegotiation"
        else:
            # pyOpenSSL has no wrapper for SSL_verify_client_post_handshake; its cffi
            # binding does. Returns 1 when the CertificateRequest could be queued.
            queued = _openssl_lib.SSL_verify_client_post_handshake(self._conn._ssl)
            assert queued == 1, "OpenSSL refused post-handshake auth"
        self._try_handshake()  # writes the HelloRequest / ClientHello / CertificateRequest

    def _drain_outgoing(self) -> bytes:
        out = bytearray()
        while True:
            try:
                out += self._conn.bio_read(65536)
            except SSL.WantReadError:
                return bytes(out)
