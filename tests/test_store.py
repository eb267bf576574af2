"""Results store: atomic per-cell files, resume bookkeeping, consolidation that reports bad files by name."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from sdebench.cli import main as cli
from sdebench.errors import ConfigError
from sdebench.run import is_timing
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


def _sweep_file(tmp_path, out):
    f = tmp_path / "s.toml"
    f.write_text(f'name = "heal"\nout = "{out}"\nproblems = ["gauss1d"]\nnfe = [4, 8]\nseeds = [0, 1]\n'
                 'samples = 64\nmetrics = ["w2_exact", "w2"]\nsolvers = ["em", "ddim"]\n')
    return f


def _values(out):
    df = pd.read_parquet(out / "results.parquet")
    df = df.drop(columns=[c for c in df.columns if is_timing(c)])
    return df.sort_values("cell_key").reset_index(drop=True)


def test_rerun_quarantines_damaged_cells_and_recomputes_them(tmp_path, capsys):
    ref_out, out = tmp_path / "ref", tmp_path / "store"
    assert cli(["sweep", str(_sweep_file(tmp_path, ref_out)), "--serial", "--no-report"]) == 0
    ref = _values(ref_out)
    f = _sweep_file(tmp_path, out)
    assert cli(["sweep", str(f), "--serial", "--no-report"]) == 0
    cells = sorted((out / "cells").iterdir())
    assert len(cells) == 8
    trunc, empty, garbled, other_key, other_cfg = cells[:5]
    trunc.write_bytes(trunc.read_bytes()[: trunc.stat().st_size // 2])
    empty.write_bytes(b"")
    raw = bytearray(garbled.read_bytes())
    raw[10:20] = b"\x00\xff" * 5
    garbled.write_bytes(bytes(raw))
    other_key.write_text(cells[7].read_text())  # a valid cell, but of another key
    doc = json.loads(other_cfg.read_text())
    doc["config"]["nfe"] = 999  # a valid cell under its own key, but not this sweep's config for it
    other_cfg.write_text(json.dumps(doc))
    damaged = {p.name for p in cells[:5]}
    capsys.readouterr()
    assert cli(["sweep", str(f), "--serial", "--no-report"]) == 0
    cap = capsys.readouterr()
    assert "ran 5 cells" in cap.out and "3 were already in the store" in cap.out
    moved = [line for line in cap.err.splitlines() if line.startswith("damaged cell ")]
    assert len(moved) == 5 and {line.split()[2] for line in moved} == damaged
    quarantined = sorted((out / "quarantine").iterdir())
    assert len(quarantined) == 5 and {p.name.split("-", 1)[1] for p in quarantined} == damaged
    assert all(str(p) in cap.err for p in quarantined)
    # the store is complete, each cell once, every file valid, values equal to the undamaged run
    assert sorted(p.name for p in (out / "cells").iterdir()) == [p.name for p in cells]
    df, rep = Store(out, create=False).consolidate()
    assert rep.problems == [] and len(df) == 8 and df["cell_key"].is_unique
    healed = _values(out)
    assert healed["cell_key"].tolist() == ref["cell_key"].tolist()
    pd.testing.assert_frame_equal(healed.drop(columns=["sweep"]), ref.drop(columns=["sweep"]))
    # a third run finds nothing to do and moves nothing
    assert cli(["sweep", str(f), "--serial", "--no-report"]) == 0
    cap = capsys.readouterr()
    assert "ran 0 cells" in cap.out and "damaged" not in cap.err
    assert len(list((out / "quarantine").iterdir())) == 5


def test_resume_leaves_foreign_keys_alone(tmp_path):
    st = Store(tmp_path / "s")
    st.write("a", {"nfe": 4}, _row(0))
    st.write("b", {"nfe": 8}, _row(1))
    (st.cells_dir / "c.json").write_text("{")  # not expected by this sweep: reported, not moved
    (st.cells_dir / "d.json").write_text("")
    done, moved = st.resume({"a": {"nfe": 4}, "b": {"nfe": 4}, "d": {"nfe": 4}, "e": {}}, stamp="T")
    assert done == {"a"}
    assert [(n, d.name) for n, _, d in moved] == [("b.json", "T-b.json"), ("d.json", "T-d.json")]
    assert "config differs" in moved[0][1] and "corrupt JSON" in moved[1][1]
    assert sorted(p.name for p in st.cells_dir.iterdir()) == ["a.json", "c.json"]
    # the same name quarantined twice in one second keeps both copies
    st.write("b", {"nfe": 8}, _row(1))
    _, moved = st.resume({"b": {"nfe": 4}}, stamp="T")
    assert moved[0][2].name == "T-1-b.json" and (st.root / "quarantine" / "T-b.json").is_file()
