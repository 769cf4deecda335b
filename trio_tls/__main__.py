"""``python -m trio_tls``: see :mod:`trio_tls._cli`."""

from ._cli import main

raise SystemExit(main())
