"""The asv suite cannot rot: `asv check` validates every benchmark, and the shared fixtures give the numbers
the tracked benchmarks report (checked against closed-form expectations)."""

from __future__ import annotations

import json
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


def test_asv_conf_builds_one_virtualenv_with_cpu_torch_first():
    """`asv run A..B` / `asv continuous` build the project per commit into a virtualenv whose requirements (the
    matrix, installed once when the environment is created) hold the pinned torch, so every commit's wheel finds
    torch already there and pip never swaps in another build; the wheel is built without build isolation and
    without its dependencies, and installed without --force-reinstall (which would reinstall torch each commit)."""
    conf = json.loads((ROOT / "asv.conf.json").read_text())
    assert conf["environment_type"] == "virtualenv" and conf["pythons"] == ["3.11"]
    assert conf["branches"] == ["main"]
    assert conf["matrix"]["req"]["torch"] == ["2.13.0"]
    build = " ".join(conf["build_command"])
    assert "pip wheel" in build and "--no-deps" in build and "--no-build-isolation" in build
    assert conf["install_command"] == ["in-dir={env_dir} python -m pip install {wheel_file}"]
    assert all("force-reinstall" not in c and "torch" not in c for c in conf["install_command"])
    # results, environments and html stay out of git (a results branch or CI artifact keeps them)
    ignored = (ROOT / ".gitignore").read_text().split()
    assert ".asv/" in ignored and conf["results_dir"].startswith(".asv/") and conf["env_dir"].startswith(".asv/")


def test_fixtures_give_expected_numbers():
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks import common
    finally:
        sys.path.pop(0)
    e24, e48 = common.exact_w2("gauss1d", "heun", 24), common.exact_w2("gauss1d", "heun", 48)
    assert 3.0 < e24 / e48 < 5.0  # Heun is second order: halving the step divides W2 by about 4
    synth = [0.5 * n**-2.0 for n in common.NFE_GRID]
    assert abs(common.fitted_order(synth) - 2.0) < 1e-9
    assert common.nfe_to_tol(synth, tol=0.5 * 24**-2.0) == 24
    assert math.isnan(common.nfe_to_tol([1.0] * len(common.NFE_GRID)))
