"""Throwaway certificate authorities and ready SSLContexts for in-process TLS tests."""

from __future__ import annotations

import ssl
from typing import Literal, cast

import trustme

from .._contexts import TLSVersionName, keep_truncation_detectable, pin_version

#: The names every server certificate from :class:`TLSTestCA` is valid for.
DEFAULT_HOSTNAMES: tuple[str, ...] = ("trio-tls.example", "localhost", "127.0.0.1", "::1")

#: A key algorithm :class:`TLSTestCA` can make certificates with.
KeyTypeName = Literal["ecdsa", "rsa"]

_KEY_TYPES: dict[str, trustme.KeyType] = {
    "ecdsa": trustme.KeyType.ECDSA,
    "rsa": trustme.KeyType.RSA,
}


class TLSTestCA:
    """A trustme CA plus one server certificate, handing out configured contexts.

    Every call to :meth:`server_context` or :meth:`client_context` returns a new
    context, so a test may change its own (ALPN, ciphers ...) without affecting
    others; the certificates are made once, which is the slow part. The contexts
    trust this CA only, never the system's store: a test cannot pass by accident
    against a real certificate, and not loading the store keeps a context cheap.

    Example::

        ca = TLSTestCA()
        server_ctx = ca.server_context(version="1.3")
        client_ctx = ca.client_context()          # trusts ca, checks hostnames

    Args:
      key_type: "ecdsa" (default, fast) or "rsa", for the CA and every certificate.
      hostnames: names the server certificate is valid for.
    """

    def __init__(
        self,
        *,
        key_type: KeyTypeName = "ecdsa",
        hostnames: tuple[str, ...] = DEFAULT_HOSTNAMES,
    ) -> None:
        if key_type not in _KEY_TYPES:
            raise ValueError(f"key_type must be 'ecdsa' or 'rsa', not {key_type!r}")
        # A bare string is a common slip; tuple() would split it into letters.
        if isinstance(cast(object, hostnames), str) or not hostnames:
            raise ValueError(f"hostnames must be a non-empty tuple of names, not {hostnames!r}")
        #: "ecdsa" or "rsa".
        self.key_type: KeyTypeName = key_type
        #: The names :attr:`server_cert` is valid for.
        self.hostnames: tuple[str, ...] = tuple(hostnames)
        #: The underlying :class:`trustme.CA`, for anything not covered here.
        self.ca: trustme.CA = trustme.CA(key_type=_KEY_TYPES[key_type])
        #: The server certificate, valid for :attr:`hostnames`.
        self.server_cert: trustme.LeafCert = self.ca.issue_cert(
            *self.hostnames, key_type=_KEY_TYPES[key_type]
        )
        self._client_cert: trustme.LeafCert | None = None

    def __repr__(self) -> str:
        return f"<TLSTestCA key_type={self.key_type!r} hostnames={self.hostnames!r}>"

    @property
    def client_cert(self) -> trustme.LeafCert:
        """A client certificate from the same CA (made on first use)."""
        if self._client_cert is None:
            self._client_cert = self.ca.issue_cert(
                "client@trio-tls.example", key_type=_KEY_TYPES[self.key_type]
            )
        return self._client_cert

    # server_context and client_context mirror each other (version, one certificate
    # option, ALPN) on purpose: the two halves of one test should read alike.
    def server_context(
        self,
        *,
        version: TLSVersionName | None = None,
        require_client_cert: bool = False,
        alpn_protocols: list[str] | None = None,
    ) -> ssl.SSLContext:
        """A new server context presenting :attr:`server_cert`.

        Args:
          version: "1.2" or "1.3" to allow only that version; None allows both.
          require_client_cert: demand a client certificate issued by this CA.
          alpn_protocols: ALPN protocols to offer, most preferred first.
        """
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.server_cert.configure_cert(context)
        if require_client_cert:
            self.ca.configure_trust(context)
            context.verify_mode = ssl.CERT_REQUIRED
        if alpn_protocols:
            context.set_alpn_protocols(alpn_protocols)
        return pin_version(keep_truncation_detectable(context), version)

    def client_context(
        self,
        *,
        version: TLSVersionName | None = None,
        with_client_cert: bool = False,
        alpn_protocols: list[str] | None = None,
    ) -> ssl.SSLContext:
        """A new client context that trusts this CA and checks hostnames.

        Args:
          version: "1.2" or "1.3" to allow only that version; None allows both.
          with_client_cert: present :attr:`client_cert` when the server asks.
          alpn_protocols: ALPN protocols to offer, most preferred first.
        """
        # PROTOCOL_TLS_CLIENT verifies certificates and hostnames by default.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.ca.configure_trust(context)
        if with_client_cert:
            self.client_cert.configure_cert(context)
        if alpn_protocols:
            context.set_alpn_protocols(alpn_protocols)
        return pin_version(keep_truncation_detectable(context), version)
