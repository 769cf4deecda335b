"""The sans-I/O engine, with no event loop: two engines pumped together by hand."""

from __future__ import annotations

import ssl

import pytest

from trio_tls._engine import _NEED_INPUT, READ_AHEAD_LIMIT, Step, TLSEngine, _is_eof
from trio_tls.testing import SERVER_NAME, TLSTestCA, TLSVersionName

from .helpers.contexts import post_handshake_auth_contexts


def make_engines(ca: TLSTestCA, version: TLSVersionName) -> tuple[TLSEngine, TLSEngine]:
    client = TLSEngine(
        ca.client_context(version=version), server_side=False, server_hostname=SERVER_NAME
    )
    server = TLSEngine(ca.server_context(version=version), server_side=True, server_hostname=None)
    return client, server


def pump_handshake(client: TLSEngine, server: TLSEngine, *, chunk: int) -> None:
    """Run both handshakes to completion, delivering ciphertext ``chunk`` bytes at a time."""
    done = {id(client): False, id(server): False}
    wire = {id(client): bytearray(), id(server): bytearray()}  # bytes in flight *to* each
    for _ in range(10_000):
        for me, peer in ((client, server), (server, client)):
            if not done[id(me)]:
                step = me.handshake()
                assert step.error is None, step.error
                wire[id(peer)] += step.to_send
                done[id(me)] = step.finished
            inbox = wire[id(me)]
            if inbox:
                me.feed(bytes(inbox[:chunk]))
                del inbox[:chunk]
        if all(done.values()) and not any(wire.values()):
            return
    raise AssertionError("handshake did not converge")


def transfer(sender: TLSEngine, receiver: TLSEngine, data: bytes, *, chunk: int) -> bytes:
    step = sender.write(data)
    assert step.finished and not step.want_read
    wire = sender.take_delayed() + step.to_send
    received = bytearray()
    for start in range(0, len(wire), chunk):
        receiver.feed(wire[start : start + chunk])
        while True:
            got = receiver.read(None)
            assert got.error is None
            if got.want_read:
                break
            assert got.result is not None
            received += got.result
            if not got.result:
                break
    return bytes(received)


@pytest.mark.parametrize("chunk", [1, 7, 100_000], ids=["byte_by_byte", "chunk7", "whole"])
def test_handshake_and_data_fed_in_any_chunking(
    tls_ca: TLSTestCA, tls_version: TLSVersionName, chunk: int
) -> None:
    client, server = make_engines(tls_ca, tls_version)
    pump_handshake(client, server, chunk=chunk)
    assert client.obj.version() == server.obj.version() == f"TLSv{tls_version}"
    payload = bytes(range(256)) * 300
    assert transfer(client, server, payload, chunk=chunk) == payload
    assert transfer(server, client, payload[::-1], chunk=chunk) == payload[::-1]


def test_tls13_server_holds_tickets_back_until_asked(tls_ca: TLSTestCA) -> None:
    client, server = make_engines(tls_ca, "1.3")
    pump_handshake(client, server, chunk=100_000)
    # The tickets are not in any to_send: they wait for the server's first send.
    assert server.delayed
    tickets = server.take_delayed()
    assert not server.delayed
    client.feed(tickets)
    step = client.read(None)
    assert step.want_read  # tickets carry no application data
    session = client.obj.session
    assert session is not None and session.has_ticket


def test_tls12_server_holds_nothing_back(tls_ca: TLSTestCA) -> None:
    client, server = make_engines(tls_ca, "1.2")
    pump_handshake(client, server, chunk=100_000)
    assert server.delayed == b""


def test_read_with_nothing_buffered_wants_input_without_calling_openssl(tls_ca: TLSTestCA) -> None:
    client, server = make_engines(tls_ca, "1.3")
    pump_handshake(client, server, chunk=100_000)
    step = server.read(None)
    assert step == Step(b"", want_read=True, finished=False)


def test_read_returns_every_buffered_record_in_one_call_as_bytes(tls_ca: TLSTestCA) -> None:
    client, server = make_engines(tls_ca, "1.3")
    pump_handshake(client, server, chunk=100_000)
    wire = b"".join(client.write(bytes([i]) * 1000).to_send for i in range(5))
    server.feed(wire)
    step = server.read(None)
    assert step.finished
    assert step.result == b"".join(bytes([i]) * 1000 for i in range(5))


def test_read_respects_max_bytes_and_keeps_the_rest(tls_ca: TLSTestCA) -> None:
    client, server = make_engines(tls_ca, "1.2")
    pump_handshake(client, server, chunk=100_000)
    server.feed(client.write(b"abcdefghij").to_send)
    first = server.read(3)
    assert first.result == b"abc"
    assert server.read(None).result == b"defghij"


def test_close_notify_reads_as_sticky_eof(tls_ca: TLSTestCA, tls_version: TLSVersionName) -> None:
    client, server = make_engines(tls_ca, tls_version)
    pump_handshake(client, server, chunk=100_000)
    step = client.send_close_notify()
    assert step.finished and step.to_send
    server.feed(client.take_delayed() + step.to_send)
    assert server.read(None).result == b""
    assert server.peer_closed
    assert server.read(10).result == b""  # and again, without touching OpenSSL


