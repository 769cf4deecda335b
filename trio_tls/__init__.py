"""TLS for trio: a drop-in ``SSLStream``, listeners, TCP helpers and a testing kit."""

from ._version import __version__ as __version__

__all__ = ["__version__"]
