"""Real ClientHellos, taken from client SSLObjects, for tests of what reads them."""

from __future__ import annotations

import ssl


def client_hello(context: ssl.SSLContext, hostname: str | None) -> bytes:
    """The first flight a client built from ``context`` sends to ``hostname``."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = context.wrap_bio(incoming, outgoing, server_hostname=hostname)
    try:
        client.do_handshake()
    except ssl.SSLWantReadError:
        return outgoing.read()
    raise AssertionError("a client handshake finished without a server")


def reframe(hello: bytes, size: int) -> bytes:
    """The same handshake message carried in records of at most ``size`` bytes."""
    message = hello[5:]
    return b"".join(
        b"\x16\x03\x01" + len(part).to_bytes(2, "big") + part
        for part in (message[i : i + size] for i in range(0, len(message), size))
    )
