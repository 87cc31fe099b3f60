"""Run profiles (smoke / cpu / gpu) and where each profile writes its outputs.

Every notebook has a ``parameters`` cell with ``profile = "cpu"``; its next cell calls
:func:`resolve_profile`, which lets the environment variable ``NFREPRO_PROFILE`` override the
value. The test suite sets ``NFREPRO_PROFILE=smoke`` so that nbval runs each notebook at toy scale.

The same cell first calls :func:`check_parameters`, so that a papermill parameter the notebook
does not define (``-p profle smoke``) stops the run at once instead of being ignored.

Smoke runs write to a git-ignored ``.scratch/smoke/`` folder so that they never overwrite the
committed ``figures/`` and ``results/``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Mapping

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


# what papermill can inject: the values of YAML / JSON parameters
_PARAMETER_TYPES = (str, int, float, bool, list, dict, type(None))
# IPython's own globals that hold such values (the input / output history)
_IPYTHON_NAMES = {"In", "Out"}


def check_parameters(namespace: Mapping[str, Any], known: Iterable[str]) -> None:
    """Refuse notebook parameters that the ``parameters`` cell does not define.

    Papermill injects its ``-p`` values in a new cell right after the ``parameters`` cell and
    only warns about unknown names, so a misspelt ``-p profle smoke`` would silently run the
    long default profile. Call this first thing in the next cell, with that cell's globals and
    the parameter names: any other public global holding a value papermill can inject (text,
    number, bool, list, dict, None) was defined by the injected cell. Imports (modules,
    functions, classes) and IPython's underscore names are not such values, so they pass.
    """
    known = set(known)
    unknown = sorted(name for name, value in namespace.items()
                     if not name.startswith("_") and name not in known | _IPYTHON_NAMES
                     and isinstance(value, _PARAMETER_TYPES))
    if unknown:
        raise ValueError(f"unknown notebook parameter(s) {', '.join(unknown)}: this notebook takes "
                         f"{', '.join(sorted(known))}")


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


def shown_path(path: str | os.PathLike) -> str:
    """``path`` as a notebook prints it: relative to :func:`project_root` (``results/x.csv``), so
    no machine's folder layout ends up in a committed output; unchanged when outside the root."""
    path = Path(path)
    try:
        return path.resolve().relative_to(project_root()).as_posix()
    except ValueError:
        return str(path)


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
