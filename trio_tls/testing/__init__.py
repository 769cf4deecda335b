"""Tools for testing code that speaks TLS over trio. Importable without pytest.

- :class:`TLSTestCA`: a throwaway CA with ready server and client contexts.
- Stream pairs: :func:`tls_memory_stream_pair`, :func:`tls_lockstep_stream_pair`,
  :func:`open_tls_tcp_stream_pair` and :func:`open_tls_stream_pair`.
- The ordering-chaos transport: :class:`ChaosStream` (its :class:`ChaosDecision`
  record), :func:`chaos_stream_pair`, :func:`run_with_seeds`.
- :func:`check_tls_stream`: conformance checks for anything built on SSLStream.
- :func:`open_tls_test_server`: an in-process TLS server on loopback TCP.
- :func:`measure_stalls`: the longest time one task held the event loop (wall and CPU).

The pytest plugin (fixtures ``tls_ca``, ``tls_version`` ...) lives in
``trio_tls._pytest_plugin`` and is registered automatically; this package never
imports pytest.
"""

from .._contexts import TLS_VERSIONS as TLS_VERSIONS
from .._contexts import TLSVersionName as TLSVersionName
from .._contexts import pin_version as pin_version
from ._certs import DEFAULT_HOSTNAMES as DEFAULT_HOSTNAMES
from ._certs import KeyTypeName as KeyTypeName
from ._certs import TLSTestCA as TLSTestCA
from ._chaos import CHAOS_SEED_ENV as CHAOS_SEED_ENV
from ._chaos import ChaosDecision as ChaosDecision
from ._chaos import ChaosStream as ChaosStream
from ._chaos import chaos_note as chaos_note
from ._chaos import chaos_stream_pair as chaos_stream_pair
from ._chaos import replay_seed as replay_seed
from ._chaos import run_with_seeds as run_with_seeds
from ._chaos import seed_trio_scheduler as seed_trio_scheduler
from ._checks import check_tls_stream as check_tls_stream
from ._pairs import SERVER_NAME as SERVER_NAME
from ._pairs import TRANSPORTS as TRANSPORTS
from ._pairs import AnyStreamPair as AnyStreamPair
from ._pairs import StreamPair as StreamPair
from ._pairs import TransportName as TransportName
from ._pairs import close_pair_forcefully as close_pair_forcefully
from ._pairs import handshake_pair as handshake_pair
from ._pairs import open_tls_stream_pair as open_tls_stream_pair
from ._pairs import open_tls_tcp_stream_pair as open_tls_tcp_stream_pair
from ._pairs import tls_lockstep_stream_pair as tls_lockstep_stream_pair
from ._pairs import tls_memory_stream_pair as tls_memory_stream_pair
from ._server import Handler as Handler
from ._server import TLSTestServer as TLSTestServer
from ._server import echo_handler as echo_handler
from ._server import open_tls_test_server as open_tls_test_server
from ._stall import StallReport as StallReport
from ._stall import measure_stalls as measure_stalls

__all__ = [
    "CHAOS_SEED_ENV",
    "DEFAULT_HOSTNAMES",
    "SERVER_NAME",
    "TLS_VERSIONS",
    "TRANSPORTS",
    "AnyStreamPair",
    "ChaosDecision",
    "ChaosStream",
    "Handler",
    "KeyTypeName",
    "StallReport",
    "StreamPair",
    "TLSTestCA",
    "TLSTestServer",
    "TLSVersionName",
    "TransportName",
    "chaos_note",
    "chaos_stream_pair",
    "check_tls_stream",
    "close_pair_forcefully",
    "echo_handler",
    "handshake_pair",
    "measure_stalls",
    "open_tls_stream_pair",
    "open_tls_tcp_stream_pair",
    "open_tls_test_server",
    "pin_version",
    "replay_seed",
    "run_with_seeds",
    "seed_trio_scheduler",
    "tls_lockstep_stream_pair",
    "tls_memory_stream_pair",
]
