"""What the project found: every verdict of every notebook in one table (notebook 00).

Each training notebook writes its verdicts to ``results/<name>_verdicts.csv``
(:mod:`nfrepro.analysis.verdicts`: claim, estimate and 95% interval, verdict, rule, the setting the
evidence comes from, a one-sentence reading, and the paper's number where it gives one). This module
reads them all back, so notebook 00 can say what reproduced without a number typed by hand:

* :func:`read_verdicts` concatenates the CSVs and names the notebook behind each (:data:`SOURCES`);
* :func:`synthesis_table` is the reader's table: claim, paper, ours with its interval, setting,
  verdict, reading;
* :func:`budgets` is each notebook's budget (data, images, epochs, steps, batch, seeds) with the
  minutes it took under ``make reproduce`` (:func:`reproduce_times`), so a reader sees why numbers
  differ between notebooks;
* :func:`summary` is the paragraph beneath the table, generated from the verdicts.
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from nfrepro.analysis.verdicts import CONTRADICTED, NOT_RESOLVED, REPRODUCED, SETTING_COLUMNS

# Which notebooks write each verdict file (a new verdict file must be named here).
SOURCES = {
    "agc_verdicts.csv": "02, 03",
    "why_no_batchnorm_verdicts.csv": "06",
    "gradient_clipping_verdicts.csv": "07",
    "strong_augmentation_verdicts.csv": "08",
    "transfer_verdicts.csv": "09",
}
TIMES_FILE = "reproduce_times.csv"  # notebook, seconds: written by `make reproduce`, saved by notebook 00
TABLE_COLUMNS = ["notebook", "claim", "paper", "ours", "setting", "verdict", "reading"]


def verdict_files(results_dir: str | Path) -> list[Path]:
    return sorted(Path(results_dir).glob("*_verdicts.csv"))


def read_verdicts(results_dir: str | Path) -> pd.DataFrame:
    """Every verdict row under ``results_dir``, with the ``notebook`` that made it. Columns a file
    lacks (one written before they existed) are left empty."""
    frames = []
    for path in verdict_files(results_dir):
        if path.name not in SOURCES:
            raise KeyError(f"{path} is a verdict file nfrepro.analysis.synthesis does not know: add "
                           f"{path.name!r} with its notebook to SOURCES")
        df = pd.read_csv(path, keep_default_na=False, na_values=[""])
        df.insert(0, "notebook", SOURCES[path.name])
        frames.append(df)
    if not frames:
        return pd.DataFrame(columns=["notebook", "claim", "estimate", "ci_low", "ci_high", "n", "verdict"])
    return pd.concat(frames, ignore_index=True)


def _number(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "?"
    return "-inf" if x == -math.inf else "inf" if x == math.inf else f"{x:.3g}"


def _setting(row: pd.Series) -> str:
    parts = []
    if isinstance(row.get("train_images"), str) or not pd.isna(row.get("train_images", math.nan)):
        images = row["train_images"]
        images = f"{int(images):,}" if isinstance(images, (int, float)) else images
        parts.append(f"{images} {row.get('dataset', '')} images".replace("  ", " "))
    for key, label in (("steps", "steps"), ("batch_size", "batch"), ("seeds", "seeds")):
        value = row.get(key)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            value = int(value) if isinstance(value, float) and value.is_integer() else value
            parts.append(f"{label} {value}" if label == "batch" else f"{value} {label}")
    return ", ".join(parts) if parts else "not recorded"


def synthesis_table(verdicts: pd.DataFrame) -> pd.DataFrame:
    """One row per claim: notebook, claim, the paper's number (where it gives one), ours with its 95%
    interval and number of seeds, the setting in words, the verdict and its reading."""
    rows = []
    for _, r in verdicts.iterrows():
        paper = r.get("paper")
        rows.append({"notebook": r["notebook"], "claim": r["claim"],
                     "paper": "" if paper is None or pd.isna(paper) else str(paper),
                     "ours": f"{_number(r['estimate'])} [{_number(r['ci_low'])}, {_number(r['ci_high'])}]"
                             f" (n={int(r['n'])})",
                     "setting": _setting(r), "verdict": r["verdict"],
                     "reading": "" if pd.isna(r.get("reading", math.nan)) else r["reading"]})
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def _span(values: pd.Series) -> str:
    """The values a notebook's verdicts span, as text ("58-232"; "60000")."""
    parts = set()
    for v in values.dropna():
        parts.update(str(v).split("-") if isinstance(v, str) and v[:1].isdigit() else [v])
    nums = sorted(float(p) for p in parts if _is_number(p))
    words = sorted(str(p) for p in parts if not _is_number(p))
    text = [] if not nums else [f"{nums[0]:g}" if nums[0] == nums[-1] else f"{nums[0]:g}-{nums[-1]:g}"]
    return " | ".join(text + words)


