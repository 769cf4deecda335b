from __future__ import annotations

import trio

from ._engine import READ_AHEAD_LIMIT


class NeedHandshakeError(trio.NeedHandshakeError):
    """A method that only has an answer after the handshake was called before it.

    It subclasses :exc:`trio.NeedHandshakeError`, so code written for
    ``trio.SSLStream`` that catches trio's exception keeps working unchanged.
    """


class NoSessionTicketError(Exception):
    """:meth:`SSLStream.resumable_session`: the server closed before sending a ticket,
    or sent more data first than trio_tls holds while it waits (``READ_AHEAD_LIMIT``)."""


class PostHandshakeAuthError(Exception):
    """:meth:`SSLStream.verify_client_post_handshake` could not obtain a certificate.

    Raised when the client did not offer post-handshake authentication, closed the
    connection instead of answering, or sent more data first than trio_tls holds
    while it waits (``READ_AHEAD_LIMIT``). A certificate
    that fails verification breaks the stream instead
    (:exc:`trio.BrokenResourceError` chained to the ``ssl.SSLError``).
    """


def read_ahead_full(what: str) -> NoSessionTicketError | PostHandshakeAuthError:
    """The error for a wait that met the read-ahead cap: it could never succeed.

    The data in front of what we wait for stays held, in order, for receive_some();
    the stream is intact. Failing at once with the remedy beats a silent wait that
    ends only at the caller's deadline (Apache fails the same case the same way).
    """
    held = f"{READ_AHEAD_LIMIT // 1024} KiB (READ_AHEAD_LIMIT)"
    if what == "session":
        return NoSessionTicketError(
            f"the server sent {held} of data before a session ticket, and trio_tls holds "
            "no more than that while it waits; take the data with receive_some() (it is "
            "all still there, in order) and call resumable_session() again"
        )
    return PostHandshakeAuthError(
        f"the client sent {held} of data before answering the certificate request, and "
        "trio_tls holds no more than that while it waits; take the data with "
        "receive_some() (it is all still there, in order: the certificate is checked "
        "as it arrives behind it, and getpeercert() then returns it), or ask for the "
        "certificate before the client sends this much"
    )
