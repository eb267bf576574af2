"""Results store: atomic per-cell files, resume bookkeeping, consolidation that reports bad files by name."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from sdebench.cli import main as cli
from sdebench.errors import ConfigError
from sdebench.store import Store


def _row(i, status="ok"):
    return {"problem": "gauss1d", "sde": "vp", "solver": "em", "schedule": "uniform", "nfe": 4 * (i + 1),
            "seed": 0, "w2_exact": 0.1 / (i + 1), "kl_exact": math.nan, "status": status, "error": ""}


def test_write_read_roundtrip_and_nan(tmp_path):
    st = Store(tmp_path / "s")
    for i in range(3):
        st.write(f"k{i:019d}", {"nfe": 4 * (i + 1)}, _row(i), label="em", sweep="sw")
    assert st.finished() == {f"k{i:019d}" for i in range(3)}
    df, rep = st.consolidate()
    assert rep.problems == [] and len(df) == 3
    assert list(df["nfe"]) == [4, 8, 12]
    assert df["kl_exact"].isna().all()
    assert list(df.columns[:3]) == ["cell_key", "sweep", "label"]
    assert st.status_of("k0000000000000000000") == "ok"
    # no temporary files are left behind by the atomic writes
    assert [p.name for p in st.cells_dir.iterdir() if not p.name.endswith(".json")] == []


def test_bad_files_reported_by_name_and_skipped(tmp_path):
    st = Store(tmp_path / "s")
    st.write("good", {}, _row(0))
    (st.cells_dir / "trunc.json").write_text('{"format": "sdebench-cell", "row": {"sta')
    (st.cells_dir / "foreign.json").write_text(json.dumps({"hello": 1}))
    (st.cells_dir / "notes.txt").write_text("hi")
    (st.cells_dir / ".half.json.abc.tmp").write_text("{")
    doc = json.loads((st.cells_dir / "good.json").read_text())
    (st.cells_dir / "renamed.json").write_text(json.dumps(doc))
    doc["schema"] = 99
    (st.cells_dir / "future.json").write_text(json.dumps({**doc, "key": "future"}))
    (st.cells_dir / "binary.json").write_bytes(b"\xff\xfe\x00")
    df, rep = st.consolidate()
    assert len(df) == 1 and df["cell_key"].iloc[0] == "good"
    reasons = dict(rep.problems)
    assert set(reasons) == {"trunc.json", "foreign.json", "notes.txt", ".half.json.abc.tmp", "renamed.json",
                            "future.json", "binary.json"}
    assert "corrupt JSON" in reasons["trunc.json"]
    assert "foreign" in reasons["foreign.json"] and "foreign" in reasons["notes.txt"]
    assert "interrupted" in reasons[".half.json.abc.tmp"]
    assert "does not match" in reasons["renamed.json"]
    assert "schema" in reasons["future.json"]
    assert all(line.startswith("skipped ") for line in rep.lines())


def test_failed_write_leaves_no_partial_cell(tmp_path, monkeypatch):
    st = Store(tmp_path / "s")

    class Boom(Exception):
        pass

    def bad_replace(src, dst):
        raise Boom()

    monkeypatch.setattr("sdebench.store.os.replace", bad_replace)
    with pytest.raises(Boom):
        st.write("k", {}, _row(0))
    assert list(st.cells_dir.iterdir()) == []


def test_results_command(tmp_path, capsys):
    st = Store(tmp_path / "s")
    for i in range(2):
        st.write(f"k{i}", {}, {**_row(i), "git_commit": "abc", "torch_version": "2", "sdebench_version": "0.1",
                                "device_name": "cpu"}, sweep="sw")
    (st.cells_dir / "junk.json").write_text("not json")
    assert cli(["results", str(tmp_path / "s")]) == 0
    cap = capsys.readouterr()
    assert "junk.json" in cap.err and "2 rows" in cap.out
    df = pd.read_parquet(tmp_path / "s" / "results.parquet")
    assert len(df) == 2 and pd.read_csv(tmp_path / "s" / "results.csv").shape[0] == 2
    assert cli(["results", str(tmp_path / "s"), "--sweep", "other"]) == 2
    assert cli(["results", str(tmp_path / "nowhere")]) == 2


def test_store_not_a_store(tmp_path):
    with pytest.raises(ConfigError, match="not a results store"):
        Store(tmp_path, create=False)
