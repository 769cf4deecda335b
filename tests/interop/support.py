"""The interop matrix: scenarios, which peer can play which, and the recorded outcomes.

Scenarios a peer genuinely cannot play are listed here with the reason, never run
as a fake: the matrix in notes/interop.md shows them as "not supported by the peer".
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from trio_tls.testing import TLSVersionName

from .processes import STACKS, Stack

Role = Literal["client", "server"]
Impl = Literal["trio_tls", "trio"]
IMPLS: tuple[Impl, ...] = ("trio_tls", "trio")

#: Each scenario, what it checks, and the only TLS version it exists in (None: both).
SCENARIOS: dict[str, tuple[str, TLSVersionName | None]] = {
    "handshake": ("handshake, ALPN, a message each way, clean close by us", None),
    "duplex": ("4 MiB each way at once, checked byte for byte", None),
    "close": ("the peer sends, then closes with close_notify: we read a clean EOF", None),
    "ragged": ("the peer sends, then drops TCP without close_notify: we raise", None),
    "halfclose_peer": ("the peer sends close_notify first and still reads our answer", "1.3"),
    "halfclose_local": ("we send close_notify first and still read the answer", "1.3"),
    "resume": ("a second connection resumes the first one's session", None),
    "mtls": ("the server requires a client certificate; the client has one", None),
    "mtls_refused": ("the client's certificate is from another CA: refused", None),
    "keyupdate1": ("the peer sends one KeyUpdate mid-transfer (1 MiB each way)", "1.3"),
    "keyupdate100": ("the peer sends 100 KeyUpdates mid-transfer", "1.3"),
    "renegotiate": ("the peer renegotiates mid-transfer (1 MiB each way)", "1.2"),
    "pha": ("post-handshake client authentication, asked for by the server", "1.3"),
}

_GO_NO_KEYUPDATE = "crypto/tls has no API to start a KeyUpdate (it only answers one)"
_GNUTLS_SERV_PASSIVE = "gnutls-serv --echo only echoes: it has no inline commands"

#: (stack, peer role, scenario) -> why that peer cannot play it.
UNSUPPORTED: dict[tuple[Stack, Role, str], str] = {
    ("go", "client", "keyupdate1"): _GO_NO_KEYUPDATE,
    ("go", "client", "keyupdate100"): _GO_NO_KEYUPDATE,
    ("go", "server", "keyupdate1"): _GO_NO_KEYUPDATE,
    ("go", "server", "keyupdate100"): _GO_NO_KEYUPDATE,
    ("go", "client", "renegotiate"): "crypto/tls never starts a renegotiation",
    ("go", "server", "renegotiate"): "crypto/tls does not renegotiate as a server",
    ("go", "client", "pha"): "crypto/tls has no post-handshake authentication",
    ("go", "server", "pha"): "crypto/tls has no post-handshake authentication",
    ("java", "client", "pha"): "JSSE does not implement TLS 1.3 post-handshake authentication",
    ("java", "server", "pha"): "JSSE does not implement TLS 1.3 post-handshake authentication",
    ("gnutls", "client", "halfclose_local"): (
        "gnutls-cli exits once the server's close_notify arrives; it cannot answer after it"
    ),
    ("gnutls", "server", "close"): "gnutls-serv --echo never closes first",
    ("gnutls", "server", "halfclose_peer"): "gnutls-serv --echo never closes first",
    ("gnutls", "server", "keyupdate1"): _GNUTLS_SERV_PASSIVE,
    ("gnutls", "server", "keyupdate100"): _GNUTLS_SERV_PASSIVE,
    ("gnutls", "server", "renegotiate"): _GNUTLS_SERV_PASSIVE,
    ("gnutls", "server", "pha"): "gnutls-serv has no command to ask for a certificate later",
}

#: (stack, peer role, scenario) -> why OpenSSL itself may refuse what that peer does.
#: These run; depending on where the peer's records fall, the transfer completes
#: (checked byte for byte) or our end fails it with a typed BrokenResourceError,
#: never a hang. ``openssl s_server -client_renegotiation`` refuses the same way.
REFUSED_BY_OPENSSL: dict[tuple[Stack, Role, str], str] = {
    ("java", "client", "renegotiate"): (
        "JSSE keeps sending application data inside its own renegotiation; OpenSSL "
        "(openssl s_server too) rejects it: unexpected record"
    ),
    ("java", "server", "renegotiate"): (
        "JSSE keeps sending application data inside its own renegotiation; OpenSSL "
        "rejects it: unexpected record"
    ),
}


@dataclass(frozen=True)
class Case:
    """One cell row of the matrix: a peer on ``stack`` playing ``peer_role``."""

    stack: Stack
    peer_role: Role
    version: TLSVersionName
    scenario: str

    @property
    def id(self) -> str:
        """The pytest id: ``go-peer_client-tls13-duplex``."""
        return (
            f"{self.stack}-peer_{self.peer_role}-tls{self.version.replace('.', '')}-{self.scenario}"
        )

    @property
    def refused(self) -> str | None:
        """Why OpenSSL refuses what the peer does in this case, or None."""
        return REFUSED_BY_OPENSSL.get((self.stack, self.peer_role, self.scenario))

    @property
    def our_role(self) -> Role:
        """The role the Python side plays."""
        return "server" if self.peer_role == "client" else "client"


def all_cases() -> list[Case]:
    """Every (stack, role, version, scenario) the protocol allows, supported or not."""
    return [
        Case(stack, role, version, scenario)
        for scenario, (_, only) in SCENARIOS.items()
        for stack in STACKS
        for role in ("client", "server")
        for version in ("1.2", "1.3")
        if only in (None, version)
    ]


def runnable_cases() -> list[Case]:
    """The cases the peer can play: the ones the suite runs."""
    return [c for c in all_cases() if (c.stack, c.peer_role, c.scenario) not in UNSUPPORTED]


# --- recording ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What happened to one implementation in one case."""

    case_id: str
    impl: Impl
    passed: bool
    reason: str


