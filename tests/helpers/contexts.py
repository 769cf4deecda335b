"""Contexts for what :class:`~trio_tls.testing.TLSTestCA` does not set up by itself."""

from __future__ import annotations

import ssl

from trio_tls.testing import TLSTestCA, TLSVersionName


def post_handshake_auth_contexts(
    ca: TLSTestCA, version: TLSVersionName = "1.3", *, client_offers: bool = True
) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """``(client, server)`` contexts for post-handshake client authentication.

    The server asks for a certificate only after the handshake, on demand, and
    requires one that ``ca`` issued. The client holds ``ca``'s client certificate;
    with ``client_offers=False`` it does not announce that it would answer such a
    request, so the server cannot make one.
    """
    server_context = ca.server_context(version=version)
    ca.ca.configure_trust(server_context)
    server_context.verify_mode = ssl.CERT_REQUIRED
    server_context.post_handshake_auth = True  # ask only after the handshake
    client_context = ca.client_context(version=version, with_client_cert=True)
    client_context.post_handshake_auth = client_offers
    return client_context, server_context
