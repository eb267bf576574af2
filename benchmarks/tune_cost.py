"""Cost of ``sdebench tune``: a 10-step grid on a 2-D mixture and on a 16-D Gaussian, each method.

    python benchmarks/tune_cost.py [--budget 300] [--out runs/tune_cost.json] [--gradients-only]

Each case runs ``sdebench tune`` end to end in a fresh interpreter (start-up, the four hand-crafted grids on
the tuning and held-out seeds, the method, the held-out evaluation, the AYS proxy check on the Gaussian, the
JSON write) and reports its wall time beside the method's own time and evaluation count, with the machine's
load average before and after. The target (issue 14): at most 60 s on 2 CPU cores. Not a timed test.

Then, in process, the gradient method's two ways to the gradient on the same cases (``gradient(how=...)``):
autograd through the solver's code against central differences: the time of one gradient (median of 5) and
the method run to the same budget from the same initial grid (wall time, iterations, the tuned value).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = [
    ("gmm2d-ring8", "dpm-solver++2m", 10, "path_err", ["--samples", "512"]),
    ("gauss-aniso16", "dpm-solver++2m", 10, "w2_exact", ["--samples", "16"]),
]
METHODS = ("gradient", "dp", "policy-gradient")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", default="300")
    ap.add_argument("--out", default=None, help="also write the rows as JSON")
    ap.add_argument("--gradients-only", action="store_true", help="only the autograd vs central-difference rows")
    args = ap.parse_args(argv)
    if args.gradients_only:
        rows = gradient_rows(int(args.budget))
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(rows, indent=1))
        return 0
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for problem, solver, nfe, objective, extra in CASES:
            for method in METHODS:
                out = Path(tmp) / f"{problem}-{method}.json"
                cmd = [sys.executable, "-m", "sdebench.cli", "tune", "--problem", problem, "--solver", solver,
                       "--nfe", str(nfe), "--objective", objective, "--method", method, "--budget", args.budget,
                       "--out", str(out)] + extra
                load0 = os.getloadavg()[0]
                t0 = time.perf_counter()
                subprocess.run(cmd, check=True, env=env, capture_output=True)
                wall = time.perf_counter() - t0
                rec = json.loads(out.read_text())
                best = min(v["heldout"] for v in rec["handcrafted"].values())
                rows.append({"problem": problem, "solver": solver, "nfe": nfe, "objective": objective,
                             "method": method, "steps": rec["steps"], "wall_s": round(wall, 1),
                             "method_s": round(rec["wall_s"], 1), "evaluations": rec["evaluations"],
                             "best_handcrafted_heldout": best, "tuned_heldout": rec["value"]["heldout"],
                             "load_before": round(load0, 2), "load_after": round(os.getloadavg()[0], 2),
                             "cpus": os.cpu_count()})
                r = rows[-1]
                print(f"{problem:<14} {method:<16} {r['steps']:>3} steps  {r['wall_s']:>6.1f} s end to end "
                      f"({r['method_s']:.1f} s in the method, {r['evaluations']} evaluations)  held-out "
                      f"{best:.4g} -> {r['tuned_heldout']:.4g}  load {r['load_before']:.1f}->{r['load_after']:.1f}",
                      flush=True)
    rows += gradient_rows(int(args.budget))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(rows, indent=1))
    return 0


def gradient_rows(budget: int) -> list[dict]:
    """Autograd against central differences for the gradient method on CASES (in process, one tuning seed)."""
    import statistics

    from sdebench.schedules import make_grid
    from sdebench.tune.autodiff import AutogradObjective
    from sdebench.tune.grid import LambdaGrid
    from sdebench.tune.methods import gradient, logit_gradient
    from sdebench.tune.objective import Objective

    rows = []
    for problem, solver, nfe, objective, extra in CASES:
        samples = int(extra[extra.index("--samples") + 1])
        obj = Objective(problem, "vp", solver, nfe, objective, samples)
        param = LambdaGrid(obj.sde, obj.steps, obj.t_end)
        z0 = param.logits(make_grid(obj.sde, obj.steps, obj.t_end, "logsnr"))
        ag = AutogradObjective(obj)
        obj.value(param.grid(z0), 0)  # warm the reference flow (path_err) shared by both ways
        per_grad = {}
        for how in ("autograd", "finite-difference"):
            ts = []
            for _ in range(5):
                t0 = time.perf_counter()
                if how == "autograd":
                    ag.logit_gradient(param, z0, [0])
                else:
                    logit_gradient(obj, param, z0, [0])
                ts.append(time.perf_counter() - t0)
            per_grad[how] = statistics.median(ts)
        for how in ("autograd", "finite-difference"):
            load0 = os.getloadavg()[0]
            res = gradient(obj, param, z0, [0], budget, how=how)
            rows.append({"problem": problem, "solver": solver, "nfe": nfe, "objective": objective,
                         "method": "gradient", "gradient": how, "steps": obj.steps, "budget": budget,
                         "gradient_s": round(per_grad[how], 4), "method_s": round(res.wall_s, 2),
                         "iterations": res.extra["iterations"], "evaluations": res.evaluations,
                         "init_tune": res.init_value, "tuned_tune": res.value,
                         "load_before": round(load0, 2), "load_after": round(os.getloadavg()[0], 2),
                         "cpus": os.cpu_count()})
            r = rows[-1]
            print(f"{problem:<14} gradient {how:<18} one gradient {r['gradient_s'] * 1e3:7.1f} ms; budget {budget}: "
                  f"{r['method_s']:6.2f} s, {r['iterations']} iterations, tuning value {r['init_tune']:.4g} -> "
                  f"{r['tuned_tune']:.4g}  load {r['load_before']:.1f}->{r['load_after']:.1f}", flush=True)
    return rows


if __name__ == "__main__":
    raise SystemExit(main())
