"""The trio_tls benchmark harness: ``python -m trio_tls bench`` (or ``python -m trio_tls._bench``).

See ``_runner`` for the method, ``_spec`` for the contenders and workloads, ``_workloads``
for what each workload does, and ``_ab`` for the A/B comparison of two trio_tls trees.
"""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark described by ``argv`` (see ``--help``); 0 if every run succeeded."""
    # Imported here, not at module level: every worker process imports this package, and the
    # runner's imports (trustme, for minting certificates) would add to each one's start-up.
    from ._runner import main as run

    return run(argv)


__all__ = ["main"]
