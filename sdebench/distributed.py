"""Run cells through dask.distributed; each finished cell is written to the store by the task itself.

* Default: a ``LocalCluster`` of ``workers`` single-threaded worker processes (default: one per CPU core).
* ``scheduler="tcp://HOST:PORT"``: the same cells on an existing Dask cluster (``dask scheduler`` +
  ``dask worker``, or dask-jobqueue's ``SLURMCluster``). The store folder must then be on a file system
  every worker can write (its absolute path is sent with each task).
* ``workers=0`` (``sdebench sweep --serial``): run in this process, one cell after the other (debugging; no Dask).

A Dask task is a batch of up to ``BATCH`` consecutive cells of one cache group (:func:`run_batch`): Dask's own
cost (~24 ms a task) is paid once per batch, and the group's cached reference solves stay in one worker. Each
cell's file is written (atomically, see :mod:`sdebench.store`) as soon as it is done, so a worker killed
mid-sweep loses only the cell it was computing; Dask reschedules the batch on another worker, which skips the
cells already in the store. A cell whose run ends in an exception or in a row with status ``error`` is
retried up to ``retries`` more times in the worker, then recorded as a row with status ``error``, its message
and the number of attempts. A ConfigError (a deterministic refusal of the config: the same input fails
the same way every time) is never retried: the task writes its error row (attempts 1) and returns.
Cells on a CUDA device are submitted with ``resources={"GPU": 1}``, so on a cluster whose GPU workers
were started with ``--resources GPU=1`` they go only to those workers.
"""

from __future__ import annotations

import logging
import os

from .errors import ConfigError
from .run import _versions, run_cell
from .store import Store
from .sweep import config_from_dict, config_to_dict

__all__ = ["CellFailed", "run_and_store", "run_batch", "execute", "error_row", "BATCH", "WORKER_THREADS"]

BATCH = 16  # cells of one cache group per Dask task (Dask's own cost is ~24 ms a task: issue 13)
WORKER_THREADS = 1  # torch intra-op threads of a sweep worker (and the default of `sdebench run --threads`)


class CellFailed(RuntimeError):
    """A cell's run ended with status 'error' (raised inside the task so that Dask retries it)."""


def run_and_store(cfg_dict: dict, key: str, store_root: str, label: str, sweep: str) -> tuple[str, str]:
    """The worker task: run one cell, write its file, return (key, status). Raises on status 'error'
    (so that the cell is retried), except for a ConfigError, which is written at once and never retried.

    Torch runs single-threaded inside a task (:data:`WORKER_THREADS`): a sweep's parallelism is across
    cells, and intra-op threads competing with the other workers make the small tensor operations of a
    cell 10-20x slower."""
    import torch

    torch.set_num_threads(WORKER_THREADS)

    try:
        row = run_cell(config_from_dict(cfg_dict), raise_config_errors=True)
    except ConfigError as exc:  # deterministic: retrying gives the same error
        Store(store_root).write(key, cfg_dict, error_row(cfg_dict, str(exc).splitlines()[0][:500], 1),
                                label=label, sweep=sweep)
        return key, "error"
    if row.get("status") == "error":
        raise CellFailed(row.get("error") or "cell failed without a message")
    Store(store_root).write(key, cfg_dict, row, label=label, sweep=sweep)
    return key, row["status"]


def error_row(cfg_dict: dict, message: str, attempts: int) -> dict:
    """The row recorded for a cell that failed every attempt."""
    row = {k: v for k, v in cfg_dict.items() if k not in ("metrics", "solver_options")}
    row["solver_options"] = ",".join(f"{k}={v}" for k, v in sorted(cfg_dict.get("solver_options", {}).items()))
    row.update(status="error", error=message, attempts=attempts)
    row.update(_versions(cfg_dict.get("device", "cpu")))
    return row


