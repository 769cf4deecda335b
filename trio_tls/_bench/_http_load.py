"""The HTTP load generator of the hypercorn benchmark: keep-alive GETs as fast as answered.

Usage: ``python -I _http_load.py PORT h1|h2 CONNECTIONS WARMUP SECONDS CAFILE``. Opens
CONNECTIONS TLS connections to 127.0.0.1:PORT (ALPN ``http/1.1`` or ``h2``), keeps one
request in flight on each, and prints one JSON line: the responses completed during the
SECONDS after a WARMUP, requests per second, and the responses of the whole run.

It is the same program, standard library only, for both sides of the comparison, and it
runs in its own process, so patching the server cannot change the client. It does as
little per response as HTTP allows: HTTP/1.1 responses are framed by Content-Length, and
HTTP/2 is spoken with pre-encoded frames (HPACK static-table indices, no dynamic table),
reading only the frame headers it needs (END_STREAM, SETTINGS, PING, GOAWAY).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import struct
import sys
import time
from typing import Final

HOST: Final = "127.0.0.1"
#: The server certificate's name (the benchmark's HOSTNAME).
SERVER_NAME: Final = "localhost"
H1_REQUEST: Final = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"

_PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_DATA, _HEADERS, _SETTINGS, _PING, _GOAWAY, _WINDOW_UPDATE = 0, 1, 4, 6, 7, 8
_END_STREAM, _ACK, _END_HEADERS = 0x1, 0x1, 0x4
#: :method GET, :scheme https, :path / (static indices 2, 7, 4), then :authority
#: (index 1) as a literal without indexing.
_H2_BLOCK: Final = b"\x82\x87\x84\x01" + bytes([len(SERVER_NAME)]) + SERVER_NAME.encode()
#: Received DATA is given back to the connection window in steps this large.
_WINDOW_STEP: Final = 1 << 20


def _frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes([kind, flags])
        + struct.pack(">I", stream)
        + payload
    )


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


class _Counter:
    """Responses completed since the connections opened, warm-up included."""

    def __init__(self) -> None:
        self.done = 0

    def completed(self) -> None:
        self.done += 1


class _H1(asyncio.Protocol):
    def __init__(self, counter: _Counter) -> None:
        self.counter = counter
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(H1_REQUEST)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            length = _content_length(bytes(buffer[:end]))
            if len(buffer) < end + 4 + length:
                return
            del buffer[: end + 4 + length]
            self.counter.completed()
            assert self.transport is not None
            self.transport.write(H1_REQUEST)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)


class _H2(asyncio.Protocol):
    def __init__(self, counter: _Counter) -> None:
        self.counter = counter
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.stream = 1
        self.unacknowledged = 0
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(
            _PREFACE
            + _frame(_SETTINGS, 0, 0)
            + _frame(_WINDOW_UPDATE, 0, 0, struct.pack(">I", _WINDOW_STEP))
            + self._request()
        )

    def _request(self) -> bytes:
        frame = _frame(_HEADERS, _END_STREAM | _END_HEADERS, self.stream, _H2_BLOCK)
        self.stream += 2
        return frame

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        out = bytearray()
        while len(buffer) >= 9:
            length = int.from_bytes(buffer[:3], "big")
            if len(buffer) < 9 + length:
                break
            kind, flags = buffer[3], buffer[4]
            if kind == _DATA:
                self.unacknowledged += length
            elif kind == _SETTINGS and not flags & _ACK:
                out += _frame(_SETTINGS, _ACK, 0)
            elif kind == _PING and not flags & _ACK:
                out += _frame(_PING, _ACK, 0, bytes(buffer[9 : 9 + length]))
            elif kind == _GOAWAY:
                raise ConnectionError("the server sent GOAWAY")
            if kind in (_DATA, _HEADERS) and flags & _END_STREAM:
                self.counter.completed()
                out += self._request()
            del buffer[: 9 + length]
        if self.unacknowledged >= _WINDOW_STEP // 2:
            out += _frame(_WINDOW_UPDATE, 0, 0, struct.pack(">I", self.unacknowledged))
            self.unacknowledged = 0
        if out:
            assert self.transport is not None
            self.transport.write(bytes(out))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)


async def load(
    port: int, protocol: str, connections: int, warmup: float, seconds: float, cafile: str
) -> dict[str, object]:
    """Run the load; return what was measured."""
    context = ssl.create_default_context(cafile=cafile)
    context.set_alpn_protocols(["h2" if protocol == "h2" else "http/1.1"])
    counter = _Counter()
    loop = asyncio.get_running_loop()
    kind = _H2 if protocol == "h2" else _H1
    opened = [
        await loop.create_connection(
            lambda: kind(counter), HOST, port, ssl=context, server_hostname=SERVER_NAME
        )
        for _ in range(connections)
    ]
    for transport, _ in opened:
        chosen = transport.get_extra_info("ssl_object").selected_alpn_protocol()
        expected = "h2" if protocol == "h2" else "http/1.1"
        if chosen != expected:
            raise RuntimeError(f"the server chose {chosen!r}, not {expected!r}")
    await asyncio.sleep(warmup)
    before, started = counter.done, time.perf_counter()
    await asyncio.sleep(seconds)
    requests, elapsed = counter.done - before, time.perf_counter() - started
    broken = [p.lost.result() for _, p in opened if p.lost.done()]
    for transport, _ in opened:
        transport.close()
    if broken:
        raise RuntimeError(f"{len(broken)} connections closed during the run: {broken[0]!r}")
    # "total" includes the warm-up: the runner divides the server's CPU time by it.
    return {
        "requests": requests,
        "seconds": elapsed,
        "rps": requests / elapsed,
        "total": counter.done,
    }


def main(argv: list[str]) -> int:
    port, protocol, connections, warmup, seconds, cafile = argv
    result = asyncio.run(
        load(int(port), protocol, int(connections), float(warmup), float(seconds), cafile)
    )
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
