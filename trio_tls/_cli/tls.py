"""TLS plumbing shared by the commands: contexts, summaries, closing."""

from __future__ import annotations

import contextlib
import ssl
from dataclasses import dataclass, replace

import trio

from .._contexts import TLSVersionName, keep_truncation_detectable, pin_version
from .._listener import SSLListener, default_client_context
from .._statistics import TLSStatistics
from .._stream import SSLStream
from . import output as out
from .loading import identity, trust

#: close_notify is a courtesy; never let a peer that does not read hold us up.
CLOSE_TIMEOUT = 1.0


def server_context(
    version: TLSVersionName | None, alpn: tuple[str, ...] | list[str]
) -> ssl.SSLContext:
    """A server context as trio_tls's helpers would have it: truncation stays detectable."""
    ctx = keep_truncation_detectable(ssl.create_default_context(ssl.Purpose.CLIENT_AUTH))
    pin_version(ctx, version)
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


def client_context(
    *,
    cafile: str | None = None,
    cert: str | None = None,
    key: str | None = None,
    version: TLSVersionName | None = None,
    alpn: tuple[str, ...] = (),
    insecure: bool = False,
) -> ssl.SSLContext:
    """trio_tls's default client context, then the user's choices.

    Raises :exc:`UsageError` naming the option whose file cannot be used.
    """
    # Verification on, TLS 1.2 or later, and a truncated connection never reported
    # as a clean close: connect tells the two apart.
    ctx = default_client_context()
    if cafile is not None:
        trust(ctx, "--cafile", cafile)
    if insecure:
        # Order matters: verify_mode cannot be CERT_NONE while check_hostname is on.
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert is not None:
        identity(ctx, cert, key)
    pin_version(ctx, version)
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


@dataclass(frozen=True)
class Summary:
    """What was negotiated on one connection and how much it carried.

    Built from :meth:`trio_tls.SSLStream.statistics`, plus the cipher's strength.
    """

    version: str | None
    cipher: str | None
    cipher_bits: int | None
    alpn: str | None
    resumed: bool
    handshake_seconds: float | None
    #: Application data, before encryption.
    bytes_sent: int
    bytes_received: int
    #: Ciphertext on the transport, handshake and alerts included.
    wire_bytes_sent: int
    wire_bytes_received: int

    def counted(self, stats: TLSStatistics) -> Summary:
        """These negotiated parameters with the byte counts of a later snapshot."""
        return replace(
            self,
            bytes_sent=stats.bytes_sent,
            bytes_received=stats.bytes_received,
            wire_bytes_sent=stats.wire_bytes_sent,
            wire_bytes_received=stats.wire_bytes_received,
        )

    def rows(self) -> list[out.Row]:
        cipher = self.cipher or "n/a"
        if self.cipher_bits:
            cipher += f" ({self.cipher_bits} bits)"
        return [
            ("version", self.version or "n/a"),
            ("cipher", cipher),
            ("ALPN", self.alpn or "(none)"),
            ("resumed", out.yes_no(self.resumed)),
            ("handshake", out.duration(self.handshake_seconds)),
        ]

    def traffic_rows(self) -> list[out.Row]:
        return [
            (
                "sent",
                f"{out.size(self.bytes_sent)} of data, {out.size(self.wire_bytes_sent)} on the wire",
            ),
            (
                "received",
                f"{out.size(self.bytes_received)} of data, {out.size(self.wire_bytes_received)} on the wire",
            ),
        ]

    def to_json(self) -> dict[str, object]:
        return {
            "version": self.version,
            "cipher": self.cipher,
            "cipher_bits": self.cipher_bits,
            "alpn": self.alpn,
            "session_reused": self.resumed,
            "handshake_seconds": self.handshake_seconds,
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
            "wire_bytes_sent": self.wire_bytes_sent,
            "wire_bytes_received": self.wire_bytes_received,
        }


def summarize(stream: SSLStream[trio.SocketStream]) -> Summary:
    """Read the negotiated parameters and counters off a stream whose handshake is done."""
    stats = stream.statistics()
    cipher = stream.cipher()
    # Field by field, not TLSStatistics itself: the CLI prints the cipher's bits and
    # no call counts, and its output must not change when statistics() grows a field.
    return Summary(
        version=stats.version,
        cipher=stats.cipher,
        cipher_bits=cipher[2] if cipher else None,
        alpn=stats.alpn_protocol,
        resumed=stats.session_reused,
        handshake_seconds=stats.handshake_duration,
        bytes_sent=stats.bytes_sent,
        bytes_received=stats.bytes_received,
        wire_bytes_sent=stats.wire_bytes_sent,
        wire_bytes_received=stats.wire_bytes_received,
    )


def bound_address(listener: SSLListener[trio.SocketStream]) -> tuple[str, int]:
    """The address a TCP listener actually bound, port 0 resolved."""
    transport = listener.transport_listener
    assert isinstance(transport, trio.SocketListener)  # serve_ssl_over_tcp listens on TCP
    name = transport.socket.getsockname()
    return name[0], name[1]


async def close_quietly(stream: SSLStream[trio.SocketStream]) -> None:
    """Close with close_notify if the peer lets us within a second, else just close."""
    with trio.move_on_after(CLOSE_TIMEOUT):
        # If the stream broke, the transport is closed anyway; nothing is left to tell.
        with contextlib.suppress(trio.BrokenResourceError):
            await stream.aclose()
