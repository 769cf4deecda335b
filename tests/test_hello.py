"""The server engine's look at a ClientHello's server name, before OpenSSL's.

A client that sends raw UTF-8 as its server name breaks RFC 6066, and CPython cannot
even hand such a name to an SNI callback: it reports an "unraisable" error and fails
the handshake with a generic alert. trio_tls refuses that hello itself, with an error
that says what was wrong, and nothing is reported as unraisable.
"""

from __future__ import annotations

import ssl
import sys
from functools import partial
from pathlib import Path

import pytest
import trio

from tests.helpers.peers import require_tool
from trio_tls import SSLStream, select_context_by_sni
from trio_tls.testing import TLSTestCA, TLSVersionName


async def test_a_raw_utf8_server_name_is_refused_by_name(
    tmp_path: Path, tls_version: TLSVersionName, monkeypatch: pytest.MonkeyPatch
) -> None:
    unraisable: list[sys.UnraisableHookArgs] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    ca = TLSTestCA(hostnames=("bücher.example",))
    default = select_context_by_sni(
        ca.server_context(version=tls_version), {"bücher.example": ca.server_context()}
    )
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]
    command = [
        require_tool("openssl"), "s_client", "-connect", f"127.0.0.1:{port}",
        "-servername", "bücher.example", f"-tls1_{tls_version[-1]}",
    ]  # fmt: skip
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            partial(trio.run_process, command, stdin=b"", capture_stdout=True, check=False)
        )
        with trio.fail_after(10):
            transport = await listener.accept()
        await listener.aclose()
        stream = SSLStream(transport, default, server_side=True)
        with pytest.raises(trio.BrokenResourceError) as caught:
            with trio.fail_after(10):
                await stream.do_handshake()
        await stream.aclose()
    assert "not ASCII" in str(caught.value.__cause__)
    assert "b'b\\xc3\\xbccher.example'" in str(caught.value.__cause__)
    assert isinstance(caught.value.__cause__, ssl.SSLError)
    assert unraisable == []
