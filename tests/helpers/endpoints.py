"""trio-websocket's endpoints, in a form tests can compare."""

from __future__ import annotations

from trio_websocket import Endpoint


def endpoint_parts(endpoint: object) -> tuple[str, int, bool]:
    """An :class:`Endpoint` as (address, port, is_ssl); Endpoint has no ``__eq__``.

    trio-websocket returns the stream's ``repr()`` (a ``str``) for a stream it does not
    recognise, which fails here by name.
    """
    assert isinstance(endpoint, Endpoint), endpoint
    return (str(endpoint.address), endpoint.port, endpoint.is_ssl)
