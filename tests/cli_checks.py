"""Shared assertion of the CLI's bad-input contract (imported by the test files; not a test module)."""

from __future__ import annotations

from sdebench.cli import main


def fails_one_line(capsys, argv, match):
    """``sdebench ARGV`` exits 2 with one line on stderr, no traceback, containing ``match``."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [ln for ln in err.strip().splitlines() if ln]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert match in lines[0], lines[0]