def _message(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if not isinstance(exc, CellFailed):
        text = f"{type(exc).__name__}: {text}"
    return text.splitlines()[0][:500]


def _serial(tasks, store: Store, retries: int, sweep: str, progress) -> dict:
    import torch

    threads = torch.get_num_threads()
    try:
        return _serial_loop(tasks, store, retries, sweep, progress)
    finally:
        torch.set_num_threads(threads)


def _run_with_retries(d: dict, key: str, label: str, store: Store, retries: int, sweep: str) -> str:
    """One cell in this process: up to ``retries`` more attempts after a failure, then an error row."""
    for attempt in range(retries + 1):
        try:
            return run_and_store(d, key, str(store.root.resolve()), label, sweep)[1]
        except Exception as exc:  # bounded retries, then an error row
            if attempt == retries:
                store.write(key, d, error_row(d, _message(exc), retries + 1), label=label, sweep=sweep)
    return "error"


def _serial_loop(tasks, store: Store, retries: int, sweep: str, progress) -> dict:
    counts: dict = {}
    for key, cfg, label in tasks:
        status = _run_with_retries(config_to_dict(cfg), key, label, store, retries, sweep)
        counts[status] = counts.get(status, 0) + 1
        if progress is not None:
            progress.update(status)
    return counts


def run_batch(items: list, store_root: str, sweep: str, retries: int) -> list[tuple[str, str]]:
    """The worker task of a batch: ``items`` = [(cfg_dict, key, label)] of one cache group, run one after the
    other in this worker (each with its own retries, as ``--serial`` does); a cell whose file is already in
    the store (a batch re-run after its worker died) is not run again. Returns [(key, status)]."""
    store = Store(store_root)
    out = []
    for d, key, label in items:
        done = store.status_of(key)
        out.append((key, done if done in ("ok", "diverged") else
                    _run_with_retries(d, key, label, store, retries, sweep)))
    return out


def _batches(tasks: list, size: int) -> list[list]:
    """Consecutive tasks of one cache group (:func:`_group`), at most ``size`` to a batch."""
    out: list[list] = []
    for t in tasks:
        if out and len(out[-1]) < size and _group(out[-1][-1][1]) == _group(t[1]):
            out[-1].append(t)
        else:
            out.append([t])
    return out


def _group(cfg) -> tuple:
    """The cells that share per-process caches (reference solves, nulls): same problem, SDE, schedule, seed."""
    return (cfg.problem, cfg.sde, cfg.schedule, cfg.seed, cfg.t_end, cfg.init, cfg.dtype, cfg.crn_steps)


def _affinity(client, tasks: list, n: int) -> dict:
    """On a local cluster of n > 1 CPU workers: group -> [worker address], groups dealt round-robin in order of
    first appearance, so a group's cached reference solves are computed by one worker; the restriction is
    loose (``allow_other_workers``), so Dask's work stealing still balances the load."""
    if n <= 1 or any(cfg.device.startswith("cuda") for _, cfg, _ in tasks):
        return {}
    client.wait_for_workers(n)
    addrs = sorted(client.scheduler_info()["workers"])
    home: dict = {}
    for _, cfg, _ in tasks:
        g = _group(cfg)
        if g not in home:
            home[g] = [addrs[len(home) % len(addrs)]]
    return home


# glibc settings of the worker processes. Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536 (to hand memory back
# to the OS); setting any malloc threshold freezes glibc's mmap threshold at 128 KiB, so every tensor above that
# is a fresh mmap whose pages fault in and are unmapped on free: measured on 35 study cells (gmm-d32 SDE, n = 2000;
# gauss-aniso16 exact law) in one process, 31.4 s wall (18.4 s system time) with Dask's setting against 11.5 s
# (0.6 s) with these. The whole study spent 940 s of system time under Dask's setting.
WORKER_MALLOC = {"MALLOC_TRIM_THRESHOLD_": 2**28, "MALLOC_MMAP_THRESHOLD_": 2**25}


def _local_cluster(n: int, gpu: bool = False):
    import dask
    from distributed import LocalCluster

    env = {f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in WORKER_MALLOC.items()}
    # the nanny prefers this process's environment over its config, and writes its values into it when it
    # spawns (so an earlier cluster in this process leaves Dask's 65536 behind): set ours here too
    os.environ.update({k: str(v) for k, v in WORKER_MALLOC.items()})
    with dask.config.set(env):
        return LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0",
                            silence_logs=logging.ERROR, resources={"GPU": 1} if gpu else None)


def execute(tasks: list, store: Store, *, workers: int | None = None, scheduler: str | None = None,
            retries: int = 2, sweep: str = "", progress=None, connect_timeout: str = "30s") -> dict:
    """Run ``tasks`` (``(key, CellConfig, label)`` triples) and write each to ``store``.

    Returns the count of cells per final status."""
    if retries < 0:
        raise ValueError("retries must be >= 0")
    if not tasks:
        return {}
    if workers == 0 and scheduler is None:
        return _serial(tasks, store, retries, sweep, progress)

    from distributed import Client, as_completed

    cluster = None
    if scheduler is None:
        n = workers or os.cpu_count() or 1
        gpu = any(cfg.device.startswith("cuda") for _, cfg, _ in tasks)
        cluster = _local_cluster(n, gpu)
        client = Client(cluster)
    else:
        try:
            client = Client(scheduler, timeout=connect_timeout)
        except (OSError, TimeoutError) as exc:
            raise ConfigError(f"cannot reach the Dask scheduler {scheduler!r}: {str(exc).splitlines()[0]}") from None
    root = str(store.root.resolve())
    counts: dict = {}
    try:
        home = _affinity(client, tasks, n if cluster is not None else 0)
        futures = {}
        for batch in _batches(tasks, BATCH):
            items = [(config_to_dict(cfg), key, label) for key, cfg, label in batch]
            cfg = batch[0][1]
            res = {"GPU": 1} if cfg.device.startswith("cuda") else None
            where = home.get(_group(cfg))
            fut = client.submit(run_batch, items, root, sweep, retries, key=f"cells-{batch[0][0]}", pure=False,
                                retries=retries, resources=res, workers=where, allow_other_workers=where is not None)
            futures[fut] = items
        for fut in as_completed(futures):
            items = futures[fut]
            try:
                statuses = [status for _, status in fut.result()]
            except Exception as exc:  # the worker died too often: an error row for each cell not in the store
                statuses = []
                for d, key, label in items:
                    status = store.status_of(key)
                    if status not in ("ok", "diverged"):
                        store.write(key, d, error_row(d, _message(exc), retries + 1), label=label, sweep=sweep)
                        status = "error"
                    statuses.append(status)
            for status in statuses:
                counts[status] = counts.get(status, 0) + 1
                if progress is not None:
                    progress.update(status)
            fut.release()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return counts
