"""Counters kept by every SSLStream, and the snapshot :meth:`SSLStream.statistics` returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import final


class Counters:
    """What one stream has moved so far; updated on every send and receive.

    Plain attributes on a slotted object: notes/benchmarks.md measured keeping them
    as indistinguishable from not keeping them at all.
    """

    __slots__ = (
        "bytes_received",
        "bytes_sent",
        "transport_receives",
        "transport_sends",
        "wire_bytes_received",
        "wire_bytes_sent",
    )

    def __init__(self) -> None:
        self.bytes_sent = 0
        self.bytes_received = 0
        self.wire_bytes_sent = 0
        self.wire_bytes_received = 0
        self.transport_sends = 0
        self.transport_receives = 0

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


@final
@dataclass(frozen=True, slots=True)
class TLSStatistics:
    """A snapshot of one :class:`~trio_tls.SSLStream`, from its ``statistics()``."""

    #: Negotiated protocol, e.g. ``"TLSv1.3"``; None before the handshake.
    version: str | None
    #: Negotiated cipher suite name; None before the handshake.
    cipher: str | None
    #: Negotiated ALPN protocol, or None.
    alpn_protocol: str | None
    #: Whether the handshake resumed an earlier session.
    session_reused: bool
    #: Seconds from the handshake's first step to its completion; None before.
    handshake_duration: float | None
    #: Seconds spent in the server's context chooser (part of the handshake); None
    #: when the stream has a fixed context or the chooser has not run yet.
    choose_duration: float | None
    #: Plaintext bytes accepted by send_all / returned by receive_some.
    bytes_sent: int
    bytes_received: int
    #: Ciphertext bytes written to / read from the transport (handshake included;
    #: received also counts what a lingering close read and dropped).
    wire_bytes_sent: int
    wire_bytes_received: int
    #: Calls made to the transport's send_all / receive_some.
    transport_sends: int
    transport_receives: int
