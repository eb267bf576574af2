"""Sweep progress: a tqdm bar (cells done/total, failures, ETA) on a terminal, plain log lines otherwise.

The ETA of the log lines is the rate measured from the first cell run here to the latest one (the time
to the first cell is start-up: workers, imports, first-call warm-up, and would make the first estimate
absurd), so it is printed as ``ETA --`` until at least :data:`ETA_MIN_CELLS` cells have run and
:data:`ETA_MIN_SECONDS` have passed since the first of them. The tqdm bar's clock is likewise restarted
at the first cell (its elapsed time then counts from there).
"""

from __future__ import annotations

import sys
import time

ETA_MIN_CELLS = 3  # cells run here before an ETA is printed (two intervals after the first cell)
ETA_MIN_SECONDS = 2.0  # and seconds since the first cell run here


def _fmt(seconds: float) -> str:
    if seconds != seconds or seconds == float("inf"):
        return "--"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class Progress:
    """``update(status)`` once per finished cell (status 'error' counts as a failure; 'diverged' is a
    result). ``skipped`` cells (already in the store) count as done
    but not in the rate. ``mode``: "auto" (bar if the stream is a tty), "bar", "log" or "quiet"."""

    def __init__(self, total: int, skipped: int = 0, stream=None, mode: str = "auto", name: str = "sweep",
                 log_every_s: float = 10.0):
        self.stream = stream or sys.stderr
        self.total, self.skipped, self.name = total, skipped, name
        self.done = skipped
        self.failed = 0
        self.start = time.monotonic()
        self.first = None  # time the first cell run here finished
        self.log_every_s = log_every_s
        self._last_log = -1e9
        if mode == "auto":
            mode = "bar" if getattr(self.stream, "isatty", lambda: False)() else "log"
        self.mode = mode
        self.bar = None
        if mode == "bar":
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=skipped, desc=name, unit="cell", file=self.stream,
                            dynamic_ncols=True)
        elif mode == "log":
            self._line(f"{name}: {total} cells, {skipped} already in the store, {total - skipped} to run")

    def _line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def eta(self) -> float:
        """Seconds left at the rate since the first cell run here; NaN until that rate is measured
        (ETA_MIN_CELLS cells run and ETA_MIN_SECONDS since the first); 0 when nothing is left."""
        ran = self.done - self.skipped
        left = self.total - self.done
        if left <= 0:
            return 0.0
        if self.first is None or ran < ETA_MIN_CELLS:
            return float("nan")
        since = time.monotonic() - self.first
        if since < ETA_MIN_SECONDS:
            return float("nan")
        return since / (ran - 1) * left

    def status_line(self) -> str:
        pct = 100.0 * self.done / self.total if self.total else 100.0
        return (f"{self.name}: {self.done}/{self.total} cells ({pct:.0f}%), {self.failed} failed, "
                f"{_fmt(time.monotonic() - self.start)} elapsed, ETA {_fmt(self.eta())}")

    def update(self, status: str = "ok") -> None:
        self.done += 1
        if self.first is None:
            self.first = time.monotonic()
            if self.bar is not None:  # the bar's clock (rate, ETA) starts at the first cell, not at start-up
                self.bar.unpause()
        if status == "error":
            self.failed += 1
        if self.bar is not None:
            self.bar.set_postfix(failed=self.failed, refresh=False)
            self.bar.update(1)
        elif self.mode == "log":
            now = time.monotonic()
            if now - self._last_log >= self.log_every_s or self.done == self.total:
                self._last_log = now
                self._line(self.status_line())

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.mode == "log":
            self._line(f"{self.name}: finished {self.done}/{self.total} cells, {self.failed} failed, "
                       f"{_fmt(time.monotonic() - self.start)}")
