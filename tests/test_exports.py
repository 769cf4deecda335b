"""The public surface: what trio_tls and trio_tls.testing export, and how."""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import subprocess
import sys

import pytest
import trio

import trio_tls
import trio_tls.testing


@pytest.mark.parametrize("module", [trio_tls, trio_tls.testing], ids=lambda m: m.__name__)
def test_all_names_exist_once(module: object) -> None:
    names = module.__all__  # type: ignore[attr-defined]
    assert len(set(names)) == len(names)
    for name in names:
        assert getattr(module, name) is not None


def test_public_classes_are_final() -> None:
    for cls in (trio_tls.SSLStream, trio_tls.SSLListener, trio_tls.TLSStatistics):
        assert getattr(cls, "__final__", False), cls


def test_trio_names_are_all_here() -> None:
    """Everything a user of trio's TLS API imports has a trio_tls counterpart."""
    for name in (
        "SSLStream",
        "SSLListener",
        "NeedHandshakeError",
        "open_ssl_over_tcp_stream",
        "open_ssl_over_tcp_listeners",
        "serve_ssl_over_tcp",
    ):
        assert hasattr(trio, name) and name in trio_tls.__all__


def test_typed_package_and_version() -> None:
    assert importlib.resources.files("trio_tls").joinpath("py.typed").is_file()
    assert importlib.metadata.version("trio_tls") == trio_tls.__version__


def test_testing_kit_works_without_pytest() -> None:
    """trio_tls.testing must not need pytest (trio.testing uses it only if present)."""
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('pytest', '_pytest', 'pytest_trio'):\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import trio, trio_tls.testing\n"
        "async def main():\n"
        "    client, server = trio_tls.testing.tls_memory_stream_pair()\n"
        "    async with trio.open_nursery() as nursery:\n"
        "        nursery.start_soon(client.send_all, b'ok')\n"
        "        print((await server.receive_some()).decode())\n"
        "trio.run(main)\n"
        "print('trio_tls._pytest_plugin' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["ok", "False"]
