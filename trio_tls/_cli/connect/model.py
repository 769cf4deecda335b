"""What ``trio-tls connect`` was asked to do, and what it found out.

The command (``connect``), the connections it makes (``connect.probe``) and its
report (``connect.report``) all speak in these terms, so they live apart from
all three.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass

from ..._contexts import TLSVersionName
from ..certs import CertInfo
from ..options import Address
from ..tls import Summary


@dataclass(frozen=True)
class ConnectOptions:
    """What the command line asked connect to do."""

    address: Address
    servername: str | None
    alpn: tuple[str, ...]
    cafile: str | None
    cert: str | None
    key: str | None
    tls_version: TLSVersionName | None
    insecure: bool
    send: bytes | None
    json: bool
    timeout: float
    wait: float
    reconnect: bool

    @property
    def host(self) -> str:
        return self.address.host

    @property
    def port(self) -> int:
        return self.address.port

    @property
    def expected_name(self) -> str:
        """The name sent as SNI and checked against the certificate."""
        return self.servername or self.host

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ConnectOptions:
        return cls(
            address=args.address,
            servername=args.servername,
            alpn=args.alpn or (),
            cafile=args.cafile,
            cert=args.cert,
            key=args.key,
            tls_version=args.tls_version,
            insecure=args.insecure,
            send=None if args.send is None else unescape(args.send).encode(),
            json=args.json,
            timeout=args.timeout,
            wait=args.wait,
            reconnect=args.reconnect,
        )


@dataclass(frozen=True)
class Outcome:
    """Everything learnt from one successful connection."""

    summary: Summary
    tcp_seconds: float
    chain: list[CertInfo]
    #: False when only the leaf could be read (Python before 3.13).
    chain_complete: bool
    received: bytes
    #: How the conversation ended, when the server ended it.
    note: str | None


def unescape(text: str) -> str:
    escapes = {"r": "\r", "n": "\n", "t": "\t", "\\": "\\"}
    return re.sub(r"\\(.)", lambda m: escapes.get(m[1], m[0]), text)
