"""Tools for testing code that speaks TLS over trio. Importable without pytest."""

from ._certs import DEFAULT_HOSTNAMES as DEFAULT_HOSTNAMES
from ._certs import TLSTestCA as TLSTestCA
from ._certs import pin_version as pin_version
from ._pairs import SERVER_NAME as SERVER_NAME
from ._pairs import tls_lockstep_stream_pair as tls_lockstep_stream_pair
from ._pairs import tls_memory_stream_pair as tls_memory_stream_pair

__all__ = [
    "DEFAULT_HOSTNAMES",
    "SERVER_NAME",
    "TLSTestCA",
    "pin_version",
    "tls_lockstep_stream_pair",
    "tls_memory_stream_pair",
]
