"""The defaults are safe: a client made with nothing but a host and port verifies.

Checked: certificates and host names are verified by default (by
``default_client_context``, and by the testing kit's client contexts too); TLS below
1.2 is refused; a client without ``server_hostname`` fails at once with a clear
error; and each kind of bad certificate (expired, wrong host, self-signed, unknown
CA) fails the handshake with ``BrokenResourceError`` whose ``__cause__`` is an
``ssl.SSLCertVerificationError`` carrying OpenSSL's verify code for that reason.
Everything runs over loopback TCP through ``open_ssl_over_tcp_listeners`` and
``open_ssl_over_tcp_stream``.
"""

from __future__ import annotations

import datetime
import ssl
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from trio_tls import (
    SSLStream,
    default_client_context,
    open_ssl_over_tcp_listeners,
    open_ssl_over_tcp_stream,
)
from trio_tls.testing import TLSTestCA

pytestmark = pytest.mark.usefixtures("no_fd_leak")

# OpenSSL's X509_V_ERR_* codes (x509_vfy.h): numbers, stable across releases, unlike
# the message text.
CERT_HAS_EXPIRED = 10
DEPTH_ZERO_SELF_SIGNED_CERT = 18
UNABLE_TO_GET_ISSUER_CERT_LOCALLY = 20
HOSTNAME_MISMATCH = 62

#: Each connection here ends in milliseconds.
TIMEOUT = 10.0


def _server_context(cert: trustme.LeafCert) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    return context


def _self_signed_server_context(hostname: str) -> ssl.SSLContext:
    """A server presenting a certificate that signs itself (no CA behind it)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    with trustme.Blob(pem).tempfile() as path:
        context.load_cert_chain(path)
    return context


class ServerLog:
    """What the server's handlers saw: their failures, and when one finished."""

    def __init__(self) -> None:
        self.failures: list[BaseException] = []
        self.handled = trio.Event()


@asynccontextmanager
async def tls_server(server_context: ssl.SSLContext, log: ServerLog) -> AsyncIterator[int]:
    """Serve on 127.0.0.1; each connection reads once, failures are collected.

    Served from the listeners with ``trio.serve_listeners``, whose handshake is lazy,
    so that the handler sees the server's own failure; ``serve_ssl_over_tcp`` would
    log it and never call the handler.
    """

    async def handler(stream: SSLStream[trio.SocketStream]) -> None:
        try:
            await stream.receive_some()
        except trio.BrokenResourceError as exc:
            log.failures.append(exc)
        finally:
            await trio.aclose_forcefully(stream)
            log.handled.set()

    listeners = await open_ssl_over_tcp_listeners(0, server_context, host="127.0.0.1")
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handler, listeners)
        transport = listeners[0].transport_listener
        assert isinstance(transport, trio.SocketListener)
        yield transport.socket.getsockname()[1]
        nursery.cancel_scope.cancel()


async def _handshake_failure(
    server_context: ssl.SSLContext,
    *,
    host: str = "127.0.0.1",
    client_context: ssl.SSLContext | None = None,
) -> tuple[trio.BrokenResourceError, list[BaseException]]:
    """Connect with the client helper; return the client's failure and the server's."""
    log = ServerLog()
    with trio.fail_after(TIMEOUT):
        async with tls_server(server_context, log) as port:
            stream = await open_ssl_over_tcp_stream(host, port, ssl_context=client_context)
            with pytest.raises(trio.BrokenResourceError) as info:
                await stream.do_handshake()
            await stream.aclose()
            await log.handled.wait()
    return info.value, log.failures


def _assert_verification_failed(exc: trio.BrokenResourceError, verify_code: int) -> None:
    __tracebackhide__ = True
    cause = exc.__cause__
    assert isinstance(cause, ssl.SSLCertVerificationError)
    assert cause.verify_code == verify_code
    assert cause.verify_message  # OpenSSL's reason, for the human reading the error


def _assert_peer_heard_an_alert(failures: list[BaseException]) -> None:
    """The server learns why (a fatal alert), not just that the client went away."""
    __tracebackhide__ = True
    [failure] = failures
    assert isinstance(failure.__cause__, ssl.SSLError)
    assert not isinstance(failure.__cause__, ssl.SSLEOFError)


# -- defaults -------------------------------------------------------------------------


def test_default_client_context_verifies_and_refuses_old_tls() -> None:
    context = default_client_context()
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    # Without this a truncation attack would read as a clean EOF.
    assert not context.options & getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)


def test_testing_kit_client_context_verifies_too(tls_ca: TLSTestCA) -> None:
    context = tls_ca.client_context()
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2


async def test_helper_without_context_verifies_against_system_roots(
    tls_ca: TLSTestCA,
) -> None:
    """No ssl_context: the system's trust store is used, and a private CA's
    certificate is refused (the most common mistake in tests is the safe one)."""
    client_failure, server_failures = await _handshake_failure(_server_context(tls_ca.server_cert))
    _assert_verification_failed(client_failure, UNABLE_TO_GET_ISSUER_CERT_LOCALLY)
    _assert_peer_heard_an_alert(server_failures)


