"""trio_tls as a packager ships it: the pytest plugin found through its ``pytest11``
entry point with no conftest, and the files an installed package must carry.

``make dist-check`` copies this file alone into an empty directory and runs it against
the built wheel, installed (not editable) in a fresh venv: that is where a file missing
from the wheel or a wrong entry point shows, which an editable install hides because it
reads the source tree. The main suite runs it too, against the editable install. It
imports nothing from the rest of the tests, and marks its async tests for pytest-trio
itself, as a user's file without ``trio_mode`` would.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import ssl

import pytest
import trio

import trio_tls
from trio_tls.testing import StreamPair, TLSTestCA, TLSTestServer, TLSVersionName

DISTRIBUTION = importlib.metadata.distribution("trio_tls")


def test_version_has_one_source() -> None:
    assert DISTRIBUTION.version == trio_tls.__version__


def test_entry_points() -> None:
    entry_points = DISTRIBUTION.entry_points
    [plugin] = entry_points.select(group="pytest11")
    assert (plugin.name, plugin.value) == ("trio_tls", "trio_tls._pytest_plugin")
    [script] = entry_points.select(group="console_scripts")
    assert (script.name, script.value) == ("trio-tls", "trio_tls._cli:main")


def test_type_information_is_installed() -> None:
    # PEP 561: without py.typed, type checkers ignore the package's annotations.
    assert importlib.resources.files("trio_tls").joinpath("py.typed").is_file()


def test_license_texts_are_installed() -> None:
    names = {file.name for file in DISTRIBUTION.files or ()}
    assert {"LICENSE-MIT", "LICENSE-APACHE"} <= names
    assert DISTRIBUTION.metadata["License-Expression"] == "MIT OR Apache-2.0"


def test_ca_fixture(tls_ca: TLSTestCA) -> None:
    assert isinstance(tls_ca, TLSTestCA)
    assert tls_ca.client_context().verify_mode == ssl.CERT_REQUIRED


@pytest.mark.trio
async def test_stream_pair_under_each_version(
    tls_stream_pair: StreamPair,
    tls_version: TLSVersionName,
) -> None:
    client, server = tls_stream_pair
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.send_all, b"ping")
        assert await server.receive_some() == b"ping"
    assert client.version() == {"1.2": "TLSv1.2", "1.3": "TLSv1.3"}[tls_version]


@pytest.mark.trio
@pytest.mark.tls_versions("1.3")
@pytest.mark.tls_transports("tcp")
@pytest.mark.tls_chaos(seeds=[1, 2])
async def test_markers_over_tcp_under_chaos(
    tls_stream_pair: StreamPair,
    tls_chaos_seed: int | None,
) -> None:
    assert tls_chaos_seed in (1, 2)
    client, server = tls_stream_pair
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.send_all, b"pong")
        assert await client.receive_some() == b"pong"


@pytest.mark.trio
async def test_server_fixture(tls_server: TLSTestServer) -> None:
    client = await tls_server.connect()
    await client.send_all(b"echo")
    assert await client.receive_some() == b"echo"
    await client.aclose()
