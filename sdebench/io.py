"""Output paths and result tables: every output is checked before any work starts, written atomically,
and rescued to a fallback file if the write still fails after the work is done.

* :func:`check_output_file` / :func:`check_output_dir`: one-line :class:`ConfigError` naming the path and
  the reason (a folder where a file is wanted, a file where a folder is wanted, a parent that is a file,
  a folder that cannot be written), found by actually creating and removing a temporary file in the
  nearest existing folder (``os.access`` says yes to root everywhere, even under ``/proc``). Nothing is
  created by a check.
* :func:`write_table` / :func:`write_text`: temporary file + atomic rename. If that fails (the disk filled
  up, the folder went away, the path became a folder while the work ran), the content goes to
  :func:`rescue_path` and the ConfigError names both paths: nothing computed is lost.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ConfigError

if TYPE_CHECKING:  # pandas loads where a table is made or read
    import pandas as pd

SUFFIXES = (".parquet", ".csv")
RESCUE_DIR = Path("runs") / "rescued"


def _nearest_folder(p: Path, shown: str) -> Path:
    """The nearest existing ancestor of ``p`` (``p`` itself excluded); a ConfigError if it is not a folder."""
    q = p.parent
    while not q.exists() and q != q.parent:
        q = q.parent
    if not q.is_dir():
        raise ConfigError(f"cannot write {shown!r}: {str(q)!r} is a file, not a folder")
    return q


def _probe(folder: Path, shown: str) -> None:
    try:
        fd, tmp = tempfile.mkstemp(prefix=".sdebench-probe.", dir=folder)
    except OSError as exc:
        raise ConfigError(f"cannot write {shown!r}: folder {str(folder)!r} is not writable "
                          f"({exc.strerror or type(exc).__name__})") from None
    os.close(fd)
    os.unlink(tmp)


def check_output_file(path: str | Path, suffixes: tuple | None = SUFFIXES) -> Path:
    """Fail early, with one line, unless ``path`` can be written as a file (with one of ``suffixes``)."""
    p = Path(path)
    shown = str(path)
    if suffixes and p.suffix.lower() not in suffixes:
        raise ConfigError(f"output {shown!r} must end in {' or '.join(suffixes)}")
    if p.is_dir():
        raise ConfigError(f"cannot write {shown!r}: it is an existing folder, not a file")
    if p.exists() and not p.is_file():
        raise ConfigError(f"cannot write {shown!r}: it exists and is not a regular file")
    folder = p.parent if p.parent.is_dir() else _nearest_folder(p, shown)
    _probe(folder, shown)
    return p


def check_output_dir(path: str | Path) -> Path:
    """Fail early, with one line, unless ``path`` is (or can be created as) a writable folder."""
    p = Path(path)
    shown = str(path)
    if p.exists() and not p.is_dir():
        raise ConfigError(f"cannot write into {shown!r}: it is a file, not a folder")
    _probe(p if p.is_dir() else _nearest_folder(p, shown), shown)
    return p


def check_writable(path: str | Path) -> Path:
    """A results table (.parquet or .csv) that can be written: :func:`check_output_file`."""
    return check_output_file(path, SUFFIXES)


def rescue_path(path: str | Path, suffix: str) -> Path:
    """A fresh fallback file for the content meant for ``path``: under ./runs/rescued/, else the temp folder."""
    stem = Path(path).stem or "output"
    name = f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    for folder in (RESCUE_DIR, Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=name + "-", suffix=suffix, dir=folder)
            os.close(fd)
            return Path(tmp)
        except OSError:
            continue
    raise ConfigError(f"cannot write {str(path)!r} and no fallback folder is writable")


def _atomic(p: Path, write) -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, p)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _failed(path, exc: BaseException) -> str:
    reason = getattr(exc, "strerror", None) or (str(exc).splitlines() or [type(exc).__name__])[0]
    return f"cannot write {str(path)!r} ({reason})"


def write_table(df: pd.DataFrame, path: str | Path) -> Path:
    """Write ``df`` to .parquet or .csv through a temporary file and an atomic rename. If that fails, the
    rows are written as CSV to :func:`rescue_path` and a ConfigError names the fallback file."""
    p = Path(path)
    if p.suffix.lower() not in SUFFIXES:
        raise ConfigError(f"output {str(p)!r} must end in .parquet or .csv")

    def write(tmp):
        if p.suffix.lower() == ".parquet":
            df.to_parquet(tmp, index=False)
        else:
            df.to_csv(tmp, index=False)

    try:
        _atomic(p, write)
    except Exception as exc:  # OSError, or pyarrow refusing a column: keep the rows either way
        saved = rescue_path(p, ".csv")
        df.to_csv(saved, index=False)
        raise ConfigError(f"{_failed(p, exc)}; the {len(df)} rows were saved to {saved}") from None
    return p


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` atomically; on failure save it to :func:`rescue_path` and raise a ConfigError naming it."""
    p = Path(path)

    def write(tmp):
        with open(tmp, "w") as fh:
            fh.write(text)

    try:
        _atomic(p, write)
    except Exception as exc:
        saved = rescue_path(p, p.suffix or ".txt")
        saved.write_text(text)
        raise ConfigError(f"{_failed(p, exc)}; its content was saved to {saved}") from None
    return p


def read_table(path: str | Path) -> pd.DataFrame:
    import pandas as pd

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
