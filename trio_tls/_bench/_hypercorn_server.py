"""The server side of the hypercorn benchmark: hypercorn's trio worker, patched or not.

Usage: ``python -m trio_tls._bench._hypercorn_server patched|unpatched CERTS [PROFILE]``.
Serves a tiny ASGI app over TLS (HTTP/1.1 and HTTP/2 by ALPN) on 127.0.0.1, prints
``port P`` once listening, and exits when stdin closes, printing one JSON line that
says which TLS classes served. With PROFILE, the process runs under cProfile and
writes its stats there.

``patched`` calls :func:`trio_tls.patch_trio` first thing, before hypercorn is
imported, as the docs tell an application to; nothing else differs between the two.
"""

from __future__ import annotations

import sys
from typing import Any


def _config(certs: str) -> Any:
    from hypercorn.config import Config

    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.certfile = f"{certs}/ecdsa-server.pem"
    config.keyfile = f"{certs}/ecdsa-server.pem"
    # A run must not be cut short by hypercorn's connection recycling (1000 requests by
    # default), or both sides would measure reconnections as well.
    config.keep_alive_max_requests = 1 << 40
    config.keep_alive_timeout = 60
    config.accesslog = None
    config.errorlog = None
    return config


BODY = b"hello"


async def app(scope: Any, receive: Any, send: Any) -> None:
    """A small response: what the comparison measures is the server, not the app."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"5")],
        }
    )
    await send({"type": "http.response.body", "body": BODY})


async def serve(certs: str) -> None:
    """Serve until stdin closes."""
    import hypercorn.trio
    import trio

    stop = trio.Event()

    async def watch_stdin() -> None:
        await trio.to_thread.run_sync(sys.stdin.read)
        stop.set()

    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(
            lambda task_status: hypercorn.trio.serve(
                app, _config(certs), shutdown_trigger=stop.wait, task_status=task_status
            )
        )
        print(f"port {binds[0].rpartition(':')[2]}", flush=True)
        nursery.start_soon(watch_stdin)


def main(argv: list[str]) -> int:
    mode, certs, *profile = argv
    if mode == "patched":
        import trio_tls

        trio_tls.patch_trio()
    import json

    import trio

    if profile:
        import cProfile

        cProfile.runctx("trio.run(serve, certs)", globals(), locals(), profile[0])
    else:
        trio.run(serve, certs)
    served = {"listener": f"{trio.SSLListener.__module__}.{trio.SSLListener.__qualname__}"}
    print(json.dumps(served), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
