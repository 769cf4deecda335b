"""The trio_tls benchmark harness: ``python -m trio_tls bench`` (or ``python -m trio_tls._bench``).

See ``_runner`` for the method and ``_spec`` for the contenders and workloads.
"""

from ._runner import main as main

__all__ = ["main"]
