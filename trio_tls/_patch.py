"""``patch_trio()``: every library that names trio's TLS classes gets trio_tls's.

hypercorn, httpx (httpcore), trio-websocket and websockets build TLS with
``trio.SSLStream(...)``, ``trio.SSLListener(...)`` or trio's TCP helpers, looking the
name up on the ``trio`` module each time they call it. Swapping those five module
attributes, as ``gevent.monkey.patch_ssl()`` swaps the stdlib's, hands every such
library trio_tls without an adapter and without changing its code.

What the swap cannot reach, and how this module deals with it:

- A name bound before the swap (``from trio import SSLStream`` in a module imported
  earlier) still points at trio's class. Like gevent, :func:`patch_trio` scans
  ``sys.modules`` for module globals that hold trio's originals under their own name
  and warns, naming them. Closures and default arguments that captured the originals
  cannot be found this way, and are not.
- ``isinstance`` must keep working in both directions across the swap. trio_tls's
  classes are registered as virtual subclasses of trio's once, when this module is
  imported (trio's classes are ``abc.ABCMeta`` classes), so ``isinstance(s,
  trio.SSLStream)`` accepts a trio_tls stream whether or not trio is patched. While
  patched, ``trio.SSLStream`` *is* trio_tls's class; a stream trio built earlier
  keeps passing ``isinstance(s, trio.SSLStream)`` through the hook in
  :mod:`trio_tls._standin`.

The swap is global to the process and not thread-safe: call :func:`patch_trio` once,
at the top of the program, before starting threads or event loops.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator, Mapping
from types import ModuleType
from typing import Final

import trio

from ._listener import (
    SSLListener,
    open_ssl_over_tcp_listeners,
    open_ssl_over_tcp_stream,
    serve_ssl_over_tcp,
)
from ._stream import SSLStream

#: trio's original objects, read once when trio_tls is imported, which is before any
#: swap (only this module swaps). They are what unpatch_trio() puts back, and what the
#: warning looks for in other modules.
_ORIGINALS: Final[Mapping[str, object]] = {
    "SSLStream": trio.SSLStream,
    "SSLListener": trio.SSLListener,
    "open_ssl_over_tcp_stream": trio.open_ssl_over_tcp_stream,
    "open_ssl_over_tcp_listeners": trio.open_ssl_over_tcp_listeners,
    "serve_ssl_over_tcp": trio.serve_ssl_over_tcp,
}

#: trio's two classes, typed as classes (the hook in _standin compares against them).
_TRIO_STREAM: Final[type] = trio.SSLStream
_TRIO_LISTENER: Final[type] = trio.SSLListener

#: What each name becomes while patched. Same keys as _ORIGINALS.
_REPLACEMENTS: Final[Mapping[str, object]] = {
    "SSLStream": SSLStream,
    "SSLListener": SSLListener,
    "open_ssl_over_tcp_stream": open_ssl_over_tcp_stream,
    "open_ssl_over_tcp_listeners": open_ssl_over_tcp_listeners,
    "serve_ssl_over_tcp": serve_ssl_over_tcp,
}

# Permanent, not tied to the swap: code that checks isinstance(s, trio.SSLStream)
# before handing a stream to trio-style code (trio-websocket's endpoints, httpcore's
# socket lookup) must accept a trio_tls stream whether or not trio is patched, and a
# stream made while patched must still pass once unpatch_trio() has put trio's class
# back, or a connection pool holding it breaks. A virtual subclass is the one way to
# say so without touching trio's class: they are abc.ABCMeta classes (trio.abc.Stream
# and Listener derive from AsyncResource, an ABC), and registration is what ABCMeta
# offers for "a class that honours this interface without inheriting from it".
trio.SSLStream.register(SSLStream)
trio.SSLListener.register(SSLListener)

#: Module names whose globals legitimately hold trio's originals: trio itself defines
#: and re-exports them, and trio_tls keeps them here to restore them.
_OWNERS: Final = ("trio", "trio_tls")


def patch_trio() -> None:
    """Make ``trio``'s TLS names refer to trio_tls's, for every library that uses them.

    Replaces ``trio.SSLStream``, ``trio.SSLListener``, ``trio.open_ssl_over_tcp_stream``,
    ``trio.open_ssl_over_tcp_listeners`` and ``trio.serve_ssl_over_tcp`` with
    trio_tls's, so that libraries that look these names up on the ``trio`` module
    (hypercorn, httpx, trio-websocket, websockets) use trio_tls unchanged. Call it at
    the top of the program, before importing those libraries and before
    ``trio.run``; under the ``hypercorn`` command, call it at the top of the app
    module, since the worker is a separate process that imports it.

    Calling it again does nothing. :func:`unpatch_trio` undoes it.

    While it is on, ``isinstance(s, trio_tls.SSLStream)`` is True for streams trio's
    own class built too (so that a pool holding them keeps working), though they lack
    trio_tls's extensions. trio_tls's own checks (``check_tls_stream``, the httpcore
    transport's ``ssl_object``) test for trio_tls's class itself and are not fooled;
    code of yours that needs the extensions should test ``type(s) is
    trio_tls.SSLStream``.

    Warns:
      RuntimeWarning: some already-imported modules hold trio's originals as globals
          (``from trio import SSLStream``, under any name); the warning names them.
          They keep using trio's TLS: this cannot reach a name bound before it ran.
    """
    # Idempotent because programs and their libraries may both call it: a second call
    # has nothing to swap, and warning again about the same modules would be noise.
    if _patched():
        return
    stale = sorted(_stale_bindings())
    _swap(_REPLACEMENTS)
    # Instances trio built before this call now count as trio_tls's (see _standin).
    SSLStream._replacing = _TRIO_STREAM
    SSLListener._replacing = _TRIO_LISTENER
    _forget_cached_isinstance_answers()
    if stale:
        warnings.warn(
            "trio_tls.patch_trio() ran after these names were bound to trio's own TLS "
            f"objects, which they keep using: {', '.join(stale)}. Call patch_trio() "
            "at the top of the program, before importing the modules that use trio's TLS.",
            RuntimeWarning,
            stacklevel=2,
        )


def unpatch_trio() -> None:
    """Put trio's own TLS names back; undoes :func:`patch_trio`.

    Restores the five names on the ``trio`` module, nothing else: names other modules
    bound while patched keep trio_tls's objects. Streams and listeners already made
    stay what they are and keep passing ``isinstance`` checks against trio's classes
    (trio_tls's are registered as virtual subclasses of trio's, permanently), so a
    connection pool holding them keeps working. Calling it when trio is not patched
    does nothing.
    """
    if not _patched():
        return
    # The originals captured at import, not whatever trio held: only this module swaps.
    _swap(_ORIGINALS)
    SSLStream._replacing = None
    SSLListener._replacing = None
    _forget_cached_isinstance_answers()


def _patched() -> bool:
    """Whether trio's names are trio_tls's now (the module itself is the record)."""
    # Asked of the module rather than kept in a flag so that the two cannot disagree.
    current: object = vars(trio)["SSLStream"]
    return current is SSLStream


def _swap(values: Mapping[str, object]) -> None:
    for name, value in values.items():
        setattr(trio, name, value)


def _forget_cached_isinstance_answers() -> None:
    # ABCMeta caches isinstance() answers per class, positive ones for good: without
    # this, a trio stream checked while patched would stay a "trio_tls.SSLStream"
    # after unpatch_trio(), and one checked before patch_trio() would never become one.
    # _abc_caches_clear() is ABCMeta's own method (abc.py and _py_abc.py), missing
    # only from typeshed.
    SSLStream._abc_caches_clear()  # type: ignore[attr-defined]
    SSLListener._abc_caches_clear()  # type: ignore[attr-defined]


def _stale_bindings() -> Iterator[str]:
    """``module.name`` for each module global that holds one of trio's originals."""
    originals = {id(value): value for value in _ORIGINALS.values()}
    # A copy: importing can happen in another thread while we scan.
    for module_name, module in list(sys.modules.items()):
        if module_name.partition(".")[0] in _OWNERS:
            continue
        namespace = _namespace(module)
        for name, value in namespace.items():
            if id(value) in originals and originals[id(value)] is value:
                yield f"{module_name}.{name}"


def _namespace(module: object) -> dict[str, object]:
    # sys.modules may hold anything (None placeholders, lazy-import proxies whose
    # __dict__ raises); only a real module's namespace is scanned.
    if not isinstance(module, ModuleType):
        return {}
    try:
        return dict(vars(module))
    except Exception:  # a module object whose __dict__ misbehaves is simply skipped
        return {}
