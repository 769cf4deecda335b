"""patch_trio() and unpatch_trio(): the swap itself, the warning, isinstance across it.

The libraries it exists for are run in tests/test_patch_libraries.py and trio's own
suite in tests/test_patch_trio_suite.py.
"""

from __future__ import annotations

import ssl
import sys
import types
from functools import partial
from typing import Any

import pytest
import trio
import trio.testing

import trio_tls
from trio_tls.integrations.httpcore import TrioTLSNetworkStream
from trio_tls.testing import SERVER_NAME, TLSTestCA, check_tls_stream, handshake_pair

from .helpers.streams import port_of

#: trio's originals, read before any test patches.
ORIGINALS = {
    "SSLStream": trio.SSLStream,
    "SSLListener": trio.SSLListener,
    "open_ssl_over_tcp_stream": trio.open_ssl_over_tcp_stream,
    "open_ssl_over_tcp_listeners": trio.open_ssl_over_tcp_listeners,
    "serve_ssl_over_tcp": trio.serve_ssl_over_tcp,
}


def current_names() -> dict[str, object]:
    return {name: getattr(trio, name) for name in ORIGINALS}


def patched(name: str) -> Any:
    """``trio.<name>`` as it is now. Type checkers see trio's own classes under trio's
    names whatever the patch did, so a test that uses the patched ones reads them as Any."""
    return getattr(trio, name)


def trio_class(name: str) -> Any:
    """trio's own class, whatever ``trio.<name>`` is now."""
    return ORIGINALS[name]


def trio_stream(ca: TLSTestCA) -> object:
    """A client stream built by trio's own class, whatever ``trio.SSLStream`` is now."""
    transport, _ = trio.testing.memory_stream_pair()
    return trio_class("SSLStream")(transport, ca.client_context(), server_hostname=SERVER_NAME)


def trio_tls_stream(ca: TLSTestCA) -> trio_tls.SSLStream[Any]:
    transport, _ = trio.testing.memory_stream_pair()
    return trio_tls.SSLStream(transport, ca.client_context(), server_hostname=SERVER_NAME)


@pytest.fixture
def early_binding(monkeypatch: pytest.MonkeyPatch) -> str:
    """A module imported "before the patch" that did ``from trio import SSLStream``."""
    name = "early_bird_module"
    module = types.ModuleType(name)
    module.SSLStream = trio.SSLStream  # type: ignore[attr-defined]
    module.helper = trio.open_ssl_over_tcp_stream  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, name, module)
    return name


# --- the swap ----------------------------------------------------------------------------


def test_patch_swaps_the_five_names_and_unpatch_restores_them() -> None:
    trio_tls.patch_trio()
    try:
        assert current_names() == {name: getattr(trio_tls, name) for name in ORIGINALS}
    finally:
        trio_tls.unpatch_trio()
    assert current_names() == ORIGINALS


def test_calling_either_twice_is_harmless() -> None:
    trio_tls.unpatch_trio()  # not patched: nothing to do
    assert current_names() == ORIGINALS
    trio_tls.patch_trio()
    trio_tls.patch_trio()
    try:
        assert patched("SSLStream") is trio_tls.SSLStream
    finally:
        trio_tls.unpatch_trio()
    trio_tls.unpatch_trio()
    assert current_names() == ORIGINALS


def test_patch_warns_naming_modules_that_bound_trio_originals(early_binding: str) -> None:
    try:
        with pytest.warns(RuntimeWarning, match="patch_trio") as caught:
            trio_tls.patch_trio()
        message = str(caught[0].message)
        assert f"{early_binding}.SSLStream" in message
        assert f"{early_binding}.helper" in message
        # The module keeps trio's class: the warning is true.
        assert sys.modules[early_binding].SSLStream is ORIGINALS["SSLStream"]
    finally:
        trio_tls.unpatch_trio()


@pytest.mark.usefixtures("patched_trio")
def test_no_warning_when_nothing_bound_early() -> None:
    # pytest's filterwarnings = error makes any warning from the fixture's patch_trio()
    # an error; importing trio's names after the patch is what the docs ask for.
    from trio import SSLStream

    bound: object = SSLStream
    assert bound is trio_tls.SSLStream


@pytest.mark.usefixtures("patched_trio")
async def test_patched_helpers_serve_and_connect_with_trio_tls(tls_ca: TLSTestCA) -> None:
    async def echo(stream: trio_tls.SSLStream[trio.SocketStream]) -> None:
        await stream.send_all(await stream.receive_some())

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            serve = partial(patched("serve_ssl_over_tcp"), host="127.0.0.1")
            listeners = await nursery.start(serve, echo, 0, tls_ca.server_context())
            assert type(listeners[0]) is trio_tls.SSLListener
            port = port_of(listeners[0])
            client = await patched("open_ssl_over_tcp_stream")(
                "127.0.0.1", port, ssl_context=tls_ca.client_context()
            )
            assert type(client) is trio_tls.SSLStream
            await client.send_all(b"ping")
            assert await client.receive_some() == b"ping"
            assert client.statistics().bytes_sent == 4
            await client.aclose()
            nursery.cancel_scope.cancel()


