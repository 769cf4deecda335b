"""A small HTTPS server on trio_tls that speaks HTTP/1.1 (h11) or HTTP/2 (h2) by ALPN.

It is the server side of the httpx integration tests: real protocol libraries (the
ones httpx uses), a real :class:`trio_tls.SSLStream`, loopback TCP. Every response
body is one line, ``<version> <method> <path> <body length> <body sha256>``
(:func:`reply_body`), so a test can check which protocol carried the request and
that a large upload arrived whole, while every response fits one HTTP/2 frame.
"""

from __future__ import annotations

import hashlib

import h2.config
import h2.connection
import h2.events
import h11
import trio

import trio_tls

Stream = trio_tls.SSLStream[trio.SocketStream]

#: Bound on any one receive, so a stuck test fails instead of waiting for pytest-timeout.
RECEIVE_TIMEOUT = 10.0


def reply_body(version: str, method: bytes, path: bytes, body: bytes) -> bytes:
    """What the server answers to one request."""
    digest = hashlib.sha256(body).hexdigest()
    return f"{version} {method.decode()} {path.decode()} {len(body)} {digest}".encode()


async def serve_http(stream: Stream) -> None:
    """Handle one connection: HTTP/2 if ALPN chose ``h2``, else HTTP/1.1."""
    await stream.do_handshake()
    if stream.selected_alpn_protocol() == "h2":
        await _serve_h2(stream)
    else:
        await _serve_h11(stream)


async def _receive(stream: Stream) -> bytes:
    with trio.fail_after(RECEIVE_TIMEOUT):
        return await stream.receive_some()


async def _serve_h11(stream: Stream) -> None:
    conn = h11.Connection(h11.SERVER)
    request: h11.Request | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await _receive(stream))
        elif isinstance(event, h11.Request):
            request, body = event, bytearray()
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            assert request is not None
            content = reply_body("HTTP/1.1", request.method, request.target, bytes(body))
            headers = [(b"content-length", b"%d" % len(content))]
            for reply in (h11.Response(status_code=200, headers=headers), h11.Data(data=content)):
                await stream.send_all(conn.send(reply) or b"")
            await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
            if conn.our_state is h11.MUST_CLOSE:
                return
            conn.start_next_cycle()
        else:  # ConnectionClosed, or PAUSED after the client closed its side
            return


async def _serve_h2(stream: Stream) -> None:
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    conn.initiate_connection()
    await stream.send_all(conn.data_to_send())
    requests: dict[int, tuple[bytes, bytes, bytearray]] = {}
    while data := await _receive(stream):
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.RequestReceived):
                assert event.stream_id is not None and event.headers is not None
                fields = {bytes(k): bytes(v) for k, v in event.headers}
                requests[event.stream_id] = (fields[b":method"], fields[b":path"], bytearray())
            elif isinstance(event, h2.events.DataReceived):
                assert event.stream_id is not None and event.data is not None
                requests[event.stream_id][2].extend(event.data)
                conn.acknowledge_received_data(event.flow_controlled_length or 0, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                assert event.stream_id is not None
                method, path, body = requests.pop(event.stream_id)
                _respond_h2(conn, event.stream_id, reply_body("HTTP/2", method, path, bytes(body)))
            elif isinstance(event, h2.events.ConnectionTerminated):
                return
        await stream.send_all(conn.data_to_send())


def _respond_h2(conn: h2.connection.H2Connection, stream_id: int, content: bytes) -> None:
    # A reply is one short line: it fits one DATA frame and any flow-control window.
    conn.send_headers(stream_id, [(":status", "200"), ("content-length", str(len(content)))])
    conn.send_data(stream_id, content, end_stream=True)
