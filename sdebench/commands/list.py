"""``sdebench list``: solvers, problems, SDEs, schedules and metrics with one-line descriptions."""

from __future__ import annotations

from sdebench.metrics.registry import METRICS
from sdebench.problems import PROBLEMS, describe
from sdebench.problems.network import METRICS_NOTE
from sdebench.schedules import SCHEDULES
from sdebench.sde import SDES
from sdebench.solvers import SOLVERS


def add_parser(sub):
    p = sub.add_parser("list", help="list solvers, problems, SDEs, schedules and metrics",
                       description="List what can be named on the command line.")
    p.add_argument("what", nargs="?", default="all",
                   choices=["all", "solvers", "problems", "sdes", "schedules", "metrics"])
    return p


def _order(spec) -> str:
    if spec.strong_order is not None:
        return f"weak {spec.order:g} / strong {spec.strong_order:g}"
    return f"{spec.order:g}"


def main(args) -> int:
    w = args.what
    if w in ("all", "solvers"):
        print("SOLVERS  (name, kind, order, NFE per step, capabilities: description)")
        for name, spec in sorted(SOLVERS.items()):
            nfe = "adaptive" if spec.adaptive else f"{spec.nfe_per_step}"
            print(f"  {name:26s} {spec.kind.upper():3s}  order {_order(spec):20s} NFE/step {nfe:8s} "
                  f"[{spec.capabilities()}] {spec.summary}")
    if w in ("all", "problems"):
        print("PROBLEMS")
        for name in PROBLEMS:
            print(f"  {name:26s} {describe(name)}")
        print(f"  {'pkg.module:factory':26s} your network: a zero-argument factory returning "
              f"sdebench.problems.from_network(...); {METRICS_NOTE}")
    if w in ("all", "sdes"):
        print("SDES")
        for name, cls in SDES.items():
            print(f"  {name:26s} {cls.description}")
    if w in ("all", "schedules"):
        print("SCHEDULES")
        for name, (_, desc) in SCHEDULES.items():
            print(f"  {name:26s} {desc}")
        print(f"  {'file:GRID.json':26s} a grid saved by `sdebench tune` (its SDE, solver and NFE only)")
    if w in ("all", "metrics"):
        print("METRICS  (name, exact or estimated with its _se / _null columns: description)")
        for name, m in METRICS.items():
            print(f"  {name:26s} {m.kind():26s} {m.description}")
    return 0
