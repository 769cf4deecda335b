"""TLS for trio: a drop-in ``SSLStream``, listeners, TCP helpers and a testing kit."""

from ._choosing import ContextChoiceError as ContextChoiceError
from ._choosing import ContextChooser as ContextChooser
from ._exceptions import NeedHandshakeError as NeedHandshakeError
from ._exceptions import NoSessionTicketError as NoSessionTicketError
from ._exceptions import PostHandshakeAuthError as PostHandshakeAuthError
from ._hello import ClientHello as ClientHello
from ._hello import ClientHelloError as ClientHelloError
from ._listener import SSLListener as SSLListener
from ._listener import default_client_context as default_client_context
from ._listener import open_ssl_over_tcp_listeners as open_ssl_over_tcp_listeners
from ._listener import open_ssl_over_tcp_stream as open_ssl_over_tcp_stream
from ._listener import serve_ssl_over_tcp as serve_ssl_over_tcp
from ._ondemand import ContextCache as ContextCache
from ._patch import patch_trio as patch_trio
from ._patch import unpatch_trio as unpatch_trio
from ._preread import read_client_hello as read_client_hello
from ._sni import select_context_by_sni as select_context_by_sni
from ._statistics import TLSStatistics as TLSStatistics
from ._stream import SSLStream as SSLStream
from ._version import __version__ as __version__

__all__ = [
    "ClientHello",
    "ClientHelloError",
    "ContextCache",
    "ContextChoiceError",
    "ContextChooser",
    "NeedHandshakeError",
    "NoSessionTicketError",
    "PostHandshakeAuthError",
    "SSLListener",
    "SSLStream",
    "TLSStatistics",
    "__version__",
    "default_client_context",
    "open_ssl_over_tcp_listeners",
    "open_ssl_over_tcp_stream",
    "patch_trio",
    "read_client_hello",
    "select_context_by_sni",
    "serve_ssl_over_tcp",
    "unpatch_trio",
]
