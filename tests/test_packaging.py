"""The project's set-up files agree with each other and with the README."""
from __future__ import annotations

import re
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req.strip(), maxsplit=1)[0].lower()


def test_environment_yml_names_the_same_packages_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pip_reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        pip_reqs += [r for r in extra if not r.startswith("nfrepro[")]  # "all" names the others
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda_pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    # same names and the same version specifiers
    assert sorted(r.replace(" ", "") for r in pip_reqs) == sorted(r.replace(" ", "") for r in conda_pip)
    assert {_name(r) for r in pip_reqs} >= {"torch", "torchvision", "timm", "numpy", "pandas",
                                            "matplotlib", "seaborn", "tqdm", "jupyterlab",
                                            "ipykernel", "papermill", "nbval", "pytest"}


def test_core_needs_torch_and_numpy_only_and_all_installs_every_extra():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert sorted(_name(r) for r in project["dependencies"]) == ["numpy", "torch"]
    assert not any("<" in r for r in project["dependencies"]), "no upper pin on torch in the metadata"
    extras = project["optional-dependencies"]
    assert {"train", "plots", "bench", "notebooks", "test", "all"} <= set(extras)
    assert extras["all"] == [f"nfrepro[{','.join(k for k in extras if k != 'all')}]"]
    assert '-e ".[all]"' in (ROOT / "Makefile").read_text()


def test_reference_table_and_py_typed_ship_as_package_data():
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]
    data = tool["setuptools"]["package-data"]["nfrepro"]
    for name in data:
        assert (ROOT / "nfrepro" / name).is_file(), name
    assert {"py.typed", "analysis/paper_reference.csv"} <= set(data)


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make test " in readme and "make reproduce " in readme
    ci = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()
          if ln.strip() and not ln.strip().startswith("#")]
    assert ci[-1] == "make test"
    assert "set -euo pipefail" in ci


def test_make_test_forces_the_smoke_profile_and_runs_nbval():
    makefile = (ROOT / "Makefile").read_text()
    assert "TEST_ENV := NFREPRO_PROFILE=smoke" in makefile
    test_recipe = makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert "$(TEST_ENV)" in test_recipe and "--nbval-lax" in test_recipe
    assert "tests notebooks" in test_recipe


def test_every_results_csv_has_a_run_record():
    for csv in (ROOT / "results").glob("*.csv"):
        assert csv.with_suffix(".json").exists(), f"{csv.name} has no sibling .json run record"


def test_reproduce_records_the_commit_it_started_from():
    """papermill rewrites the notebooks in place and they rewrite results/: records made later in a
    reproduce would all say "-dirty"; the Makefile pins the starting commit instead (records honour it)."""
    import subprocess

    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\nreproduce:", 1)[1].split("\n\n", 1)[0]
    assert "export NFREPRO_COMMIT=$$(git rev-parse HEAD)" in recipe
    out = subprocess.run(["make", "-n", "reproduce"], cwd=ROOT, capture_output=True, text=True)
    assert "NFREPRO_COMMIT" in out.stdout
