"""trio_tls against TLS stacks that are not OpenSSL: Go, Java (JSSE) and GnuTLS.

Every case runs our end twice against a fresh peer: first on trio.SSLStream, whose
outcome is only recorded (the baseline column of notes/interop.md), then on
trio_tls, whose outcome is asserted. Cases a peer cannot play are not run; the
matrix lists them with the reason (tests/interop/support.py).

Run with ``make interop`` (installs the peers' toolchains when missing), which
writes the outcomes to ``build/interop.json``; ``python -m tests.interop.render``
turns that into notes/interop.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from trio_tls.testing import TLSTestCA

from .processes import Builds, PeerFiles
from .scenarios import SCENARIO_FUNCTIONS, open_side, our_context
from .support import Case, Impl, Outcome, outcome_reason, runnable_cases

#: Seconds one run (one implementation, one case) may take, peer start included.
RUN_DEADLINE = 90

pytestmark = pytest.mark.timeout(2 * RUN_DEADLINE + 30)


async def run_case(
    case: Case,
    impl: Impl,
    ca: TLSTestCA,
    stranger: TLSTestCA,
    builds: Builds,
    files: PeerFiles,
    tmp: Path,
) -> str:
    """Play ``case`` once with ``impl`` as our end, against a new peer process.

    Returns a note on which acceptable outcome happened ("" when there is only one).
    """
    ctx = our_context(case, ca, stranger)
    with trio.fail_after(RUN_DEADLINE):
        async with open_side(case, impl, ctx, builds, files, tmp) as side:
            await SCENARIO_FUNCTIONS[case.scenario](side)
    return side.note


@pytest.mark.tls_deadline(2 * RUN_DEADLINE + 20)
@pytest.mark.parametrize("case", runnable_cases(), ids=lambda case: case.id)
async def test_peer(
    case: Case,
    tls_ca: TLSTestCA,
    stranger_ca: TLSTestCA,
    peer_builds: Builds,
    peer_files: PeerFiles,
    interop_outcomes: list[Outcome],
    tmp_path: Path,
) -> None:
    args = (case, tls_ca, stranger_ca, peer_builds, peer_files, tmp_path)
    # The baseline: what trio's own SSLStream does here, recorded, never asserted.
    try:
        note = await run_case(case, "trio", *args[1:])
    except (Exception, pytest.fail.Exception) as exc:
        interop_outcomes.append(Outcome(case.id, "trio", False, outcome_reason(exc)))
    else:
        interop_outcomes.append(Outcome(case.id, "trio", True, note))
    try:
        note = await run_case(case, "trio_tls", *args[1:])
    except BaseException as exc:
        interop_outcomes.append(Outcome(case.id, "trio_tls", False, outcome_reason(exc)))
        raise
    interop_outcomes.append(Outcome(case.id, "trio_tls", True, note))
