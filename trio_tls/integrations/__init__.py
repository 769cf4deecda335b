"""trio_tls under the libraries trio programs already use for TLS.

Each module adapts one third-party library and imports it; ``import trio_tls``
imports none of them. Install the matching extra first:

- :mod:`trio_tls.integrations.httpcore`: ``TrioTLSBackend``, a network backend for
  httpcore's connection pools (``pip install 'trio_tls[httpx]'``).
- :mod:`trio_tls.integrations.httpx`: ``TrioTLSTransport``, the same for
  ``httpx.AsyncClient(transport=...)`` (``pip install 'trio_tls[httpx]'``; add
  ``'httpx[http2]'`` for HTTP/2).
- :mod:`trio_tls.integrations.trio_websocket`: ``wss://`` clients and servers
  (``pip install 'trio_tls[trio-websocket]'``).

Hypercorn has no module here: its trio worker builds ``trio.SSLListener`` itself and
offers no way to hand it another listener (see notes/integrations.md).
"""
