"""Dask execution: a real LocalCluster with 2 workers, one killed mid-sweep; bounded retries -> error rows."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from sdebench.distributed import execute
from sdebench.run import CellConfig
from sdebench.store import Store
from sdebench.sweep import cell_key, parse_sweep


def _cells(n_nfe=8, seeds=1):
    s = parse_sweep({"name": "kill", "problems": ["gauss1d"], "nfe": [8 * (i + 1) for i in range(n_nfe)],
                     "seeds": seeds, "samples": 64, "metrics": ["w2_exact"],
                     "solvers": ["em", "ddim"]}, "kill.toml")
    return s.cells()


def test_killed_worker_loses_no_cell_and_no_cell_twice(tmp_path):
    distributed = pytest.importorskip("distributed")
    cells = _cells()
    store = Store(tmp_path / "store")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
    client = distributed.Client(cluster)
    try:
        client.wait_for_workers(2, timeout=60)
        pids = client.run(os.getpid)
        result = {}

        def go():
            result["counts"] = execute(cells, store, scheduler=cluster.scheduler_address, retries=1, sweep="kill")

        th = threading.Thread(target=go)
        th.start()
        deadline = time.monotonic() + 120
        while len(store.finished()) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        done_at_kill = len(store.finished())
        victim = sorted(pids.values())[0]
        os.kill(victim, signal.SIGKILL)
        th.join(timeout=300)
        assert not th.is_alive()
    finally:
        client.close()
        cluster.close()
    assert 3 <= done_at_kill < len(cells), "the kill did not happen mid-sweep"
    keys = {k for k, _, _ in cells}
    assert store.finished() == keys
    df, rep = store.consolidate()
    assert rep.problems == []
    assert len(df) == len(cells) and df["cell_key"].is_unique
    assert set(df["status"]) == {"ok"}
    assert sum(result["counts"].values()) == len(cells)


def test_bounded_retries_then_error_row(tmp_path, monkeypatch):
    """A failure that may be transient (here a RuntimeError on one cell) is retried, then recorded."""
    import sdebench.distributed as dist

    flaky = _cells(n_nfe=2, seeds=1)[1]
    good = _cells(n_nfe=1, seeds=1)[0]
    calls = []
    real = dist.run_cell

    def run_cell(cfg, **kw):
        if cfg.nfe == flaky[1].nfe:
            calls.append(cfg.nfe)
            raise RuntimeError("worker ran out of memory")
        return real(cfg, **kw)

    monkeypatch.setattr(dist, "run_cell", run_cell)
    store = Store(tmp_path / "s")
    counts = execute([flaky, good], store, workers=0, retries=2, sweep="r")
    assert counts == {"error": 1, "ok": 1} and len(calls) == 3
    df, _ = store.consolidate()
    err = df[df["status"] == "error"].iloc[0]
    assert "out of memory" in err["error"] and err["attempts"] == 3
    assert df[df["status"] == "ok"].shape[0] == 1


def test_config_error_is_never_retried(tmp_path, monkeypatch):
    """A ConfigError is deterministic: one attempt, an error row naming the bad value, no retry."""
    import sdebench.distributed as dist

    calls = []
    real = dist.run_cell

    def counting(cfg, **kw):
        calls.append(cfg.problem)
        return real(cfg, **kw)

    monkeypatch.setattr(dist, "run_cell", counting)
    bad = CellConfig(problem="no-such-problem", nfe=4, n_samples=16, metrics=("w2_exact",))
    # a torchsde back-end on a logsnr grid: refused when the cell is prepared (it needs a uniform grid)
    grid = CellConfig(problem="gauss1d", solver="torchsde-euler", schedule="logsnr", nfe=4, n_samples=16,
                      metrics=("w2_exact",))
    store = Store(tmp_path / "s")
    counts = execute([(cell_key(bad), bad, "em"), (cell_key(grid), grid, "torchsde-euler")], store, workers=0,
                     retries=2, sweep="r")
    assert counts == {"error": 2} and len(calls) == 2
    df, _ = store.consolidate()
    assert list(df["attempts"]) == [1, 1]
    msgs = " ".join(df["error"])
    assert "no-such-problem" in msgs and "applies only to schedules ['uniform'], not 'logsnr'" in msgs


@pytest.mark.slow
def test_local_cluster_default_path_matches_serial(tmp_path):
    cells = _cells(n_nfe=2, seeds=1)
    a, b = Store(tmp_path / "a"), Store(tmp_path / "b")
    execute(cells, a, workers=0)
    execute(cells, b, workers=2)
    da, _ = a.consolidate()
    db, _ = b.consolidate()
    assert list(da["cell_key"]) == list(db["cell_key"])
    assert (da["w2_exact"] == db["w2_exact"]).all()


def test_batches_hold_consecutive_cells_of_one_group_and_skip_finished_cells(tmp_path):
    """A Dask task is a batch of consecutive cells of one cache group (at most BATCH); a batch re-run after its
    worker died does not run the cells already in the store."""
    from sdebench.distributed import _batches, _group, run_batch
    from sdebench.sweep import config_to_dict

    cfgs = [CellConfig(problem=p, sde="vp", solver="em", nfe=n, n_samples=16, metrics=("w2",))
            for p in ("gauss1d", "gmm1d") for n in (4, 8, 12)]
    tasks = [(cell_key(c), c, "em") for c in cfgs]
    assert [len(b) for b in _batches(tasks, 16)] == [3, 3]
    assert [len(b) for b in _batches(tasks, 2)] == [2, 1, 2, 1]
    assert all(len({_group(c) for _, c, _ in b}) == 1 for b in _batches(tasks, 16))
    store = Store(tmp_path / "s")
    items = [(config_to_dict(c), k, "em") for k, c, _ in tasks[:3]]
    assert [s for _, s in run_batch(items, str(store.root), "b", 0)] == ["ok"] * 3
    first = {k: store.path(k).stat().st_mtime_ns for _, k, _ in items}
    assert [s for _, s in run_batch(items, str(store.root), "b", 0)] == ["ok"] * 3
    assert {k: store.path(k).stat().st_mtime_ns for _, k, _ in items} == first


def test_local_cluster_workers_keep_glibcs_malloc_thresholds_usable():
    """Dask's nanny exports MALLOC_TRIM_THRESHOLD_=65536, which freezes glibc's mmap threshold at 128 KiB (every
    large tensor a fresh mmap: 2.7x slower study cells); the sweep's cluster sets both thresholds high."""
    from distributed import Client

    from sdebench.distributed import WORKER_MALLOC, _local_cluster

    cluster = _local_cluster(1)
    try:
        with Client(cluster) as client:
            env = next(iter(client.run(lambda: {k: os.environ.get(k) for k in WORKER_MALLOC}).values()))
    finally:
        cluster.close()
    assert env == {k: str(v) for k, v in WORKER_MALLOC.items()}
