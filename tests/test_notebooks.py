"""Every notebook follows the conventions that papermill, nbval and readers rely on."""
from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))


def test_there_are_notebooks():
    assert any(p.name == "00_overview.ipynb" for p in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_parameters_cell(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    tagged = [i for i, c in enumerate(code) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: exactly one cell must be tagged 'parameters'"
    cell = code[tagged[0]]
    tree = ast.parse(cell.source)
    names = {}
    for node in tree.body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1, \
            f"{path.name}: the parameters cell holds plain assignments only"
        names[node.targets[0].id] = ast.literal_eval(node.value)  # raises if not a literal
    assert names.get("profile") == "cpu", f"{path.name}: the default profile must be 'cpu'"
    # the other profiles' sizes are literal too, and name only this cell's parameters
    for profile, sizes in names.get("profile_sizes", {}).items():
        assert profile in ("smoke", "gpu") and set(sizes) <= set(names) - {"profile", "profile_sizes"}, \
            f"{path.name}: profile_sizes[{profile!r}] sets a name the parameters cell does not define"
    # the very next code cell calls the one notebook helper, with every parameter, before it defines
    # any value of its own (imports only above it)
    body = ast.parse(code[tagged[0] + 1].source).body
    first = next(node for node in body if not isinstance(node, (ast.Import, ast.ImportFrom)))
    call = getattr(first, "value", None)
    assert isinstance(call, ast.Call) and ast.unparse(call.func) == "nfrepro.notebook.start", \
        f"{path.name}: the cell after 'parameters' must call nfrepro.notebook.start(globals(), known=...)"
    known = ast.literal_eval(next(k.value for k in call.keywords if k.arg == "known"))
    assert known == list(names), f"{path.name}: start's known list is not the parameters"
    assert len(code[tagged[0] + 1].source.splitlines()) <= 30, f"{path.name}: the set-up cell is not short"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_committed_notebook_was_executed_without_errors(path):
    """The committed notebooks are what a reader opens: executed, with real outputs."""
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code), f"{path.name} has unexecuted cells"
    for c in code:
        assert not any(o.get("output_type") == "error" for o in c.get("outputs", [])), path.name


def test_overview_lists_every_notebook():
    """Notebook 00 maps every notebook to the paper's figure or table it reproduces."""
    nb = nbformat.read(ROOT / "notebooks" / "00_overview.ipynb", as_version=4)
    table = next(c.source for c in nb.cells if c.source.startswith("## Which notebook reproduces what"))
    for path in NOTEBOOKS:
        if path.name != "00_overview.ipynb":
            assert f"| `{path.stem}` |" in table, f"notebook 00 does not list {path.stem}"


def _outputs_text(nb) -> str:
    texts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            texts.append(str(output.get("text", "")))
            texts += [str(v) for k, v in output.get("data", {}).items() if k.startswith("text/")]
    return "\n".join(texts)


def test_overview_synthesis_holds_every_committed_claim():
    """Notebook 00's synthesis, as committed, shows every claim of every results/*_verdicts.csv."""
    import pandas as pd

    shown = _outputs_text(nbformat.read(ROOT / "notebooks" / "00_overview.ipynb", as_version=4))
    for path in sorted((ROOT / "results").glob("*_verdicts.csv")):
        for claim in pd.read_csv(path)["claim"]:
            assert claim.replace("|", "\\|") in shown, f"notebook 00 does not show {path.name}'s {claim!r}"


def test_every_committed_verdict_says_its_setting_and_reading():
    import pandas as pd

    from nfrepro.analysis.verdicts import SETTING_COLUMNS

    for path in sorted((ROOT / "results").glob("*_verdicts.csv")):
        df = pd.read_csv(path, keep_default_na=False)
        missing = [c for c in [*SETTING_COLUMNS, "reading"] if c not in df.columns]
        assert not missing, f"{path.name} lacks {missing}"
        empty = df[(df[[*SETTING_COLUMNS, "reading"]].astype(str) == "").any(axis=1)]["claim"].tolist()
        assert not empty, f"{path.name}: these verdicts lack part of their setting or reading: {empty}"
