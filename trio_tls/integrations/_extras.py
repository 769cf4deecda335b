"""One error message for an integration whose third-party package is missing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def requires_extra(module: str, extra: str) -> Iterator[None]:
    """Turn an ImportError inside the block into one that names the extra to install.

    ``module`` is the integration being imported (its ``__name__``), ``extra`` the
    name in ``pip install 'trio_tls[extra]'``. The original error stays chained.
    """
    try:
        yield
    except ImportError as exc:
        missing = exc.name or "a third-party package"
        raise ModuleNotFoundError(
            f"{module} needs {missing}, which is not installed: pip install 'trio_tls[{extra}]'",
            name=exc.name,
        ) from exc
