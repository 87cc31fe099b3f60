"""The committed notebooks' stored outputs are clean: what a reader sees is the result, not noise.

Each rule is a small function from a notebook (a dict as nbformat reads it) to a list of problems,
each naming the cell and the text, and saying what to do. The rules are tested on synthetic
notebooks first (one clean, one per failure kind), then applied to every committed
``notebooks/[0-9]*.ipynb``, and to a smoke execution of notebook 02 (the cheapest that trains).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))

# Text outputs worth reading: images and widget state are skipped.
TEXT_MIME = ("text/plain", "text/html", "text/markdown", "text/latex", "application/json")
WARNING = re.compile(r"\b\w*Warning\b|warnings\.warn")
MACHINE_PATH = re.compile(r"(?<![\w.~])/(?:work|tmp|home|root|usr|opt|var|private|Users|mnt)/"
                          r"|site-packages|dist-packages|\.venv\b|[A-Za-z]:\\Users\\")
DEBUG_SOURCE = re.compile(r"\bbreakpoint\(|\bpdb\b|\bset_trace\(|print\(\s*[fr]?[\"']DEBUG|\bXXX\b|\bTODO\b|\bFIXME\b")
DEBUG_OUTPUT = re.compile(r"^(?:DEBUG\b|\(Pdb\)|ipdb>)", re.MULTILINE)
# A tqdm frame: "desc: 42%|####      | 21/50 [00:10<00:14, 2.1it/s]" (the bar and desc optional),
# or a bar without a total: "desc: 21it [00:10, 2.1it/s]".
BAR = re.compile(r"^(?:(?P<desc>.*?): *)?(?:\d+%\|[^|]*\| *(?P<n>\d+)/(?P<total>\d+)|(?P<count>\d+)\w* )\s*\[.*\]$")


# ------------------------------------------------------------------------------------------ rules
def _where(nb_name: str, index: int, cell) -> str:
    cell_id = cell.get("id")
    return f"{nb_name} cell {index}" + (f" (id {cell_id})" if cell_id else "")


def _code_cells(nb):
    return [(i, c) for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"]


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _output_texts(output) -> list[str]:
    """Every readable text of one stored output (stream text, text MIME data, a traceback)."""
    kind = output["output_type"]
    if kind == "stream":
        return [_text(output["text"])]
    if kind == "error":
        return [f"{output.get('ename', '')}: {output.get('evalue', '')}", *output.get("traceback", [])]
    return [_text(v) for mime, v in output.get("data", {}).items() if mime in TEXT_MIME]


def _snippet(text: str, match: re.Match | None = None, width: int = 100) -> str:
    start = max(0, match.start() - width // 3) if match else 0
    return repr(text[start:start + width])


def error_outputs(nb, name: str = "notebook") -> list[str]:
    """A cell that raised: its error output is stored."""
    return [f"{_where(name, i, c)} raised {o.get('ename')}: {o.get('evalue', '')[:200]!r}; fix the "
            f"cause and rerun the notebook"
            for i, c in _code_cells(nb) for o in c.get("outputs", []) if o["output_type"] == "error"]


def _outputs_matching(nb, name: str, pattern: re.Pattern, what: str, todo: str) -> list[str]:
    """One message per output text of a code cell in which ``pattern`` occurs."""
    return [f"{_where(name, i, c)} prints {what}: {_snippet(text, m)}; {todo}"
            for i, c in _code_cells(nb) for o in c.get("outputs", []) for text in _output_texts(o)
            if (m := pattern.search(text))]


def warning_outputs(nb, name: str = "notebook") -> list[str]:
    """A warning printed into an output (``FutureWarning``, ``TqdmWarning``, ``warnings.warn`` ...)."""
    return _outputs_matching(nb, name, WARNING, "a warning",
                             "remove its cause, or silence this one warning where the package triggers "
                             "it (a targeted filter with a comment saying why)")


def stderr_outputs(nb, name: str = "notebook") -> list[str]:
    """stderr holds nothing but progress bars, and each bar is stored once, at its end.

    A cell's stderr text is read line by line; within a line, ``\\r`` separates the frames a
    terminal would draw over each other. papermill stores every frame, so a line with several
    frames is a bar that was redrawn in place: the notebook keeps each redraw (draw bars through
    ``nfrepro.engine.progress.progress_bar``). The frame kept must be the bar's last (n = total).
    """
    problems = []
    for i, c in _code_cells(nb):
        where = _where(name, i, c)
        text = "".join(_text(o["text"]) for o in c.get("outputs", [])
                       if o["output_type"] == "stream" and o.get("name") == "stderr")
        for line in text.split("\n"):
            frames = [f.strip() for f in line.split("\r") if f.strip()]
            if not frames:
                continue
            noise = [f for f in frames if not BAR.match(f)]
            if noise:
                problems.append(f"{where} writes to stderr: {_snippet(noise[0])}; silence it at its "
                                f"source (stderr of a clean run holds only progress bars)")
                continue
            last = BAR.match(frames[-1])
            desc = last["desc"] or "(no description)"
            if len(frames) > 1:
                problems.append(f"{where}: the progress bar {desc!r} is stored as {len(frames)} frames "
                                f"(first {frames[0]!r}); draw it with nfrepro.engine.progress.progress_bar, "
                                f"which leaves one final line outside a terminal")
            elif last["total"] is not None and last["n"] != last["total"]:
                problems.append(f"{where}: the progress bar {desc!r} stopped at {last['n']}/{last['total']} "
                                f"({frames[-1]!r}); a finished run's bar ends at its total")
    return problems


def machine_paths(nb, name: str = "notebook") -> list[str]:
    """An absolute path of the machine that ran the notebook (``/work/...``, ``site-packages``)."""
    return _outputs_matching(nb, name, MACHINE_PATH, "a machine path",
                             "print paths relative to the project root (nfrepro.engine.profiles.shown_path)")


def debug_leftovers(nb, name: str = "notebook") -> list[str]:
    """``breakpoint()``, ``pdb``, ``print("DEBUG ...")``, ``XXX`` / ``TODO`` in a code cell, or
    debugger / DEBUG lines in an output."""
    problems = []
    for i, c in _code_cells(nb):
        source = _text(c["source"])
        if m := DEBUG_SOURCE.search(source):
            line = source[:m.start()].count("\n") + 1
            problems.append(f"{_where(name, i, c)} line {line} has a debug leftover {m.group()!r}: "
                            f"{_snippet(source, m)}; remove it (open questions go to an issue)")
        for o in c.get("outputs", []):
            for text in _output_texts(o):
                if m := DEBUG_OUTPUT.search(text):
                    problems.append(f"{_where(name, i, c)} prints debug output: {_snippet(text, m)}; "
                                    f"remove the print that wrote it")
    return problems


def papermill_finished(nb, name: str = "notebook") -> list[str]:
    """The notebook was executed by papermill (``make reproduce``) and ran to its end."""
    meta = nb.get("metadata", {}).get("papermill")
    if not meta:
        return [f"{name} has no papermill metadata: it was not executed by `make reproduce`; run it"]
    problems = []
    if meta.get("exception") or not meta.get("end_time"):
        problems.append(f"{name}: papermill recorded an exception (or no end time): the run stopped "
                        f"early; fix it and rerun `make reproduce`")
    for i, c in _code_cells(nb):
        status = c.get("metadata", {}).get("papermill", {}).get("status")
        if status not in (None, "completed"):
            problems.append(f"{_where(name, i, c)} has papermill status {status!r}: the run did not "
                            f"reach it; rerun `make reproduce`")
    return problems


RULES = (error_outputs, warning_outputs, stderr_outputs, machine_paths, debug_leftovers, papermill_finished)


def hygiene_problems(nb, name: str = "notebook") -> list[str]:
    return [problem for rule in RULES for problem in rule(nb, name)]


# ------------------------------------------------------------------------- the rules, on fixtures
def _bar(n: int, total: int, desc: str = "runs") -> str:
    done = n * 10 // total
    return f"{desc}: {n * 100 // total:3d}%|{'█' * done}{' ' * (10 - done)}| {n}/{total} [00:01<00:00,  2.43it/s]"


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
    nb = _notebook(_stream("USDT:2026-11-28 05:43:12 SyncActivityProfilerHandler.cpp:39] profiler_start\n", "stderr"))
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
