"""The one helper every notebook calls right after its ``parameters`` cell.

A notebook's ``parameters`` cell holds literal values only (papermill injects its ``-p`` values in
a new cell after it and recomputes nothing), among them ``profile = "cpu"`` and, where sizes
depend on the profile, ``profile_sizes``: a literal dict ``{profile: {parameter: value}}`` whose
values replace the cell's own under that profile. The cpu sizes stand in the cell; the others
are one line below them, so every size a notebook runs at is visible in its parameters cell. The
runs of the training notebooks (02, 03, 06, 07) are sized by their experiment module's
``SCALES[profile]`` (:class:`nfrepro.experiments.sweep_plan.Scale`), which their parameters cell
names.

The next cell starts with::

    import nfrepro.notebook
    profile, figures_dir, results_dir = nfrepro.notebook.start(globals(), known=[...])

:func:`start` refuses a papermill parameter the notebook does not define or of another type
than its default, lets
``$NFREPRO_PROFILE`` override ``profile`` (the tests set ``smoke``), applies that profile's
``profile_sizes`` and pandas' display width, and returns the profile with its output folders
(:func:`nfrepro.engine.profiles.output_dirs`: smoke runs write to ``.scratch/``).
:func:`use_threads` sets torch's threads where a notebook's runs want a number; :func:`shown_path`
prints a path as the notebooks do, relative to the project root.
"""
from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, MutableMapping, NamedTuple

import pandas as pd
import torch

from nfrepro.engine.profiles import PROFILES, output_dirs, project_root, resolve_profile

SIZES = "profile_sizes"  # the parameter that holds the other profiles' sizes
DISPLAY_COLWIDTH = 120   # pandas: verdict texts and run names are long


class Session(NamedTuple):
    profile: str
    figures_dir: Path
    results_dir: Path


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


def parameter_defaults(history: Iterable[str], known: Iterable[str]) -> dict[str, Any]:
    """The literal values of the ``parameters`` cell, read back from the kernel's input history
    (IPython's ``In``): the first cell that assigns only known names, ``profile`` among them."""
    known = set(known)
    for source in history:
        try:
            body = ast.parse(source).body
        except SyntaxError:
            continue
        values = {}
        for node in body:
            target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None
            if isinstance(target, ast.Name):
                try:
                    values[target.id] = ast.literal_eval(node.value)
                except ValueError:
                    break
        if "profile" in values and set(values) <= known:
            return values
    return {}


def check_parameter_types(namespace: Mapping[str, Any], defaults: Mapping[str, Any]) -> None:
    """Refuse a papermill value of another type than the parameter's default (``-p seeds abc`` where
    the default is a number), before any experiment cell runs; None on either side is not checked."""
    for name, default in defaults.items():
        value = namespace.get(name)
        if value is None or default is None:
            continue
        numeric = isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool)
        if not (numeric or type(value) is type(default)):
            raise TypeError(f"notebook parameter {name}={value!r} is a {type(value).__name__}, but this "
                            f"notebook expects a {type(default).__name__} like its default {default!r}")


def apply_sizes(namespace: MutableMapping[str, Any], profile: str, known: Iterable[str]) -> dict[str, Any]:
    """Set ``namespace[SIZES][profile]``'s values in ``namespace``; return them. Every profile and
    parameter named there must exist, so a misspelt size fails instead of being ignored."""
    sizes = namespace.get(SIZES) or {}
    known = set(known) - {SIZES, "profile"}
    for name, values in sizes.items():
        bad = sorted(set(values) - known)
        if name not in PROFILES or bad:
            raise ValueError(f"{SIZES}: {name!r} must be one of {', '.join(PROFILES)} and set only the "
                             f"parameters {', '.join(sorted(known))}"
                             + (f" (not {', '.join(bad)})" if bad else ""))
    chosen = dict(sizes.get(profile, {}))
    namespace.update(chosen)
    return chosen


def start(namespace: MutableMapping[str, Any], known: Iterable[str]) -> Session:
    """The notebook's set-up, called with ``globals()`` and the parameter names (see the module
    docstring): check the parameters, resolve the profile, apply its sizes and set pandas' display
    width; the profile and its ``(figures, results)`` folders."""
    known = list(known)
    check_parameters(namespace, known)
    check_parameter_types(namespace, parameter_defaults(namespace.get("In") or [], known))
    profile = resolve_profile(namespace.get("profile", "cpu"))
    namespace["profile"] = profile
    apply_sizes(namespace, profile, known)
    pd.set_option("display.max_colwidth", DISPLAY_COLWIDTH)
    return Session(profile, *output_dirs(profile))


def use_threads(threads: int | None) -> None:
    """``torch.set_num_threads(threads)``; None keeps torch's default."""
    if threads:
        torch.set_num_threads(threads)


def shown_path(path: str | os.PathLike) -> str:
    """``path`` as a notebook prints it: relative to the project root (``results/x.csv``), so no
    machine's folder layout ends up in a committed output; unchanged when outside the root."""
    path = Path(path)
    try:
        return path.resolve().relative_to(project_root()).as_posix()
    except ValueError:
        return str(path)