def _is_number(x: object) -> bool:
    try:
        float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


def budgets(verdicts: pd.DataFrame, times: pd.DataFrame | None = None) -> pd.DataFrame:
    """Each notebook's budget, spanned over its verdicts' settings, and its minutes under
    ``make reproduce`` (``times``: columns notebook, seconds; the notebook column holds file stems
    such as ``02_agc_batch_size``). Steps without verdicts (notebooks 01, 04, 05, the benchmarks)
    get a row with their minutes alone."""
    keys = [k for k in ("dataset", "train_images", "epochs", "steps", "batch_size", "seeds")
            if k in verdicts.columns]
    out = verdicts.groupby("notebook")[keys].agg(_span).reset_index() if keys else \
        verdicts[["notebook"]].drop_duplicates()
    if times is not None and len(times):
        numbers = times.assign(number=times["notebook"].str.split("_").str[0])
        minutes = []
        for nbs in out["notebook"]:
            wanted = [n.strip() for n in nbs.split(",")]
            secs = numbers.loc[numbers["number"].isin(wanted), "seconds"]
            minutes.append(round(float(secs.sum()) / 60, 1) if len(secs) == len(wanted) else math.nan)
        out["minutes"] = minutes
        covered = {n.strip() for nbs in out["notebook"] for n in nbs.split(",")}
        rest = numbers[~numbers["number"].isin(covered) & (numbers["number"] != "00")]
        out = pd.concat([out, pd.DataFrame({"notebook": rest["notebook"],
                                            "minutes": (rest["seconds"] / 60).round(1)})],
                        ignore_index=True)
    return out.sort_values("notebook", kind="stable").reset_index(drop=True)


def all_times(times: pd.DataFrame) -> pd.DataFrame:
    """Every step of ``make reproduce`` in minutes, with the total."""
    out = times.assign(minutes=(times["seconds"] / 60).round(1))[["notebook", "minutes"]]
    total = pd.DataFrame([{"notebook": "total", "minutes": round(float(times["seconds"].sum()) / 60, 1)}])
    return pd.concat([out, total], ignore_index=True)


def reproduce_times(root: str | Path) -> pd.DataFrame | None:
    """The minutes of the last ``make reproduce``: ``.scratch/reproduce/times.csv`` while one runs
    (the Makefile appends a row per notebook), else the committed ``results/reproduce_times.csv``;
    None when neither exists."""
    for path in (Path(root) / ".scratch" / "reproduce" / "times.csv", Path(root) / "results" / TIMES_FILE):
        if path.exists():
            return pd.read_csv(path)
    return None


def summary(verdicts: pd.DataFrame) -> str:
    """The paragraph beneath the synthesis table, from the verdicts alone."""
    counts = verdicts["verdict"].value_counts()
    n = len(verdicts)
    if n == 0:
        return "No verdict files yet: run `make reproduce`."
    text = [f"Of {n} claims tested, {counts.get(REPRODUCED, 0)} reproduced, "
            f"{counts.get(CONTRADICTED, 0)} were contradicted at the budgets stated and "
            f"{counts.get(NOT_RESOLVED, 0)} are not resolved (the interval straddles the margin)."]
    for verdict, lead in ((CONTRADICTED, "Contradicted at this scale"), (NOT_RESOLVED, "Not resolved")):
        rows = verdicts[verdicts["verdict"] == verdict]
        readings = [str(r) for r in rows.get("reading", pd.Series(dtype=str)).dropna() if str(r)]
        if readings:
            text.append(f"{lead}, in the notebooks' own words: " + " ".join(
                r if r.endswith(".") else r + "." for r in readings))
    missing = [c for c in [*SETTING_COLUMNS, "reading"] if c not in verdicts.columns]
    if missing:
        text.append(f"(Some verdict files predate the setting and reading columns: {', '.join(missing)}; "
                    "`make reproduce` regenerates them.)")
    return "\n\n".join(text)


def markdown_table(df: pd.DataFrame) -> str:
    """``df`` as a Markdown table (for ``IPython.display.Markdown``; long cells wrap in JupyterLab)."""
    def cell(v: object) -> str:
        if isinstance(v, float) and math.isnan(v):
            return ""
        return str(v).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(map(cell, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)