def outcome_reason(exc: BaseException) -> str:
    """A one-line reason for a failure, for the matrix (a group's first leaf speaks)."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    cause = exc.__cause__ or exc.__context__
    why = f"{type(exc).__name__}: {first}"[:160]
    if cause is not None and not isinstance(exc, AssertionError):
        why += f" (from {type(cause).__name__}: {str(cause)[:80]})"
    return why


def write_results(outcomes: list[Outcome], path: Path) -> None:
    """Write ``outcomes`` as JSON (what :func:`render` reads)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([asdict(o) for o in outcomes], indent=1) + "\n")


def render(results: Path, command: str) -> str:
    """The matrix as markdown, from a results file written by a real run."""
    outcomes = {(o["case_id"], o["impl"]): o for o in json.loads(results.read_text())}
    lines = [
        "# Interoperability with TLS stacks that are not OpenSSL",
        "",
        "<!-- Generated by a real run; do not edit by hand. -->",
        f"Generated by `{command}`. Peers: Go crypto/tls (tests/interop/peers/peer.go),",
        "Java JSSE (tests/interop/peers/Peer.java), GnuTLS's gnutls-cli / gnutls-serv.",
        '"peer client" means the peer is the TLS client and we are the server.',
        "Assertions apply to trio_tls; the trio.SSLStream column records what happened.",
        "Every run has a deadline; peers are killed and reaped; only 127.0.0.1 is used",
        "(gnutls-serv has no option to choose its address and listens on all of them).",
        "GnuTLS's tools always send close_notify: its `ragged` cases kill the process, so",
        "the kernel closes the socket as after a crash. Where OpenSSL itself refuses what a",
        "peer does (the same with `openssl s_server`), either outcome is accepted if typed:",
        "the transfer completes byte for byte, or our end raises BrokenResourceError.",
        "",
        *(
            f"- {stack} {role} `{name}`: {why}."
            for (stack, role, name), why in REFUSED_BY_OPENSSL.items()
        ),
        "",
        "## Scenarios",
        "",
    ]
    for name, (what, only) in SCENARIOS.items():
        lines.append(f"- `{name}`: {what}" + (f" (TLS {only} only)" if only else "") + ".")
    tally = {
        impl: sum(1 for (_, i), o in outcomes.items() if i == impl and o["passed"])
        for impl in IMPLS
    }
    runs = {impl: sum(1 for (_, i) in outcomes if i == impl) for impl in IMPLS}
    lines += [
        "",
        "## Matrix",
        "",
        f"Peers: {peer_versions()}.",
        f"trio_tls passed {tally['trio_tls']} of {runs['trio_tls']} runnable cases; "
        f"trio.SSLStream {tally['trio']} of {runs['trio']}.",
        "",
        "| scenario | stack | peer | TLS | trio_tls | trio.SSLStream |",
        "|---|---|---|---|---|---|",
    ]
    for case in all_cases():
        reason = UNSUPPORTED.get((case.stack, case.peer_role, case.scenario))
        if reason is not None:
            cells = [f"not supported by the peer: {reason}"] * 2
        else:
            cells = [_cell(outcomes.get((case.id, impl))) for impl in IMPLS]
        lines.append(
            f"| {case.scenario} | {case.stack} | {case.peer_role} | {case.version} | "
            f"{cells[0]} | {cells[1]} |"
        )
    return "\n".join(lines) + "\n"


def peer_versions() -> str:
    """The versions of the peers' toolchains installed here, as they report them."""
    found = []
    for command in (["go", "version"], ["java", "-version"], ["gnutls-cli", "--version"]):
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=30)
        except OSError:
            continue
        text = (done.stdout or done.stderr).strip().splitlines()
        if text:
            found.append(text[0])
    return "; ".join(found)


def _cell(outcome: dict[str, object] | None) -> str:
    if outcome is None:
        return "not run"
    if outcome["passed"]:
        return f"pass: {outcome['reason']}" if outcome["reason"] else "pass"
    return "FAIL: " + str(outcome["reason"]).replace("|", "/")
