"""Run cells through dask.distributed; each finished cell is written to the store by the task itself.

* Default: a ``LocalCluster`` of ``workers`` single-threaded worker processes (default: one per CPU core).
* ``scheduler="tcp://HOST:PORT"``: the same cells on an existing Dask cluster (``dask scheduler`` +
  ``dask worker``, or dask-jobqueue's ``SLURMCluster``). The store folder must then be on a file system
  every worker can write (its absolute path is sent with each task).
* ``workers=0`` (``sdebench sweep --serial``): run in this process, one cell after the other (debugging; no Dask).

Because the worker task writes its own cell file (atomically, see :mod:`sdebench.store`) before it
returns, a worker killed mid-sweep loses only the cell it was computing; Dask reschedules that cell on
another worker. A cell whose run ends in an exception or in a row with status ``error`` is retried up to
``retries`` more times, then recorded (by the client) as a row with status ``error``, its message and
the number of attempts. A ConfigError (a deterministic refusal of the config: the same input fails
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

__all__ = ["CellFailed", "run_and_store", "execute", "error_row", "WORKER_THREADS"]

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


def _serial_loop(tasks, store: Store, retries: int, sweep: str, progress) -> dict:
    counts: dict = {}
    for key, cfg, label in tasks:
        d = config_to_dict(cfg)
        status = None
        for attempt in range(retries + 1):
            try:
                _, status = run_and_store(d, key, str(store.root.resolve()), label, sweep)
                break
            except Exception as exc:  # bounded retries, then an error row
                if attempt == retries:
                    store.write(key, d, error_row(d, _message(exc), retries + 1), label=label, sweep=sweep)
                    status = "error"
        counts[status] = counts.get(status, 0) + 1
        if progress is not None:
            progress.update(status)
    return counts


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

    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler is None:
        n = workers or os.cpu_count() or 1
        gpu = any(cfg.device.startswith("cuda") for _, cfg, _ in tasks)
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0",
                               silence_logs=logging.ERROR, resources={"GPU": 1} if gpu else None)
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
        for key, cfg, label in tasks:
            d = config_to_dict(cfg)
            res = {"GPU": 1} if cfg.device.startswith("cuda") else None
            where = home.get(_group(cfg))
            fut = client.submit(run_and_store, d, key, root, label, sweep, key=f"cell-{key}", pure=False,
                                retries=retries, resources=res, workers=where,
                                allow_other_workers=where is not None)
            futures[fut] = (key, d, label)
        for fut in as_completed(futures):
            key, d, label = futures[fut]
            try:
                _, status = fut.result()
            except Exception as exc:  # retries exhausted or the worker died too often: record an error row
                store.write(key, d, error_row(d, _message(exc), retries + 1), label=label, sweep=sweep)
                status = "error"
            counts[status] = counts.get(status, 0) + 1
            if progress is not None:
                progress.update(status)
            fut.release()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return counts
