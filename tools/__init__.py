"""Development tooling the package never imports: the device check (``make gpu-check``), the
earlier-commit throughput comparison (``make throughput-before``) and the notebook hygiene rules
that ``tests/test_notebook_hygiene.py`` applies. Run from the repository root with ``PYTHONPATH=.``."""
