"""Sweep files: parsing, validation (one-line ConfigErrors), expansion and cell keys; the CLI end to end."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from sdebench.cli import main as cli
from sdebench.errors import ConfigError
from sdebench.sweep import cell_key, config_from_dict, config_to_dict, load_sweep, parse_sweep

BASE = {"name": "t", "out": "unused", "problems": ["gauss1d"], "nfe": [4, 8], "seeds": 2, "samples": 64,
        "metrics": ["w2_exact", "kl_exact", "w2"], "solvers": ["em", "heun"]}


def sweep(**over):
    d = dict(BASE)
    d.update(over)
    return parse_sweep(d, "test.toml")


def test_expansion_counts_and_unique_keys():
    s = sweep(problems=["gauss1d", "gmm1d"], sdes=["vp", "ve"])
    cells = s.cells()
    assert len(cells) == 2 * 2 * 2 * 2 * 2
    keys = [k for k, _, _ in cells]
    assert len(set(keys)) == len(keys)
    assert {c.seed for _, c, _ in cells} == {0, 1}


def test_key_is_deterministic_and_sensitive_to_every_field():
    cells = sweep().cells()
    again = sweep().cells()
    assert [k for k, _, _ in cells] == [k for k, _, _ in again]
    _, cfg, _ = cells[0]
    base = cell_key(cfg)
    assert len(base) == 20
    for change in ({"n_samples": 65}, {"t_end": 2e-3}, {"metrics": ("w2_exact",)}, {"crn_steps": 99},
                   {"solver_options": {"eta": 0.5}}, {"reference": "data"}):
        d = config_to_dict(cfg)
        d.update(change)
        assert cell_key(config_from_dict(d)) != base, change
    assert cell_key(config_from_dict(config_to_dict(cfg))) == base


def test_crn_base_grid_shared_within_a_solver():
    cells = sweep(nfe=[4, 8, 16]).cells()
    em = {c.crn_steps for _, c, lb in cells if lb == "em"}
    assert em == {16}
    nocrn = sweep(crn=False).cells()
    assert {c.crn_steps for _, c, _ in nocrn} == {None}


def test_solver_tables_options_and_labels():
    s = sweep(solvers=[{"name": "ddim", "options": {"eta": 0.5}, "label": "ddim-half"},
                       {"name": "ddim", "options": {"eta": 1.0}}, "ddim"])
    labels = sorted({lb for _, _, lb in s.cells()})
    assert labels == ["ddim", "ddim-half", "ddim[eta=1.0]"]
    assert {c.solver_options.get("eta") for _, c, _ in s.cells()} == {0.5, 1.0, None}


def test_metrics_by_problem_override():
    s = sweep(problems=["gauss1d", "gmm2d-ring8"], metrics_by_problem={"gmm2d-ring8": ["sliced_w2"]})
    got = {c.problem: c.metrics for _, c, _ in s.cells()}
    assert got == {"gauss1d": ("w2_exact", "kl_exact", "w2"), "gmm2d-ring8": ("sliced_w2",)}


@pytest.mark.parametrize("over, needle", [
    ({"solvers": ["no-such-solver"]}, "no-such-solver"),
    ({"problems": ["nope"]}, "nope"),
    ({"sdes": ["vq"]}, "vq"),
    ({"schedules": ["cubic"]}, "cubic"),
    ({"nfe": [4, 0]}, "0"),
    ({"nfe": [4, 4]}, "duplicates"),
    ({"seeds": 0}, "seeds"),
    ({"samples": 1}, "samples"),
    ({"metrics": ["w9"]}, "w9"),
    ({"bogus": 1}, "bogus"),
    ({"solvers": [{"name": "ddim", "options": {"zeta": 1}}]}, "zeta"),
    ({"solvers": [{"name": "ddim", "colour": "red"}]}, "colour"),
    ({"solvers": ["heun"], "nfe": [3]}, "NFE=3"),
    ({"metrics_by_problem": {"gmm1d": ["w2"]}}, "gmm1d"),
    ({"solvers": ["ddim", {"name": "ddim"}]}, "ddim"),
])
def test_bad_values_are_one_line_config_errors(over, needle):
    with pytest.raises(ConfigError) as ei:
        sweep(**over).cells()
    msg = str(ei.value)
    assert needle in msg and "\n" not in msg


def test_skip_incompatible_drops_and_counts():
    s = sweep(solvers=["heun", "em"], nfe=[3, 4], skip_incompatible=True)
    cells = s.cells()
    assert {(c.solver, c.nfe) for _, c, _ in cells} == {("heun", 4), ("em", 3), ("em", 4)}
    assert [(p, n) for p, _, _, n, _ in s.skipped] == [("gauss1d", 3)]


def test_all_solvers_expands_to_registry():
    from sdebench.solvers import SOLVERS

    s = sweep(solvers="all")
    assert {e.name for e in s.solvers} == {n for n, sp in SOLVERS.items() if not sp.adaptive}


def test_load_sweep_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_sweep(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_sweep(bad)


def test_shipped_sweep_files_expand():
    from sdebench.problems.presets import PRESETS
    from sdebench.solvers import SOLVERS

    quick = load_sweep("sweeps/quick.toml")
    assert 100 <= len(quick.cells()) <= 1000
    paper = load_sweep("sweeps/paper.toml")
    cells = paper.cells()
    assert paper.skip_incompatible and min(paper.nfe) <= 4 and max(paper.nfe) >= 1000
    assert {5, 10, 20, 50} <= {c.nfe for _, c, _ in cells}  # the leaderboard's budgets
    # every fixed-step solver on every analytic target, SDE and schedule (torchsde back-ends: uniform grids only)
    fixed = {n for n, s in SOLVERS.items() if not s.adaptive}
    assert {c.solver for _, c, _ in cells} == fixed
    assert {c.problem for _, c, _ in cells} == set(PRESETS)
    assert {c.sde for _, c, _ in cells} == {"vp", "ve", "edm"}
    assert {c.schedule for _, c, _ in cells} == {"uniform", "logsnr", "edm", "quadratic"}
    assert {c.schedule for _, c, _ in cells if c.solver.startswith("torchsde")} == {"uniform"}
    assert not any("emd_w2" in c.metrics for _, c, _ in cells)
    assert {c.final_denoise for _, c, _ in cells} == {False, True} and len({c.t_end for _, c, _ in cells}) == 2


def test_cli_sweep_end_to_end_resume_and_results(tmp_path, capsys):
    f = tmp_path / "s.toml"
    out = tmp_path / "store"
    f.write_text(f'name = "e2e"\nout = "{out}"\nproblems = ["gauss1d"]\nnfe = [4, 8]\nseeds = [0, 1]\n'
                 'samples = 64\nmetrics = ["w2_exact", "w2"]\nsolvers = ["em", "ddim"]\n')
    assert cli(["sweep", str(f), "--serial", "--progress", "log"]) == 0
    df = pd.read_parquet(out / "results.parquet")
    assert len(df) == 8 and set(df["status"]) == {"ok"}
    assert df["cell_key"].is_unique
    for col in ("sdebench_version", "git_commit", "torch_version", "device_name", "w2_exact", "w2_null"):
        assert col in df.columns
    assert (out / "report.md").is_file() and list((out / "figures").glob("*.png"))
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "cells").iterdir()}
    capsys.readouterr()
    assert cli(["sweep", str(f), "--serial", "--no-report"]) == 0
    assert "ran 0 cells" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in (out / "cells").iterdir()} == mtimes
    # drop one cell: only it is recomputed
    assert "8 of 8 present" in (out / "report.md").read_text()
    victim = sorted((out / "cells").iterdir())[0]
    victim.unlink()
    assert cli(["report", str(out), "--no-figures"]) == 0
    text = (out / "report.md").read_text()
    assert "7 of 8 present" in text and "partial" in text
    assert cli(["sweep", str(f), "--serial", "--no-report"]) == 0
    assert "ran 1 cells" in capsys.readouterr().out
    assert json.loads(victim.read_text())["row"]["status"] == "ok"


def test_cli_sweep_bad_file_exits_2(tmp_path, capsys):
    f = tmp_path / "s.toml"
    f.write_text('problems = ["gauss1d"]\nnfe = [4]\nseeds = 1\nsolvers = ["emm"]\n')
    assert cli(["sweep", str(f)]) == 2
    err = capsys.readouterr().err
    assert "emm" in err and err.count("\n") == 1


def test_all_problems_are_the_analytic_presets():
    from sdebench.problems.presets import PRESETS

    assert sweep(problems="all").problems == list(PRESETS)
    assert sweep(problems=["all", "gmm2d-ring8-labelled"]).problems == list(PRESETS) + ["gmm2d-ring8-labelled"]


def test_unreachable_scheduler_is_a_config_error(tmp_path):
    from sdebench.distributed import execute
    from sdebench.store import Store

    cells = sweep(nfe=[4], seeds=1, solvers=["em"]).cells()
    with pytest.raises(ConfigError, match="tcp://127.0.0.1:9"):
        execute(cells, Store(tmp_path / "s"), scheduler="tcp://127.0.0.1:9", retries=0,
                connect_timeout="2s")
