"""The committed notebooks' stored outputs are clean (``tools/notebook_hygiene.py``'s rules).

The rules are tested on synthetic notebooks first (one clean, one per failure kind), then applied to
every committed ``notebooks/[0-9]*.ipynb``, and to a smoke execution of notebook 02 (the cheapest
that trains).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from tools.notebook_hygiene import (
    debug_leftovers,
    error_outputs,
    hygiene_problems,
    machine_paths,
    papermill_finished,
    stderr_outputs,
    warning_outputs,
)

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))


# ------------------------------------------------------------------------- the rules, on fixtures
def _bar(n: int, total: int, desc: str = "runs") -> str:
    done = n * 10 // total
    return (f"{desc}: {n * 100 // total:3d}%|{'█' * done}{' ' * (10 - done)}| {n}/{total} "
            f"[00:01<00:00,  2.43it/s]")


def _stream(text: str, name: str = "stdout"):
    return nbformat.v4.new_output("stream", name=name, text=text)


def _notebook(*outputs, source: str = "x = 1", papermill: dict | None = None):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(source, id="c0")
    cell.outputs = list(outputs)
    cell.metadata["papermill"] = {"status": "completed", "exception": False}
    nb.cells = [nbformat.v4.new_markdown_cell("# A title, with a TODO in prose", id="m0"), cell]
    nb.metadata["papermill"] = papermill if papermill is not None else {
        "exception": None, "end_time": "2026-01-01T00:00:00+00:00"}
    return nb


def test_a_clean_notebook_passes():
    nb = _notebook(_stream("profile: cpu; runs in runs/agc_sweep/cpu; results in results\n"),
                   _stream(_bar(12, 12) + "\n", "stderr"),
                   _stream(_bar(3, 3, "sweep") + "\n", "stderr"),
                   nbformat.v4.new_output("execute_result", data={"text/plain": "   top1\n0  87.7"},
                                          execution_count=1),
                   source="table = run()\nprint(table)")
    assert hygiene_problems(nb) == []


def test_an_error_output_fails():
    error = nbformat.v4.new_output("error", ename="KeyError", evalue="'nfnet_f9'", traceback=[])
    (problem,) = error_outputs(_notebook(error))
    assert "cell 1 (id c0) raised KeyError" in problem and "rerun" in problem


@pytest.mark.parametrize("text", [
    "/x/site-packages/tqdm/auto.py:21: TqdmWarning: IProgress not found.\n",
    "<stdin>:3: FutureWarning: the default of observed=False is deprecated\n",
    "warnings.warn(msg)\n",
])
def test_a_printed_warning_fails(text):
    (problem,) = warning_outputs(_notebook(_stream(text, "stderr")))
    assert "prints a warning" in problem and "targeted filter" in problem


def test_stderr_noise_fails():
    noise = "USDT:2026-11-28 05:43:12 SyncActivityProfilerHandler.cpp:39] profiler_start\n"
    nb = _notebook(_stream(noise, "stderr"))
    (problem,) = stderr_outputs(nb)
    assert "writes to stderr" in problem and "profiler_start" in problem


def test_a_bar_stored_frame_by_frame_fails():
    """What papermill stored of a 17-minute sweep: one output per refresh, then the newline."""
    frames = [_stream("\r" + _bar(n, 72), "stderr") for n in range(0, 73, 3)]
    (problem,) = stderr_outputs(_notebook(*frames, _stream("\n", "stderr")))
    assert "'runs' is stored as 25 frames" in problem and "progress_bar" in problem


def test_a_bar_that_stopped_short_fails():
    (problem,) = stderr_outputs(_notebook(_stream(_bar(5, 12) + "\n", "stderr")))
    assert "stopped at 5/12" in problem


@pytest.mark.parametrize("text", ["saved /work/main/results/table3_complexity.csv\n",
                                  "3412 rows -> /tmp/fresh2/results/spp_resnet600.csv\n",
                                  "loaded from /opt/conda/lib/python3.11/site-packages/timm\n",
                                  "C:\\Users\\me\\nfrepro\\results\n"])
def test_a_machine_path_fails(text):
    (problem,) = machine_paths(_notebook(_stream(text)))
    assert "machine path" in problem and "shown_path" in problem


def test_relative_paths_and_urls_pass():
    text = "saved results/table3_complexity.csv; see https://example.org/tmp/x and docs/usr/notes\n"
    assert machine_paths(_notebook(_stream(text))) == []


@pytest.mark.parametrize("source", ["breakpoint()", "import pdb; pdb.set_trace()",
                                    'print("DEBUG", x)', "x = 1  # XXX wrong sign", "# TODO: rerun"])
def test_a_debug_leftover_in_a_code_cell_fails(source):
    (problem,) = debug_leftovers(_notebook(source=source))
    assert "debug leftover" in problem and "line 1" in problem


def test_debug_output_fails():
    (problem,) = debug_leftovers(_notebook(_stream("DEBUG lr=0.1\n")))
    assert "prints debug output" in problem


def test_a_run_that_stopped_early_fails():
    assert "no papermill metadata" in papermill_finished(_notebook(papermill={}))[0]
    stopped = _notebook(papermill={"exception": True, "end_time": "2026-01-01T00:00:00+00:00"})
    stopped.cells[1].metadata["papermill"]["status"] = "pending"
    problems = papermill_finished(stopped)
    assert "recorded an exception" in problems[0] and "status 'pending'" in problems[1]


# -------------------------------------------------------------------- the committed notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_committed_notebook_outputs_are_clean(path):
    problems = hygiene_problems(nbformat.read(path, as_version=4), path.name)
    assert not problems, f"{len(problems)} problem(s) in the stored outputs:\n" + "\n".join(problems)


@pytest.mark.slow
def test_a_smoke_execution_writes_clean_outputs(tmp_path):
    """A fresh papermill run (smoke profile, ~15 s) of notebook 02: the package's bars, paths and
    imports leave clean outputs, not just the ones committed."""
    out = tmp_path / "02.ipynb"
    env = {**os.environ, "NFREPRO_PROFILE": "smoke", "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-m", "papermill", "--cwd", str(ROOT / "notebooks"), "--no-progress-bar",
                    str(ROOT / "notebooks" / "02_agc_batch_size.ipynb"), str(out)],
                   env=env, check=True, capture_output=True, timeout=300)
    problems = hygiene_problems(nbformat.read(out, as_version=4), out.name)
    assert not problems, "\n".join(problems)
