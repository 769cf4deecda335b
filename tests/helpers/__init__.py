"""Helpers for the interoperability and renegotiation tests.

Plain functions and classes, never pytest fixtures: test modules import what they use
by name, so nothing is injected across modules behind the reader's back.

- :mod:`tests.helpers.tls`: trustme certificates, pinned-version contexts, payloads.
- :mod:`tests.helpers.peers`: real peers (stdlib blocking ``ssl`` in a thread,
  ``openssl s_server`` / ``s_client`` and ``curl`` subprocesses).
- :mod:`tests.helpers.virtual_peer`: a pyOpenSSL echo peer that renegotiates on demand.
- :mod:`tests.helpers.cli`: the command line run as users run it, and its peers.
"""
