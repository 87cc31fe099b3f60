"""The paper's own numbers, kept apart from what we measure.

``results/paper_reference.csv`` holds every number the project quotes from the NFNets paper
(arXiv:2102.06171) and its companion (arXiv:2101.08692), one row per number, with the table or
section it comes from. Figures that show a paper number read it from here and label it as the
paper's; nothing measured is ever written to this file.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pandas as pd

from nfrepro.engine.profiles import project_root

COLUMNS = ["source", "quantity", "model", "value", "unit", "note"]


def reference_path() -> Path:
    return project_root() / "results" / "paper_reference.csv"


@lru_cache(maxsize=1)
def _load(path: str) -> pd.DataFrame:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(
            f"the paper reference table {p} is missing: it ships with the repository; run from a "
            "checkout of nfrepro or set NFREPRO_ROOT to one")
    df = pd.read_csv(p, keep_default_na=False)
    df["value"] = pd.to_numeric(df["value"])
    return df


def paper_reference(quantity: str | None = None, model: str | None = None,
                    source: str | None = None) -> pd.DataFrame:
    """Rows of the reference table, optionally filtered (exact matches)."""
    df = _load(str(reference_path()))
    mask = pd.Series(True, index=df.index)
    for col, val in (("quantity", quantity), ("model", model), ("source", source)):
        if val is not None:
            mask &= df[col] == val
    return df[mask].reset_index(drop=True).copy()


def paper_value(quantity: str, model: str) -> float:
    """The single paper number for ``quantity`` of ``model`` (``KeyError`` if absent or ambiguous)."""
    rows = paper_reference(quantity=quantity, model=model)
    if len(rows) != 1:
        raise KeyError(f"{len(rows)} rows for quantity={quantity!r}, model={model!r} in "
                       f"{reference_path().name}; expected exactly one")
    return float(rows["value"].iloc[0])
