"""Denoising score matching for the image U-Net, with EMA weights, periodic checkpoints and resume.

Objective (eps parametrization, Vincent 2011 / Ho et al. 2020): t ~ U(t_min, T),
x_t = alpha_t x_0 + sigma_t z, loss = E || eps_theta(x_t / sqrt(alpha_t^2 + sigma_t^2), lambda_t) - z ||^2.
The held-out loss is the same expectation on the held-out split with a fixed draw of (t, z).
The checkpoint files and their validation are in :mod:`sdebench.problems.checkpoint`.
"""

from __future__ import annotations

import copy
import math
import sys
import time

import torch

from sdebench.errors import ConfigError
from sdebench.problems.checkpoint import (
    FORMAT,
    _load_into,
    _load_state,
    _read_json,
    _stem,
    _weights,
    default_arch,
    save_checkpoint,
)
from sdebench.problems.images import load_data, net_inputs
from sdebench.problems.unet import UNet
from sdebench.sde import get_sde

__all__ = ["train_dsm", "heldout_loss", "dsm_loss", "check_device"]


def dsm_loss(net, sde, x0: torch.Tensor, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Per-sample eps-matching loss (mean over pixels)."""
    t64 = t.to(torch.float64).cpu()
    a = torch.exp(sde.log_alpha(t64)).to(x0)
    s = torch.sqrt(sde.sigma2(t64)).to(x0)
    xt = a[:, None, None, None] * x0 + s[:, None, None, None] * z
    c_in, lam = net_inputs(sde, xt.reshape(len(xt), -1), t64)
    pred = net(xt * c_in[:, None, None, None], lam)
    return ((pred - z) ** 2).flatten(1).mean(1)


def sample_t(sde, n: int, t_min: float, gen: torch.Generator) -> torch.Tensor:
    return t_min + (sde.T - t_min) * torch.rand(n, generator=gen, dtype=torch.float64)


@torch.no_grad()
def heldout_loss(net, sde, x: torch.Tensor, t_min: float, repeats: int = 4, seed: int = 12345,
                 batch: int = 1024) -> float:
    """Mean DSM loss on ``x`` with a fixed (t, z) draw per image and repeat."""
    g = torch.Generator().manual_seed(seed)
    dev = next(net.parameters()).device
    tot, cnt = 0.0, 0
    for _ in range(repeats):
        for i in range(0, len(x), batch):
            xb = x[i:i + batch]
            t = sample_t(sde, len(xb), t_min, g)
            z = torch.randn(xb.shape, generator=g)
            loss = dsm_loss(net, sde, xb.to(dev), t, z.to(dev))
            tot += float(loss.sum())
            cnt += len(xb)
    return tot / cnt


def _ema_update(ema, net, decay: float) -> None:
    with torch.no_grad():
        for pe, p in zip(ema.parameters(), net.parameters()):
            pe.mul_(decay).add_(p.detach(), alpha=1 - decay)
        for be, b in zip(ema.buffers(), net.buffers()):
            be.copy_(b)


def check_device(device: str) -> torch.device:
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available")
    try:
        return torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {device!r}: {exc}") from None


def train_dsm(data: str = "digits", sde_name: str = "vp", steps: int = 4000, batch: int = 128, lr: float = 2e-3,
              ema_decay: float = 0.999, seed: int = 0, out="checkpoints/digits_unet", ckpt_every: int = 500,
              resume: bool = False, device: str = "cpu", arch: dict | None = None, amp: bool = False,
              progress: bool = True, command: str = "", log=None) -> dict:
    """Train (or resume) a U-Net eps model; returns the final config (also written to ``<out>.json``)."""
    if steps < 1 or batch < 1 or ckpt_every < 1:
        raise ConfigError(f"steps, batch and checkpoint interval must be >= 1, got {steps}, {batch}, {ckpt_every}")
    if not (0 < lr < 1) or not (0 <= ema_decay < 1):
        raise ConfigError(f"need 0 < lr < 1 and 0 <= ema < 1, got lr={lr}, ema={ema_decay}")
    dev = check_device(device)
    ds = load_data(data)
    sde = get_sde(sde_name)
    t_min = sde.t_end_default
    stem = _stem(out)
    arch = dict(default_arch(ds.shape), **(arch or {}))
    if arch["channels"] != ds.shape[0] or arch["size"] != ds.shape[1]:
        raise ConfigError(f"architecture {arch} does not fit {data} images of shape {ds.shape}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = UNet(**arch).to(dev)
    ema = copy.deepcopy(net)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    start = 0
    cfg = {"format": FORMAT, "kind": "eps", "arch": net.config, "data": data, "sde": sde.name,
           "sde_params": sde.params(), "t_min": t_min, "steps": steps, "batch": batch, "lr": lr,
           "ema": ema_decay, "seed": seed, "amp": amp, "params": net.n_params(), "command": command,
           "step": 0, "train_loss": None, "heldout_loss": None, "wall_s": 0.0, "device": str(dev)}
    if resume:
        old = _read_json(stem.with_name(stem.name + ".json"))
        for key in ("arch", "data", "sde", "kind"):
            if old.get(key) != cfg[key]:
                raise ConfigError(f"cannot resume {str(stem)!r}: it was trained with {key}={old.get(key)!r}, "
                                  f"not {cfg[key]!r}")
        _load_into(ema, _weights(stem, old), stem)
        _load_state(stem, old, net, opt, gen)
        start = int(old.get("step", 0))
        cfg["wall_s"] = float(old.get("wall_s", 0.0))
        cfg["command"] = (old.get("command", "") + " ; " + command).strip(" ;")
        if start >= steps:
            raise ConfigError(f"checkpoint {str(stem)!r} is already at step {start} >= --steps {steps}")
    x_train = ds.train.to(dev)
    use_amp = bool(amp)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=steps, initial=start, desc=f"train {data}", file=sys.stderr, dynamic_ncols=True)
    t0 = time.perf_counter()
    running = None
    net.train()
    for step in range(start, steps):
        idx = torch.randint(len(x_train), (batch,), generator=gen)
        t = sample_t(sde, batch, t_min, gen)
        z = torch.randn((batch, *ds.shape), generator=gen).to(dev)
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=use_amp):
            loss = dsm_loss(net, sde, x_train[idx.to(dev)], t, z).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        _ema_update(ema, net, min(ema_decay, (1 + step) / (10 + step)))
        lv = float(loss.detach()) if (step % 10 == 0 or step == steps - 1) else None
        if lv is not None:
            if not math.isfinite(lv):
                raise ConfigError(f"training diverged at step {step} (loss {lv}); lower --lr")
            running = lv if running is None else 0.9 * running + 0.1 * lv
        if bar is not None:
            bar.update(1)
            if lv is not None:
                bar.set_postfix(loss=f"{running:.4f}")
        done = step + 1
        if done % ckpt_every == 0 or done == steps:
            cfg.update(step=done, train_loss=running, wall_s=cfg["wall_s"] + time.perf_counter() - t0)
            t0 = time.perf_counter()
            if done == steps:
                cfg["heldout_loss"] = heldout_loss(ema.eval(), sde, ds.test, t_min)
                cfg["train_eval_loss"] = heldout_loss(ema.eval(), sde, ds.train[:len(ds.test)], t_min)
            save_checkpoint(stem, ema, cfg, net=net, opt=opt, gen=gen)
            if log is not None:
                log(f"step {done}: train loss {running:.4f}, checkpoint {stem}.safetensors")
    if bar is not None:
        bar.close()
    return cfg
