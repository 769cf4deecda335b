"""The command line's options: the ones several commands share, and argument types.

Each type turns one command-line word into a value or says what is wrong with it.
argparse reports an ``ArgumentTypeError`` as a usage error (exit status 2) naming
the option, so a negative timeout, a port past 65535 or a URL taken for a host
name never reaches the code that would misuse it.
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import re
import urllib.parse
from typing import NamedTuple

import idna

from .._contexts import TLSVersionName
from .._listener import format_address
from .failure import UsageError

#: The ports TCP has; 0 is not one a client can connect to.
MAX_PORT = 65535

#: The ``--tls1.2`` / ``--tls1.3`` switches.
VERSION_FLAGS: dict[str, TLSVersionName] = {"--tls1.2": "1.2", "--tls1.3": "1.3"}

# An ASCII host name label. Underscores are not valid in DNS host names but are
# common in private networks (container and service names), and the resolver takes
# them, so they are allowed here.
_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?", re.IGNORECASE)


# --- options several commands share ---------------------------------------------------


def add_version_flags(parser: argparse.ArgumentParser) -> None:
    """``--tls1.2`` or ``--tls1.3`` (not both), as ``tls_version``."""
    group = parser.add_mutually_exclusive_group()
    for flag, version in VERSION_FLAGS.items():
        group.add_argument(
            flag,
            dest="tls_version",
            action="store_const",
            const=version,
            help=f"allow only TLS {flag[5:]} (default: whatever both sides support)",
        )


def add_alpn(parser: argparse.ArgumentParser, *, help: str) -> None:
    parser.add_argument("--alpn", metavar="LIST", type=alpn, help=help)


def add_listen_address(parser: argparse.ArgumentParser) -> None:
    """``--host`` and ``--port``, for the commands that listen (serve, route)."""
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        type=host,
        help="address to listen on (default 127.0.0.1)",
    )
    parser.add_argument(
        "--port",
        type=listen_port,
        default=4433,
        help="port to listen on; 0 picks a free one (default 4433)",
    )


def add_certificate(
    parser: argparse.ArgumentParser, *, whose: str
) -> argparse._MutuallyExclusiveGroup:
    """``--cert FILE``; returns its group, for the options it excludes."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--cert", metavar="FILE", help=f"{whose} certificate chain (PEM)")
    return group


def add_key(parser: argparse.ArgumentParser) -> None:
    """``--key FILE``, for --cert (added after --cert's group, so usage shows the group)."""
    parser.add_argument(
        "--key", metavar="FILE", help="private key for --cert (default: read it from --cert)"
    )


def check_certificate(args: argparse.Namespace) -> None:
    """The check argparse cannot make: ``--key`` is the key of a ``--cert``."""
    if args.key is not None and args.cert is None:
        raise UsageError("--key needs --cert")


def add_timeout(parser: argparse.ArgumentParser, *, default: float, help: str) -> None:
    parser.add_argument(
        "--timeout",
        type=seconds,
        default=default,
        metavar="SECONDS",
        help=f"{help} (default {default:g})",
    )


# --- argument types ---------------------------------------------------------------------


class Address(NamedTuple):
    host: str
    port: int

    def __str__(self) -> str:
        return format_address(self.host, self.port)


