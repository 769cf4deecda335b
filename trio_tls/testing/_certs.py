"""Throwaway certificate authorities and ready SSLContexts for in-process TLS tests."""

from __future__ import annotations

import ssl
from typing import Literal

import trustme

#: The names every server certificate from :class:`TLSTestCA` is valid for.
DEFAULT_HOSTNAMES: tuple[str, ...] = ("trio-tls.example", "localhost", "127.0.0.1", "::1")

TLSVersionName = Literal["1.2", "1.3"]
KeyTypeName = Literal["ecdsa", "rsa"]

_VERSIONS: dict[str, ssl.TLSVersion] = {
    "1.2": ssl.TLSVersion.TLSv1_2,
    "1.3": ssl.TLSVersion.TLSv1_3,
}
_KEY_TYPES: dict[str, trustme.KeyType] = {
    "ecdsa": trustme.KeyType.ECDSA,
    "rsa": trustme.KeyType.RSA,
}


def pin_version(context: ssl.SSLContext, version: TLSVersionName | None) -> ssl.SSLContext:
    """Restrict ``context`` to exactly one TLS version ("1.2" or "1.3"); None leaves it."""
    if version is not None:
        try:
            pinned = _VERSIONS[version]
        except KeyError:
            raise ValueError(f"version must be '1.2', '1.3' or None, not {version!r}") from None
        context.minimum_version = pinned
        context.maximum_version = pinned
    return context


class TLSTestCA:
    """A trustme CA plus one server certificate, handing out configured contexts.

    Example::

        ca = TLSTestCA()
        server_ctx = ca.server_context(version="1.3")
        client_ctx = ca.client_context()          # trusts ca, checks hostnames

    Args:
      key_type: "ecdsa" (default, fast) or "rsa".
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
        self.key_type: KeyTypeName = key_type
        #: The underlying :class:`trustme.CA`, for anything not covered here.
        self.ca = trustme.CA(key_type=_KEY_TYPES[key_type])
        #: The server certificate, valid for ``hostnames``.
        self.server_cert = self.ca.issue_cert(*hostnames, key_type=_KEY_TYPES[key_type])
        self._client_cert: trustme.LeafCert | None = None

    @property
    def client_cert(self) -> trustme.LeafCert:
        """A client certificate from the same CA (made on first use)."""
        if self._client_cert is None:
            self._client_cert = self.ca.issue_cert(
                "client@trio-tls.example", key_type=_KEY_TYPES[self.key_type]
            )
        return self._client_cert

    def server_context(
        self,
        *,
        version: TLSVersionName | None = None,
        require_client_cert: bool = False,
        alpn_protocols: list[str] | None = None,
    ) -> ssl.SSLContext:
        """A server context presenting :attr:`server_cert`."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.server_cert.configure_cert(context)
        if require_client_cert:
            self.ca.configure_trust(context)
            context.verify_mode = ssl.CERT_REQUIRED
        if alpn_protocols:
            context.set_alpn_protocols(alpn_protocols)
        return pin_version(context, version)

    def client_context(
        self,
        *,
        version: TLSVersionName | None = None,
        with_client_cert: bool = False,
        alpn_protocols: list[str] | None = None,
    ) -> ssl.SSLContext:
        """A client context that trusts this CA and checks hostnames."""
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        if with_client_cert:
            self.client_cert.configure_cert(context)
        if alpn_protocols:
            context.set_alpn_protocols(alpn_protocols)
        return pin_version(context, version)
