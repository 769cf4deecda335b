"""On-demand TLS: load a name's context the first time a client asks for it, then keep it.

:class:`ContextCache` turns ``async load(name) -> ssl.SSLContext`` into the chooser a
server takes in place of its ``ssl_context``. Its concurrency rules are structured
concurrency's: a load runs in the task of the connection that asked first, never in
a background task, and the connections asking for the same name meanwhile wait for
that one load. If that connection goes away (its deadline, its client hanging up),
its load is cancelled with it, and one of the waiters starts the load again in its
own task: nobody waits on a task that no longer exists, and every wait is bounded
by the waiting connection's own handshake deadline.
"""

from __future__ import annotations

import re
import ssl
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import final

import trio

from ._hello import ClientHello

#: What a host name in a ClientHello must look like before it is given to ``load``:
#: LDH labels of at most 63 characters. Anything else (a slash, "..", a space) would
#: reach a loader that builds a path from the name.
_HOST_NAME = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*")


@final
class _Flight:
    """One load in progress, and its outcome for the connections waiting on it."""

    __slots__ = ("done", "error", "forgotten")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.error: Exception | None = None
        #: forget() was called for the name while this load ran: what it loads may be
        #: the certificate that was just replaced, so it is not kept.
        self.forgotten = False


@final
class ContextCache:
    """A chooser that loads each server name's context once and keeps the recent ones.

    Give it wherever a server takes an ``ssl_context``::

        async def load(name: str) -> ssl.SSLContext: ...  # read files, ask a vault ...

        await trio_tls.serve_ssl_over_tcp(handler, 443, trio_tls.ContextCache(load))

    For each ClientHello it:

    1. takes the server name (A-label form, lowercase, no final dot); a hello without
       one uses ``default_name``, and is refused when that is None;
    2. refuses a name that is not a host name (LDH labels: no slashes, dots at the
       ends or spaces can reach ``load``), and one that ``allow(name)`` rejects.
       ``allow`` is asked on every hello, so a name removed from it stops being
       served at once, cached or not; an async check belongs in ``load``;
    3. returns the cached context, or awaits ``load(name)``: exactly one load per
       name at a time, the other hellos for that name waiting for its result.

    A refusal raises :exc:`LookupError`, so the client gets an ``unrecognized_name``
    alert; ``load`` should raise ``LookupError`` too for a name it does not serve. Any
    other failure of ``load`` gives ``internal_error``.

    A failed load is remembered for ``retry_after`` seconds (default 10 s, 0 to never
    remember): hellos for that name meanwhile fail at once, with an error of the same
    kind (LookupError or not) raised from the original, instead of loading again. This
    keeps a client that retries in a loop from turning into a loop of loads.

    At most ``max_contexts`` contexts are kept (default 1000); the least recently
    used is dropped first, and loaded again when asked for. :meth:`forget` drops one
    now (after renewing its certificate, say); a load of that name already running
    then serves only the hello that started it, and is not kept.

    Args:
      load: ``async (name) -> ssl.SSLContext``; runs in the task of the connection
          that needed it, within its handshake deadline, and is cancelled with it.
      max_contexts: how many contexts to keep (at least 1).
      allow: ``(name) -> bool``, called once the name has passed the host-name check,
          before the cache and ``load``; False refuses.
      default_name: the name to load for hellos that carry none (clients connecting
          to an IP address); None refuses them.
      retry_after: seconds a failed load is remembered.
    """

    def __init__(
        self,
        load: Callable[[str], Awaitable[ssl.SSLContext]],
        *,
        max_contexts: int = 1000,
        allow: Callable[[str], bool] | None = None,
        default_name: str | None = None,
        retry_after: float = 10.0,
    ) -> None:
        if max_contexts < 1:
            raise ValueError(f"max_contexts must be at least 1, not {max_contexts}")
        if retry_after < 0:
            raise ValueError(f"retry_after must be >= 0, not {retry_after}")
        self._load = load
        self._max = max_contexts
        self._allow = allow
        self._default_name = default_name
        self._retry_after = retry_after
        self._contexts: OrderedDict[str, ssl.SSLContext] = OrderedDict()
        self._failures: OrderedDict[str, tuple[float, Exception]] = OrderedDict()
        self._flights: dict[str, _Flight] = {}

    def __repr__(self) -> str:
        return f"<trio_tls.ContextCache {len(self._contexts)}/{self._max} contexts>"

    def __len__(self) -> int:
        """How many contexts are cached now."""
        return len(self._contexts)

    def forget(self, name: str) -> None:
        """Drop ``name``'s context and any remembered failure; the next hello loads it.

        A load of ``name`` in progress may be reading what was just replaced: its
        result goes to the hello that started it and is neither cached nor
        remembered if it fails; the hellos waiting for it load again.
        """
        key = _key(name)
        self._contexts.pop(key, None)
        self._failures.pop(key, None)
        flight = self._flights.get(key)
        if flight is not None:
            flight.forgotten = True

    async def __call__(self, hello: ClientHello) -> ssl.SSLContext:
        """The context for ``hello``'s server name, loading it if it is not cached."""
        name = self._name(hello)
        while True:
            context = self._contexts.get(name)
            if context is not None:
                # No checkpoint of its own: the handshake that awaits this one has
                # plenty, and a scheduler round trip per hit is measurable.
                self._contexts.move_to_end(name)
                return context
            self._raise_recent_failure(name)
            flight = self._flights.get(name)
            if flight is None:
                return await self._load_once(name)
            await flight.done.wait()
            if flight.error is not None and not flight.forgotten:
                raise _again(name, flight.error)
            # Loaded (and cached), forgotten meanwhile, or its connection was
            # cancelled: look again.

    def _name(self, hello: ClientHello) -> str:
        name = hello.server_name
        if name is None:
            if self._default_name is None:
                raise LookupError(
                    "the client sent no server name (SNI), and no default_name is set"
                )
            name = self._default_name
        name = _key(name)
        if len(name) > 253 or not _HOST_NAME.fullmatch(name):
            raise LookupError(f"{name!r} is not a host name")
        if self._allow is not None and not self._allow(name):
            raise LookupError(f"{name!r} is not an allowed server name")
        return name

    def _raise_recent_failure(self, name: str) -> None:
        failure = self._failures.get(name)
        if failure is None:
            return
        until, error = failure
        if trio.current_time() < until:
            raise _again(name, error)
        del self._failures[name]

    async def _load_once(self, name: str) -> ssl.SSLContext:
        flight = self._flights[name] = _Flight()
        try:
            context = await self._load(name)
            if not isinstance(context, ssl.SSLContext):
                raise TypeError(f"load({name!r}) returned {context!r}, not an ssl.SSLContext")
        except Exception as exc:
            flight.error = exc
            if not flight.forgotten:
                self._remember_failure(name, exc)
            raise
        finally:
            # Also on cancellation (error stays None): the waiters wake up and one
            # of them loads in its own task.
            del self._flights[name]
            flight.done.set()
        if flight.forgotten:
            return context
        self._contexts[name] = context
        if len(self._contexts) > self._max:
            self._contexts.popitem(last=False)
        return context

    def _remember_failure(self, name: str, error: Exception) -> None:
        if self._retry_after <= 0:
            return
        self._failures[name] = (trio.current_time() + self._retry_after, error)
        self._failures.move_to_end(name)
        if len(self._failures) > self._max:
            self._failures.popitem(last=False)


def _key(name: str) -> str:
    """The cache's key for ``name``: one spelling for hellos and :meth:`ContextCache.forget`,
    so that forgetting ``"A.example."`` drops what a hello for ``a.example`` loaded."""
    return name.lower().rstrip(".")


def _again(name: str, error: Exception) -> Exception:
    """A new error for another hello that meets ``error``: one object is never raised
    from two tasks (each raise would add to its traceback)."""
    message = f"loading the context for {name!r} failed: {error!r}"
    again = LookupError(message) if isinstance(error, LookupError) else RuntimeError(message)
    again.__cause__ = error
    return again
