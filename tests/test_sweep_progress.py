"""Progress display: plain log lines when the stream is not a terminal, a tqdm bar when it is."""

from __future__ import annotations

import io

from sdebench.progress import Progress


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_log_lines_when_not_a_tty():
    s = io.StringIO()
    p = Progress(4, skipped=1, stream=s, name="sw", log_every_s=0.0)
    assert p.mode == "log"
    p.update("ok")
    p.update("error")
    p.update("diverged")
    p.close()
    lines = s.getvalue().splitlines()
    assert lines[0] == "sw: 4 cells, 1 already in the store, 3 to run"
    assert lines[1].startswith("sw: 2/4 cells (50%), 0 failed")
    assert lines[2].startswith("sw: 3/4 cells (75%), 1 failed")
    assert lines[3].startswith("sw: 4/4 cells (100%), 1 failed") and "ETA 0s" in lines[3]
    assert lines[-1].startswith("sw: finished 4/4 cells, 1 failed")
    assert "\r" not in s.getvalue()


def test_log_lines_are_rate_limited():
    s = io.StringIO()
    p = Progress(50, stream=s, name="sw", log_every_s=3600)
    for _ in range(50):
        p.update("ok")
    p.close()
    # header, the first update, the last cell (always logged) and the closing line
    assert len(s.getvalue().splitlines()) == 4


def test_bar_on_a_tty():
    s = _Tty()
    p = Progress(3, stream=s, name="sw")
    assert p.mode == "bar"
    for st in ("ok", "error", "ok"):
        p.update(st)
    p.close()
    out = s.getvalue()
    assert "3/3" in out and "failed=1" in out and "\r" in out


def test_eta_from_the_rate_of_cells_run_here():
    p = Progress(10, skipped=5, stream=io.StringIO(), mode="quiet")
    assert p.eta() != p.eta()  # nan before any cell ran
    p.start -= 10.0
    p.update("ok")
    assert 35.0 < p.eta() < 45.0  # 10 s for one cell, 4 left
