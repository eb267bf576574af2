"""Writing and reading result tables (parquet or CSV), atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd

from .errors import ConfigError

SUFFIXES = (".parquet", ".csv")


def check_writable(path: str | Path) -> Path:
    """Fail early, with one line, if ``path`` has a bad suffix or its folder cannot be written."""
    p = Path(path)
    if p.suffix.lower() not in SUFFIXES:
        raise ConfigError(f"output {str(p)!r} must end in .parquet or .csv")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.exists():
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create output folder {str(parent)!r}: {exc.strerror}") from None
    if not os.access(parent, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise ConfigError(f"output path {str(p)!r} is not writable")
    return p


def write_table(df: pd.DataFrame, path: str | Path) -> Path:
    """Write ``df`` to .parquet or .csv through a temporary file and an atomic rename."""
    p = check_writable(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=p.parent)
    os.close(fd)
    try:
        if p.suffix.lower() == ".parquet":
            df.to_parquet(tmp, index=False)
        else:
            df.to_csv(tmp, index=False)
        os.replace(tmp, p)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return p


def read_table(path: str | Path) -> pd.DataFrame:
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"results file {str(p)!r} does not exist")
    try:
        if p.suffix.lower() == ".parquet":
            return pd.read_parquet(p)
        if p.suffix.lower() == ".csv":
            return pd.read_csv(p)
    except Exception as exc:  # pyarrow / parser errors: report the file, not a traceback
        raise ConfigError(f"results file {str(p)!r} is corrupt or not a results table ({type(exc).__name__})") from None
    raise ConfigError(f"results file {str(p)!r} must end in .parquet or .csv")
