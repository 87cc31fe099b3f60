"""``python -m nfrepro ...``: see :mod:`nfrepro.cli`."""
from nfrepro.cli import main

raise SystemExit(main())
