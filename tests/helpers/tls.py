"""Certificates, TLS contexts pinned to one protocol version, and checkable payloads.

Every context is fresh (callers may tweak it); the CA and the leaf certificates are
minted once per test process, lazily, because key generation is the slow part.
"""

from __future__ import annotations

import functools
import hashlib
import random
import ssl
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import trustme

#: The name and address every server certificate is issued for; clients connect to
#: ``SERVER_ADDRESS`` and verify ``SERVER_HOSTNAME`` (or the IP address, also in the SAN).
SERVER_HOSTNAME = "localhost"
SERVER_ADDRESS = "127.0.0.1"
CLIENT_IDENTITY = "client@example.org"


@dataclass(frozen=True)
class Version:
    """One TLS protocol version under test, spelled for each tool that needs it."""

    #: For ``ssl.SSLContext.minimum_version`` / ``maximum_version``.
    tls: ssl.TLSVersion
    #: What ``SSLObject.version()`` reports once negotiated.
    name: str
    #: The ``openssl s_server`` / ``s_client`` switch.
    openssl_flag: str
    #: The ``curl`` switches that pin exactly this version.
    curl_flags: tuple[str, ...]


TLS12 = Version(ssl.TLSVersion.TLSv1_2, "TLSv1.2", "-tls1_2", ("--tlsv1.2", "--tls-max", "1.2"))
TLS13 = Version(ssl.TLSVersion.TLSv1_3, "TLSv1.3", "-tls1_3", ("--tlsv1.3", "--tls-max", "1.3"))

#: Parametrize a test over both versions with readable ids: ``test_x[tls12]``.
VERSIONS = [pytest.param(TLS12, id="tls12"), pytest.param(TLS13, id="tls13")]


@functools.cache
def certificate_authority() -> trustme.CA:
    """The test CA, created on first use (never at import time)."""
    return trustme.CA()


@functools.cache
def server_certificate() -> trustme.LeafCert:
    """Leaf for ``localhost`` and ``127.0.0.1``, so either name verifies."""
    return certificate_authority().issue_cert(SERVER_HOSTNAME, SERVER_ADDRESS)


@functools.cache
def client_certificate() -> trustme.LeafCert:
    """Leaf a client presents when the server asks (post-handshake auth)."""
    return certificate_authority().issue_cert(CLIENT_IDENTITY)


def _pin(ctx: ssl.SSLContext, version: Version) -> ssl.SSLContext:
    ctx.minimum_version = version.tls
    ctx.maximum_version = version.tls
    return ctx


def server_context(version: Version) -> ssl.SSLContext:
    """A server context presenting :func:`server_certificate`, pinned to ``version``."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_certificate().configure_cert(ctx)
    return _pin(ctx, version)


def client_context(version: Version) -> ssl.SSLContext:
    """A verifying client context trusting the test CA, pinned to ``version``."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    certificate_authority().configure_trust(ctx)
    return _pin(ctx, version)


def random_payload(size: int, seed: int) -> bytes:
    """``size`` reproducible random bytes (same seed, same bytes, every run)."""
    return random.Random(seed).randbytes(size)


def random_lines(count: int, width: int, seed: int) -> bytes:
    r"""``count`` reproducible lines of ``width`` hex digits, each ending in ``\n``.

    For line-oriented peers such as ``openssl s_server -rev``: no line is a command
    word and none contains a newline of its own.
    """
    r = random.Random(seed)
    return b"".join(r.randbytes(width // 2).hex().encode() + b"\n" for _ in range(count))


def reverse_lines(data: bytes) -> bytes:
    """What ``openssl s_server -rev`` answers to ``data``: every line reversed."""
    return b"".join(line[::-1] + b"\n" for line in data.splitlines())


def digest(data: bytes | bytearray) -> str:
    """Short content fingerprint for assertions that must not dump 500 KiB on failure."""
    return hashlib.sha256(data).hexdigest()


def chunks(data: bytes, seed: int, *, low: int = 1, high: int = 65536) -> Iterator[bytes]:
    """Split ``data`` into reproducible random-sized pieces (``low``..``high`` bytes)."""
    r = random.Random(seed)
    view = memoryview(data)
    offset = 0
    while offset < len(data):
        size = r.randint(low, high)
        yield bytes(view[offset : offset + size])
        offset += size


def enable_post_handshake_auth(ctx: ssl.SSLContext) -> ssl.SSLContext:
    """Let a client context answer TLS 1.3 post-handshake CertificateRequests."""
    client_certificate().configure_cert(ctx)
    ctx.post_handshake_auth = True
    return ctx
