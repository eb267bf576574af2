"""Noise floors, bootstrap confidence intervals over seeds and convergence-order fits.

Conventions (docs/theory.md#statistics):

- **at_floor** (a row): every sampled metric has a null distribution, the same statistic on
  ``NULL_DRAWS`` (8) independent exact-target samples of the same n (``<metric>_null`` is their mean,
  ``<metric>_null_sd`` their standard deviation). A row's ``<metric>_at_floor`` says the value is not
  significantly above that distribution: below null + ``NULL_Z`` (2) null_sd. Metrics whose null is
  their own standard error (the change-of-variables KL/TV, whose target-vs-target value is exactly 0)
  are at the floor below ``FLOOR_FACTOR`` (3) standard errors. Exact metrics (no null) are at the floor
  below ``ABS_FLOOR`` (1e-13, float64 rounding). "At the floor" says "below what this n can resolve",
  not "error = this value".
- **fit floor**: slope fits (and ``point_summary``) drop the points whose mean over seeds is below
  ``FLOOR_FACTOR`` (3) times the mean null: a value that is significantly above the null but within 3x
  of it is still inflated by the sampling noise (for W2-like metrics value^2 ~ error^2 + null^2), which
  would bias a slope.
- **order fit**: least squares of log(error) on log(x) (x = step size, NFE, EPS, ...), or of log(error) on
  x for semilog fits (error against horizon T). The fit uses the *asymptotic window*: among the points
  above the floor, ordered from coarse to fine, the longest run at the fine end whose local slopes
  (between neighbouring points) all lie within ``WINDOW_TOL`` (0.3) of the finest local slope; at least
  ``MIN_POINTS`` (3) points, else the finest 3 (or fewer, flagged).
- **bootstrap over seeds**: every seed contributes a whole curve (error at every x). A bootstrap replicate
  draws seeds with replacement, averages the curves of the drawn seeds point by point and refits the
  slope on the same window; the seed CI is the 2.5/97.5 percentile of ``B`` (1000) replicates. The
  reported 95% CI is the wider of that interval and the t-based 95% interval of the regression slope of
  the mean curve, so a curve that still bends inside the window widens the CI even when every seed bends
  the same way (pathwise errors on a Gaussian target differ between seeds only by a common factor).
  With one seed (or exact, seed-free metrics) only the regression interval exists.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["FLOOR_FACTOR", "NULL_Z", "ABS_FLOOR", "at_floor", "flag_values", "fit_slope", "asymptotic_window",
           "OrderFit", "fit_order", "bootstrap_mean_ci", "local_slopes"]

FLOOR_FACTOR = 3.0
NULL_Z = 2.0
ABS_FLOOR = 1e-13
WINDOW_TOL = 0.3
MIN_POINTS = 3


def at_floor(value, null=None, factor: float = FLOOR_FACTOR, abs_floor: float = ABS_FLOOR, null_sd=None,
             z: float = NULL_Z):
    """True where ``value`` is non-finite or below ``abs_floor``; with a null distribution (``null`` its mean
    over independent target draws, ``null_sd`` their standard deviation), where ``value`` is not
    significantly above it: below null + ``z`` null_sd; with a null but no (finite) ``null_sd`` (a
    standard error, or a mean null in an order fit), below ``factor`` x ``null``."""
    v = np.asarray(value, dtype=float)
    out = ~np.isfinite(v) | (v < abs_floor)
    if null is not None:
        nl = np.asarray(null, dtype=float)
        thr = factor * nl
        if null_sd is not None:
            sd = np.asarray(null_sd, dtype=float)
            thr = np.where(np.isfinite(sd), nl + z * sd, thr)
        out = out | (np.isfinite(nl) & (v < thr))
    return out


def flag_values(values) -> np.ndarray:
    """Stored ``<metric>_at_floor`` flags as floats: 1.0 where set (a bool, or "True" / "true" / "1" / "1.0" as a
    CSV round trip leaves it), 0.0 where not, NaN where missing (None or a float NaN)."""
    return np.array([math.nan if v is None or (isinstance(v, float) and math.isnan(v))
                     else float(str(v) in ("True", "true", "1", "1.0")) for v in values], dtype=float)


def fit_slope(x, y, semilog: bool = False) -> tuple[float, float]:
    """Least-squares slope of log y on log x (or on x if ``semilog``) and its standard error."""
    x = np.asarray(x, dtype=float)
    y = np.log(np.asarray(y, dtype=float))
    X = x if semilog else np.log(x)
    if len(X) < 2:
        return math.nan, math.nan
    A = np.vstack([X, np.ones_like(X)]).T
    coef, res, *_ = np.linalg.lstsq(A, y, rcond=None)
    if len(X) <= 2:
        return float(coef[0]), math.nan
    resid = y - A @ coef
    s2 = float(resid @ resid) / (len(X) - 2)
    sxx = float(((X - X.mean()) ** 2).sum())
    return float(coef[0]), math.sqrt(s2 / sxx) if sxx > 0 else math.nan


def local_slopes(x, y, semilog: bool = False) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    ly = np.log(np.asarray(y, dtype=float))
    X = x if semilog else np.log(x)
    return np.diff(ly) / np.diff(X)


def asymptotic_window(x, y, floor_mask=None, fine_is_small: bool = True, semilog: bool = False,
                      tol: float = WINDOW_TOL, min_points: int = MIN_POINTS) -> np.ndarray:
    """Boolean mask of the points used for the fit (see module docstring).

    ``fine_is_small``: the asymptotic end is small x (step size, EPS) rather than large x (NFE)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    ok = np.isfinite(y) & (y > 0)
    if floor_mask is not None:
        ok &= ~np.asarray(floor_mask, dtype=bool)
    idx = np.nonzero(ok)[0]
    order = idx[np.argsort(-x[idx] if fine_is_small else x[idx])]  # coarse -> fine
    mask = np.zeros(len(x), dtype=bool)
    if len(order) <= min_points:
        mask[order] = True
        return mask
    ls = local_slopes(x[order], y[order], semilog)
    ref = ls[-1]
    start = len(order) - 1  # index into order of the first point of the window
    for j in range(len(ls) - 1, -1, -1):
        if abs(ls[j] - ref) <= tol:
            start = j
        else:
            break
    start = min(start, len(order) - min_points)
    mask[order[start:]] = True
    return mask


