"""Monte Carlo floors: the null distribution of a statistic on independent exact target samples."""

from __future__ import annotations

import math
from collections import OrderedDict

import torch

__all__ = ["NULL_DRAWS", "null_draws", "null_columns", "target_sample"]

NULL_DRAWS = 8  # independent exact-target draws behind every <metric>_null
_NULL_CACHE: OrderedDict = OrderedDict()
_NULL_CACHE_SIZE = 512


def target_sample(problem, n: int, seed: int, stream: int) -> torch.Tensor:
    # mod 2^64, which manual_seed accepts: any seed up to 2^63 - 1 (the value is unchanged for seeds < 2^44)
    g = torch.Generator().manual_seed((1_000_003 * (seed + 1) + 7919 * stream) % 2**64)
    return problem.sample(n, generator=g)


def _law_key(law) -> tuple:
    return tuple(hash(t.detach().to(torch.float64).cpu().numpy().tobytes()) for t in (law.weights, law.means, law.covs))


def null_draws(target, n: int, name: str, fn, paired: bool = False, extra=()) -> list:
    """``fn`` on ``NULL_DRAWS`` independent exact samples of ``target`` of size n (``fn(y, ref)`` with a second,
    independent sample when ``paired``): the null distribution of a statistic. Draw j uses the generator
    seeds of seed j (streams 1 and 2), so the draws do not depend on the cell; cached per (target, n,
    statistic, extra) for the process, since they do not depend on the solver either."""
    def draws() -> list:
        vals = []
        for j in range(NULL_DRAWS):
            y = target_sample(target, n, j, stream=1)
            vals.append(fn(y, target_sample(target, n, j, stream=2)) if paired else fn(y))
        return vals

    return lru_lookup(_NULL_CACHE, (name, _law_key(target), n, extra), _NULL_CACHE_SIZE, draws)


def lru_lookup(cache: OrderedDict, key, size: int, make):
    """``cache[key]``, computed by ``make()`` on a miss; least recently used entries beyond ``size`` dropped."""
    value = cache.get(key)
    if value is None:
        value = cache[key] = make()
        if len(cache) > size:
            cache.popitem(last=False)
    else:
        cache.move_to_end(key)
    return value


def paired_sample_applies(ctx):
    """Rule of the metrics judged against an independent target sample of the cell's size (emd_w2, sinkhorn)."""
    if ctx.is_image:
        return "not for image problems"
    return True if ctx.n <= 10_000 else "needs n <= 10,000 samples"


def null_columns(name: str, vals) -> dict:
    """``<name>_null`` (mean of the draws) and ``<name>_null_sd`` (their standard deviation)."""
    v = torch.tensor([float(a) for a in vals], dtype=torch.float64)
    return {f"{name}_null": float(v.mean()), f"{name}_null_sd": float(v.std()) if len(v) > 1 else math.nan}
