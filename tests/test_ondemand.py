"""ContextCache: one load per name under load, LRU, remembered failures, refusals.

The load counts come from the test's own loader; the handshakes are real ones over
127.0.0.1, with clients that verify the certificate for the name they asked for.
"""

from __future__ import annotations

import ssl
from collections import Counter

import pytest
import trio
import trio.testing

from trio_tls import ClientHello, ContextCache, SSLStream
from trio_tls.testing import TLSTestCA

from .helpers.streams import serving

pytestmark = pytest.mark.usefixtures("no_fd_leak")


def hello_for(name: str | None) -> ClientHello:
    return ClientHello(name, name, (), (ssl.TLSVersion.TLSv1_3,))


class Loader:
    """Mints a certificate for each name it is asked for, counting the calls."""

    def __init__(self, ca: TLSTestCA, delay: float = 0.0) -> None:
        self.ca = ca
        self.delay = delay
        self.calls: Counter[str] = Counter()
        self.release: trio.Event | None = None

    async def __call__(self, name: str) -> ssl.SSLContext:
        self.calls[name] += 1
        if self.release is not None:
            await self.release.wait()
        await trio.sleep(self.delay)
        if name.startswith("unknown"):
            raise LookupError(f"no certificate for {name}")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ca.ca.issue_cert(name).configure_cert(context)
        return context


async def echo(stream: SSLStream[trio.SocketStream]) -> None:
    await stream.send_all(await stream.receive_some())


async def test_one_load_for_100_concurrent_handshakes(tls_ca: TLSTestCA) -> None:
    loader = Loader(tls_ca, delay=0.5)  # long enough for every client to arrive meanwhile
    cache = ContextCache(loader)
    client_context = tls_ca.client_context()
    done: list[str] = []

    async def client(port: int, index: int) -> None:
        tcp = await trio.open_tcp_stream("127.0.0.1", port)
        async with SSLStream(tcp, client_context, server_hostname="new.example") as stream:
            await stream.send_all(b"%d" % index)
            assert await stream.receive_some() == b"%d" % index
            done.append(stream.version() or "")

    with trio.fail_after(60):
        async with serving(echo, cache, backlog=200) as port, trio.open_nursery() as clients:
            for index in range(100):
                clients.start_soon(client, port, index)
    assert len(done) == 100
    assert loader.calls == Counter({"new.example": 1})
    assert len(cache) == 1


async def test_waiters_take_over_when_the_loading_connection_is_cancelled(
    tls_ca: TLSTestCA,
) -> None:
    loader = Loader(tls_ca)
    loader.release = trio.Event()
    cache = ContextCache(loader)
    results: list[ssl.SSLContext] = []

    async def waiter() -> None:
        results.append(await cache(hello_for("a.example")))

    loading = trio.CancelScope()

    async def first_caller() -> None:
        with loading:
            await cache(hello_for("a.example"))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(first_caller)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(waiter)  # both queue behind the first caller's load
            nursery.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            assert loader.calls["a.example"] == 1
            loading.cancel()  # its connection went away mid-load
            await trio.testing.wait_all_tasks_blocked()
            assert loader.calls["a.example"] == 2  # one waiter took over, in its own task
            loader.release.set()
    assert len(results) == 2 and results[0] is results[1]
    # The first load was abandoned; exactly one waiter loaded again.
    assert loader.calls["a.example"] == 2


async def test_least_recently_used_is_evicted(tls_ca: TLSTestCA) -> None:
    loader = Loader(tls_ca)
    cache = ContextCache(loader, max_contexts=2)
    a = await cache(hello_for("a.example"))
    await cache(hello_for("b.example"))
    assert await cache(hello_for("a.example")) is a  # a is now the most recent
    await cache(hello_for("c.example"))  # evicts b
    assert len(cache) == 2
    assert await cache(hello_for("a.example")) is a
    await cache(hello_for("b.example"))
    assert loader.calls == Counter({"a.example": 1, "b.example": 2, "c.example": 1})
    cache.forget("A.example.")
    await cache(hello_for("a.example"))
    assert loader.calls["a.example"] == 2


async def test_forget_during_a_load_keeps_the_next_hello_from_its_result(
    tls_ca: TLSTestCA,
) -> None:
    loader = Loader(tls_ca)
    loader.release = trio.Event()
    cache = ContextCache(loader)
    results: list[ssl.SSLContext] = []

    async def hello() -> None:
        results.append(await cache(hello_for("a.example")))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(hello)  # loads: reading the old certificate, say
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(hello)  # waits for that load
            await trio.testing.wait_all_tasks_blocked()
            cache.forget("a.example")  # the certificate was renewed meanwhile
            loader.release.set()
    # The first hello got what its load read; the waiter loaded again, and only
    # that newer context is kept.
    assert loader.calls["a.example"] == 2
    assert results[0] is not results[1]
    assert await cache(hello_for("a.example")) is results[1]
    assert loader.calls["a.example"] == 2


