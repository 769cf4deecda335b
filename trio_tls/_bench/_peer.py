"""The neutral peer of the memory workloads: blocking stdlib ``ssl``, one process.

Usage: ``python -I _peer.py client|server PORT TLS CERTS TIMEOUT``, where TLS is ``1.2``,
``1.3`` or ``none`` (plain TCP). It is the same program for every contender, so the measured
process is the only thing that changes between contenders.

* ``client``: reads ``open N`` lines on stdin; opens N connections to PORT one after the other
  (connect, handshake, echo 100 bytes), keeps them open and answers ``ok N``.
* ``server``: listens on an ephemeral port, prints ``port P``, then accepts connections one at
  a time, handshakes, echoes one 100-byte message and keeps each open.

Both exit on ``quit``, at end of stdin, or after TIMEOUT seconds, whichever comes first.

This module imports the standard library only and is run by path, not with ``-m``: importing
the ``trio_tls`` package would cost each memory run 0.3 s of start-up for nothing. For the same
reason it is where the benchmark's address, host name and TLS contexts are defined; the rest of
``trio_tls._bench`` imports them from here.
"""

from __future__ import annotations

import os
import socket
import ssl
import sys
import threading
from pathlib import Path
from typing import Final

#: Every connection in the benchmark is loopback TCP on this address (project rule: 127.0.0.1 only).
HOST: Final = "127.0.0.1"
#: The name the test certificates are issued for; clients verify it like a real client would.
HOSTNAME: Final = "localhost"
#: The one message each idle connection echoes before it is counted.
MESSAGE: Final = b"m" * 100


def _pin(ctx: ssl.SSLContext, tls: str) -> ssl.SSLContext:
    version = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}[tls]
    ctx.minimum_version = version
    ctx.maximum_version = version
    return ctx


def server_context(certs: str, tls: str, key: str = "ecdsa") -> ssl.SSLContext:
    """A default server context (as an application would build it), pinned to ``tls``."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(Path(certs) / f"{key}-server.pem"))
    return _pin(ctx, tls)


def client_context(certs: str, tls: str, key: str = "ecdsa") -> ssl.SSLContext:
    """A default verifying client context trusting the benchmark CA, pinned to ``tls``."""
    ctx = ssl.create_default_context(cafile=str(Path(certs) / f"{key}-ca.pem"))
    return _pin(ctx, tls)


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("peer closed during the memory echo")
        data += chunk
    return data


def _nodelay(sock: socket.socket) -> socket.socket:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _client(port: int, ctx: ssl.SSLContext | None, timeout: float) -> None:
    kept: list[socket.socket] = []
    for line in sys.stdin:
        if line.strip() == "quit":
            break
        count = int(line.split()[1])
        for _ in range(count):
            sock: socket.socket = _nodelay(socket.create_connection((HOST, port), timeout))
            if ctx is not None:
                sock = ctx.wrap_socket(sock, server_hostname=HOSTNAME)
            sock.sendall(MESSAGE)
            _recv_exactly(sock, len(MESSAGE))
            kept.append(sock)
        print(f"ok {count}", flush=True)


def _serve(listener: socket.socket, ctx: ssl.SSLContext | None, timeout: float) -> None:
    try:
        _accept_forever(listener, ctx, timeout)
    finally:
        # Any failure ends the process, so the measured client fails fast instead of waiting.
        os._exit(4)


def _accept_forever(listener: socket.socket, ctx: ssl.SSLContext | None, timeout: float) -> None:
    kept: list[socket.socket] = []
    while True:
        sock, _ = listener.accept()
        sock.settimeout(timeout)
        _nodelay(sock)
        if ctx is not None:
            sock = ctx.wrap_socket(sock, server_side=True)
        sock.sendall(_recv_exactly(sock, len(MESSAGE)))
        kept.append(sock)


def main(argv: list[str]) -> None:
    role, port_text, tls, certs, timeout_text = argv
    timeout = float(timeout_text)
    # The deadline: a daemon timer that ends the process even if stdin never closes.
    killer = threading.Timer(timeout, os._exit, args=(3,))
    killer.daemon = True
    if role == "client":
        ctx = None if tls == "none" else client_context(certs, tls)
        killer.start()
        _client(int(port_text), ctx, timeout)
        return
    ctx = None if tls == "none" else server_context(certs, tls)
    listener = socket.create_server((HOST, 0), backlog=1024)
    print(f"port {listener.getsockname()[1]}", flush=True)
    threading.Thread(target=_serve, args=(listener, ctx, timeout), daemon=True).start()
    killer.start()
    for line in sys.stdin:
        if line.strip() == "quit":
            break


if __name__ == "__main__":
    main(sys.argv[1:])
