"""Progress bars that leave one line in a notebook: every bar of nfrepro is made here.

On a terminal a bar is tqdm's, redrawn in place. In a Jupyter kernel (JupyterLab, papermill) a
stream would keep every redraw: papermill stores each ``\\r``-refresh, so a 17-minute sweep left
~45 lines of bar updates in the notebook. There the bar is one display output updated in place
(:class:`DisplayLine`): live while a reader watches, one final line in the saved notebook.
Anywhere else (a log file) the bar is drawn once, when it closes (:class:`FinalLine`).
"""
from __future__ import annotations

import sys
from typing import Any, Iterable, TextIO

from tqdm import (
    tqdm,  # plain text bars: no ipywidgets needed in a notebook, no TqdmWarning
)


class FinalLine:
    """A file for tqdm that passes on only the last frame of each bar, when the bar ends its line.

    tqdm draws ``\\r<frame>`` at each refresh and ``\\n`` when it closes; what precedes the
    newline is reduced to the text after its last ``\\r`` (what a terminal would show).
    """

    def __init__(self, stream: TextIO):
        self.stream = stream
        self._pending = ""

    @property
    def encoding(self) -> str | None:  # tqdm draws unicode blocks only on a stream that takes them
        return getattr(self.stream, "encoding", None)

    def write(self, text: str) -> int:
        self._pending += text
        while "\n" in self._pending:
            line, self._pending = self._pending.split("\n", 1)
            line = line.rsplit("\r", 1)[-1].rstrip()
            if line:
                self.stream.write(line + "\n")
                self.stream.flush()
        return len(text)

    def flush(self) -> None:
        """Nothing: a frame is written only when its bar ends the line."""


class DisplayLine:
    """A file for tqdm that shows the current frame of a bar in one Jupyter display output,
    replaced at each refresh (``display_id`` updates), so the saved notebook holds its last frame."""

    encoding = "utf-8"

    def __init__(self, display: Any = None):
        if display is None:
            from IPython.display import display
        self.handle = display({"text/plain": ""}, raw=True, display_id=True)
        self._frame = ""

    def write(self, text: str) -> int:
        for part in text.replace("\n", "\r").split("\r"):
            if part.strip():
                self._frame = part.rstrip()
        self.handle.update({"text/plain": self._frame}, raw=True)
        return len(text)

    def flush(self) -> None:
        """Nothing to flush: each write updates the display."""


def in_jupyter_kernel() -> bool:
    """Whether this process is a Jupyter kernel (JupyterLab, papermill, nbval)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return type(shell).__name__ == "ZMQInteractiveShell"


def progress_bar(iterable: Iterable | None = None, *, disable: bool = False,
                 stream: TextIO | None = None, **kwargs: Any) -> tqdm:
    """``tqdm(iterable, **kwargs)``: live on a terminal; in a Jupyter kernel one display output
    updated in place (:class:`DisplayLine`); one final line elsewhere (:class:`FinalLine`).
    ``stream`` (default ``sys.stderr``) picks a stream explicitly and skips the kernel's display."""
    kwargs.setdefault("leave", True)
    if stream is None and not disable and in_jupyter_kernel():
        return tqdm(iterable, file=DisplayLine(), disable=disable, **kwargs)
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    live = bool(isatty and isatty())
    return tqdm(iterable, file=stream if live else FinalLine(stream), disable=disable, **kwargs)
