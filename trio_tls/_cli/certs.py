"""Reading peer certificates for display: subject, issuer, names, dates, key.

The stdlib only decodes a certificate it has verified (``getpeercert()``
returns ``{}`` under ``CERT_NONE``), and then only partly, so we always take
the DER bytes and parse them with ``cryptography``, which trustme already
depends on.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

from . import output as out

# NIST curve names are what people recognise (and what OpenSSL prints).
_CURVE_NAMES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}


@dataclass(frozen=True)
class CertInfo:
    """What a person debugging TLS wants to know about one certificate."""

    subject: str
    issuer: str
    #: DNS names and IP addresses from subjectAltName, in certificate order.
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    not_before: datetime.datetime
    not_after: datetime.datetime
    key_type: str
    sha256: str

    @property
    def names(self) -> tuple[str, ...]:
        """The identities the certificate claims: its SANs, else its common name."""
        sans = self.dns_names + self.ip_addresses
        return sans or _common_names(self.subject)

    def expired_for(self, now: datetime.datetime) -> datetime.timedelta | None:
        """How long ago the certificate expired, or None while it is valid."""
        return now - self.not_after if now > self.not_after else None

    def not_yet_valid_for(self, now: datetime.datetime) -> datetime.timedelta | None:
        return self.not_before - now if now < self.not_before else None

    def validity(self, now: datetime.datetime) -> str:
        """``2024-01-01 00:00 UTC to 2034-01-01 00:00 UTC (3,652 days left)``."""
        dates = f"{out.moment(self.not_before)} to {out.moment(self.not_after)}"
        if (ago := self.expired_for(now)) is not None:
            return f"{dates} (EXPIRED {out.span(ago)} ago)"
        if (ahead := self.not_yet_valid_for(now)) is not None:
            return f"{dates} (NOT YET VALID, starts in {out.span(ahead)})"
        return f"{dates} ({out.span(self.not_after - now)} left)"

    def rows(self, now: datetime.datetime) -> list[out.Row]:
        sans = [f"DNS:{n}" for n in self.dns_names] + [f"IP:{a}" for a in self.ip_addresses]
        return [
            ("subject", self.subject or "(empty)"),
            ("issuer", self.issuer or "(empty)"),
            ("SANs", ", ".join(sans) or "(none)"),
            ("valid", self.validity(now)),
            ("key", self.key_type),
        ]

    def to_json(self, now: datetime.datetime) -> dict[str, object]:
        return {
            "subject": self.subject,
            "issuer": self.issuer,
            "dns_names": list(self.dns_names),
            "ip_addresses": list(self.ip_addresses),
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            # Negative once expired. Whole days toward zero, as the text says them:
            # expired 3 days and 2 hours ago is -3, like "expired 3 days ago".
            "days_left": int((self.not_after - now) / datetime.timedelta(days=1)),
            "key_type": self.key_type,
            "sha256": self.sha256,
        }


def parse_der(der: bytes) -> CertInfo:
    cert = x509.load_der_x509_certificate(der)
    dns_names, ip_addresses = _alt_names(cert)
    return CertInfo(
        subject=_name(cert.subject),
        issuer=_name(cert.issuer),
        dns_names=dns_names,
        ip_addresses=ip_addresses,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        key_type=_key_type(cert),
        sha256=cert.fingerprint(hashes.SHA256()).hex(":").upper(),
    )


def parse_chain(ders: Sequence[bytes]) -> list[CertInfo]:
    return [parse_der(der) for der in ders]


def _name(name: x509.Name) -> str:
    # Most significant part first (O=..., CN=...), the order people read, and
    # comma-space separated so long names wrap sensibly in a terminal.
    return ", ".join(rdn.rfc4514_string() for rdn in name.rdns)


def _common_names(subject: str) -> tuple[str, ...]:
    return tuple(part[3:] for part in subject.split(", ") if part.startswith("CN="))


def _alt_names(cert: x509.Certificate) -> tuple[tuple[str, ...], tuple[str, ...]]:
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return (), ()
    dns = tuple(sans.get_values_for_type(x509.DNSName))
    ips = tuple(str(ip) for ip in sans.get_values_for_type(x509.IPAddress))
    return dns, ips


def _key_type(cert: x509.Certificate) -> str:
    try:
        key = cert.public_key()
    except Exception:  # an algorithm cryptography does not know; show the OID
        return cert.public_key_algorithm_oid.dotted_string
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size} bits"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"ECDSA {_CURVE_NAMES.get(key.curve.name, key.curve.name)}"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448"
    if isinstance(key, dsa.DSAPublicKey):
        return f"DSA {key.key_size} bits"
    return type(key).__name__
