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
    p.start -= 10.0  # 10 s of start-up before the first cell: not part of the rate
    p.update("ok")
    assert p.eta() != p.eta()  # one cell measures no rate
    p.update("ok")
    p.update("ok")
    p.first -= 4.0  # two cells 2 s apart after the first; 2 left
    assert 3.5 < p.eta() < 4.5
    p.update("ok")
    p.update("ok")
    assert p.eta() == 0.0


def test_no_eta_from_the_first_cell_of_a_slow_start():
    """A 50 s sweep whose first cell lands after 7 s of worker start-up printed "ETA 1h06m01s"."""
    s = io.StringIO()
    p = Progress(540, stream=s, name="quick", log_every_s=0.0)
    p.start -= 7.0
    p.update("ok")
    first = s.getvalue().splitlines()[1]
    assert first.startswith("quick: 1/540 cells") and first.endswith("ETA --")
    for _ in range(5):  # a burst of cells right after the first: still no measured rate
        p.update("ok")
    assert s.getvalue().splitlines()[-1].endswith("ETA --")
    p.first -= 2.5  # 5 more cells in 2.5 s: 0.5 s per cell, 534 left
    p.update("ok")
    line = s.getvalue().splitlines()[-1]
    assert line.startswith("quick: 7/540 cells"), line
    eta = line.rsplit("ETA ", 1)[1]
    assert eta.startswith(("3m", "4m")), line  # 2.5 s / 6 intervals * 533 cells = 3m42s


def test_bar_rate_does_not_count_the_start_up():
    s = _Tty()
    p = Progress(540, stream=s, name="sw")
    p.bar.start_t -= 3600.0  # an hour of start-up before the first cell
    p.bar.last_print_t -= 3600.0
    p.update("ok")
    rate = p.bar.format_dict["rate"]
    elapsed = p.bar.format_dict["elapsed"]
    assert elapsed < 60.0 and (rate is None or rate > 1.0 / 60.0), (elapsed, rate)
    p.close()
