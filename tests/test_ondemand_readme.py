"""The README's on-demand TLS example, run as the script it is, against real certificate files.

The block tagged ``<!-- server-example: NAME -->`` serves forever, so it is not one
of the README's run-to-completion examples: this test runs it as a subprocess in a
directory holding ``certs/a.example.pem`` and ``.key``, talks to it as a client that
verifies the certificate, then stops it. Only the port is changed (8443 may be taken).
"""

from __future__ import annotations

import re
import ssl
import sys
from functools import partial
from pathlib import Path

import pytest
import trio

from trio_tls import SSLStream
from trio_tls.testing import TLSTestCA

from .helpers.peers import free_port

ROOT = Path(__file__).parent.parent
SERVER_EXAMPLE = re.compile(r"<!-- server-example: (\S+) -->\n```python\n(.*?)```", re.DOTALL)


def readme_example() -> tuple[str, str]:
    found = SERVER_EXAMPLE.findall((ROOT / "README.md").read_text())
    assert len(found) == 1, "expected the README's on-demand TLS example"
    name, code = found[0]
    assert "8443" in code
    return name, code


async def connect_when_up(
    port: int, name: str, context: ssl.SSLContext
) -> SSLStream[trio.SocketStream]:
    """The script needs a moment to start: retry the TCP connect, at most 100 times."""
    for _ in range(100):
        try:
            tcp = await trio.open_tcp_stream("127.0.0.1", port)
        except OSError:
            await trio.sleep(0.1)
            continue
        return SSLStream(tcp, context, server_hostname=name)
    raise AssertionError("the README's example server never started listening")


async def test_readme_on_demand_example(tls_ca: TLSTestCA, tmp_path: Path) -> None:
    filename, code = readme_example()
    port = free_port()
    (tmp_path / filename).write_text(code.replace("8443", str(port)))
    certs = tmp_path / "certs"
    certs.mkdir()
    leaf = tls_ca.ca.issue_cert("a.example")
    (certs / "a.example.pem").write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(certs / "a.example.key"))

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            process: trio.Process = await nursery.start(
                partial(trio.run_process, [sys.executable, filename], cwd=tmp_path, check=False)
            )
            try:
                stream = await connect_when_up(port, "a.example", tls_ca.client_context())
                async with stream:
                    assert await stream.receive_some() == b"hello\n"
                async with await connect_when_up(
                    port, "b.example", tls_ca.client_context()
                ) as unknown:
                    with pytest.raises(trio.BrokenResourceError) as refused:
                        await unknown.do_handshake()
                    assert "unrecognized name" in str(refused.value.__cause__)
                assert process.returncode is None, "the example server exited"
            finally:
                process.kill()
