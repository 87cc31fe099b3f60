"""Notebook hygiene: the stored outputs of a committed notebook are clean, so a reader sees the
result, not noise.

Development tooling (the package never imports it): ``tests/test_notebook_hygiene.py`` applies
these rules to every committed notebook, and ``python tools/notebook_hygiene.py NOTEBOOK...`` prints
what it finds. Each rule is a small function from a notebook (a dict as nbformat reads it) to a
list of problems, each naming the cell and the text, and saying what to do.
"""
from __future__ import annotations

import re
import sys

import nbformat

# Text outputs worth reading: images and widget state are skipped.
TEXT_MIME = ("text/plain", "text/html", "text/markdown", "text/latex", "application/json")
WARNING = re.compile(r"\b\w*Warning\b|warnings\.warn")
MACHINE_PATH = re.compile(r"(?<![\w.~])/(?:work|tmp|home|root|usr|opt|var|private|Users|mnt)/"
                          r"|site-packages|dist-packages|\.venv\b|[A-Za-z]:\\Users\\")
DEBUG_SOURCE = re.compile(r"\bbreakpoint\(|\bpdb\b|\bset_trace\(|print\(\s*[fr]?[\"']DEBUG"
                          r"|\bXXX\b|\bTODO\b|\bFIXME\b")
DEBUG_OUTPUT = re.compile(r"^(?:DEBUG\b|\(Pdb\)|ipdb>)", re.MULTILINE)
# A tqdm frame: "desc: 42%|####      | 21/50 [00:10<00:14, 2.1it/s]" (the bar and desc optional),
# or a bar without a total: "desc: 21it [00:10, 2.1it/s]".
BAR = re.compile(r"^(?:(?P<desc>.*?): *)?"
                 r"(?:\d+%\|[^|]*\| *(?P<n>\d+)/(?P<total>\d+)|(?P<count>\d+)\w* )\s*\[.*\]$")


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
                             "print paths relative to the project root (nfrepro.notebook.shown_path)")


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


def main(argv: list[str] | None = None) -> int:
    """Print every problem of the named notebooks; exit status 1 when there is one."""
    problems = [p for path in (sys.argv[1:] if argv is None else argv)
                for p in hygiene_problems(nbformat.read(path, as_version=4), path)]
    print("\n".join(problems) or "clean")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