async def test_forget_during_a_failing_load_remembers_no_failure(tls_ca: TLSTestCA) -> None:
    loader = Loader(tls_ca)
    loader.release = trio.Event()
    cache = ContextCache(loader, retry_after=60)

    async def hello() -> None:
        with pytest.raises(LookupError):
            await cache(hello_for("unknown.example"))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(hello)
            await trio.testing.wait_all_tasks_blocked()
            cache.forget("unknown.example")
            loader.release.set()
    loader.release = None
    with pytest.raises(LookupError, match="no certificate"):
        await cache(hello_for("unknown.example"))  # loaded again, not the remembered failure
    assert loader.calls["unknown.example"] == 2


async def test_failures_are_remembered_for_retry_after(
    tls_ca: TLSTestCA, autojump_clock: trio.testing.MockClock
) -> None:
    loader = Loader(tls_ca)
    cache = ContextCache(loader, retry_after=10)
    with pytest.raises(LookupError, match=r"no certificate for unknown\.example"):
        await cache(hello_for("unknown.example"))
    with pytest.raises(LookupError, match=r"unknown\.example") as again:
        await cache(hello_for("unknown.example"))
    assert isinstance(again.value.__cause__, LookupError)
    assert loader.calls["unknown.example"] == 1
    await trio.sleep(10.5)
    with pytest.raises(LookupError):
        await cache(hello_for("unknown.example"))
    assert loader.calls["unknown.example"] == 2


async def test_other_failures_keep_their_kind(tls_ca: TLSTestCA) -> None:
    async def broken(name: str) -> ssl.SSLContext:
        raise OSError("vault unreachable")

    cache = ContextCache(broken)
    with pytest.raises(OSError, match="vault unreachable"):
        await cache(hello_for("a.example"))
    with pytest.raises(RuntimeError, match="vault unreachable") as again:
        await cache(hello_for("a.example"))
    assert not isinstance(again.value, LookupError)


async def test_no_retry_after_means_every_hello_loads(tls_ca: TLSTestCA) -> None:
    loader = Loader(tls_ca)
    cache = ContextCache(loader, retry_after=0)
    for _ in range(3):
        with pytest.raises(LookupError):
            await cache(hello_for("unknown.example"))
    assert loader.calls["unknown.example"] == 3


async def test_allow_refuses_before_loading(tls_ca: TLSTestCA) -> None:
    loader = Loader(tls_ca)
    allowed = {"a.example"}
    cache = ContextCache(loader, allow=allowed.__contains__)
    await cache(hello_for("a.example"))
    with pytest.raises(LookupError, match="not an allowed server name"):
        await cache(hello_for("b.example"))
    allowed.clear()  # revoked: refused at once, although cached
    with pytest.raises(LookupError):
        await cache(hello_for("a.example"))
    assert loader.calls == Counter({"a.example": 1})


@pytest.mark.parametrize(
    "name",
    ["../etc/passwd", "a/b.example", "a..example", ".example", "-a.example", "a b", "x" * 64],
)
async def test_names_that_are_not_host_names_never_reach_load(tls_ca: TLSTestCA, name: str) -> None:
    loader = Loader(tls_ca)
    with pytest.raises(LookupError, match="not a host name"):
        await ContextCache(loader)(hello_for(name))
    assert not loader.calls


async def test_a_hello_without_server_name(tls_ca: TLSTestCA) -> None:
    loader = Loader(tls_ca)
    with pytest.raises(LookupError, match="no server name"):
        await ContextCache(loader)(hello_for(None))
    await ContextCache(loader, default_name="fallback.example")(hello_for(None))
    assert loader.calls == Counter({"fallback.example": 1})


async def test_refused_names_get_unrecognized_name_over_the_wire(tls_ca: TLSTestCA) -> None:
    loader = Loader(tls_ca)
    cache = ContextCache(loader, allow=lambda name: name.endswith(".example"))
    with trio.fail_after(10):
        async with serving(echo, cache) as port:
            for name in ("evil.test", "unknown.example"):
                tcp = await trio.open_tcp_stream("127.0.0.1", port)
                async with SSLStream(tcp, tls_ca.client_context(), server_hostname=name) as s:
                    with pytest.raises(trio.BrokenResourceError) as caught:
                        await s.do_handshake()
                    assert "unrecognized name" in str(caught.value.__cause__)
    assert loader.calls == Counter({"unknown.example": 1})


def test_arguments_are_checked(tls_ca: TLSTestCA) -> None:
    with pytest.raises(ValueError, match="max_contexts"):
        ContextCache(Loader(tls_ca), max_contexts=0)
    with pytest.raises(ValueError, match="retry_after"):
        ContextCache(Loader(tls_ca), retry_after=-1)
