"""Choosing a server's SSLContext with trio code, after reading the ClientHello.

Python's ``sni_callback`` runs inside OpenSSL, synchronously: it cannot await, so it
cannot load a certificate from disk, a secrets store or an ACME order without
blocking the event loop. A server stream given a :data:`ContextChooser` instead of
an ``ssl.SSLContext`` therefore holds the client's first bytes back (OpenSSL sees
none of them), parses the ClientHello itself (:mod:`trio_tls._hello`), awaits the
chooser in the connection's own task, and only then creates the connection's
``SSLObject``, from the chosen context, over the same memory BIOs: OpenSSL reads the
hello as if the client had connected to a server holding that context all along.

Why create the SSLObject late rather than switch ``SSLObject.context`` (what an
``sni_callback`` does)? Switching a live connection's context (``SSL_set_SSL_CTX``)
changes its certificate, key, trust store and the ALPN callback, but OpenSSL copied
everything else from the first context when it created the connection: the
verify mode (whether to ask for a client certificate), post-handshake auth, the
options, the minimum and maximum versions, the cipher lists, the groups, the number
of TLS 1.3 tickets, and the session cache and ticket keys (which stay those of the
first context, so a ticket issued for one name would be accepted by another).
Creating the connection from the chosen context means none of these can disagree
with it. Until then a placeholder ``SSLObject``, created only if something asks,
answers the stream's queries (``version()`` is None, as before any handshake).

When the chooser fails, OpenSSL still sends the alert: the connection is created
from a context whose ``sni_callback`` refuses every hello with it
(``unrecognized_name`` for :exc:`LookupError`, ``internal_error`` otherwise).
"""

from __future__ import annotations

import functools
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeAlias, cast

import trio

from ._engine import _NEED_INPUT, Step, TLSEngine
from ._hello import ClientHello, ClientHelloError, HelloReader

if TYPE_CHECKING:
    from ._driver import Driver

#: An async callable that picks the server's context for a ClientHello (trio_tls
#: extension). Give one wherever a server takes an ``ssl_context``: it is awaited in
#: the connection's own task, inside the handshake and its deadline, and the
#: connection is then created from the context it returns, so every setting of that
#: context applies (verify mode, post-handshake auth, ALPN, versions, options,
#: ciphers, tickets). Raise :exc:`LookupError` to refuse the name (the client gets an
#: ``unrecognized_name`` alert); any other exception, or the deadline expiring,
#: sends ``internal_error``. Either way the handshake raises
#: :exc:`trio.BrokenResourceError` from a :exc:`ContextChoiceError` naming the server
#: name and the cause. :class:`~trio_tls.ContextCache` makes one from ``load(name)``.
ContextChooser: TypeAlias = Callable[[ClientHello], Awaitable[ssl.SSLContext]]


class ContextChoiceError(Exception):
    """The context chooser failed, or did not finish within the handshake deadline.

    The handshake's ``trio.BrokenResourceError`` is raised from it; its own
    ``__cause__`` is what the chooser raised (or :exc:`trio.TooSlowError`).
    """

    def __init__(self, message: str, hello: ClientHello) -> None:
        super().__init__(message)
        #: The ClientHello the chooser was given.
        self.hello = hello


@functools.cache
def _placeholder() -> ssl.SSLContext:
    return ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)


