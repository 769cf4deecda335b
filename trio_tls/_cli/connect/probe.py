"""The connections ``trio-tls connect`` makes, and what it reads from them.

One connection (two with ``--reconnect``): TCP connect, handshake, optionally
send some text and wait for the reply, then read until the server has been
quiet for ``--wait`` seconds. That read is not decoration: under TLS 1.3 the
session tickets and a rejection of our client certificate both arrive after the
client's handshake has completed, so without it we would report success for a
connection the server is about to refuse.
"""

from __future__ import annotations

import ssl
import time

import trio

from ..._engine import _is_eof
from ..._stream import SSLStream
from .. import output as out
from ..certs import CertInfo, parse_chain
from ..failure import Failure, UsageError, explain, explain_verification, verification_error
from ..tls import client_context, close_quietly, summarize
from .model import ConnectOptions, Outcome

#: Stop reading the server's reply after this much; this is a debugging tool.
MAX_RECEIVE = 1 << 20

Stream = SSLStream[trio.SocketStream]


def context(opts: ConnectOptions, *, insecure: bool) -> ssl.SSLContext:
    """The client context *opts* ask for; :exc:`UsageError` names a file that cannot be used."""
    # Keyword by keyword, as serve's options are built: renaming one fails mypy here.
    return client_context(
        cafile=opts.cafile,
        cert=opts.cert,
        key=opts.key,
        version=opts.tls_version,
        alpn=opts.alpn,
        insecure=insecure,
    )


class CertificateRefused(Exception):
    """We refused the server's certificate; explained once that connection is closed."""

    def __init__(self, error: ssl.SSLCertVerificationError) -> None:
        super().__init__(error.verify_message)
        self.error = error


async def connect(opts: ConnectOptions, ctx: ssl.SSLContext) -> Outcome:
    """Connect once, or twice with ``--reconnect``; the last outcome is reported."""
    try:
        outcome, session = await attempt(opts, ctx)
        if opts.reconnect:
            # The same context must be used: a session belongs to the context that made it.
            outcome, _ = await attempt(opts, ctx, session=session)
    except CertificateRefused as refused:
        # Only now, with the refused connection closed: a one-connection-at-a-time
        # server such as openssl s_server would not accept our second look before.
        raise Failure(await _explain_refused(opts, refused.error)) from refused.error
    return outcome


async def attempt(
    opts: ConnectOptions, ctx: ssl.SSLContext, *, session: ssl.SSLSession | None = None
) -> tuple[Outcome, ssl.SSLSession | None]:
    tcp, tcp_seconds = await _open_tcp(opts)
    stream = SSLStream(tcp, ctx, server_hostname=opts.expected_name, session=session)
    try:
        await _handshake(stream, opts)
        # Read these before talking: an alert from the server afterwards leaves
        # the SSL object unable to answer (getpeercert: "handshake not done yet").
        negotiated = summarize(stream)
        chain, complete = peer_chain(stream)
        received, note = await _converse(stream, opts, negotiated.version)
        summary = negotiated.counted(stream.statistics())
        outcome = Outcome(summary, tcp_seconds, parse_chain(chain), complete, received, note)
        return outcome, stream.session
    finally:
        await close_quietly(stream)


async def _open_tcp(opts: ConnectOptions) -> tuple[trio.SocketStream, float]:
    start = time.perf_counter()
    try:
        with trio.fail_after(opts.timeout):
            tcp = await trio.open_tcp_stream(opts.host, opts.port)
    except trio.TooSlowError:
        raise Failure(
            f"timed out after {opts.timeout:g} s waiting for the TCP connection"
        ) from None
    except OSError as exc:
        raise Failure(explain(exc)) from exc
    return tcp, time.perf_counter() - start


async def _handshake(stream: Stream, opts: ConnectOptions) -> None:
    try:
        with trio.fail_after(opts.timeout):
            await stream.do_handshake()
    except trio.TooSlowError:
        raise Failure(f"timed out after {opts.timeout:g} s in the TLS handshake") from None
    except trio.BrokenResourceError as exc:
        refused = verification_error(exc)
        if refused is None:
            raise Failure(explain(exc)) from exc
        raise CertificateRefused(refused) from exc


async def _converse(
    stream: Stream, opts: ConnectOptions, version: str | None
) -> tuple[bytes, str | None]:
    """Send ``--send``, then read until the server is quiet, closes, or says too much."""
    received = bytearray()
    try:
        if opts.send:
            await stream.send_all(opts.send)
        # After --send, a reply is expected: wait for its start as long as for a
        # handshake. Then, and without --send, stop once the server is quiet.
        patience = opts.timeout if opts.send else opts.wait
        with trio.move_on_after(opts.timeout + opts.wait):
            while len(received) < MAX_RECEIVE:
                chunk: bytes | bytearray = b""
                with trio.move_on_after(patience if not received else opts.wait):
                    chunk = await stream.receive_some()
                    if not chunk:
                        return bytes(received), "the server closed the connection"
                if not chunk:  # quiet for --wait seconds
                    break
                received += chunk
    except trio.BrokenResourceError as exc:
        if _is_eof(exc.__cause__):
            return bytes(received), _ragged_note(opts, version, answered=bool(received))
        raise Failure(f"after the handshake: {explain(exc)}") from exc
    return bytes(received), None


def _ragged_note(opts: ConnectOptions, version: str | None, *, answered: bool) -> str:
    note = "the server closed the connection without close_notify"
    if opts.cert is None and version == "TLSv1.3" and not answered:
        # TLS 1.3 clients finish the handshake before the server has judged the
        # client certificate; a server that wants one and does not send its
        # alert looks exactly like this.
        note += " (a TLS 1.3 server that requires a client certificate may hang up like this)"
    return note


def peer_chain(stream: Stream) -> tuple[list[bytes], bool]:
    """The certificates the server sent, leaf first, and whether that is all of them.

    Python 3.13 added ``get_unverified_chain()``; before it the stdlib only
    gives us the leaf.
    """
    getter = getattr(stream, "get_unverified_chain", None)
    if callable(getter):
        chain = getter()
        if isinstance(chain, list) and all(isinstance(d, bytes) for d in chain):
            return list(chain), True
    leaf = stream.getpeercert(binary_form=True)
    return ([leaf] if leaf else []), False


async def _explain_refused(opts: ConnectOptions, err: ssl.SSLCertVerificationError) -> str:
    """Look at the refused certificate without verifying it, and say what is wrong."""
    chain: list[CertInfo] = []
    try:
        with trio.fail_after(opts.timeout):
            outcome, _ = await attempt(opts, context(opts, insecure=True))
        chain = outcome.chain
    except (Failure, CertificateRefused, UsageError, trio.TooSlowError):
        pass  # explain from OpenSSL's message alone
    return explain_verification(err, chain, opts.expected_name, out.now())