def seconds(text: str) -> float:
    """A duration that must be positive: ``--timeout``."""
    value = _finite(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, not {text!r}")
    return value


def seconds_or_zero(text: str) -> float:
    """A duration that may be 0 (do not wait at all): ``--wait``."""
    value = _finite(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 seconds or more, not {text!r}")
    return value


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    # float() also reads "nan" and "inf"; neither is a duration anyone can wait for.
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds, not {text!r}")
    return value


def count(text: str) -> int:
    """A whole number of at least 1: ``--max-connections``."""
    if not re.fullmatch(r"[0-9]+", text.strip(), re.ASCII) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return int(text)


def listen_port(text: str) -> int:
    """A port to listen on; 0 lets the kernel pick one."""
    port = _port(text)
    if port is None:
        raise argparse.ArgumentTypeError(f"must be a port from 0 to {MAX_PORT}, not {text!r}")
    return port


def _port(text: str) -> int | None:
    # Digits only: int() would also take "+5", " 5" and other scripts' digits.
    if not re.fullmatch(r"[0-9]{1,5}", text, re.ASCII) or int(text) > MAX_PORT:
        return None
    return int(text)


def target(text: str) -> Address:
    """``HOST``, ``HOST:PORT``, ``[IPv6]:PORT``, ``IPv6`` or ``https://HOST[:PORT][/PATH]``.

    The port defaults to 443. A URL is accepted because people paste them from
    browsers and curl; its path is not used.
    """
    if "://" in text:
        return _from_url(text)
    host, port_text = _split(text)
    return Address(_checked_host(host, text), _connect_port(port_text or None, text))


def backend(text: str) -> Address:
    """``HOST:PORT`` or ``[IPv6]:PORT`` of a server to pass connections to: the port is required."""
    host, port_text = _split(text)
    if not port_text:
        raise argparse.ArgumentTypeError(f"{text!r} has no port: write HOST:PORT")
    return Address(_checked_host(host, text), _connect_port(port_text, text))


def _split(text: str) -> tuple[str, str]:
    """``HOST[:PORT]`` or ``[IPv6][:PORT]`` or ``IPv6`` -> host and port text ("" if none)."""
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise argparse.ArgumentTypeError(f"bad address {text!r}: write [IPv6]:PORT")
        if not _is_ipv6(host):
            raise argparse.ArgumentTypeError(f"{host!r} in {text!r} is not an IPv6 address")
        return host, rest.removeprefix(":")
    if text.count(":") == 1:
        host, _, port_text = text.partition(":")
        return host, port_text
    if ":" in text and not _is_ipv6(text):  # several colons: only a bare IPv6 address
        raise argparse.ArgumentTypeError(
            f"bad address {text!r}: write HOST:PORT, or [IPv6]:PORT for an IPv6 address"
        )
    return text, ""


def _from_url(text: str) -> Address:
    try:
        parts = urllib.parse.urlsplit(text)
    except ValueError as exc:  # an unclosed IPv6 bracket, for one
        raise argparse.ArgumentTypeError(f"bad URL {text!r}: {exc}") from None
    if parts.scheme.lower() != "https":
        raise argparse.ArgumentTypeError(
            f"{text!r}: connect takes https:// URLs (or HOST:PORT), not {parts.scheme}://"
        )
    if "@" in parts.netloc:
        raise argparse.ArgumentTypeError(f"{text!r} has a user name, which connect does not use")
    # .hostname lower-cases the name and strips an IPv6 address's brackets; .port would
    # accept "+5", so the port is taken from the text after the host (and its "]").
    port_text = parts.netloc.rpartition("]")[2].partition(":")[2]
    return Address(
        _checked_host(parts.hostname or "", text), _connect_port(port_text or None, text)
    )


def _connect_port(port_text: str | None, text: str) -> int:
    if port_text is None:
        return 443
    port = _port(port_text)
    if port is None or port == 0:
        raise argparse.ArgumentTypeError(
            f"bad port {port_text!r} in {text!r}: a port is 1 to {MAX_PORT}"
        )
    return port


def _checked_host(host: str, text: str) -> str:
    if not host:
        raise argparse.ArgumentTypeError(f"no host in {text!r}")
    if not is_host(host):
        where = "" if host == text else f" in {text!r}"
        raise argparse.ArgumentTypeError(f"{host!r}{where} is not a host name or IP address")
    return host


def host(text: str) -> str:
    """``--host``: a host name or IP address."""
    if not is_host(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a host name or IP address")
    return text


def server_name(text: str) -> str:
    """``--servername``: a host name or IP address, never empty."""
    if not text:
        raise argparse.ArgumentTypeError(
            "empty; give the name to send and verify, or leave the option out to use HOST's"
        )
    if not is_host(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a host name or IP address")
    return text


def certificate_name(text: str) -> str:
    """``--trustme NAME``: what trustme can issue a certificate for (``*.`` allowed)."""
    if is_ip(text):
        return text
    try:
        # trustme encodes names with IDNA 2008 (no underscores); check as it will.
        idna.encode(text.removeprefix("*."), uts46=True)
    except idna.IDNAError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a host name a certificate can be issued for"
        ) from None
    return text


def is_host(text: str) -> bool:
    """Whether *text* is an IP address or a syntactically valid host name."""
    if is_ip(text):
        return True
    if not text.isascii():
        # Internationalised names go out IDNA-encoded, as SSLStream encodes them.
        try:
            idna.encode(text, uts46=True)
        except idna.IDNAError:
            return False
        return True
    name = text.removesuffix(".")  # a fully qualified name may end in a dot
    return 0 < len(name) <= 253 and all(_LABEL.fullmatch(label) for label in name.split("."))


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _is_ipv6(text: str) -> bool:
    return ":" in text and is_ip(text)


def alpn(text: str) -> tuple[str, ...]:
    """``"h2,http/1.1"`` -> ``("h2", "http/1.1")``; empty entries are dropped.

    Protocol names are ASCII strings of 1 to 255 bytes (RFC 7301); the stdlib
    checks that only when the context is made, as an SSLError.
    """
    protocols = tuple(p.strip() for p in text.split(",") if p.strip())
    for protocol in protocols:
        if not protocol.isascii():
            raise argparse.ArgumentTypeError(f"protocol {protocol!r} is not ASCII")
        if len(protocol) > 255:
            raise argparse.ArgumentTypeError(
                f"protocol {protocol[:20]!r}... is {len(protocol)} bytes long; ALPN allows 1 to 255"
            )
    return protocols
