"""The peers report (issue 15) through ``sdebench report --peers``, path_err through a diffusers scheduler on
gmm2d-ring8, and ``sdebench report`` on a store whose only error metric is path_err."""

from __future__ import annotations

import math

import pandas as pd
import pytest

import sdebench.peers_report as peers
from sdebench.cli import main
from sdebench.run import CellConfig, run_cell

DPM = "diffusers:DPMSolverMultistepScheduler"


def _rows(problem, metric, labels, scale, null=None):
    rows = []
    for k, lab in enumerate(labels):
        for sched in ("native", "logsnr"):
            for n in peers.NFES:
                r = {"problem": problem, "sde": "vp", "solver": DPM, "label": lab, "schedule": sched, "nfe": n,
                     "seed": 0, "status": "ok", "t_end": 0.0 if sched == "native" else 1e-3,
                     "solver_dtype": "float32", metric: scale * (k + 1) / n}
                if null is not None:
                    r[f"{metric}_null"] = null
                rows.append(r)
    return rows


@pytest.fixture
def stores(tmp_path):
    a, d = tmp_path / "analytic", tmp_path / "digits"
    a.mkdir()
    d.mkdir()
    labs = ["DPM++2M (default)", "UniPC-3 (rec: order 3)"]
    pd.DataFrame(_rows("gauss1d", "w2_exact", labs, 1.0) + _rows("gmm2d-ring8", "path_err", labs, 2.0, 1e-9)
                 + _rows("gmm2d-ring8", "weak_err", labs, 3.0, 0.05)).to_csv(a / "results.csv", index=False)
    pd.DataFrame(_rows("digits", "path_err", labs, 4.0, 1e-6)).to_csv(d / "results.csv", index=False)
    return a, d


def test_cli_writes_peers_report(stores, tmp_path, monkeypatch, capsys):
    """`sdebench report A --peers D --out X.md` writes the report with the rows' values in the gmm2d-ring8
    path_err / weak_err tables and the figure beside it. The live exact checks on gauss1d (about 30 s) are
    replaced here: this test is about the CLI path and the tables from the store."""
    monkeypatch.setattr(peers, "same_grid_table", lambda: ("SAME\n", {}))
    monkeypatch.setattr(peers, "anomalies", lambda df, same: "ANOMALIES\n")
    a, d = stores
    out = tmp_path / "rep" / "peers.md"
    out.parent.mkdir()
    assert main(["report", str(a), "--peers", str(d), "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    md = out.read_text()
    assert "sdebench report results/peers/analytic --peers results/peers/digits" in md
    ring = md.split("## gmm2d-ring8: path error")[1].split("##")[0]
    # UniPC-3 row: 2 * 2 / n at n = 5, 10, 20, 50
    assert "| UniPC-3 (rec: order 3) | native | 0.8 | 0.4 | 0.2 | 0.08 | float32 | 0 |" in ring
    weak = md.split("## gmm2d-ring8: weak error")[1].split("##")[0]
    assert "floor weak_err_null 0.05" in md and "| DPM++2M (default) | logsnr | 0.6 | 0.3 | 0.15 | 0.06 |" in weak
    assert "| DPM++2M (default) | logsnr | 0.8 | 0.4 | 0.2 | 0.08 |" in md.split("## digits")[1]
    assert (out.parent / "peers" / "error_vs_nfe.png").stat().st_size > 10_000


@pytest.mark.parametrize("which,needle", [
    ("missing", "must be a sweep store folder"),
    ("empty", "holds no results.parquet or results.csv"),
    ("badout", "must end in .md"),
])
def test_cli_peers_bad_input_one_line_exit_2(stores, tmp_path, which, needle, capsys):
    a, d = stores
    out = tmp_path / "peers.md"
    if which == "missing":
        d = tmp_path / "nope"
    elif which == "empty":
        d = tmp_path / "empty"
        d.mkdir()
    else:
        out = tmp_path / "peers.txt"
    rc = main(["report", str(a), "--peers", str(d), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and needle in err[0], err
    assert not out.exists()


def test_report_on_path_err_only_store(tmp_path, capsys):
    """A store whose only error metric is path_err (the digits peers store) gets its tables and figures."""
    rows = _rows("digits", "path_err", ["UniPC-2 (default)"], 1.0, 1e-6)
    pd.DataFrame(rows).to_csv(tmp_path / "results.csv", index=False)
    assert main(["report", str(tmp_path / "results.csv"), "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "`path_err`" in md and "0.2" in md and (tmp_path / "rep" / "figures").is_dir()


def test_path_err_through_diffusers_scheduler_on_ring8():
    """path_err of a diffusers scheduler on gmm2d-ring8 (dopri5 on the exact flow from the same x_T, to the native
    sigma = 0 end): finite, far above the reference's own error, and decreasing with NFE. On sdebench's logSNR
    grid DDIMScheduler (clip off) is ddim to rounding, so the two path errors agree (independent code paths)."""
    errs = []
    for n in (5, 10, 20, 50):
        row = run_cell(CellConfig(problem="gmm2d-ring8", solver=DPM, nfe=n, schedule="native", n_samples=64,
                                  metrics=("path_err",)))
        assert row["status"] == "ok" and row["t_end"] == 0.0
        assert math.isfinite(row["path_err"]) and row["path_err"] > 100 * row["path_err_null"]
        errs.append(row["path_err"])
    assert all(b < a for a, b in zip(errs, errs[1:])), errs
    cell = dict(problem="gmm2d-ring8", nfe=10, schedule="logsnr", n_samples=64, metrics=("path_err",))
    a = run_cell(CellConfig(solver="diffusers:DDIMScheduler", solver_options={"clip_sample": False}, **cell))
    b = run_cell(CellConfig(solver="ddim", **cell))
    assert abs(a["path_err"] - b["path_err"]) < 1e-10 and a["path_err"] > 1e-3