@dataclass
class OrderFit:
    slope: float
    lo: float
    hi: float
    n_points: int
    n_floor: int
    n_seeds: int
    method: str  # "bootstrap" or "regression"
    window: tuple  # x values used

    def as_dict(self) -> dict:
        return {"slope": self.slope, "ci_lo": self.lo, "ci_hi": self.hi, "points": self.n_points,
                "at_floor": self.n_floor, "seeds": self.n_seeds, "ci_method": self.method,
                "window": ",".join(f"{v:g}" for v in self.window)}


def fit_order(x, Y, null=None, semilog: bool = False, fine_is_small: bool = True, B: int = 1000,
              seed: int = 0, window=None, null_sd=None, flags=None) -> OrderFit:
    """Slope of the mean curve with a 95% CI.

    x : (m,) abscissae. Y : (s, m) errors, one row per seed (or (m,) for a single curve). null : same
    shape as Y or (m,), the Monte Carlo floor of each point (None for exact metrics). null_sd : like
    null, the spread of the null draws (``<metric>_null_sd``) where the rows have it: a point is then
    also dropped where a row's ``<metric>_at_floor`` rule (below null + 2 null_sd) holds for the mean, so
    no point flagged at its resolution limit enters a fit whatever the spread of its null. flags : like Y,
    the metric's own at-the-limit flags (``<metric>_at_floor`` of a metric with ``Metric.own_floor``): they
    replace the null rule; a point is at the limit where at least half of its seeds are flagged.
    """
    x = np.asarray(x, dtype=float)
    Y = np.atleast_2d(np.asarray(Y, dtype=float))
    s = Y.shape[0]
    ybar = np.nanmean(Y, axis=0)
    floor = None
    if null is not None:
        N = np.atleast_2d(np.asarray(null, dtype=float))
        floor = np.nanmean(N, axis=0)
    fmask = at_floor(ybar, floor if flags is None else None)
    if flags is not None:
        F = np.atleast_2d(np.asarray(flags, dtype=float))
        fmask = fmask | (np.nanmean(F, axis=0) >= 0.5)
    elif null is not None and null_sd is not None:
        sd = np.nanmean(np.atleast_2d(np.asarray(null_sd, dtype=float)), axis=0)
        fmask = fmask | at_floor(ybar, floor, null_sd=sd)
    mask = asymptotic_window(x, ybar, fmask, fine_is_small, semilog) if window is None else np.asarray(window)
    n_floor = int(fmask.sum())
    if mask.sum() < 2:
        return OrderFit(math.nan, math.nan, math.nan, int(mask.sum()), n_floor, s, "none", tuple(x[mask]))
    slope, se = fit_slope(x[mask], ybar[mask], semilog)
    from scipy import stats as st

    dof = int(mask.sum()) - 2
    half = st.t.ppf(0.975, dof) * se if dof > 0 and math.isfinite(se) else math.nan
    if s >= 2:
        rng = np.random.default_rng(seed)
        reps = []
        for _ in range(B):
            pick = rng.integers(0, s, size=s)
            yb = np.nanmean(Y[pick], axis=0)[mask]
            if np.all(yb > 0):
                reps.append(fit_slope(x[mask], yb, semilog)[0])
        lo, hi = np.percentile(reps, [2.5, 97.5])
        method = "bootstrap"
        if math.isfinite(half) and hi - lo < 2 * half:
            lo, hi = min(lo, slope - half), max(hi, slope + half)
            method = "bootstrap+regression"
    else:
        lo, hi = slope - half, slope + half
        method = "regression"
    return OrderFit(float(slope), float(lo), float(hi), int(mask.sum()), n_floor, s, method, tuple(x[mask]))


