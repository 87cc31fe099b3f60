"""The paper's own numbers, kept apart from what we measure.

``nfrepro/analysis/paper_reference.csv`` holds every number the project quotes from the NFNets paper
(arXiv:2102.06171) and its companion (arXiv:2101.08692), one row per number, with the table or
section it comes from. Figures that show a paper number read it from here and label it as the
paper's; nothing measured is ever written to this file.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pandas as pd

COLUMNS = ["source", "quantity", "model", "value", "unit", "note"]


def reference_path() -> Path:
    """The table ships inside the package (package data), so it works from an installed wheel."""
    return Path(__file__).with_name("paper_reference.csv")


@lru_cache(maxsize=1)
def _load(path: str) -> pd.DataFrame:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"the paper reference table {p} is missing from the installed package: "
                                "reinstall nfrepro (the CSV is package data)")
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


def paper_value(quantity: str, model: str, missing: float | None = None) -> float:
    """The single paper number for ``quantity`` of ``model``.

    Absent or ambiguous: ``KeyError``, or ``missing`` when given (``float("nan")`` for a table cell
    the paper leaves empty).
    """
    rows = paper_reference(quantity=quantity, model=model)
    if len(rows) != 1:
        if missing is not None and len(rows) == 0:
            return missing
        raise KeyError(f"{len(rows)} rows for quantity={quantity!r}, model={model!r} in "
                       f"{reference_path().name}; expected exactly one")
    return float(rows["value"].iloc[0])
