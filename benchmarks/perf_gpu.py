"""Section ``gpu`` of ``benchmarks/perf.py``: the overhead table on CUDA, throughput, memory bandwidth and
CUDA-graph replay (rows say "not measured" without CUDA)."""

from __future__ import annotations

import torch

from sdebench.problems import get_problem
from sdebench.schedules import make_grid
from sdebench.sde import get_sde
from sdebench.solvers import SOLVERS, get_solver

from .perf_core import Sizes, fmt_n, fmt_s, row, sample_call, score_time, setup, timed_sample, timeit
from .perf_overhead import overhead


def _copy_time(dev, mib: int = 256):
    a = torch.empty(mib * 1024 * 1024 // 8, dtype=torch.float64, device=dev)
    b = torch.empty_like(a)
    t, _ = timeit(lambda: b.copy_(a), 5, dev)
    return t, 2 * a.numel() * 8  # read + write


def gpu(sz: Sizes):
    if not torch.cuda.is_available():
        for case in ("overhead table on CUDA", "throughput, gmm-d32, batch 1e6, NFE 20",
                     "score memory bandwidth vs copy bandwidth", "CUDA-graph replay for small batches"):
            row("gpu", case, "", "not measured", "", "", "", "n/a", "no CUDA device on this machine")
        return
    row("gpu", f"device: {torch.cuda.get_device_name(0)}", "", "", "", "", "", "", f"torch {torch.__version__}")
    gpu_measure(sz, "cuda", graphs=True)


def gpu_measure(sz: Sizes, dev: str, graphs: bool = True, copy_mib: int = 256):
    """The GPU section's measurements on device ``dev`` (the CUDA-graph part needs CUDA)."""
    overhead(sz, device=dev, section="gpu overhead")
    sde = get_sde("vp")
    prob = get_problem("gmm-d32")
    n = sz.gpu_batch
    for sname in ("em", "euler", "dpm-solver++2m"):
        if sname not in SOLVERS:
            continue
        spec = get_solver(sname)
        model, x = setup(prob, sde, n, device=dev)
        grid = make_grid(sde, spec.steps_for_nfe(20), 1e-3)
        t, _ = timed_sample(spec, model, x, grid, sde, 0, 20, max(1, min(sz.repeat, 3)), dev)
        row("gpu", f"throughput {sname}, gmm-d32 float64, NFE 20", fmt_n(n), fmt_s(t), "", f"{n / t:.3g} samples/s",
            value=n / t)
    # bandwidth: copy vs score (bytes the score must at least touch: read x, write the result)
    t_copy, nbytes = _copy_time(dev, copy_mib)
    bw_copy = nbytes / t_copy
    model, x = setup(prob, sde, n, device=dev)
    grid = make_grid(sde, 20, 1e-3)
    t_s = score_time(model, x, grid, 5, dev)
    bw_min = 2 * x.numel() * 8 / t_s  # the least a score can move: read x, write the score
    # the diagonal-GMM score's own traffic: x read 3 times, score written, (n, K) logits/weights ~6 passes
    moved = 8 * (4 * x.numel() + 6 * x.shape[0] * prob.K)
    row("gpu", "copy bandwidth (device memory)", f"{copy_mib} MiB", fmt_s(t_copy), "", f"{bw_copy / 1e9:.0f} GB/s",
        value=bw_copy)
    row("gpu", "score, gmm-d32 float64", fmt_n(n), fmt_s(t_s), "",
        f"{bw_min / 1e9:.1f} GB/s (x in, score out); {moved / t_s / 1e9:.1f} GB/s (its passes)", "", "",
        f"{bw_min / bw_copy:.0%} / {moved / t_s / bw_copy:.0%} of the copy bandwidth", value=bw_min)
    if not graphs:
        return
    # CUDA graphs: a whole deterministic sampling call captured once, replayed
    for nb in sz.graph_batches:
        for sname in ("euler", "dpm-solver++2m", "em"):
            if sname not in SOLVERS:
                continue
            spec = get_solver(sname)
            model, x = setup(prob, sde, nb, device=dev)
            grid = make_grid(sde, spec.steps_for_nfe(20), 1e-3)
            t_eager, ref = timed_sample(spec, model, x, grid, sde, 0, 20, 5, dev)
            try:
                static_x = x.clone()
                s = torch.cuda.Stream()
                s.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(s):
                    for _ in range(2):
                        sample_call(spec, model, static_x, grid, sde, 0, 20)
                torch.cuda.current_stream().wait_stream(s)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    static_out = sample_call(spec, model, static_x, grid, sde, 0, 20)

                def replay(graph=graph, static_x=static_x, static_out=static_out, x=x):
                    static_x.copy_(x)
                    graph.replay()
                    return static_out

                t_graph, out = timeit(replay, 5, dev)
                diff = float((out - ref).abs().max())
                row("gpu", f"CUDA graph, {sname}, gmm-d32, NFE 20", fmt_n(nb), fmt_s(t_graph), fmt_s(t_eager),
                    f"{t_eager / t_graph:.2f}x", "", "", f"reference = eager; max/diff/ {diff:.1e}"
                    + ("; counter noise of seed 0 captured in the graph (recapture per seed)" if sname == "em" else ""))
            except Exception as exc:  # capture can fail on drivers/ops; report, don't hide
                row("gpu", f"CUDA graph, {sname}", fmt_n(nb), "failed", fmt_s(t_eager), "", "", "n/a",
                    str(exc).splitlines()[0][:100])
