"""Version stamps recorded with every results row."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

__version__ = "0.1.0"  # re-exported as sdebench.__version__ (pyproject.toml has the same)


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """The commit of the sdebench checkout in use, or '' when not running from a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""
