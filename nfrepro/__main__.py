"""``python -m nfrepro ...``: see :mod:`nfrepro.cli`."""
from .cli import main

raise SystemExit(main())