def bootstrap_mean_ci(values, B: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of per-seed values with a percentile bootstrap 95% CI (one value per seed)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return math.nan, math.nan, math.nan
    if len(v) == 1:
        return float(v[0]), math.nan, math.nan
    rng = np.random.default_rng(seed)
    reps = v[rng.integers(0, len(v), size=(B, len(v)))].mean(1)
    lo, hi = np.percentile(reps, [2.5, 97.5])
    return float(v.mean()), float(lo), float(hi)


def point_summary(df, metrics, keys, B: int = 1000, seed: int = 0):
    """One row per (keys..., metric): mean over seeds with its bootstrap 95% CI, the mean null and at_floor.

    ``df`` is a results table (one row per cell); ``keys`` the columns that identify a point (everything
    but the seed)."""
    import pandas as pd

    out = []
    for gkey, g in df.groupby(list(keys), sort=False, dropna=False):
        info = dict(zip(keys, gkey if isinstance(gkey, tuple) else (gkey,)))
        for m in metrics:
            if m not in g or g[m].isna().all():
                continue
            mean, lo, hi = bootstrap_mean_ci(g[m].to_numpy(dtype=float), B=B, seed=seed)
            null = float(g[f"{m}_null"].mean()) if f"{m}_null" in g else math.nan
            out.append({**info, "metric": m, "mean": mean, "ci_lo": lo, "ci_hi": hi, "null": null,
                        "seeds": int(g[m].notna().sum()),
                        "at_floor": bool(at_floor(mean, null if math.isfinite(null) else None))})
    return pd.DataFrame(out)
