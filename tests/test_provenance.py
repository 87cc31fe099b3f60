"""The committed results, figures and notebooks come from one `make reproduce` at one clean commit.

Every run record ``results/*.json`` (``nfrepro.engine.records.save_results``) names the commit it
was made at (``$NFREPRO_COMMIT``, set by `make reproduce` to the commit it started from), the
threads, the dtype, the device and the torch version; every ``figures/*.png`` names its commit in
its PNG text (``nfrepro.engine.records.save_figure``). They must all name the same commit, and it
must be a clean one: a "-dirty" commit cannot be checked out again. ``results/gpu/`` is made on a
separate GPU machine (`make gpu-check`) and keeps its own records; it is not checked here.

The checks are functions tested on temporary folders first (agree / disagree / dirty / missing),
then applied to the committed files.
"""
from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import nbformat
import pytest

from nfrepro.engine.records import FIGURE_COMMIT_KEY

ROOT = Path(__file__).resolve().parent.parent
REQUIRED = ("git_commit", "threads_per_worker", "dtype", "device", "torch_version")
# A commit named in a notebook's output: "commit 1a2b3c4d..." (7 to 40 hex digits).
COMMIT_IN_OUTPUT = re.compile(r"\bcommit:? ([0-9a-f]{7,40})\b")
HOW_TO_FIX = "regenerate every output from one clean commit: commit your changes, then `make reproduce`"


# ------------------------------------------------------------------------------------- readers
def run_records(results_dir: Path) -> dict[str, dict]:
    """``{file name: record}`` of every run record directly in ``results_dir`` (not results/gpu)."""
    records = {}
    for path in sorted(Path(results_dir).glob("*.json")):
        try:
            records[path.name] = json.loads(path.read_text())
        except ValueError:
            records[path.name] = {}
    return records


def figure_commits(figures_dir: Path) -> dict[str, str | None]:
    """``{file name: commit}`` from each PNG's text chunks (None: the figure names no commit)."""
    from PIL import Image

    commits = {}
    for path in sorted(Path(figures_dir).glob("*.png")):
        with Image.open(path) as image:
            commits[path.name] = image.text.get(FIGURE_COMMIT_KEY)
    return commits


def notebook_commits(notebooks: list[Path]) -> dict[str, list[str]]:
    """``{notebook: [commit, ...]}`` named in its outputs ("commit <sha>"), except lines about
    ``results/gpu`` (made at the GPU machine's own commit)."""
    found = {}
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        shas = []
        for cell in nb.cells:
            for output in cell.get("outputs", []):
                texts = [output.get("text", "")] + [v for k, v in output.get("data", {}).items()
                                                    if k.startswith("text/")]
                for line in "\n".join(map(str, texts)).splitlines():
                    if "results/gpu" not in line:
                        shas += COMMIT_IN_OUTPUT.findall(line)
        if shas:
            found[path.name] = shas
    return found


# -------------------------------------------------------------------------------------- checks
def record_problems(records: dict[str, dict]) -> list[str]:
    """Each run record is complete and names a clean commit."""
    problems = []
    for name, record in records.items():
        missing = [key for key in REQUIRED if key not in record]
        if missing:
            problems.append(f"results/{name} lacks {', '.join(missing)}: it was written before run records "
                            f"pinned them; {HOW_TO_FIX}")
        commit = str(record.get("git_commit", "unknown"))
        if commit == "unknown":
            problems.append(f"results/{name} names no commit ('unknown'): it was made outside a git "
                            f"checkout without $NFREPRO_COMMIT; {HOW_TO_FIX}")
        elif commit.endswith("-dirty"):
            problems.append(f"results/{name} was made from uncommitted changes ({commit}); {HOW_TO_FIX}")
    return problems


def figure_problems(figures: dict[str, str | None]) -> list[str]:
    """Each figure names a clean commit in its PNG text."""
    problems = []
    for name, commit in figures.items():
        if commit is None:
            problems.append(f"figures/{name} names no commit (no {FIGURE_COMMIT_KEY!r} PNG text): save it "
                            f"with nfrepro.engine.records.save_figure; {HOW_TO_FIX}")
        elif commit == "unknown" or commit.endswith("-dirty"):
            problems.append(f"figures/{name} was drawn at {commit!r}, not a clean commit; {HOW_TO_FIX}")
    return problems


def agreement_problems(records: dict[str, dict], figures: dict[str, str | None],
                       notebooks: dict[str, list[str]] | None = None) -> list[str]:
    """Every record, figure and notebook names the same commit (a notebook may abbreviate it)."""
    by_commit: dict[str, list[str]] = defaultdict(list)
    for name, record in records.items():
        by_commit[str(record.get("git_commit", "unknown"))].append(f"results/{name}")
    for name, commit in figures.items():
        if commit is not None:
            by_commit[commit].append(f"figures/{name}")
    problems = []
    if len(by_commit) > 1:
        groups = sorted(by_commit.items(), key=lambda kv: -len(kv[1]))
        listing = "; ".join(f"{commit[:12]}: {len(files)} file(s) ({', '.join(files[:4])}"
                            f"{', ...' if len(files) > 4 else ''})" for commit, files in groups)
        problems.append(f"the committed outputs come from {len(by_commit)} commits: {listing}; {HOW_TO_FIX}")
    full = next(iter(by_commit)) if len(by_commit) == 1 else None
    for name, shas in (notebooks or {}).items():
        for sha in shas:
            if full is None or not full.startswith(sha):
                problems.append(f"notebooks/{name} names commit {sha}, but the results and figures "
                                f"name {full or 'several'}; {HOW_TO_FIX}")
    return problems


