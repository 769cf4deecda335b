"""Loading the user's certificate, key and CA files, saying which option and file is wrong.

OpenSSL's own errors name neither: a certificate given without its key reads
``[SSL] PEM lib (_ssl.c:3926)``. So each file is read first (a bounded read: a
device or a pipe cannot hang us) and looked at: does it exist, is it PEM, does it
hold what the option needs. Only then is it handed to OpenSSL, whose remaining
complaints (a key that does not match its certificate) are translated too.
"""

from __future__ import annotations

import os
import re
import ssl
import stat

from .failure import UsageError, ssl_reason

#: Far larger than any certificate bundle (the system's is a few hundred KiB).
MAX_PEM_FILE = 8 * 1024 * 1024

_PEM_LABEL = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")


def trust(ctx: ssl.SSLContext, option: str, path: str) -> None:
    """Trust the CA certificates in *path* (``--cafile``, ``--client-ca``)."""
    text = _read_pem(option, path)
    _require(option, path, text, "CERTIFICATE", "certificate")
    try:
        # From memory: the file is read once, so a pipe (<(...)) works as well.
        ctx.load_verify_locations(cadata=text.decode("ascii", "replace"))
    except ssl.SSLError as exc:
        raise UsageError(f"{option} {path}: cannot use its certificates: {_words(exc)}") from exc


def identity(ctx: ssl.SSLContext, cert: str, key: str | None) -> None:
    """Present the certificate chain in *cert*, with its key from *key* or from *cert*."""
    # OpenSSL reads these two by path, after us: only a regular file reads the same twice.
    cert_text = _read_pem("--cert", cert, regular=True)
    _require("--cert", cert, cert_text, "CERTIFICATE", "certificate")
    key_option, key_path = ("--key", key) if key is not None else ("--cert", cert)
    key_text = cert_text if key is None else _read_pem("--key", key, regular=True)
    if not any(label.endswith("PRIVATE KEY") for label in _labels(key_text)):
        hint = "; give it with --key" if key is None else ""
        raise UsageError(f"{key_option} {key_path}: no private key in the file{hint}")

    def no_passphrase() -> str:
        # Called only for an encrypted key. Raising stops OpenSSL from prompting on
        # the terminal, which would hang a script.
        raise UsageError(
            f"{key_option} {key_path}: the private key is encrypted, and trio-tls does not"
            f" ask for passphrases; decrypt it first (openssl pkey -in {key_path} -out plain.pem)"
        )

    try:
        ctx.load_cert_chain(cert, key, password=no_passphrase)
    except ssl.SSLError as exc:
        if ssl_reason(exc) == "KEY_VALUES_MISMATCH":
            raise UsageError(
                f"{key_option} {key_path}: the private key does not match the certificate"
                f" in --cert {cert}"
            ) from exc
        raise UsageError(f"--cert {cert}: cannot use it: {_words(exc)}") from exc


def _read_pem(option: str, path: str, *, regular: bool = False) -> bytes:
    try:
        with open(path, "rb") as file:
            if regular and not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                raise UsageError(f"{option} {path}: not a regular file")
            data = file.read(MAX_PEM_FILE + 1)
    except FileNotFoundError:
        raise UsageError(f"{option} {path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{option} {path}: a directory, not a PEM file") from None
    except OSError as exc:
        raise UsageError(f"{option} {path}: cannot read it: {_strerror(exc)}") from None
    if len(data) > MAX_PEM_FILE:
        raise UsageError(f"{option} {path}: over {MAX_PEM_FILE >> 20} MiB, not a PEM file")
    if not _labels(data):
        # DER is an ASN.1 SEQUENCE, whose first byte is 0x30.
        kind = "binary (DER?)" if data[:1] == b"\x30" else "not PEM"
        raise UsageError(f"{option} {path}: {kind}; a PEM file has '-----BEGIN ...' lines")
    return data


def _require(option: str, path: str, text: bytes, label: str, noun: str) -> None:
    labels = _labels(text)
    if label not in labels:
        found = ", ".join(dict.fromkeys(labels))
        raise UsageError(f"{option} {path}: no {noun} in the file (it holds: {found})")


def _labels(text: bytes) -> list[str]:
    return [match.decode("ascii") for match in _PEM_LABEL.findall(text)]


def _strerror(exc: OSError) -> str:
    return exc.strerror.lower() if exc.strerror else str(exc)


def _words(exc: ssl.SSLError) -> str:
    reason = ssl_reason(exc)
    return reason.replace("_", " ").lower() if reason else str(exc)
