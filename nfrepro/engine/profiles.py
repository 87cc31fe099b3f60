"""Run profiles (smoke / cpu / gpu) and where each profile writes its outputs.

:func:`resolve_profile` lets the environment variable ``NFREPRO_PROFILE`` override a profile
(the notebooks call it through :func:`nfrepro.notebook.start`; the CLI and the benchmarks
directly). The test suite sets ``NFREPRO_PROFILE=smoke`` so that nbval runs each notebook at toy
scale.

Smoke runs write to a git-ignored ``.scratch/smoke/`` folder so that they never overwrite the
committed ``figures/`` and ``results/``.
"""
from __future__ import annotations

import os
from pathlib import Path

PROFILES = ("smoke", "cpu", "gpu")
ENV_VAR = "NFREPRO_PROFILE"


def resolve_profile(profile: str = "cpu") -> str:
    """Return the profile to run: ``$NFREPRO_PROFILE`` when set, else ``profile``."""
    chosen = os.environ.get(ENV_VAR, "").strip() or profile
    if chosen not in PROFILES:
        raise ValueError(
            f"unknown profile {chosen!r}: choose one of {', '.join(PROFILES)} "
            f"(set in the notebook's parameters cell or in ${ENV_VAR})"
        )
    return chosen


def project_root() -> Path:
    """The repository root (the folder holding ``pyproject.toml``), or the working directory.

    ``$NFREPRO_ROOT`` wins when set. With an editable install the package sits inside the
    repository, so its parent is the root.
    """
    env = os.environ.get("NFREPRO_ROOT")
    if env:
        return Path(env).resolve()
    here = Path(__file__).resolve().parent.parent
    if (here / "pyproject.toml").exists() and (here / "nfrepro").is_dir():
        return here
    for folder in [Path.cwd(), *Path.cwd().parents]:
        if (folder / "pyproject.toml").exists() and (folder / "nfrepro").is_dir():
            return folder
    return Path.cwd()


def output_dirs(profile: str) -> tuple[Path, Path]:
    """``(figures_dir, results_dir)`` for a profile, created if missing.

    "cpu" and "gpu" write the committed ``figures/`` and ``results/``; "smoke" writes
    ``.scratch/smoke/figures`` and ``.scratch/smoke/results``.
    """
    root = project_root()
    if resolve_profile(profile) == "smoke" or profile == "smoke":
        base = root / ".scratch" / "smoke"
        figures, results = base / "figures", base / "results"
    else:
        figures, results = root / "figures", root / "results"
    figures.mkdir(parents=True, exist_ok=True)
    results.mkdir(parents=True, exist_ok=True)
    return figures, results
