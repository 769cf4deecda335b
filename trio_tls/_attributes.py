"""The ``ssl.SSLObject`` attributes an SSLStream forwards, as typed members.

trio forwards them through ``__getattr__``, which types every one as ``Any``; here
each is a property or method with the SSLObject's own signature. Those that only
mean something once the handshake is done raise :exc:`trio_tls.NeedHandshakeError`
before it, as trio's do.
"""

from __future__ import annotations

import ssl
from typing import Any, Literal, overload

from ._engine import TLSEngine
from ._exceptions import NeedHandshakeError


class ConnectionAttributes:
    """Mixed into :class:`~trio_tls.SSLStream`, which provides ``_engine``."""

    __slots__ = ()
    _engine: TLSEngine

    @property
    def ssl_object(self) -> ssl.SSLObject:
        """The connection's :class:`ssl.SSLObject`, for reading only.

        For what the typed members here do not forward (``get_verified_chain()``, a
        library that wants the object itself). Calling ``read()``, ``write()``,
        ``do_handshake()`` or ``unwrap()`` on it goes behind the stream's back and
        corrupts the connection, as it would with trio's.
        """
        return self._engine.obj

    # Two of trio's private attributes, read-only, because real code reads them:
    # httpcore's trio backend returns ``_ssl_object`` as its "ssl_object" extra and
    # chooses HTTP/2 from it (httpcore/_backends/trio.py), and websockets' own tests
    # read it; trio's test suite (test_ssl.py) reads ``_https_compatible``.

    @property
    def _ssl_object(self) -> ssl.SSLObject:
        return self._engine.obj

    @property
    def _https_compatible(self) -> bool:
        return self._engine.ragged_eof_ok

    @property
    def context(self) -> ssl.SSLContext:
        """The :class:`ssl.SSLContext` in use; assign one to switch (as in an SNI callback)."""
        return self._engine.obj.context

    @context.setter
    def context(self, value: ssl.SSLContext) -> None:
        self._engine.obj.context = value

    @property
    def server_side(self) -> bool:
        """Whether this is the server end of the connection."""
        return self._engine.obj.server_side

    @property
    def server_hostname(self) -> str | None:
        """The name a client sends as SNI and checks the certificate against; ``None`` on a server."""
        return self._engine.obj.server_hostname

    @property
    def session(self) -> ssl.SSLSession | None:
        """The TLS session, to resume with ``SSLStream(..., session=...)``; see :meth:`~trio_tls.SSLStream.resumable_session`."""
        return self._engine.obj.session

    @session.setter
    def session(self, value: ssl.SSLSession | None) -> None:
        # trio forwards this assignment to the SSLObject, which accepts it before the
        # handshake; kept so that trio code resuming sessions this way runs unchanged.
        self._engine.obj.session = value

    @property
    def session_reused(self) -> bool:
        """Whether the handshake resumed an earlier session."""
        return self._after_handshake("session_reused").session_reused

    @overload
    def getpeercert(self, binary_form: Literal[False] = ...) -> dict[str, Any] | None: ...
    @overload
    def getpeercert(self, binary_form: Literal[True]) -> bytes | None: ...
    @overload
    def getpeercert(self, binary_form: bool) -> dict[str, Any] | bytes | None: ...
    def getpeercert(self, binary_form: bool = False) -> dict[str, Any] | bytes | None:
        """The peer's certificate, decoded or as DER (``binary_form=True``); ``None`` if it
        sent none, and also while it is still sending a new one (a post-handshake
        authentication or a TLS 1.2 renegotiation, where ``ssl.SSLObject.getpeercert``
        would raise ``ValueError``)."""
        self._after_handshake("getpeercert")
        return self._engine.peer_certificate(binary_form)

    def selected_npn_protocol(self) -> str | None:
        """Always ``None``, with the stdlib's ``DeprecationWarning``: NPN is obsolete; use ALPN."""
        return self._after_handshake("selected_npn_protocol").selected_npn_protocol()

    def selected_alpn_protocol(self) -> str | None:
        """The protocol both sides agreed on through ALPN (``"h2"``, ``"http/1.1"``), or ``None``."""
        return self._after_handshake("selected_alpn_protocol").selected_alpn_protocol()

    def cipher(self) -> tuple[str, str, int] | None:
        """The cipher suite in use: ``(name, protocol version, secret bits)``."""
        return self._after_handshake("cipher").cipher()

    def shared_ciphers(self) -> list[tuple[str, str, int]] | None:
        """On a server, the cipher suites the client offered that this side also accepts."""
        return self._after_handshake("shared_ciphers").shared_ciphers()

    def compression(self) -> str | None:
        """The compression algorithm in use; always ``None`` in practice (OpenSSL disables it)."""
        return self._after_handshake("compression").compression()

    def get_channel_binding(self, cb_type: str = "tls-unique") -> bytes | None:
        """Channel-binding data of type *cb_type*; the stdlib supports only ``"tls-unique"``."""
        return self._after_handshake("get_channel_binding").get_channel_binding(cb_type)

    def version(self) -> str | None:
        """The negotiated protocol version, ``"TLSv1.2"`` or ``"TLSv1.3"``."""
        return self._after_handshake("version").version()

    def pending(self) -> int:
        """How many decrypted bytes OpenSSL holds for the next read (not the read-ahead buffer)."""
        return self._engine.obj.pending()

    def _after_handshake(self, name: str) -> ssl.SSLObject:
        if not self._engine.handshook:
            raise NeedHandshakeError(f"call do_handshake() before calling {name!r}")
        return self._engine.obj
