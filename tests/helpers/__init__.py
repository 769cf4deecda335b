"""Helpers shared by several test modules.

Plain functions and classes, never pytest fixtures: test modules import what they use
by name, so nothing is injected across modules behind the reader's back. Certificates
come from the kit's ``tls_ca`` fixture (a :class:`trio_tls.testing.TLSTestCA`), which
tests pass to the helpers that need one.

- :mod:`tests.helpers.streams`: reading an exact amount, running both sides at once,
  connected pairs over memory or loopback TCP, a listener's port.
- :mod:`tests.helpers.contexts`: contexts for post-handshake client authentication.
- :mod:`tests.helpers.payloads`: reproducible payloads and their fingerprints.
- :mod:`tests.helpers.fds`: counting open file descriptors.
- :mod:`tests.helpers.peers`: real peers (stdlib blocking ``ssl`` in a thread,
  ``openssl s_server`` / ``s_client`` and ``curl`` subprocesses).
- :mod:`tests.helpers.virtual_peer`: a pyOpenSSL echo peer that renegotiates on demand.
- :mod:`tests.helpers.http_server`: an HTTP/1.1 and HTTP/2 server over trio_tls.
- :mod:`tests.helpers.cli`: the command line run as users run it, and its peers.
"""
