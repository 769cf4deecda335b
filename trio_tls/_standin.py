"""How trio's own TLS classes count as trio_tls's while :func:`trio_tls.patch_trio` is on.

Once trio's names are swapped, code that checks ``isinstance(s, trio.SSLStream)`` is
really asking about :class:`trio_tls.SSLStream`; a stream that trio built before the
swap (still held by a connection pool, say) must keep passing that check, or the
pool breaks on it (httpcore asserts on the answer). trio's classes cannot simply be
registered as virtual subclasses of ours: trio_tls's are already registered under
trio's (see :mod:`trio_tls._patch`), and ``ABCMeta.register`` refuses a cycle. A
``__subclasshook__`` that answers only while the patch is on gives the same result
without a registration, and is switched off again by :func:`trio_tls.unpatch_trio`.
"""

from __future__ import annotations

from typing import ClassVar


class StandsInForTrio:
    """Mixed into :class:`~trio_tls.SSLStream` and :class:`~trio_tls.SSLListener`."""

    __slots__ = ()

    #: trio's class that this one replaces while ``patch_trio()`` is in effect, else
    #: None. Set and cleared only by :mod:`trio_tls._patch`.
    _replacing: ClassVar[type | None] = None

    @classmethod
    def __subclasshook__(cls, subclass: type) -> bool:
        """True for trio's class while ``patch_trio()`` is on; ABCMeta decides otherwise."""
        # An identity test, not issubclass(): trio's classes are final, and issubclass()
        # against trio's class would consult its registry, which holds this class, and
        # come back here.
        if cls._replacing is not None and subclass is cls._replacing:
            return True
        # ABCMeta's "no opinion": its usual checks (MRO, registry) decide.
        answer: bool = NotImplemented
        return answer