def test_eof_without_close_notify_is_an_error_unless_allowed(tls_ca: TLSTestCA) -> None:
    client, server = make_engines(tls_ca, "1.3")
    pump_handshake(client, server, chunk=100_000)
    server.feed_eof()
    step = server.read(None)
    assert step.finished and _is_eof(step.error)

    client2, server2 = make_engines(tls_ca, "1.3")
    pump_handshake(client2, server2, chunk=100_000)
    server2.ragged_eof_ok = True
    server2.feed_eof()
    assert server2.read(None).result == b""


def test_data_decrypted_before_a_bad_record_is_returned_first(tls_ca: TLSTestCA) -> None:
    client, server = make_engines(tls_ca, "1.3")
    pump_handshake(client, server, chunk=100_000)
    good = client.write(b"good data").to_send
    bad = bytearray(client.write(b"tampered").to_send)
    bad[-1] ^= 0x01  # break the AEAD tag
    server.feed(good + bytes(bad))
    first = server.read(None)
    assert first.result == b"good data" and first.error is None
    second = server.read(None)
    assert isinstance(second.error, ssl.SSLError)


def test_failed_handshake_reports_the_alert_to_send(tls_ca: TLSTestCA) -> None:
    other = TLSTestCA()  # the client trusts a different CA
    client = TLSEngine(other.client_context(), server_side=False, server_hostname=SERVER_NAME)
    server = TLSEngine(tls_ca.server_context(), server_side=True, server_hostname=None)
    for _ in range(10):
        c = client.handshake()
        if c.error is not None:
            break
        server.feed(c.to_send)
        s = server.handshake()
        client.feed(s.to_send)
    assert isinstance(c.error, ssl.SSLCertVerificationError)
    assert c.finished and c.to_send  # the fatal alert, for the driver to flush
    server.feed(c.to_send)
    with pytest.raises(ssl.SSLError):
        server.obj.do_handshake()


def test_is_eof_recognises_both_spellings() -> None:
    assert _is_eof(ssl.SSLEOFError(8, "EOF occurred in violation of protocol"))
    legacy = ssl.SSLError(1, "[SSL: UNEXPECTED_EOF_WHILE_READING] unexpected eof")
    legacy.reason = "UNEXPECTED_EOF_WHILE_READING"
    assert _is_eof(legacy)
    assert not _is_eof(ssl.SSLError(1, "bad record mac"))
    assert not _is_eof(None)


# -- the driver's fast paths: encrypt() and decrypt() return plain bytes when they can --


def test_encrypt_and_decrypt_hand_back_bytes_in_the_common_case(
    tls_ca: TLSTestCA, tls_version: TLSVersionName
) -> None:
    client, server = make_engines(tls_ca, tls_version)
    pump_handshake(client, server, chunk=100_000)
    assert server.decrypt(None) is _NEED_INPUT  # nothing buffered: the shared answer
    ciphertext = client.encrypt(b"hello")
    assert isinstance(ciphertext, bytes) and b"hello" not in ciphertext
    server.feed(ciphertext)
    assert server.decrypt(None) == b"hello"
    # read() and write() are the same operations wrapped in a Step.
    server.feed(client.write(b"again").to_send)
    assert server.read(None) == Step(b"", want_read=False, finished=True, result=b"again")


def test_decrypt_returns_a_step_when_the_read_produced_ciphertext(tls_ca: TLSTestCA) -> None:
    # A TLS 1.3 post-handshake CertificateRequest read together with application data:
    # the client's answer must go out, so the plaintext comes wrapped with it.
    server_ctx = tls_ca.server_context(version="1.3")
    server_ctx.post_handshake_auth = True
    server_ctx.verify_mode = ssl.CERT_OPTIONAL
    client_ctx = tls_ca.client_context(version="1.3", with_client_cert=True)
    client_ctx.post_handshake_auth = True
    client = TLSEngine(client_ctx, server_side=False, server_hostname=SERVER_NAME)
    server = TLSEngine(server_ctx, server_side=True, server_hostname=None)
    pump_handshake(client, server, chunk=100_000)
    server.request_client_certificate()
    request = server.take_delayed() + server.handshake().to_send
    data = server.encrypt(b"payload")
    assert isinstance(data, bytes)
    client.feed(request + data)
    out = client.decrypt(None)
    assert isinstance(out, Step)
    assert out.result == b"payload" and out.finished and out.to_send


def test_encrypt_reports_a_bad_buffered_record_as_a_failed_step(tls_ca: TLSTestCA) -> None:
    client, server = make_engines(tls_ca, "1.3")
    pump_handshake(client, server, chunk=100_000)
    sealed = client.encrypt(b"tampered")
    assert isinstance(sealed, bytes)
    bad = bytearray(sealed)
    bad[-1] ^= 0x01
    server.feed(bytes(bad))
    # encrypt() first decrypts what is buffered (see _drain_before_write): the
    # broken record fails the write, with the alert to send.
    out = server.encrypt(b"reply")
    assert isinstance(out, Step)
    assert isinstance(out.error, ssl.SSLError) and out.finished and out.to_send


