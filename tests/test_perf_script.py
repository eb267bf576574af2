"""Smoke tests of benchmarks/perf.py at tiny sizes: every section builds its rows, and the peer
comparisons really do the same computation (output differences at rounding level). No timing
assertions: performance figures live in the benchmark's table, not in tests."""

from __future__ import annotations

import importlib.util
import math
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # diffusers' numpy-2 copy= warning


@pytest.fixture(scope="module")
def perf():
    spec = importlib.util.spec_from_file_location("sdebench_perf_script", ROOT / "benchmarks" / "perf.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def tiny(perf):
    return replace(perf.QUICK, batch=300, unet_batch=4, unet_nfe=2, peer_batches=(200,), scale_batch=(100, 200),
                   scale_dim=(2, 4), scale_K=(1, 2), scale_nfe=(6, 12), scale_n=200, scale_dim_n=100, emd_n=(50, 100),
                   sliced_n=(100, 200), mmd_n=(100, 200), cov_n=(50, 100), cov_d=(2, 3), cov_d_n=50, repeat=1)


def _rows(perf, section):
    return [r for r in perf.ROWS if r["section"] == section]


def test_fixed_grid_solvers_are_all_listed(perf):
    from sdebench.solvers import SOLVERS

    names = perf.fixed_grid_solvers()
    assert {"em", "euler", "ddim", "heun", "dpm-solver++2m"} <= set(names)
    assert all(not SOLVERS[n].adaptive for n in names)


def test_overhead_rows(perf, tiny):
    perf.ROWS.clear()
    solvers = ("em", "euler", "ddim", "heun", "ddpm", "ei", "consistency")
    perf.overhead(replace(tiny, solvers=solvers, unet_nfe=1))
    rows = _rows(perf, "overhead")
    measured = {r["solver"]: r for r in rows if "solver" in r and "U-Net" not in r["case"]}
    for name in solvers[:-1]:
        assert name in measured, name
        assert math.isfinite(measured[name]["value"]) and measured[name]["value"] > 0
        assert measured[name]["nfe"] == 12
    consistency = [r for r in rows if r["case"].startswith("consistency")]
    assert len(consistency) == 1 and consistency[0]["met"] == "n/a"
    # the U-Net row exists, measured or marked missing
    assert any("U-Net" in r["case"] for r in rows)


def test_peers_do_the_same_work(perf, tiny):
    perf.ROWS.clear()
    perf.NOTES.clear()
    perf.peers(tiny)
    rows = {r["case"]: r for r in _rows(perf, "peers")}
    same = rows["em vs torchsde euler (sdebench increments)"]
    assert same["diff"] <= 1e-12 * same["scale"]
    assert rows["euler vs torchdiffeq euler"]["diff"] <= 1e-13 * rows["euler vs torchdiffeq euler"]["scale"]
    ddim = rows["ddim vs diffusers DDIMScheduler"]
    assert ddim["diff"] <= 1e-12 * ddim["scale"]
    # diffusers' DPM-Solver++ update runs in float32: agreement at float32 level, not better
    dpm = rows["dpm-solver++2m vs diffusers DPMSolverMultistep"]
    assert 0 < dpm["diff"] <= 1e-4 * dpm["scale"]
    if "srk vs torchsde srk" in rows and "diff" in rows["srk vs torchsde srk"]:
        srk = rows["srk vs torchsde srk"]
        assert srk["diff"] <= 1e-12 * srk["scale"]
    assert all(math.isfinite(r["speedup"]) and r["speedup"] > 0 for r in rows.values() if "speedup" in r)


def test_torchsde_times_match_its_fixed_step_loop(perf):
    for steps in (1, 3, 7, 12, 50, 999):
        pts, dt = perf.torchsde_times(1.0, 1e-3, steps)
        assert len(pts) == steps + 1 and pts[0] == 0.0 and pts[-1] == 1.0 - 1e-3
        assert max(b - a for a, b in zip(pts, pts[1:])) <= dt * (1 + 1e-12)


def test_scaling_and_metric_sections_fit_exponents(perf, tiny):
    perf.ROWS.clear()
    perf.scaling(tiny)
    perf.metric_costs(tiny)
    exps = [r for r in perf.ROWS if "exponent" in r]
    assert {r.get("axis") for r in exps if r["section"] == "scaling"} == {"batch", "NFE", "dimension d",
                                                                          "components K"}
    assert len([r for r in exps if r["section"] == "metrics"]) == 5
    assert all(math.isfinite(r["exponent"]) for r in exps)
    assert perf.fit_exponent([1, 10, 100], [2.0, 20.0, 200.0]) == pytest.approx(1.0)


def test_gpu_section_without_cuda_says_not_measured(perf, tiny):
    if torch.cuda.is_available():
        pytest.skip("CUDA present: the GPU section measures instead")
    perf.ROWS.clear()
    perf.gpu(tiny)
    rows = _rows(perf, "gpu")
    assert len(rows) == 4 and all(r["sdebench"] == "not measured" for r in rows)


def test_trimmed_sweep_is_a_valid_smaller_sweep(perf, tmp_path):
    from sdebench.sweep import load_sweep

    src = ROOT / "sweeps" / "quick.toml"
    if not src.exists():
        pytest.skip("sweeps/quick.toml not present")
    full = load_sweep(src)
    small = load_sweep(perf._trimmed_sweep(src, tmp_path / "q.toml", 1, 1))
    assert len(small.seeds) == 1 and small.nfe == full.nfe[:1] and small.solvers == full.solvers
    assert str(tmp_path) in small.out


def test_main_prints_one_table_and_rejects_bad_arguments(perf, tmp_path, capsys):
    out = tmp_path / "perf.md"
    assert perf.main(["--quick", "--sections", "gpu", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.count("| section | case |") == 1 and "Machine:" in text
    assert out.read_text().strip() == text.strip()
    assert perf.main(["--sections", "overhead,bogus"]) == 2
    assert "bogus" in capsys.readouterr().err
    assert perf.main(["--repeat", "0"]) == 2
    assert perf.main(["--threads", "0"]) == 2


def test_gpu_measurements_run_on_any_device(perf, tiny):
    """The GPU section's code path (overhead, throughput, bandwidth) on the CPU, at tiny sizes."""
    perf.ROWS.clear()
    sz = replace(tiny, gpu_batch=200, graph_batches=(), solvers=("em", "euler"), unet=False)
    perf.gpu_measure(sz, "cpu", graphs=False, copy_mib=1)
    vals = [r["value"] for r in perf.ROWS if r["section"] == "gpu" and "value" in r]
    assert len(vals) >= 4 and all(math.isfinite(v) and v > 0 for v in vals)
    assert any(r["section"] == "gpu overhead" and r.get("solver") == "em" for r in perf.ROWS)
