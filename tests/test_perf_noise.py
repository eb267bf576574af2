"""The noise generators after the performance work: the CPU default still draws exactly the per-block
values (a from-scratch reimplementation of the block scheme), and the counter generator (the CUDA
default) is keyed, batch independent, CRN-summable and standard normal."""

from __future__ import annotations

import hashlib
import math

import pytest
import torch

from sdebench.errors import ConfigError
from sdebench.noise import BLOCK, NoiseSource, counter_normal
from sdebench.schedules import make_grid
from sdebench.sde import get_sde


def _reference_blocks(seed, key, n, shape, dtype=torch.float64):
    """The original definition: block b from a generator seeded by blake2b(repr((seed, *key, b)))."""
    out = torch.empty((n, *shape), dtype=dtype)
    gen = torch.Generator()
    for b, start in enumerate(range(0, n, BLOCK)):
        h = hashlib.blake2b(repr((int(seed),) + tuple(key) + (b,)).encode(), digest_size=8)
        gen.manual_seed(int.from_bytes(h.digest(), "little") & ((1 << 63) - 1))
        block = torch.randn((BLOCK, *shape), generator=gen, dtype=dtype)
        rows = min(BLOCK, n - start)
        out[start : start + rows] = block[:rows]
    return out


@pytest.mark.parametrize("n", [1, 255, 256, 257, 1000])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cpu_default_is_the_block_scheme_bit_for_bit(n, dtype):
    src = NoiseSource(11, n, (3,), dtype=dtype)
    assert src.generator == "blocks"
    for key in [("bm-w", 4), ("init-z",), ("langevin", 2, 1)]:
        assert torch.equal(src.standard_normal(key), _reference_blocks(11, key, n, (3,), dtype))


def test_counter_generator_is_keyed_and_batch_independent():
    a = counter_normal(3, ("bm-w", 0), 300, (4,))
    b = counter_normal(3, ("bm-w", 0), 1000, (4,))
    assert torch.equal(a, b[:300])
    assert torch.equal(a, counter_normal(3, ("bm-w", 0), 300, (4,)))
    assert not torch.equal(a, counter_normal(3, ("bm-w", 1), 300, (4,)))
    assert not torch.equal(a, counter_normal(4, ("bm-w", 0), 300, (4,)))
    assert counter_normal(0, ("k",), 10, (2, 3), dtype=torch.float32).shape == (10, 2, 3)


def test_counter_generator_is_standard_normal():
    n = 400_000
    z = counter_normal(5, ("x",), n, (2,))
    se = 1 / math.sqrt(2 * n)
    assert abs(float(z.mean())) < 5 * se
    assert abs(float(z.var()) - 1) < 5 * math.sqrt(2) * se
    assert abs(float((z**4).mean()) - 3) < 5 * math.sqrt(96) * se
    assert abs(float((z[:, 0] * z[:, 1]).mean())) < 5 / math.sqrt(n)  # columns
    w = counter_normal(5, ("y",), n, (2,))
    assert abs(float((z * w).mean())) < 5 * se  # keys
    flat = z.reshape(-1)
    assert abs(float((flat[1:] * flat[:-1]).mean())) < 5 * se  # neighbouring counters
    # tail mass against the normal law: P(|z| > 3) = 0.0026998
    p = float((z.abs() > 3).double().mean())
    assert abs(p - 0.0026998) < 5 * math.sqrt(0.0027 / (2 * n))


def test_counter_generator_brownian_sums_and_selection():
    sde = get_sde("vp")
    base = make_grid(sde, 8, 1e-3, "logsnr")
    fine = NoiseSource(0, 5, (3,), base_grid=base, generator="counter").for_grid(base)
    coarse = NoiseSource(0, 5, (3,), base_grid=base, generator="counter").for_grid(make_grid(sde, 2, 1e-3, "logsnr"))
    torch.testing.assert_close(coarse.dW(1), sum(fine.dW(j) for j in range(4, 8)), rtol=0, atol=1e-15)
    assert NoiseSource(0, 2, (1,), device="cpu", generator="auto").generator == "blocks"
    with pytest.raises(ConfigError, match="bogus"):
        NoiseSource(0, 2, (1,), generator="bogus")
