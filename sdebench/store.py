"""Results store: one JSON file per finished cell, written atomically under the cell's key.

Layout of a store folder::

    OUT/cells/<key>.json        one finished cell: {"format", "schema", "key", "label", "sweep", "config", "row"}
    OUT/manifest.json           the last sweep run into this store: name, cell keys, skipped combinations
    OUT/quarantine/             damaged cell files moved aside by a re-run, as <UTC time>-<key>.json
    OUT/results.parquet/.csv    consolidated table (``sdebench results OUT``)

A cell file is written to a temporary name in the same folder and renamed over its final name
(``os.replace``), so a crash never leaves a half-written cell under a key. ``finished()`` lists the
keys present. Before a re-run skips a cell, ``resume()`` reads its file: one that does not parse, is not
an sdebench cell of this schema, names another key, has no row status or holds another config than the
sweep's is treated as missing: it is moved into ``quarantine/`` (never deleted) and the cell recomputed.
Consolidation reads every file, reports corrupt or foreign files by name (and leftover temporary files of
interrupted writes) and skips them.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ConfigError

if TYPE_CHECKING:  # pandas loads where a table is made or read
    import pandas as pd

__all__ = ["Store", "ConsolidateReport", "CELL_FORMAT", "SCHEMA_VERSION"]

CELL_FORMAT = "sdebench-cell"
SCHEMA_VERSION = 1
_REQUIRED = ("format", "schema", "key", "config", "row")


def _clean(v):
    """JSON-safe value: NaN/inf become null, tuples become lists, unknown objects their str."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if v is None or isinstance(v, (str, int, bool)):
        return v
    if hasattr(v, "item"):  # numpy / torch scalars
        return _clean(v.item())
    return str(v)


def atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@dataclass
class ConsolidateReport:
    rows: int = 0
    problems: list = field(default_factory=list)  # (file name, reason)

    def lines(self) -> list[str]:
        return [f"skipped {name}: {reason}" for name, reason in self.problems]