def test_a_record_completed_by_its_last_bytes_is_read_whole(
    tls_ca: TLSTestCA, tls_version: TLSVersionName
) -> None:
    """TCP may split a record anywhere. Whatever the split, the read that completes the
    record returns all of it: OpenSSL keeps the first part in its own buffer, so the
    read must not be sized to the few bytes still in the BIO."""
    line = b"250-mail.example\r\n"
    client, server = make_engines(tls_ca, tls_version)
    pump_handshake(client, server, chunk=100_000)
    client.feed(server.take_delayed())  # TLS 1.3 tickets, out of the way
    assert client.read(None).want_read
    for split in range(1, 64):
        record = server.write(line).to_send
        if split >= len(record):
            break
        client.feed(record[:split])
        assert client.read(None).want_read, f"split at {split}: the record is incomplete"
        client.feed(record[split:])
        got = client.read(None)
        assert got.result == line, f"split at {split} of {len(record)}: got {got.result!r}"
    else:
        raise AssertionError("the record was longer than the splits tried")


def test_read_ahead_stops_at_its_limit_and_keeps_everything(tls_ca: TLSTestCA) -> None:
    """While waiting for something only a read brings (here: a ticket that never
    comes), at most READ_AHEAD_LIMIT bytes of plaintext are kept; at the cap the wait
    finishes with None (it could never succeed), and everything is still readable."""
    server_ctx = tls_ca.server_context(version="1.3")
    server_ctx.num_tickets = 0  # no ticket ever: the client waits forever
    client = TLSEngine(
        tls_ca.client_context(version="1.3"), server_side=False, server_hostname=SERVER_NAME
    )
    server = TLSEngine(server_ctx, server_side=True, server_hostname=None)
    pump_handshake(client, server, chunk=100_000)
    payload = bytes(range(256)) * (3 * READ_AHEAD_LIMIT // 256)
    client.feed(server.write(payload).to_send)
    for _ in range(100):
        step = client.read_ahead_until(lambda: False)
        if client.read_ahead_full:
            break
        assert not step.finished
    assert client.read_ahead_full
    step = client.read_ahead_until(lambda: False)
    assert step == Step(b"", want_read=False, finished=True, result=None)
    received = bytearray()
    while len(received) < len(payload):
        got = client.read(None)
        assert got.result, "all of the payload is buffered somewhere"
        received += got.result
        assert len(received) <= len(payload)
    assert received == payload


def certificate_answer(contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> tuple[TLSEngine, bytes]:
    """A TLS 1.3 server that asked for a client certificate, and the client's answer
    (Certificate, CertificateVerify, Finished) that it has not yet received."""
    client_ctx, server_ctx = contexts
    client = TLSEngine(client_ctx, server_side=False, server_hostname=SERVER_NAME)
    server = TLSEngine(server_ctx, server_side=True, server_hostname=None)
    pump_handshake(client, server, chunk=100_000)
    server.request_client_certificate()
    client.feed(server.take_delayed() + server.handshake().to_send)
    step = client.read(None)
    assert step.want_read and step.to_send, "the client answers while it reads"
    return server, step.to_send


def await_certificate(server: TLSEngine, pieces: list[bytes]) -> None:
    """Feed the answer piece by piece, checking after each as the driver does: "not
    yet" until the last byte, then the verified certificate; never an exception."""
    for number, piece in enumerate(pieces, 1):
        server.feed(piece)
        step = server.read_ahead_until(server.has_peer_certificate)
        last = number == len(pieces)
        assert step.error is None, step.error
        assert step.finished == last and step.result is (True if last else None), number
        assert (server.peer_certificate(True) is not None) == last


def test_post_handshake_certificate_split_at_every_byte_boundary(tls_ca: TLSTestCA) -> None:
    """While OpenSSL holds part of the answer, CPython's getpeercert() raises
    ValueError("handshake not done yet"); the wait must read that as "not yet"."""
    # A new connection for each split; the answer's length varies by a byte or two
    # with the signature's encoding, so the loop ends at this connection's length.
    contexts = post_handshake_auth_contexts(tls_ca)  # shared: loading them is the slow part
    for split in range(1, 4096):
        server, answer = certificate_answer(contexts)
        if split >= len(answer):
            break
        await_certificate(server, [answer[:split], answer[split:]])
    else:
        raise AssertionError("the answer was longer than the splits tried")


def test_post_handshake_certificate_one_byte_at_a_time(tls_ca: TLSTestCA) -> None:
    server, answer = certificate_answer(post_handshake_auth_contexts(tls_ca))
    await_certificate(server, [answer[i : i + 1] for i in range(len(answer))])
    assert server.peer_certificate(False) is not None
