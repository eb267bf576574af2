"""The asv suite cannot rot: `asv check` validates every benchmark, and the shared fixtures give the numbers
the tracked benchmarks report (checked against closed-form expectations)."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _env(tmp_path):
    env = dict(os.environ)
    env["HOME"] = str(tmp_path / "home")
    env["MPLCONFIGDIR"] = str(tmp_path / "mpl")
    env["OMP_NUM_THREADS"] = "1"
    (tmp_path / "home").mkdir()
    return env


def _asv():
    exe = shutil.which("asv") or str(Path(sys.executable).parent / "asv")
    if not Path(exe).exists():
        pytest.skip("asv is not installed")
    return exe


def test_asv_check(tmp_path):
    out = subprocess.run([_asv(), "check", "--python=same"], cwd=ROOT, env=_env(tmp_path), capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "No problems found" in out.stdout


@pytest.mark.slow
def test_asv_quick_run_one_benchmark(tmp_path):
    env = _env(tmp_path)
    subprocess.run([_asv(), "machine", "--yes"], cwd=ROOT, env=env, capture_output=True, timeout=120, check=True)
    out = subprocess.run([_asv(), "run", "--python=same", "--quick", "--bench", "Score.time_score"], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "failed" not in out.stdout and "gmm-d32" in out.stdout


def test_fixtures_give_expected_numbers():
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks import common
    finally:
        sys.path.pop(0)
    errs = [common.exact_w2("gauss1d", "heun", n) for n in common.NFE_GRID]
    assert all(a > b for a, b in zip(errs, errs[1:]))  # exact error decreases with NFE
    assert abs(common.fitted_order(errs) - 2.0) < 0.25  # Heun is second order
    assert common.nfe_to_tol(errs) in common.NFE_GRID
    assert common.nfe_to_tol([1.0] * len(common.NFE_GRID)) != common.nfe_to_tol(errs)
    assert math.isnan(common.nfe_to_tol([1.0] * len(common.NFE_GRID)))