class Store:
    def __init__(self, root: str | Path, create: bool = True):
        self.root = Path(root)
        self.cells_dir = self.root / "cells"
        if create:
            try:
                self.cells_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"cannot create results folder {str(self.root)!r}: {exc.strerror}") from None
            if not os.access(self.cells_dir, os.W_OK):
                raise ConfigError(f"results folder {str(self.root)!r} is not writable")
        elif not self.cells_dir.is_dir():
            raise ConfigError(f"{str(self.root)!r} is not a results store (no cells/ folder)")

    def path(self, key: str) -> Path:
        return self.cells_dir / f"{key}.json"

    def finished(self) -> set[str]:
        """Keys of the cell files present (not validated; ``resume()`` validates before a re-run skips)."""
        return {p.name[:-5] for p in self.cells_dir.iterdir()
                if p.name.endswith(".json") and not p.name.startswith(".")}

    def resume(self, expected: dict[str, dict], stamp: str | None = None) -> tuple[set[str], list]:
        """Which of the ``expected`` cells (key -> config dict) are validly stored, for a re-run to skip.

        A present file that fails ``_read`` or whose config differs from the expected one is moved to
        ``quarantine/<stamp>-<name>`` and its key left out, so that the cell is recomputed. Returns
        ``(done keys, [(file name, reason, new path), ...])``."""
        present = self.finished() & set(expected)
        stamp = stamp or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        done, moved = set(), []
        for key in sorted(present):
            p = self.path(key)
            row, reason = self._read(p)
            if row is not None:
                want = json.loads(json.dumps(_clean(expected[key]), sort_keys=True))
                if row.get("_config") != want:
                    reason = "config differs from the sweep's config for this key"
            if reason is None:
                done.add(key)
            else:
                moved.append((p.name, reason, self._quarantine(p, stamp)))
        return done, moved

    def _quarantine(self, p: Path, stamp: str) -> Path:
        qdir = self.root / "quarantine"
        dest = qdir / f"{stamp}-{p.name}"
        n = 1
        while dest.exists():
            dest = qdir / f"{stamp}-{n}-{p.name}"
            n += 1
        try:
            qdir.mkdir(exist_ok=True)
            os.replace(p, dest)
        except OSError as exc:
            raise ConfigError(f"cannot move the damaged cell {str(p)!r} to {str(qdir)!r}: {exc.strerror}") from None
        return dest

    def status_of(self, key: str) -> str | None:
        try:
            return json.loads(self.path(key).read_text())["row"]["status"]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def write(self, key: str, config: dict, row: dict, label: str = "", sweep: str = "") -> Path:
        doc = {"format": CELL_FORMAT, "schema": SCHEMA_VERSION, "key": key, "label": label, "sweep": sweep,
               "config": _clean(config), "row": _clean(row)}
        p = self.path(key)
        atomic_write_text(p, json.dumps(doc, sort_keys=True))
        return p

    def write_manifest(self, sweep_name: str, keys: list[str], skipped: list, source: str = "",
                       report: dict | None = None) -> None:
        doc = {"format": "sdebench-manifest", "schema": SCHEMA_VERSION, "sweep": sweep_name, "source": source,
               "cells": len(keys), "keys": keys,
               "skipped": [dict(zip(("problem", "sde", "solver", "nfe", "reason"), s)) for s in skipped]}
        if report:  # report options of the sweep file (gaussian_analogue)
            doc["report"] = report
        atomic_write_text(self.root / "manifest.json", json.dumps(doc, indent=1))

    def manifest(self) -> dict | None:
        p = self.root / "manifest.json"
        try:
            return json.loads(p.read_text())
        except (OSError, ValueError):
            return None

    # ---- reading -------------------------------------------------------------------------------
    def _read(self, p: Path):
        """(row dict, None) for a valid cell file, else (None, reason)."""
        try:
            doc = json.loads(p.read_text())
        except UnicodeDecodeError:
            return None, "not a text file"
        except ValueError as exc:
            return None, f"corrupt JSON ({exc.msg} at line {exc.lineno})"
        except OSError as exc:
            return None, f"unreadable ({exc.strerror})"
        if not isinstance(doc, dict) or doc.get("format") != CELL_FORMAT:
            return None, "foreign file (not an sdebench cell)"
        missing = [k for k in _REQUIRED if k not in doc]
        if missing:
            return None, f"cell file missing {', '.join(missing)}"
        if doc["schema"] != SCHEMA_VERSION:
            return None, f"cell schema {doc['schema']!r}, this sdebench reads {SCHEMA_VERSION}"
        if doc["key"] != p.name[:-5]:
            return None, f"key {doc['key']!r} does not match the file name"
        if not isinstance(doc["row"], dict) or not isinstance(doc["row"].get("status"), str):
            return None, "cell row has no status"
        if not isinstance(doc["config"], dict):
            return None, "cell config is not a table"
        row = dict(doc["row"])
        row["cell_key"] = doc["key"]
        row["label"] = doc.get("label") or row.get("solver", "")
        row["sweep"] = doc.get("sweep", "")
        row["store_schema"] = doc["schema"]
        row["_config"] = doc["config"]
        return row, None

    def consolidate(self) -> tuple[pd.DataFrame, ConsolidateReport]:
        """Every valid cell as one DataFrame (sorted by its key columns); problems reported, not fatal."""
        import pandas as pd

        rows, rep = [], ConsolidateReport()
        for p in sorted(self.cells_dir.iterdir()):
            if p.is_dir():
                rep.problems.append((p.name, "unexpected folder"))
                continue
            if p.name.endswith(".tmp"):
                rep.problems.append((p.name, "temporary file of an interrupted write"))
                continue
            if not p.name.endswith(".json"):
                rep.problems.append((p.name, "foreign file (not a .json cell)"))
                continue
            row, reason = self._read(p)
            if row is None:
                rep.problems.append((p.name, reason))
            else:
                del row["_config"]
                rows.append(row)
        df = pd.DataFrame(rows)
        if len(df):
            keys = [c for c in ("sweep", "problem", "sde", "label", "schedule", "nfe", "seed") if c in df.columns]
            df = df.sort_values(keys, kind="stable").reset_index(drop=True)
            front = [c for c in ("cell_key", "sweep", "label") if c in df.columns]
            df = df[front + [c for c in df.columns if c not in front]]
        rep.rows = len(df)
        return df, rep
