"""Logging of the step modules: INFO and up on stderr, which each rule sends to its log file.

On a terminal, progress bars redraw in place as usual. When stderr is a file (a job's log, a SLURM
output file), `setup_logging()` puts a ProgressLines writer in front of it: a progress bar's `\\r`
refreshes become whole lines, at most one per bar every PROGRESS_INTERVAL_S seconds or
PROGRESS_STEP_PERCENT percent, and always its first and final state; a log record written while a
bar is shown starts a line of its own instead of being glued to the bar. Every tqdm bar of the steps
writes to sys.stderr by default, so no call site needs to know.
"""

from __future__ import annotations

import atexit
import logging
import re
import sys
import threading
import time

FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"
PROGRESS_INTERVAL_S = 30.0  # a bar is written at most this often, unless it moved PROGRESS_STEP_PERCENT
PROGRESS_STEP_PERCENT = 10

_CURSOR_CODES = re.compile(r"\x1b\[\d*[A-DJK]")  # tqdm moves the cursor for nested bars
_PERCENT = re.compile(r"(\d{1,3})%\|")
_COMPLETE = re.compile(r"\| *(\S+)/(\S+) \[")  # "| 2000/2000 [": done when both counts match
_TIMING = re.compile(r"\s*\[[^\[\]]*\]\s*$")  # "[00:01<00:02, 4.86it/s]": changes every refresh


class _Bar:
    """What has been written of one progress bar (bars are told apart by their description)."""

    def __init__(self):
        self.written_at = None  # monotonic time of the last line written
        self.written_percent = None
        self.written = None  # the last state written, without its timing
        self.pending = None  # the newest state not written yet


class ProgressLines:
    """A text stream in front of `stream` that writes whole lines only: log records and other text
    line by line, progress-bar refreshes (text after a `\\r`) as rate-limited lines of their own."""

    def __init__(self, stream, interval_s: float = PROGRESS_INTERVAL_S,
                 step_percent: int = PROGRESS_STEP_PERCENT, clock=time.monotonic):
        self.stream = stream
        self.interval_s = interval_s
        self.step_percent = step_percent
        self.clock = clock
        self._line = ""  # the text of the line being written
        self._in_bar = False  # the line being written is a bar state (it followed a \r)
        self._bars: dict[str, _Bar] = {}
        self._lock = threading.RLock()

    # -- the stream interface ------------------------------------------------------------------

    def write(self, text: str) -> int:
        if not text:
            return 0
        with self._lock:
            clean = _CURSOR_CODES.sub("", text)
            if self._in_bar and clean[:1] not in ("\r", "\n"):
                # other text while a bar is shown (a log record): the bar state ends here
                self._bar_state(self._line, final=False)
                self._line, self._in_bar = "", False
            for piece in re.split(r"(\r|\n)", clean):
                if piece == "\r":
                    self._end_of_refresh()
                elif piece == "\n":
                    self._end_of_line()
                else:
                    self._line += piece
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def close(self) -> None:
        """Write what is pending (the last state of each bar, an unfinished line); the stream is
        left open: it is the process's stderr."""
        with self._lock:
            if self._in_bar:
                self._bar_state(self._line, final=False)
            elif self._line:
                self._emit(self._line)
            self._line, self._in_bar = "", False
            for bar in self._bars.values():
                if bar.pending is not None:
                    self._write_bar(bar, bar.pending)
            try:
                self.stream.flush()
            except ValueError:  # closed at exit already
                pass

    def __getattr__(self, name):  # encoding, errors, fileno, buffer, ...: the stream's
        return getattr(self.stream, name)

    # -- lines and bar states ------------------------------------------------------------------

    def _end_of_refresh(self) -> None:
        if self._in_bar:
            self._bar_state(self._line, final=False)
        elif self._line:
            self._emit(self._line)  # text before a \r would be overwritten on a terminal: keep it
        self._line, self._in_bar = "", True

    def _end_of_line(self) -> None:
        if self._in_bar:
            self._bar_state(self._line, final=True)
        else:
            self._emit(self._line)
        self._line, self._in_bar = "", False

    def _bar_state(self, state: str, final: bool) -> None:
        state = state.rstrip()
        if not state:
            # a bar cleared (leave=False): its last state is its final one
            for bar in self._bars.values():
                if bar.pending is not None:
                    self._write_bar(bar, bar.pending)
            return
        key = state.split(": ", 1)[0] if ": " in state else ""
        bar = self._bars.setdefault(key, _Bar())
        percent = _PERCENT.search(state)
        percent = int(percent.group(1)) if percent else None
        due = (
            final
            or bar.written_at is None
            or _complete(state)
            or (percent is not None and bar.written_percent is not None
                and percent < bar.written_percent)  # a bar of the same name started again
            or self.clock() - bar.written_at >= self.interval_s
            or (percent is not None and bar.written_percent is not None
                and percent >= bar.written_percent + self.step_percent)
        )
        if due:
            self._write_bar(bar, state, percent)
        else:
            bar.pending = state

    def _write_bar(self, bar: _Bar, state: str, percent: int | None = None) -> None:
        bar.pending = None
        progress = _TIMING.sub("", state)
        if progress == bar.written:  # the same count again (tqdm redraws a finished bar on close)
            return
        if percent is None:
            match = _PERCENT.search(state)
            percent = int(match.group(1)) if match else None
        bar.written, bar.written_at, bar.written_percent = progress, self.clock(), percent
        self._emit(state)

    def _emit(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()


def _complete(state: str) -> bool:
    counts = _COMPLETE.search(state)
    return bool(counts) and counts.group(1) == counts.group(2)


def setup_logging() -> None:
    """INFO and up on stderr, one record per line; when stderr is not a terminal, progress bars
    written to it become rate-limited whole lines (ProgressLines)."""
    stderr = sys.stderr
    if stderr is not None and not isinstance(stderr, ProgressLines) and not _isatty(stderr):
        sys.stderr = ProgressLines(stderr)
        atexit.register(sys.stderr.close)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format=FORMAT)


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def timed(what: str, n_items: int, function, *args, unit: str = "utterance", **kwargs):
    """function(*args, **kwargs), logging its time per item ("WHAT: 0.123 s per utterance")."""
    start = time.perf_counter()
    result = function(*args, **kwargs)
    logging.getLogger(__name__).info("%s: %.3f s per %s", what, (time.perf_counter() - start) / max(n_items, 1),
                                     unit)
    return result
