"""TLS plumbing shared by the commands: contexts, version flags, summaries."""

from __future__ import annotations

import argparse
import ssl
from dataclasses import dataclass

import trio

from . import _cli_output as out

#: The ``--tls1.2`` / ``--tls1.3`` switches, shared by every command.
VERSION_FLAGS = {"--tls1.2": ssl.TLSVersion.TLSv1_2, "--tls1.3": ssl.TLSVersion.TLSv1_3}


def add_version_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    for flag, version in VERSION_FLAGS.items():
        group.add_argument(
            flag,
            dest="tls_version",
            action="store_const",
            const=version,
            help=f"allow only TLS {flag[5:]} (default: whatever both sides support)",
        )


def pin_version(ctx: ssl.SSLContext, version: ssl.TLSVersion | None) -> None:
    if version is not None:
        ctx.minimum_version = ctx.maximum_version = version


def parse_alpn(text: str | None) -> list[str]:
    """``"h2,http/1.1"`` -> ``["h2", "http/1.1"]``; empty entries are dropped."""
    return [p.strip() for p in (text or "").split(",") if p.strip()]


def client_context(
    *,
    cafile: str | None = None,
    cert: str | None = None,
    key: str | None = None,
    version: ssl.TLSVersion | None = None,
    alpn: list[str] | None = None,
    insecure: bool = False,
) -> ssl.SSLContext:
    """A client context with the stdlib's secure defaults, then the user's choices."""
    ctx = ssl.create_default_context(cafile=cafile)
    if insecure:
        # Order matters: verify_mode cannot be CERT_NONE while check_hostname is on.
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert is not None:
        ctx.load_cert_chain(cert, key)
    pin_version(ctx, version)
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


@dataclass(frozen=True)
class Summary:
    """What was negotiated on one connection and how much it carried."""

    version: str | None
    cipher: str | None
    cipher_bits: int | None
    alpn: str | None
    resumed: bool
    handshake_seconds: float | None
    #: Application data, before encryption.
    bytes_sent: int
    bytes_received: int

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
        }


def summarize(
    stream: trio.SSLStream[trio.SocketStream],
    *,
    handshake_seconds: float | None,
    bytes_sent: int = 0,
    bytes_received: int = 0,
) -> Summary:
    """Read the negotiated parameters off a stream whose handshake is done."""
    cipher = stream.cipher()
    return Summary(
        version=stream.version(),
        cipher=cipher[0] if cipher else None,
        cipher_bits=cipher[2] if cipher else None,
        alpn=stream.selected_alpn_protocol(),
        resumed=bool(stream.session_reused),
        handshake_seconds=handshake_seconds,
        bytes_sent=bytes_sent,
        bytes_received=bytes_received,
    )


def bound_address(listener: trio.SSLListener[trio.SocketStream]) -> tuple[str, int]:
    """The address a TCP listener actually bound, port 0 resolved."""
    transport = listener.transport_listener
    assert isinstance(transport, trio.SocketListener)  # serve_ssl_over_tcp listens on TCP
    name = transport.socket.getsockname()
    return name[0], name[1]
