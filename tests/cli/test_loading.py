"""Certificate, key and CA files: a file that cannot be used is named, with the reason."""

from __future__ import annotations

import pytest

from ..helpers.cli import (
    run_main,
)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param(
            [("--cafile", "missing")], "--cafile {missing}: no such file", id="cafile-missing"
        ),
        pytest.param(
            [("--cafile", "directory")],
            "--cafile {directory}: a directory, not a PEM file",
            id="cafile-directory",
        ),
        pytest.param([("--cafile", "notes")], "--cafile {notes}: not PEM;", id="cafile-text"),
        pytest.param([("--cafile", "der")], "--cafile {der}: binary (DER?);", id="cafile-der"),
        pytest.param(
            [("--cafile", "key_only")],
            "--cafile {key_only}: no certificate in the file (it holds: ",
            id="cafile-key",
        ),
        # One row per wrong file, alike in shape: each names the message it must give.
        pytest.param(
            [("--cert", "cert_only")],
            "--cert {cert_only}: no private key in the file; give it with --key",
            id="cert-without-key",
        ),
        pytest.param(
            [("--cert", "cert_only"), ("--key", "other_key")],
            "--key {other_key}: the private key does not match the certificate"
            " in --cert {cert_only}",
            id="key-mismatch",
        ),
        pytest.param(
            [("--cert", "cert_only"), ("--key", "cert_only")],
            "--key {cert_only}: no private key in the file",
            id="key-is-a-cert",
        ),
        pytest.param(
            [("--cert", "cert_only"), ("--key", "encrypted_key")],
            "--key {encrypted_key}: the private key is encrypted",
            id="key-encrypted",
        ),
        pytest.param(
            [("--cert", "key_only")],
            "--cert {key_only}: no certificate in the file",
            id="cert-is-a-key",
        ),
        pytest.param([("--cert", "missing")], "--cert {missing}: no such file", id="cert-missing"),
    ],
)
@pytest.mark.parametrize("command", ["connect", "serve"])
def test_certificate_files_are_checked(
    command: str,
    options: list[tuple[str, str]],
    message: str,
    pems: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    if command == "serve":  # the server's option for the same check
        options = [(o.replace("--cafile", "--client-ca"), name) for o, name in options]
        message = message.replace("--cafile", "--client-ca")
    argv = [command, *(["127.0.0.1:1"] if command == "connect" else ["--port", "0"])]
    for option, name in options:
        argv += [option, pems[name]]
    status, err = run_main(capsys, *argv)
    assert status == 2
    assert err.startswith(f"trio-tls {command}: error: {message.format_map(pems)}")
    assert err.count("\n") == 1
