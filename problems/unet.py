"""A small time-conditioned U-Net for eps prediction on small images (8x8 digits, 28x28 MNIST, 32x32 CIFAR).

Conditioning is on the half log-SNR lambda_t (sinusoidal features -> MLP -> per-block shift), so the
same network serves every forward SDE (see problems/images.py). Architecture: conv in; per level
``num_res`` residual blocks (GroupNorm, SiLU, 3x3 conv, + time shift) then a stride-2 down-sampling
conv; a middle block; the mirror image with skip connections and nearest up-sampling; conv out.
The whole architecture is described by the JSON-able dict ``UNet.config``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["UNet", "ARCH_KEYS", "ARCH_LIMITS", "arch_error", "lambda_features"]

ARCH_KEYS = ("channels", "size", "base", "mults", "num_res", "emb_dim")
# Valid range of every architecture field (inclusive; sanity bounds far above anything trained here).
# mults: 1 to 6 levels, each a width multiplier in [1, 16]; emb_dim must also be even (sin/cos pairs).
ARCH_LIMITS = {"channels": (1, 16), "size": (1, 512), "base": (1, 1024), "mults": (1, 16), "num_res": (1, 8),
               "emb_dim": (2, 2048)}
MAX_LEVELS = 6


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def arch_error(arch) -> str | None:
    """Why ``arch`` is not a valid ``UNet.config`` (field name, bad value, valid range), or None."""
    if not isinstance(arch, dict):
        return f"'arch' must be a table of {', '.join(ARCH_KEYS)}, got {arch!r}"
    missing = [k for k in ARCH_KEYS if k not in arch]
    unknown = sorted(set(arch) - set(ARCH_KEYS))
    if missing or unknown:
        if missing:
            return f"'arch' lacks {', '.join(missing)}"
        return f"'arch' has unknown field(s) {', '.join(unknown)}"
    for k in ARCH_KEYS:
        lo, hi = ARCH_LIMITS[k]
        v = arch[k]
        if k == "mults":
            if not isinstance(v, list) or not 1 <= len(v) <= MAX_LEVELS or not all(_is_int(m) and lo <= m <= hi
                                                                                    for m in v):
                return f"arch.mults must be a list of 1 to {MAX_LEVELS} integers in [{lo}, {hi}], got {v!r}"
        elif not _is_int(v) or not lo <= v <= hi:
            return f"arch.{k} must be an integer in [{lo}, {hi}], got {v!r}"
    if arch["emb_dim"] % 2:
        return f"arch.emb_dim must be even, got {arch['emb_dim']!r}"
    return None


def lambda_features(lam: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features of lambda (range about [-10, 10]) with frequencies 2^k / 16."""
    half = dim // 2
    freqs = torch.exp(torch.arange(half, dtype=lam.dtype, device=lam.device) * (math.log(2.0) * 8 / half)) / 16
    arg = lam[:, None] * freqs[None]
    return torch.cat([torch.sin(arg), torch.cos(arg)], dim=1)


def _groups(ch: int) -> int:
    for g in (8, 4, 2, 1):
        if ch % g == 0:
            return g
    return 1


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb_dim: int):
        super().__init__()
        self.n1 = nn.GroupNorm(_groups(cin), cin)
        self.c1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, cout)
        self.n2 = nn.GroupNorm(_groups(cout), cout)
        self.c2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, e):
        h = self.c1(torch.nn.functional.silu(self.n1(x)))
        h = h + self.emb(e)[:, :, None, None]
        h = self.c2(torch.nn.functional.silu(self.n2(h)))
        return h + self.skip(x)


class UNet(nn.Module):
    def __init__(self, channels: int = 1, size: int = 8, base: int = 32, mults=(1, 2), num_res: int = 1,
                 emb_dim: int = 64):
        super().__init__()
        mults = tuple(int(m) for m in mults)
        self.config = {"channels": int(channels), "size": int(size), "base": int(base), "mults": list(mults),
                       "num_res": int(num_res), "emb_dim": int(emb_dim)}
        self.emb_dim = emb_dim
        self.emb = nn.Sequential(nn.Linear(emb_dim, 2 * emb_dim), nn.SiLU(), nn.Linear(2 * emb_dim, emb_dim))
        self.cin = nn.Conv2d(channels, base, 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        chans = [base]
        ch = base
        for i, m in enumerate(mults):
            blocks = nn.ModuleList()
            for _ in range(num_res):
                blocks.append(ResBlock(ch, base * m, emb_dim))
                ch = base * m
                chans.append(ch)
            self.down.append(blocks)
            last = i == len(mults) - 1
            self.downsample.append(nn.Identity() if last else nn.Conv2d(ch, ch, 3, stride=2, padding=1))
        self.mid = ResBlock(ch, ch, emb_dim)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i, m in reversed(list(enumerate(mults))):
            blocks = nn.ModuleList()
            for _ in range(num_res):
                blocks.append(ResBlock(ch + chans.pop(), base * m, emb_dim))
                ch = base * m
            self.up.append(blocks)
            self.upsample.append(nn.Identity() if i == 0 else nn.Conv2d(ch, ch, 3, padding=1))
        self.nout = nn.GroupNorm(_groups(ch), ch)
        self.cout = nn.Conv2d(ch, channels, 3, padding=1)
        nn.init.zeros_(self.cout.weight)
        nn.init.zeros_(self.cout.bias)

    def forward(self, x: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        e = self.emb(lambda_features(lam.to(x.dtype), self.emb_dim))
        h = self.cin(x)
        skips = []
        sizes = []
        for blocks, ds in zip(self.down, self.downsample):
            for b in blocks:
                h = b(h, e)
                skips.append(h)
            sizes.append(h.shape[-2:])
            h = ds(h)
        h = self.mid(h, e)
        for blocks, us in zip(self.up, self.upsample):
            for b in blocks:
                h = b(torch.cat([h, skips.pop()], dim=1), e)
            if not isinstance(us, nn.Identity):
                sizes.pop()
                h = torch.nn.functional.interpolate(h, size=tuple(sizes[-1]), mode="nearest")
                h = us(h)
        return self.cout(torch.nn.functional.silu(self.nout(h)))

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