@functools.cache
def _refusing(alert: int) -> ssl.SSLContext:
    """A server context that fails every handshake with ``alert``, sent by OpenSSL."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.sni_callback = lambda _obj, _name, _ctx: alert
    return context


def split_chooser(
    ssl_context: ssl.SSLContext | ContextChooser, *, server_side: bool
) -> tuple[Choice | None, ssl.SSLContext]:
    """``(None, ssl_context)`` for a context; for a chooser, its :class:`Choice` and
    the placeholder context a :class:`ChoosingEngine` starts from."""
    if isinstance(ssl_context, ssl.SSLContext):
        return None, ssl_context
    return Choice(ssl_context, server_side=server_side), _placeholder()


class ChoosingEngine(TLSEngine):
    """A server engine that reads the ClientHello before it has an SSLObject to give it to.

    Everything fed goes into the incoming BIO, where the SSLObject created by
    :meth:`install` will find it; a :class:`~trio_tls._hello.HelloReader` follows the
    hello's records meanwhile (in linear time, however small the pieces) and keeps
    no more than ``DEFAULT_MAX_HELLO_BYTES`` of it.
    """

    __slots__ = ("_ended", "_following", "_reader")

    def __init__(
        self,
        context: ssl.SSLContext,
        *,
        server_side: bool,
        server_hostname: str | None,
        session: ssl.SSLSession | None = None,
    ) -> None:
        # No SSLObject yet: a placeholder would cost an SSL_new and a Python object
        # on every connection, and nothing reads it before install() on a server's
        # usual path (__getattr__ creates one for whatever does).
        super().__init__(None, server_side=server_side, server_hostname=None)
        self._reader = HelloReader()
        # feed() gives the reader the bytes until the hello is whole or unreadable,
        # and then skips it: the rest of the connection pays for nothing here.
        self._following = True
        # The transport ended. (MemoryBIO.eof stays False while the held-back hello
        # is still in it, unread.)
        self._ended = False

    if not TYPE_CHECKING:  # for mypy, ``obj`` is the SSLObject slot it always is

        def __getattr__(self, name: str) -> ssl.SSLObject:
            """Only called while the ``obj`` slot is empty, before :meth:`install`:
            a placeholder SSLObject, created on first use, that never sees a byte
            (``version()`` is None, as before any handshake).

            Not a property: the handshake reads ``obj`` a dozen times, and a
            property would run Python code for every read of every connection,
            where a filled slot costs nothing.
            """
            if name != "obj":
                raise AttributeError(name)
            self._set_obj(_placeholder().wrap_bio(self._in, self._out, server_side=True))
            return self.obj

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self._in.write(data)
        if self._following:
            reader = self._reader
            reader.follow(data)
            self._following = reader.hello is None and reader.error is None

    def feed_eof(self) -> None:
        self._in.write_eof()
        self._ended = True

    def read_hello(self) -> Step[ClientHello | ClientHelloError]:
        """Wait for the whole ClientHello; finish with it, or with why it is unreadable."""
        reader = self._reader
        found = reader.hello or reader.error
        if found is not None:
            return Step(b"", False, True, found)
        if not self._ended:
            return _NEED_INPUT
        return Step(b"", False, True, _truncated(reader.taken))

    def install(self, context: ssl.SSLContext) -> None:
        """Create the connection from ``context``; it reads the hello held in the BIO.

        Raises ``ssl.SSLError`` (``ValueError`` on some Python versions) for a client
        context, from which CPython refuses to create a server connection, leaving
        the engine as it was.
        """
        self._set_obj(context.wrap_bio(self._in, self._out, server_side=True))

    def refuse(self, alert: int) -> bytes:
        """Fail the hello with ``alert``; returns the alert record OpenSSL produced."""
        self.install(_refusing(alert))
        return self.handshake().to_send


def _install(engine: ChoosingEngine, context: object) -> None:
    """Install what a chooser returned, or raise TypeError for what is no server context.

    A client context is left to ``wrap_bio`` to refuse, and only then is
    ``context.protocol`` asked why: that property builds an enum member on every
    call, so checking it first would cost every handshake, not only the chooser
    that is wrong.
    """
    if isinstance(context, ssl.SSLContext):
        try:
            engine.install(context)
            return
        except (ValueError, ssl.SSLError):
            if context.protocol != ssl.PROTOCOL_TLS_CLIENT:
                raise
    raise TypeError(f"the chooser returned {context!r}, not a server ssl.SSLContext")


def _truncated(held: int) -> ClientHelloError:
    return ClientHelloError(
        "truncated", f"the client closed the connection inside its ClientHello ({held} bytes)"
    )


def _describe(hello: ClientHello) -> str:
    if hello.server_name is None:
        return "a ClientHello without a server name"
    return f"server name {hello.server_name!r}"


class Choice:
    """One server stream's chooser, its engine, and what happened when it ran."""

    __slots__ = ("_chooser", "hello", "running", "seconds")

    def __init__(self, chooser: ContextChooser, *, server_side: bool) -> None:
        if not callable(chooser):
            raise TypeError(
                f"ssl_context must be an ssl.SSLContext or an async callable choosing one, "
                f"not {type(chooser).__name__}"
            )
        if not server_side:
            raise TypeError("only a server chooses its context from the ClientHello")
        self._chooser = chooser
        #: The parsed ClientHello, once it has arrived.
        self.hello: ClientHello | None = None
        #: The chooser has been called and has not returned (a deadline stopped it).
        self.running = False
        #: Seconds the chooser ran; None until it was called.
        self.seconds: float | None = None

    async def run(self, driver: Driver) -> None:
        """Read the hello, await the chooser and install its context (or refuse)."""
        engine = cast(ChoosingEngine, driver._engine)
        read = await driver._drive("handshake", engine.read_hello)
        if isinstance(read, ClientHelloError):
            raise trio.BrokenResourceError(f"TLS handshake failed: {read}") from read
        self.hello = read
        started = time.perf_counter()
        self.running = True
        try:
            context = await self._chooser(read)
            self.running = False
            _install(engine, context)
        except Exception as exc:
            self.running = False
            message = f"choosing the context for {_describe(read)} failed: {exc!r}"
            await self._refuse(driver, message, exc)
        finally:
            self.seconds = time.perf_counter() - started

    async def too_slow(self, driver: Driver, seconds: float | None) -> None:
        """If the handshake deadline expired while the chooser ran: refuse, and raise."""
        if not self.running or self.hello is None:
            return
        slow = trio.TooSlowError(f"the TLS handshake did not finish within {seconds} s")
        message = (
            f"choosing the context for {_describe(self.hello)} did not finish "
            f"within the handshake deadline ({seconds} s)"
        )
        await self._refuse(driver, message, slow)

    async def _refuse(self, driver: Driver, message: str, cause: BaseException) -> None:
        assert self.hello is not None
        alert = (
            ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
            if isinstance(cause, LookupError)
            else ssl.ALERT_DESCRIPTION_INTERNAL_ERROR
        )
        await driver._flush_alert(cast(ChoosingEngine, driver._engine).refuse(alert))
        error = ContextChoiceError(message, self.hello)
        error.__cause__ = cause
        raise trio.BrokenResourceError(f"TLS handshake failed: {error}") from error
