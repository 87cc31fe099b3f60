"""nfrepro.notebook: the one set-up call after every notebook's parameters cell."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from nfrepro import notebook
from nfrepro.engine.profiles import resolve_profile
from nfrepro.notebook import check_parameters


def test_check_parameters_names_the_unknown_and_the_known():
    namespace = {"profile": "cpu", "seed": 0, "In": [""], "Out": {}, "_i1": "x", "pd": os,
                 "resolve_profile": resolve_profile, "GAMMAS": None}
    with pytest.raises(ValueError, match="GAMMAS: this notebook takes profile, seed"):
        check_parameters(namespace, known=["profile", "seed"])
    del namespace["GAMMAS"]
    check_parameters(namespace, known=["profile", "seed"])  # modules, functions, IPython names pass


def _tiny_notebook(path):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('profile = "cpu"\nprogress = True')
    params.metadata["tags"] = ["parameters"]
    check = nbformat.v4.new_code_cell(
        "import nfrepro.notebook\n"
        'profile, figures_dir, results_dir = nfrepro.notebook.start(\n'
        '    globals(), known=["profile", "progress"])\n'
        "print('ran with', profile)")
    nb.cells = [nbformat.v4.new_markdown_cell("# tiny"), params, check]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def test_papermill_refuses_an_unknown_parameter_at_once(tmp_path, monkeypatch):
    papermill = pytest.importorskip("papermill")
    # the kernel is started from PATH and inherits our environment: this interpreter, this checkout
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[1]))
    source = tmp_path / "tiny.ipynb"
    _tiny_notebook(source)
    ok = papermill.execute_notebook(str(source), str(tmp_path / "ok.ipynb"),
                                    parameters={"profile": "smoke"}, kernel_name="python3",
                                    progress_bar=False, cwd=str(tmp_path))
    assert "ran with smoke" in "".join(o.get("text", "") for o in ok.cells[-1].outputs)
    with pytest.raises(papermill.PapermillExecutionError, match="profle") as info:
        papermill.execute_notebook(str(source), str(tmp_path / "bad.ipynb"),
                                   parameters={"profle": "smoke"}, kernel_name="python3",
                                   progress_bar=False, cwd=str(tmp_path))
    assert "this notebook takes profile, progress" in str(info.value)


def test_shown_path_is_relative_to_the_project_root(tmp_path, monkeypatch):
    monkeypatch.setenv("NFREPRO_ROOT", str(tmp_path))
    assert notebook.shown_path(tmp_path / "results" / "x.csv") == "results/x.csv"
    assert notebook.shown_path(tmp_path) == "."
    outside = tmp_path.parent / "elsewhere.csv"
    assert notebook.shown_path(outside) == str(outside)  # outside the root: as given


def test_start_resolves_the_profile_and_applies_its_sizes(tmp_path, monkeypatch):
    monkeypatch.setenv("NFREPRO_ROOT", str(tmp_path))
    monkeypatch.setenv("NFREPRO_PROFILE", "smoke")
    ns = {"profile": "cpu", "batch": 4, "profile_sizes": {"smoke": {"batch": 2}, "gpu": {"batch": 32}}}
    session = notebook.start(ns, known=["profile", "batch", "profile_sizes"])
    assert session == ("smoke", tmp_path / ".scratch" / "smoke" / "figures",
                       tmp_path / ".scratch" / "smoke" / "results")
    assert ns["profile"] == "smoke" and ns["batch"] == 2
    assert pd.get_option("display.max_colwidth") == notebook.DISPLAY_COLWIDTH
    monkeypatch.delenv("NFREPRO_PROFILE")
    ns = {"profile": "cpu", "batch": 4, "profile_sizes": {"smoke": {"batch": 2}}}
    assert notebook.start(ns, known=["profile", "batch", "profile_sizes"]).profile == "cpu"
    assert ns["batch"] == 4  # the cpu sizes are the parameters cell's own


@pytest.mark.parametrize("sizes", [{"smok": {"batch": 2}}, {"smoke": {"bacth": 2}}])
def test_a_misspelt_size_is_refused(sizes):
    with pytest.raises(ValueError, match="profile_sizes"):
        notebook.apply_sizes({"profile_sizes": sizes}, "smoke", ["profile", "batch", "profile_sizes"])


def test_a_parameter_of_another_type_than_its_default_stops_the_notebook_at_once():
    history = ["", 'profile = "cpu"\nseeds = 5\nlr = 0.1\nflags = None\n', "seeds = 'abc'\n"]
    defaults = notebook.parameter_defaults(history, ["profile", "seeds", "lr", "flags"])
    assert defaults == {"profile": "cpu", "seeds": 5, "lr": 0.1, "flags": None}
    with pytest.raises(TypeError, match="seeds='abc' is a str, but this notebook expects a int"):
        notebook.check_parameter_types({"profile": "cpu", "seeds": "abc", "lr": 0.1}, defaults)
    with pytest.raises(TypeError, match="expects a bool"):
        notebook.check_parameter_types({"flag": 1}, {"flag": True})
    # an int where a float is expected, and anything where the default is None, are fine
    notebook.check_parameter_types({"profile": "smoke", "seeds": 3, "lr": 1, "flags": [1]}, defaults)
