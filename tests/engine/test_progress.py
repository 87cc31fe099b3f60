from __future__ import annotations

import io

from nfrepro.engine.progress import FinalLine, progress_bar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_outside_a_terminal_a_bar_leaves_one_final_line():
    """papermill keeps every refresh of a bar: a notebook's bar is written once, when it ends."""
    stream = io.StringIO()
    bar = progress_bar(total=50, desc="runs", stream=stream, mininterval=0, miniters=1)
    for _ in range(50):
        bar.update()
    bar.close()
    for _ in progress_bar(range(3), desc="sweep", stream=stream, mininterval=0):
        pass
    lines = stream.getvalue().split("\n")
    assert "\r" not in stream.getvalue() and lines[-1] == "" and len(lines) == 3
    assert lines[0].startswith("runs: 100%") and "50/50" in lines[0]
    assert lines[1].startswith("sweep: 100%") and "3/3" in lines[1]


def test_on_a_terminal_a_bar_redraws_in_place():
    stream = _Terminal()
    for _ in progress_bar(range(20), desc="runs", stream=stream, mininterval=0, miniters=1):
        pass
    assert stream.getvalue().count("\r") > 10 and stream.getvalue().endswith("\n")


def test_a_disabled_bar_writes_nothing():
    stream = io.StringIO()
    for _ in progress_bar(range(3), stream=stream, disable=True):
        pass
    assert stream.getvalue() == ""


def test_final_line_keeps_what_a_terminal_would_show():
    stream = io.StringIO()
    out = FinalLine(stream)
    out.write("\ra 1")
    out.write("\ra 2")
    assert stream.getvalue() == ""  # nothing until the bar ends its line
    out.write("\n\r\rb 9\n")
    assert stream.getvalue() == "a 2\nb 9\n"


class _Handle:
    def __init__(self):
        self.shown = []

    def update(self, data, raw=False):
        assert raw
        self.shown.append(data["text/plain"])


def test_in_a_kernel_a_bar_is_one_display_updated_in_place():
    """JupyterLab sees the bar move; the saved notebook keeps its last frame only."""
    from nfrepro.engine.progress import DisplayLine
    handle = _Handle()
    line = DisplayLine(display=lambda data, raw, display_id: handle)
    from tqdm import tqdm
    for _ in tqdm(range(30), desc="runs", file=line, mininterval=0, miniters=1):
        pass
    assert len(handle.shown) > 3  # live: one update per redraw
    assert handle.shown[-1].startswith("runs: 100%") and "30/30" in handle.shown[-1]
    assert all("\r" not in s and "\n" not in s for s in handle.shown)
