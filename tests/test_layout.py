"""The split of the long files: the asv suite reaches benchmarks/perf.py's pieces through its shared fixtures
module only, the perf script runs both as a file and as a module, the validate package keeps its public
names, and perf.py's torchsde Brownian motion (s-time, torchsde's own step points) is checked against the
back-end's (step units) rather than replaced by it."""

from __future__ import annotations

import ast
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
ASV_FILES = sorted(BENCH.glob("bench_*.py"))


def _local_imports(path: Path):
    """(module, name) for every import of the benchmarks package itself in ``path`` (relative or absolute)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level or mod == "benchmarks" or mod.startswith("benchmarks."):
                mod = mod.removeprefix("benchmarks").lstrip(".")
                out += [(mod, a.name) for a in node.names]
        elif isinstance(node, ast.Import):
            out += [(a.name.removeprefix("benchmarks."), "") for a in node.names if a.name.startswith("benchmarks")]
    return out


def test_asv_files_import_only_the_shared_fixtures_module():
    assert len(ASV_FILES) >= 3
    for path in ASV_FILES:
        imports = _local_imports(path)
        assert imports, f"{path.name} imports nothing from benchmarks/"
        assert all((mod, name) == ("", "common") for mod, name in imports), (path.name, imports)
        # and touch no private name through it (common._x, or a private name of the perf modules)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "common":
                assert not node.attr.startswith("_"), (path.name, node.attr)


def test_the_fixtures_module_reexports_no_private_perf_name():
    imports = _local_imports(BENCH / "common.py")
    assert imports and all(mod.startswith("perf_") for mod, _ in imports)
    assert not [name for _, name in imports if name.startswith("_")]
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks import common, perf_core, perf_peers
    finally:
        sys.path.pop(0)
    assert common.setup is perf_core.setup and common.ReverseSDE is perf_peers.ReverseSDE


@pytest.mark.parametrize("how", [["benchmarks/perf.py"], ["-m", "benchmarks.perf"]])
def test_perf_script_runs_as_file_and_as_module(how, tmp_path):
    out = tmp_path / "perf.md"
    r = subprocess.run([sys.executable, *how, "--quick", "--sections", "gpu", "--out", str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("| section | case |") == 1 and out.read_text().strip() == r.stdout.strip()
    bad = subprocess.run([sys.executable, *how, "--sections", "bogus"], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert bad.returncode == 2 and "bogus" in bad.stderr and "Traceback" not in bad.stderr


def test_validate_package_keeps_its_names():
    import sdebench.validate as v

    assert {"Claim", "run_battery", "CHECKS", "format_table", "write_markdown", "plot_claims"} <= set(dir(v))
    # --only matches these function names; the consistency row's detail names sdebench.validate._exact_flow
    assert [c.__name__ for c in v.CHECKS] == [
        "_weak_order_claims", "_ode_order_claims", "_dpm3_claim", "_ddim_claim", "_strong_claims", "_horizon_claim",
        "_score_error_claim", "_early_stop_claim", "_contractive_claim", "_consistency_claims", "_density_claims",
        "_resolution_claim", "_dimension_claims", "_chen_bound_claim", "_registry_order_claims"]
    assert all(c.__module__.startswith("sdebench.validate.") for c in v.CHECKS)
    assert callable(v._exact_flow)


def _peer_and_backend(method: str, steps: int, n: int = 64):
    """perf.py's torchsde run on sdebench increments (s-time, its GridBrownian) and the registered back-end
    torchsde-<method> (step units, solvers/backends.py's GridBrownian), same x_T, grid and NoiseSource."""
    import torchsde

    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks import perf_core, perf_peers
    finally:
        sys.path.pop(0)
    from sdebench.noise import NoiseSource
    from sdebench.problems import get_problem
    from sdebench.sde import get_sde
    from sdebench.solvers import get_solver

    sde, prob = get_sde("vp"), get_problem("gmm2d-ring8")
    model, x = perf_core.setup(prob, sde, n)
    s_pts, dt = perf_peers.torchsde_times(sde.T, 1e-3, steps)
    grid = torch.tensor([sde.T - s for s in s_pts], dtype=torch.float64)
    ts = torch.tensor([0.0, s_pts[-1]], dtype=torch.float64)
    noise = NoiseSource(5, n, (prob.d,)).for_grid(grid)
    bm = perf_peers.grid_brownian(noise, s_pts, n, prob.d, torch.float64, "cpu", with_U=method == "srk")
    with torch.no_grad():
        peer = torchsde.sdeint(perf_peers.ReverseSDE(model, sde), x, ts, bm=bm, method=method, dt=dt)[-1]
    backend = get_solver(f"torchsde-{method}").sample(model, x.clone(), grid, sde,
                                                      NoiseSource(5, n, (prob.d,)).for_grid(grid))
    return noise, bm, s_pts, peer, backend


@pytest.mark.parametrize("method,steps", [("euler", 12), ("srk", 6)])
def test_perf_brownian_grid_matches_the_backend_to_rounding_not_bitwise(method, steps):
    from sdebench.solvers.backends import GridBrownian

    noise, bm, s_pts, peer, backend = _peer_and_backend(method, steps)
    for i in range(steps):  # perf's motion hands torchsde the NoiseSource increments themselves
        assert torch.equal(bm(s_pts[i], s_pts[i + 1]), noise.dW(i))
    h = (s_pts[-1] - s_pts[0]) / steps
    ref = GridBrownian(noise, steps, h, bm.W[0].shape, torch.float64, "cpu")
    for i in range(steps):  # the back-end's, in step units u = s / h: dW / sqrt(h)
        torch.testing.assert_close(ref(i, i + 1) * math.sqrt(h), bm(s_pts[i], s_pts[i + 1]), rtol=1e-14, atol=0)
    scale = float(peer.abs().max())
    assert float((peer - backend).abs().max()) <= 1e-12 * scale


def test_backend_brownian_cannot_replace_perfs_on_a_widened_torchsde_grid():
    """torchsde_times widens dt by 1e-9 when plain dt would take an extra step (7 steps on [0, 1 - 1e-3]):
    the resulting grid is not uniform to the back-end's tolerance, so the back-end refuses it."""
    from sdebench.errors import ConfigError

    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks import perf_peers
    finally:
        sys.path.pop(0)
    pts, dt = perf_peers.torchsde_times(1.0, 1e-3, 7)
    assert dt != (1.0 - 1e-3) / 7
    with pytest.raises(ConfigError, match="uniform"):
        _peer_and_backend("euler", 7)
