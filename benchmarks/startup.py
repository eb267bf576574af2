"""Start-up time of the ``sdebench`` command line against ``python -c "import torch"``.

    python benchmarks/startup.py [--repeats 5]

Each command runs ``--repeats`` times in a fresh interpreter, the commands interleaved round by round so
that a change in machine load hits them all alike; the table gives the median wall time and its ratio to
the median of ``python -c "import torch"`` from the same run. Then ``python -X importtime -c "import
sdebench.cli; sdebench.cli.build_parser()"`` is summarised: its total import time and the packages it
loads with their cumulative import times, largest first.
The target (README, "Command line"): ``sdebench list`` and ``sdebench run --help`` within 1.2x of torch.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

PY = sys.executable
COMMANDS = {
    'python -c "import torch"': [PY, "-c", "import torch"],
    "sdebench list": [PY, "-m", "sdebench.cli", "list"],
    "sdebench list solvers": [PY, "-m", "sdebench.cli", "list", "solvers"],
    "sdebench list problems": [PY, "-m", "sdebench.cli", "list", "problems"],
    "sdebench run --help": [PY, "-m", "sdebench.cli", "run", "--help"],
}


def wall_times(repeats: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {k: [] for k in COMMANDS}
    env = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    for _ in range(repeats):
        for name, cmd in COMMANDS.items():
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
            out[name].append(time.perf_counter() - t0)
    return out


def importtime(code: str = "import sdebench.cli; sdebench.cli.build_parser()") -> tuple[float, list[tuple[str, float]]]:
    """``python -X importtime -c code``: total import time (s) and the cumulative time of each package
    (a name without a dot, outside the standard library: torch, pandas, sdebench, ...) it imports,
    at whatever depth."""
    err = subprocess.run([PY, "-X", "importtime", "-c", code], check=True, capture_output=True, text=True).stderr
    total, pkgs = 0.0, {}
    for line in err.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cum, name = line[len("import time:"):].split("|")
        if not name.startswith("  "):  # depth 0: what the command itself imported
            total += int(cum) / 1e6
        if "." not in name.strip() and name.strip() not in sys.stdlib_module_names and name.strip()[0] != "_":
            pkgs[name.strip()] = max(pkgs.get(name.strip(), 0.0), int(cum) / 1e6)
    return total, sorted(pkgs.items(), key=lambda kv: -kv[1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    times = wall_times(args.repeats)
    ref = statistics.median(times['python -c "import torch"'])
    print(f"{'command':28s} {'median s':>9s} {'x torch':>8s}   all runs (s)")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:28s} {med:9.2f} {med / ref:8.2f}   " + " ".join(f"{t:.2f}" for t in ts))
    total, tops = importtime()
    print(f"\npython -X importtime -c 'import sdebench.cli; sdebench.cli.build_parser()': {total:.2f} s of imports;"
          " by top-level package:")
    for name, t in tops[:10]:
        print(f"  {name:20s} {t:6.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