async def test_client_without_server_hostname_fails_clearly(tls_ca: TLSTestCA) -> None:
    """check_hostname is on, so there is nothing to check the certificate against:
    refused when the stream is made, before any byte is sent (as the stdlib's
    ``wrap_socket`` does).

    ``SSLContext.wrap_bio`` does not make this check itself (only ``wrap_socket``
    does): given ``server_hostname=None`` it lets the handshake *succeed* against a
    certificate for any name, with host name verification silently off.
    """
    client_transport, _ = trio.testing.memory_stream_pair()
    for context in (tls_ca.client_context(), default_client_context()):
        with pytest.raises(ValueError, match="server_hostname"):
            SSLStream(client_transport, context)
    # With checking off, no name is needed: the caller asked for that explicitly.
    unchecked = tls_ca.client_context()
    unchecked.check_hostname = False
    SSLStream(client_transport, unchecked)


# -- refusing TLS below 1.2 ------------------------------------------------------------


def _tls11_only_server_context(ca: TLSTestCA) -> ssl.SSLContext:
    """A server that speaks TLS 1.1 and nothing newer (security level 0 allows it)."""
    context = _server_context(ca.server_cert)
    with warnings.catch_warnings():
        # Python deprecates naming old versions; that is the point of this server.
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    return context


def _client_accepting_tls11(ca: TLSTestCA) -> ssl.SSLContext:
    context = ca.client_context()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    return context


async def test_tls11_server_is_reachable_when_allowed(tls_ca: TLSTestCA) -> None:
    """Control for the next test: this machine's OpenSSL can speak TLS 1.1, so a
    refusal there is the default context's doing."""
    with trio.fail_after(TIMEOUT):
        async with tls_server(_tls11_only_server_context(tls_ca), ServerLog()) as port:
            stream = await open_ssl_over_tcp_stream(
                "127.0.0.1", port, ssl_context=_client_accepting_tls11(tls_ca)
            )
            await stream.do_handshake()
            assert stream.version() == "TLSv1.1"
            await stream.aclose()


async def test_default_client_refuses_tls11(tls_ca: TLSTestCA) -> None:
    client_context = default_client_context()
    tls_ca.ca.configure_trust(client_context)  # trust is not the reason here
    client_failure, server_failures = await _handshake_failure(
        _tls11_only_server_context(tls_ca), client_context=client_context
    )
    assert isinstance(client_failure.__cause__, ssl.SSLError)
    assert not isinstance(client_failure.__cause__, ssl.SSLCertVerificationError)
    _assert_peer_heard_an_alert(server_failures)


# -- each bad certificate ---------------------------------------------------------------


def _trusting_client(ca: TLSTestCA) -> ssl.SSLContext:
    context = default_client_context()
    ca.ca.configure_trust(context)
    return context


async def test_expired_certificate_is_refused(tls_ca: TLSTestCA) -> None:
    now = datetime.datetime.now(datetime.UTC)
    expired = tls_ca.ca.issue_cert(
        "localhost",
        "127.0.0.1",
        not_before=now - datetime.timedelta(days=30),
        not_after=now - datetime.timedelta(days=1),
    )
    client_failure, server_failures = await _handshake_failure(
        _server_context(expired), client_context=_trusting_client(tls_ca)
    )
    _assert_verification_failed(client_failure, CERT_HAS_EXPIRED)
    _assert_peer_heard_an_alert(server_failures)


async def test_certificate_for_another_host_is_refused(tls_ca: TLSTestCA) -> None:
    elsewhere = tls_ca.ca.issue_cert("elsewhere.example")
    client_failure, server_failures = await _handshake_failure(
        _server_context(elsewhere), host="localhost", client_context=_trusting_client(tls_ca)
    )
    _assert_verification_failed(client_failure, HOSTNAME_MISMATCH)
    _assert_peer_heard_an_alert(server_failures)


async def test_self_signed_certificate_is_refused(tls_ca: TLSTestCA) -> None:
    client_failure, server_failures = await _handshake_failure(
        _self_signed_server_context("localhost"),
        host="localhost",
        client_context=_trusting_client(tls_ca),
    )
    _assert_verification_failed(client_failure, DEPTH_ZERO_SELF_SIGNED_CERT)
    _assert_peer_heard_an_alert(server_failures)


async def test_certificate_from_an_untrusted_ca_is_refused(tls_ca: TLSTestCA) -> None:
    stranger = TLSTestCA()
    client_failure, server_failures = await _handshake_failure(
        _server_context(stranger.server_cert), client_context=_trusting_client(tls_ca)
    )
    _assert_verification_failed(client_failure, UNABLE_TO_GET_ISSUER_CERT_LOCALLY)
    _assert_peer_heard_an_alert(server_failures)


async def test_the_same_server_with_a_good_certificate_is_accepted(tls_ca: TLSTestCA) -> None:
    """Control: the harness is not failing every handshake."""
    with trio.fail_after(TIMEOUT):
        async with tls_server(_server_context(tls_ca.server_cert), ServerLog()) as port:
            stream = await open_ssl_over_tcp_stream(
                "127.0.0.1", port, ssl_context=_trusting_client(tls_ca)
            )
            await stream.do_handshake()
            assert stream.version() in ("TLSv1.2", "TLSv1.3")
            await stream.aclose()
