"""Tracked accuracy numbers (asv ``track_*``), parametrized over problem x solver.

All three read one table of exact W2 errors computed once per run in ``setup_cache``.
"""

from __future__ import annotations

import math

from . import common


class Accuracy:
    params = (common.ACC_PROBLEMS, common.ACC_SOLVERS)
    param_names = ["problem", "solver"]
    processes = 1
    number = 1
    repeat = 1
    timeout = 600

    def setup_cache(self):
        return common.accuracy_table()

    def setup(self, table, problem, solver):
        if (problem, solver) not in table:
            raise NotImplementedError(f"solver {solver} is not registered in this version")

    def track_w2_at_fixed_nfe(self, table, problem, solver):
        return table[(problem, solver)][common.NFE_GRID.index(common.FIXED_NFE)]

    track_w2_at_fixed_nfe.unit = "W2 at NFE 24"

    def track_fitted_order(self, table, problem, solver):
        return common.fitted_order(table[(problem, solver)])

    track_fitted_order.unit = "order (W2 vs NFE)"

    def track_nfe_to_tol(self, table, problem, solver):
        v = common.nfe_to_tol(table[(problem, solver)])
        return v if math.isfinite(v) else float(2 * common.NFE_GRID[-1])

    track_nfe_to_tol.unit = "NFE to W2 <= 1e-2 (2x max NFE = not reached)"