# --- isinstance ----------------------------------------------------------------------------


def test_trio_tls_classes_pass_trio_isinstance_without_patching(tls_ca: TLSTestCA) -> None:
    assert isinstance(trio_tls_stream(tls_ca), trio.SSLStream)
    assert issubclass(trio_tls.SSLListener, trio.SSLListener)
    # Not the other way round: a trio stream has none of trio_tls's extensions.
    early: object = trio_stream(tls_ca)
    assert not isinstance(early, trio_tls.SSLStream)
    assert not issubclass(trio_class("SSLListener"), trio_tls.SSLListener)


def test_trio_streams_made_before_the_patch_pass_the_patched_check(tls_ca: TLSTestCA) -> None:
    early = trio_stream(tls_ca)
    assert not isinstance(early, trio_tls.SSLStream)  # a cached "no" must not survive
    trio_tls.patch_trio()
    try:
        assert isinstance(early, patched("SSLStream"))
        assert issubclass(trio_class("SSLListener"), patched("SSLListener"))
    finally:
        trio_tls.unpatch_trio()
    # And a cached "yes" must not outlive the patch.
    assert not isinstance(early, trio_tls.SSLStream)
    assert not issubclass(trio_class("SSLListener"), trio_tls.SSLListener)


async def test_trio_tls_own_checks_refuse_trio_streams_while_patched(
    tls_ca: TLSTestCA, patched_trio: None
) -> None:
    # The hook lets trio's streams through isinstance() against trio_tls's class; the
    # places in trio_tls that go on to use trio_tls's extensions must not be fooled.
    def pair() -> tuple[Any, Any]:
        a, b = trio.testing.memory_stream_pair()
        client = trio_class("SSLStream")(a, tls_ca.client_context(), server_hostname=SERVER_NAME)
        server = trio_class("SSLStream")(b, tls_ca.server_context(), server_side=True)
        return client, server

    client, server = pair()
    assert isinstance(client, patched("SSLStream"))
    assert TrioTLSNetworkStream(client).get_extra_info("ssl_object") is None
    await trio.aclose_forcefully(client)
    await trio.aclose_forcefully(server)

    async def trio_pair() -> Any:
        return pair()

    with pytest.raises(TypeError, match=r"must return trio_tls\.SSLStreams"):
        await check_tls_stream(trio_pair)


def test_streams_made_while_patched_pass_after_unpatch(tls_ca: TLSTestCA) -> None:
    trio_tls.patch_trio()
    try:
        transport, _ = trio.testing.memory_stream_pair()
        stream = patched("SSLStream")(
            transport, tls_ca.client_context(), server_hostname=SERVER_NAME
        )
    finally:
        trio_tls.unpatch_trio()
    assert type(stream) is trio_tls.SSLStream
    assert isinstance(stream, patched("SSLStream"))
    assert patched("SSLStream") is ORIGINALS["SSLStream"]


# --- what other code reads -------------------------------------------------------------------


@pytest.mark.parametrize("https_compatible", [False, True])
async def test_ssl_object_and_the_private_aliases(
    tls_ca: TLSTestCA, https_compatible: bool
) -> None:
    client_transport, server_transport = trio.testing.memory_stream_pair()
    client = trio_tls.SSLStream(
        client_transport,
        tls_ca.client_context(),
        server_hostname=SERVER_NAME,
        https_compatible=https_compatible,
    )
    server = trio_tls.SSLStream(server_transport, tls_ca.server_context(), server_side=True)
    with trio.fail_after(10):
        await handshake_pair(client, server)
    assert isinstance(client.ssl_object, ssl.SSLObject)
    assert client._ssl_object is client.ssl_object
    assert client.ssl_object.version() == client.version()
    assert client._https_compatible is https_compatible
    assert server._https_compatible is False
    for name in ("ssl_object", "_ssl_object", "_https_compatible"):
        with pytest.raises(AttributeError):
            setattr(client, name, None)


async def test_listener_keeps_its_https_compatible_flag(tls_ca: TLSTestCA) -> None:
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        sock.listen()
        listener = trio_tls.SSLListener(
            trio.SocketListener(sock), tls_ca.server_context(), https_compatible=True
        )
        assert listener._https_compatible is True
