from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
import pytest

from nfrepro.engine import profiles
from nfrepro.engine.profiles import check_parameters, resolve_profile


def test_environment_overrides_the_parameter(monkeypatch):
    monkeypatch.setenv("NFREPRO_PROFILE", "smoke")
    assert profiles.resolve_profile("cpu") == "smoke"
    monkeypatch.delenv("NFREPRO_PROFILE")
    assert profiles.resolve_profile("gpu") == "gpu"


def test_unknown_profile_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("NFREPRO_PROFILE", raising=False)
    with pytest.raises(ValueError, match="choose one of smoke, cpu, gpu"):
        profiles.resolve_profile("fast")


def test_smoke_never_writes_committed_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("NFREPRO_ROOT", str(tmp_path))
    monkeypatch.delenv("NFREPRO_PROFILE", raising=False)
    figs, res = profiles.output_dirs("smoke")
    assert figs == tmp_path / ".scratch" / "smoke" / "figures" and res.is_dir()
    assert profiles.output_dirs("cpu") == (tmp_path / "figures", tmp_path / "results")
    # the override applies to output folders too: a cpu notebook run under the tests
    monkeypatch.setenv("NFREPRO_PROFILE", "smoke")
    assert profiles.output_dirs("cpu")[1] == tmp_path / ".scratch" / "smoke" / "results"


def test_project_root_is_the_repository():
    assert (profiles.project_root() / "pyproject.toml").exists()


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
        "import nfrepro.engine.profiles\n"
        'nfrepro.engine.profiles.check_parameters(globals(), known=["profile", "progress"])\n'
        "print('ran with', profile)")
    nb.cells = [nbformat.v4.new_markdown_cell("# tiny"), params, check]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def test_papermill_refuses_an_unknown_parameter_at_once(tmp_path, monkeypatch):
    papermill = pytest.importorskip("papermill")
    # the kernel is started from PATH and inherits our environment: this interpreter, this checkout
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[2]))
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
    assert profiles.shown_path(tmp_path / "results" / "x.csv") == "results/x.csv"
    assert profiles.shown_path(tmp_path) == "."
    outside = tmp_path.parent / "elsewhere.csv"
    assert profiles.shown_path(outside) == str(outside)  # outside the root: as given
