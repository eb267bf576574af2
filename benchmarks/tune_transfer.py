"""Transfer of tuned grids to the trained digits U-Net (results/tuned/transfer.csv, results/tuned/transfer/).

    python benchmarks/tune_transfer.py [--solvers heun,dpm-solver++2m,unipc] [--nfe 6,10] [--budget 100]
        [--proxy-budget 300]

Does a grid tuned on an analytic proxy of the data carry over to the trained network? For each solver and NFE
(VP SDE, t_end = 1e-3) it compares, on the ``digits`` problem (the 1x8x8 U-Net) and HELD-OUT x_T:

- the four hand-crafted grids (uniform, logsnr, edm, quadratic);
- ``proxy``: the grid tuned (``--method gradient``, ``--objective w2_exact``: the exact output law) on the
  Gaussian fitted to the digits training images (``transfer/digits-gauss.json``: mean and covariance of the
  64 pixels in the network's [-1, 1] scale; the covariance gets + DEQUANT I, the variance of uniform
  dequantization of the 17 grey levels, since some border pixels are constant and the raw covariance is
  singular);
- ``network``: the grid tuned (``--method gradient``, ``--objective path_err``) on the network itself, on
  tuning seed TUNE_SEED (SAMPLES x_T), disjoint from the held-out seeds.

Each grid is evaluated as ``sdebench run --problem digits --schedule file:GRID --metrics path_err,fd
--samples SAMPLES --seeds 10,11`` does (``sdebench.run.run_cell``): path_err is the RMS distance to the dopri5
(rtol 1e-8) solve of the same network from the same x_T, fd the Frechet distance in the digits classifier's
features to the held-out images (fd_null: its floor, the same statistic for SAMPLES real images).
A grid file does not record a binding to its problem: it is checked for its SDE, solver, NFE and ends only.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

TUNE_SEED = 0
HELDOUT = [10, 11]
SAMPLES = 256
DEQUANT = (2.0 / 16.0) ** 2 / 12.0  # digits: 17 levels 0..16 mapped to [-1, 1], spacing 1/8
HAND = ("uniform", "logsnr", "edm", "quadratic")


def write_proxy(path: Path) -> dict:
    """The Gaussian fitted to the digits training split (as the network saw it), as a target file."""
    from sdebench.problems.images import load_data

    x = load_data("digits").train.reshape(-1, 64).double()
    mu = x.mean(0)
    cov = torch.cov(x.T) + DEQUANT * torch.eye(64, dtype=torch.float64)
    rec = {"weights": [1.0], "means": [mu.tolist()], "covariances": [cov.tolist()],
           "note": f"Gaussian fit to the {len(x)} digits training images in [-1, 1]; covariance + {DEQUANT:.6g} I "
                   "(uniform dequantization of the 17 grey levels). Written by benchmarks/tune_transfer.py."}
    path.write_text(json.dumps(rec) + "\n")
    return rec


def main(argv=None) -> int:
    from sdebench.run import CellConfig, run_cell
    from sdebench.tune import tune

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--solvers", default="heun,dpm-solver++2m,unipc")
    ap.add_argument("--nfe", default="6,10")
    ap.add_argument("--budget", type=int, default=100, help="evaluations for the network-tuned grid")
    ap.add_argument("--proxy-budget", type=int, default=300, help="evaluations for the proxy grid (exact, cheap)")
    ap.add_argument("--out", default="results/tuned")
    ap.add_argument("--report-only", action="store_true",
                    help="rewrite the README section from OUT/transfer.csv and OUT/transfer/*.json, run nothing")
    ap.add_argument("--cost", default=None, help="with --report-only: the cost line of the section")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if args.report_only:
        import pandas as pd

        write_section(pd.read_csv(out / "transfer.csv"), out, args.cost)
        return 0
    gdir = out / "transfer"
    gdir.mkdir(parents=True, exist_ok=True)
    proxy = gdir / "digits-gauss.json"
    write_proxy(proxy)
    t_all = time.perf_counter()
    rows = []
    for solver in args.solvers.split(","):
        for nfe in (int(v) for v in args.nfe.split(",")):
            grids = {name: name for name in HAND}
            for kind, problem, objective, n, ts, hs, budget in (
                    ("proxy", str(proxy), "w2_exact", 16, [0], [1], args.proxy_budget),
                    ("network", "digits", "path_err", SAMPLES, [TUNE_SEED], HELDOUT, args.budget)):
                t0 = time.perf_counter()
                rec = tune(problem, "vp", solver, nfe, objective, "gradient", samples=n, tune_seeds=ts,
                           heldout_seeds=hs, budget=budget)
                f = gdir / f"{kind}_{solver}_{nfe}.json"
                rec["command"] = (f"sdebench tune --problem {problem} --sde vp --solver {solver} --nfe {nfe} "
                                  f"--objective {objective} --method gradient --budget {budget} --samples {n} "
                                  f"--tune-seeds {','.join(map(str, ts))} --heldout-seeds {','.join(map(str, hs))} "
                                  f"--out {f}")
                f.write_text(json.dumps(rec, indent=1) + "\n")
                grids[kind] = f"file:{f}"
                best = rec["best_handcrafted"]
                print(f"{solver} NFE {nfe} {kind}: tuned {objective} {rec['value']['tune']:.4g} "
                      f"(best hand-crafted {best} {rec['handcrafted'][best]['tune']:.4g}) "
                      f"[{time.perf_counter() - t0:.1f} s, {rec['evaluations']} evaluations]", flush=True)
            for name, sched in grids.items():
                vals = {"path_err": [], "fd": [], "fd_null": []}
                for seed in HELDOUT:
                    r = run_cell(CellConfig(problem="digits", sde="vp", solver=solver, nfe=nfe, seed=seed,
                                            n_samples=SAMPLES, schedule=sched, metrics=("path_err", "fd")))
                    if r.get("status") != "ok":
                        raise RuntimeError(f"{solver} NFE {nfe} {name} seed {seed}: {r.get('error')}")
                    for k in vals:
                        vals[k].append(float(r[k]))
                row = {"solver": solver, "nfe": nfe, "grid": name,
                       "kind": name if name in ("proxy", "network") else "hand-crafted",
                       "path_err": sum(vals["path_err"]) / len(HELDOUT), "fd": sum(vals["fd"]) / len(HELDOUT),
                       "fd_null": sum(vals["fd_null"]) / len(HELDOUT),
                       "path_err_by_seed": " ".join(f"{v:.6g}" for v in vals["path_err"]),
                       "fd_by_seed": " ".join(f"{v:.6g}" for v in vals["fd"]),
                       "schedule": sched if name in HAND else f"file:{Path(sched[5:]).relative_to(out)}",
                       "heldout_seeds": " ".join(map(str, HELDOUT)), "samples": SAMPLES}
                rows.append(row)
                print(f"  {name:>9}: path_err {row['path_err']:.4g}  fd {row['fd']:.4g} (null {row['fd_null']:.4g})",
                      flush=True)
    import pandas as pd

    df = pd.DataFrame(rows)
    df.to_csv(out / "transfer.csv", index=False)
    print(f"total {time.perf_counter() - t_all:.0f} s on {os.cpu_count()} CPU, load {os.getloadavg()[0]:.1f}")
    write_section(df, out, f"{time.perf_counter() - t_all:.0f} s wall on {os.cpu_count()} CPU")
    print(table(df))
    return 0


MARK = "<!-- transfer: written by benchmarks/tune_transfer.py -->"


def write_section(df, out: Path, cost: str | None = None) -> None:
    """Replace (or append) the transfer section of OUT/README.md; benchmarks/tune_results.py keeps it."""
    nets = [json.loads(f.read_text()) for f in sorted((out / "transfer").glob("network_*.json"))]
    budget = nets[0]["budget"] if nets else "?"
    lines = [MARK, "## Transfer: grids tuned on a Gaussian proxy, applied to the digits U-Net", "",
             "Generated by `python benchmarks/tune_transfer.py`" + (f" ({cost})" if cost else "") + ". Problem "
             f"`digits` (the trained 1x8x8 U-Net), VP SDE, t_end = 1e-3, {SAMPLES} x_T per seed, HELD-OUT seeds "
             f"{', '.join(map(str, HELDOUT))} (means of the two). path_err: RMS distance to the dopri5 (rtol 1e-8) "
             "solve of the same network from the same x_T; fd: Frechet distance in the digits classifier's "
             "features to the held-out images (fd_null: the same statistic for real images, its floor).", "",
             "- proxy-tuned: `sdebench tune --problem results/tuned/transfer/digits-gauss.json --objective w2_exact "
             "--method gradient` (the Gaussian fitted to the 1437 training images in [-1, 1], covariance + "
             f"{DEQUANT:.3g} I); grids `transfer/proxy_<solver>_<nfe>.json`.",
             f"- network-tuned: `sdebench tune --problem digits --objective path_err --method gradient --budget "
             f"{budget} --samples {SAMPLES} --tune-seeds {TUNE_SEED} --heldout-seeds "
             f"{','.join(map(str, HELDOUT))}`; grids `transfer/network_<solver>_<nfe>.json`.",
             "- best hand-crafted: the one of uniform, logsnr, edm, quadratic with the lowest held-out path_err.", "",
             table(df), "", summary(df), "", "All six grids per row, both seeds: `transfer.csv`.", ""]
    readme = out / "README.md"
    text = readme.read_text() if readme.is_file() else ""
    text = text.split(MARK)[0].rstrip("\n") + "\n\n" if text else ""
    readme.write_text(text + "\n".join(lines))


def summary(df) -> str:
    """How often each tuned grid beats the best hand-crafted one (held-out path_err and fd)."""
    counts = {}
    for (_s, _n), g in df.groupby(["solver", "nfe"], sort=False):
        hand = g[g["kind"] == "hand-crafted"].sort_values("path_err").iloc[0]
        for kind in ("proxy", "network"):
            r = g[g["grid"] == kind].iloc[0]
            c = counts.setdefault(kind, [0, 0, 0, []])
            c[0] += r["path_err"] < hand["path_err"]
            c[1] += r["fd"] < hand["fd"]
            c[2] += 1
            c[3].append(hand["path_err"] / r["path_err"])
    return " ".join(f"{kind}-tuned: lower path_err than the best hand-crafted grid in {p} of {n} rows "
                    f"(ratio hand-crafted / tuned {min(q):.2f}-{max(q):.2f}x), lower fd in {f} of {n}."
                    for kind, (p, f, n, q) in counts.items())


def table(df) -> str:
    """The markdown table of the README section: per solver and NFE, the best hand-crafted grid (by held-out
    path_err), the proxy-tuned and the network-tuned grid."""
    lines = ["| solver | NFE | best hand-crafted | path_err | fd | proxy-tuned path_err | fd | network-tuned "
             "path_err | fd | fd_null |", "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for (solver, nfe), g in df.groupby(["solver", "nfe"], sort=False):
        hand = g[g["kind"] == "hand-crafted"].sort_values("path_err").iloc[0]
        p, n = g[g["grid"] == "proxy"].iloc[0], g[g["grid"] == "network"].iloc[0]
        lines.append(f"| {solver} | {nfe} | {hand['grid']} | {hand['path_err']:.4g} | {hand['fd']:.3g} | "
                     f"{p['path_err']:.4g} | {p['fd']:.3g} | {n['path_err']:.4g} | {n['fd']:.3g} | "
                     f"{hand['fd_null']:.3g} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
