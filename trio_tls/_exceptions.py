from __future__ import annotations

import trio


class NeedHandshakeError(trio.NeedHandshakeError):
    """A method that only has an answer after the handshake was called before it.

    It subclasses :exc:`trio.NeedHandshakeError`, so code written for
    ``trio.SSLStream`` that catches trio's exception keeps working unchanged.
    """
