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
    # the very next code cell applies the NFREPRO_PROFILE override
    assert "resolve_profile(profile)" in code[tagged[0] + 1].source
    # ... after refusing unknown papermill parameters, before it defines any value of its own
    first = next(node for node in ast.parse(code[tagged[0] + 1].source).body
                 if not isinstance(node, (ast.Import, ast.ImportFrom)))
    check = getattr(first, "value", None)
    assert isinstance(check, ast.Call) and ast.unparse(check.func).endswith("check_parameters"), \
        f"{path.name}: the cell after 'parameters' must start with check_parameters(globals(), ...)"
    known = ast.literal_eval(next(k.value for k in check.keywords if k.arg == "known"))
    assert known == list(names), f"{path.name}: check_parameters' known list is not the parameters"
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
