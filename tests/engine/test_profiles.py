from __future__ import annotations

import pytest

from nfrepro.engine import profiles


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