def provenance_problems(results_dir: Path, figures_dir: Path, notebooks: list[Path]) -> list[str]:
    records, figures = run_records(results_dir), figure_commits(figures_dir)
    return (record_problems(records) + figure_problems(figures)
            + agreement_problems(records, figures, notebook_commits(notebooks)))


# -------------------------------------------------------------------- the checks, on fixtures
SHA = "0123456789abcdef0123456789abcdef01234567"
OTHER = "fedcba9876543210fedcba9876543210fedcba98"


def _record(commit: str = SHA, **drop) -> dict:
    record = {"git_commit": commit, "threads_per_worker": 1, "dtype": "float32",
              "device": "cpu (test, 1 threads)", "torch_version": "2.14.1"}
    return {k: v for k, v in record.items() if k not in drop}


def _outputs(tmp_path, records: dict[str, dict], figures: dict[str, str | None],
             notebook_text: str | None = None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nfrepro.engine.records import save_figure

    results, figs, nbs = tmp_path / "results", tmp_path / "figures", tmp_path / "notebooks"
    for folder in (results, results / "gpu", figs, nbs):
        folder.mkdir(parents=True, exist_ok=True)
    for name, record in records.items():
        (results / name).write_text(json.dumps(record))
    (results / "gpu" / "gpu_check.json").write_text(json.dumps(_record("abc-dirty")))  # not checked
    for name, commit in figures.items():
        fig, ax = plt.subplots(figsize=(1, 1))
        if commit is None:
            fig.savefig(figs / name)
        else:
            save_figure(fig, figs / name, dpi=20)
        plt.close(fig)
    notebooks = []
    if notebook_text is not None:
        nb = nbformat.v4.new_notebook()
        cell = nbformat.v4.new_code_cell("print(commit)", id="c0")
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=notebook_text)]
        nb.cells = [cell]
        notebooks.append(nbs / "00_x.ipynb")
        nbformat.write(nb, notebooks[0])
    return results, figs, notebooks


def test_outputs_from_one_clean_commit_agree(tmp_path, monkeypatch):
    monkeypatch.setenv("NFREPRO_COMMIT", SHA)
    where = _outputs(tmp_path, {"a.json": _record(), "b.json": _record()}, {"a.png": SHA},
                     notebook_text=f"made at commit {SHA[:12]}\nresults/gpu: H100 (commit {OTHER[:12]})\n")
    assert provenance_problems(*where) == []


def test_outputs_from_two_commits_disagree(tmp_path, monkeypatch):
    monkeypatch.setenv("NFREPRO_COMMIT", OTHER)
    where = _outputs(tmp_path, {"a.json": _record(), "b.json": _record(), "c.json": _record(OTHER)},
                     {"a.png": OTHER})
    (problem,) = provenance_problems(*where)
    assert "come from 2 commits" in problem
    assert f"{SHA[:12]}: 2 file(s) (results/a.json, results/b.json)" in problem
    assert f"{OTHER[:12]}: 2 file(s) (results/c.json, figures/a.png)" in problem
    assert "make reproduce" in problem


def test_a_notebook_naming_another_commit_disagrees(tmp_path, monkeypatch):
    monkeypatch.setenv("NFREPRO_COMMIT", SHA)
    where = _outputs(tmp_path, {"a.json": _record()}, {"a.png": SHA}, notebook_text=f"commit {OTHER[:9]}\n")
    (problem,) = provenance_problems(*where)
    assert f"notebooks/00_x.ipynb names commit {OTHER[:9]}" in problem


@pytest.mark.parametrize("commit", [SHA + "-dirty", "unknown"])
def test_a_dirty_or_unknown_commit_fails(tmp_path, monkeypatch, commit):
    monkeypatch.setenv("NFREPRO_COMMIT", commit)
    where = _outputs(tmp_path, {"a.json": _record(commit)}, {"a.png": commit})
    problems = provenance_problems(*where)
    assert len(problems) == 2 and "results/a.json" in problems[0] and "figures/a.png" in problems[1]
    assert all("make reproduce" in p for p in problems)


def test_an_incomplete_record_or_an_unmarked_figure_fails(tmp_path, monkeypatch):
    monkeypatch.setenv("NFREPRO_COMMIT", SHA)
    where = _outputs(tmp_path, {"a.json": _record(threads_per_worker=None, dtype=None)}, {"plain.png": None})
    problems = provenance_problems(*where)
    assert "results/a.json lacks threads_per_worker, dtype" in problems[0]
    assert "figures/plain.png names no commit" in problems[1] and "save_figure" in problems[1]


# -------------------------------------------------------------------------- the committed files
def test_committed_outputs_come_from_one_clean_commit():
    """Fails until one `make reproduce` at a clean commit has regenerated every output."""
    problems = provenance_problems(ROOT / "results", ROOT / "figures",
                                   sorted((ROOT / "notebooks").glob("[0-9]*.ipynb")))
    assert not problems, f"{len(problems)} provenance problem(s):\n" + "\n".join(problems)
