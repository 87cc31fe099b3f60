"""Progress bars that leave one line in a notebook: every bar of nfrepro is made here.

On a terminal a bar is tqdm's, redrawn in place. Anywhere else (a Jupyter kernel, papermill, a
log file) each redraw would be kept: papermill stores every ``\\r``-refresh as its own output, so a
17-minute sweep left ~45 lines of bar updates in the notebook. There the bar is drawn once, when
it closes: one final line (count, elapsed time and rate).
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


def progress_bar(iterable: Iterable | None = None, *, disable: bool = False,
                 stream: TextIO | None = None, **kwargs: Any) -> tqdm:
    """``tqdm(iterable, **kwargs)`` on ``stream`` (default ``sys.stderr``): live on a terminal,
    one final line elsewhere (:class:`FinalLine`)."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    live = bool(isatty and isatty())
    kwargs.setdefault("leave", True)
    return tqdm(iterable, file=stream if live else FinalLine(stream), disable=disable, **kwargs)
