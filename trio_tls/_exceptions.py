from __future__ import annotations

import trio


class NeedHandshakeError(trio.NeedHandshakeError):
    """A method that only has an answer after the handshake was called before it.

    It subclasses :exc:`trio.NeedHandshakeError`, so code written for
    ``trio.SSLStream`` that catches trio's exception keeps working unchanged.
    """


class NoSessionTicketError(Exception):
    """:meth:`SSLStream.resumable_session`: the server closed before sending a ticket."""


class PostHandshakeAuthError(Exception):
    """:meth:`SSLStream.verify_client_post_handshake` could not obtain a certificate.

    Raised when the client did not offer post-handshake authentication or closed the
    connection instead of answering. A certificate
    that fails verification breaks the stream instead
    (:exc:`trio.BrokenResourceError` chained to the ``ssl.SSLError``).
    """
