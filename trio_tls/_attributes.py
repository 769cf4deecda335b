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
    def context(self) -> ssl.SSLContext:
        return self._engine.obj.context

    @context.setter
    def context(self, value: ssl.SSLContext) -> None:
        self._engine.obj.context = value

    @property
    def server_side(self) -> bool:
        return self._engine.obj.server_side

    @property
    def server_hostname(self) -> str | None:
        return self._engine.obj.server_hostname

    @property
    def session(self) -> ssl.SSLSession | None:
        return self._engine.obj.session

    @session.setter
    def session(self, value: ssl.SSLSession | None) -> None:
        # trio forwards this assignment to the SSLObject, which accepts it before the
        # handshake; kept so that trio code resuming sessions this way runs unchanged.
        self._engine.obj.session = value

    @property
    def session_reused(self) -> bool:
        return self._after_handshake("session_reused").session_reused

    @overload
    def getpeercert(self, binary_form: Literal[False] = ...) -> dict[str, Any] | None: ...
    @overload
    def getpeercert(self, binary_form: Literal[True]) -> bytes | None: ...
    @overload
    def getpeercert(self, binary_form: bool) -> dict[str, Any] | bytes | None: ...
    def getpeercert(self, binary_form: bool = False) -> dict[str, Any] | bytes | None:
        """The peer's certificate; None also while the peer is still sending a new one.

        That is, during a post-handshake authentication or a TLS 1.2 renegotiation,
        where ``ssl.SSLObject.getpeercert`` would raise ``ValueError``.
        """
        self._after_handshake("getpeercert")
        return self._engine.peer_certificate(binary_form)

    def selected_npn_protocol(self) -> str | None:
        return self._after_handshake("selected_npn_protocol").selected_npn_protocol()

    def selected_alpn_protocol(self) -> str | None:
        return self._after_handshake("selected_alpn_protocol").selected_alpn_protocol()

    def cipher(self) -> tuple[str, str, int] | None:
        return self._after_handshake("cipher").cipher()

    def shared_ciphers(self) -> list[tuple[str, str, int]] | None:
        return self._after_handshake("shared_ciphers").shared_ciphers()

    def compression(self) -> str | None:
        return self._after_handshake("compression").compression()

    def get_channel_binding(self, cb_type: str = "tls-unique") -> bytes | None:
        return self._after_handshake("get_channel_binding").get_channel_binding(cb_type)

    def version(self) -> str | None:
        return self._after_handshake("version").version()

    def pending(self) -> int:
        return self._engine.obj.pending()

    def _after_handshake(self, name: str) -> ssl.SSLObject:
        if not self._engine.handshook:
            raise NeedHandshakeError(f"call do_handshake() before calling {name!r}")
        return self._engine.obj
