"""Denoising score matching for the image U-Net, with EMA weights, periodic checkpoints and resume.

Objective (eps parametrization, Vincent 2011 / Ho et al. 2020): t ~ U(t_min, T),
x_t = alpha_t x_0 + sigma_t z, loss = E || eps_theta(x_t / sqrt(alpha_t^2 + sigma_t^2), lambda_t) - z ||^2.
The held-out loss is the same expectation on the held-out split with a fixed draw of (t, z).

Files of a checkpoint ``<stem>``:

- ``<stem>.safetensors``: the EMA weights (what sampling uses);
- ``<stem>.json``: architecture, data, SDE, training settings, step, losses, command line;
- ``<stem>.state.safetensors``: raw weights, Adam moments and the RNG state, for ``--resume``
  (not needed for sampling; not committed for the shipped model).

The JSON records ``weights_sha256`` (and ``state_sha256``), the SHA-256 of the exact bytes of the
``.safetensors`` (and ``.state.safetensors``) file as written, so ``sha256sum <stem>.safetensors`` shows
the same digest. Loading validates everything it reads: a missing, truncated or foreign file, an unknown
format, an architecture field of the wrong type or out of range (``unet.ARCH_LIMITS``), weights whose
bytes differ from the recorded digest, or a weight whose name or shape does not match the architecture
is a one-line ConfigError. A checkpoint saved before digests were recorded (no ``weights_sha256``) still
loads, with one warning line on stderr; ``record_hashes(stem)`` adds the digests to such a checkpoint
without touching its weights.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import sys
import time
from pathlib import Path

import torch

from sdebench.errors import ConfigError

from .unet import UNet, arch_error

__all__ = ["train_dsm", "load_checkpoint", "save_checkpoint", "heldout_loss", "default_arch", "record_hashes",
           "FORMAT", "WEIGHTS_HASH", "STATE_HASH"]

FORMAT = "sdebench-unet-1"
WEIGHTS_HASH = "weights_sha256"  # JSON field: SHA-256 (hex) of the bytes of <stem>.safetensors
STATE_HASH = "state_sha256"  # JSON field: SHA-256 (hex) of the bytes of <stem>.state.safetensors
_WARNED: set = set()


def default_arch(shape) -> dict:
    C, H, _ = shape
    if H <= 8:
        return {"channels": C, "size": H, "base": 16, "mults": [1, 2], "num_res": 1, "emb_dim": 64}
    return {"channels": C, "size": H, "base": 32, "mults": [1, 2, 2], "num_res": 1, "emb_dim": 64}


def _stem(path) -> Path:
    p = Path(path)
    for suffix in (".state.safetensors", ".safetensors", ".json"):
        if p.name.endswith(suffix):
            return p.with_name(p.name[: -len(suffix)])
    return p


def expected_hash(cfg: dict, field: str, jpath: Path, wpath: Path) -> str | None:
    """The digest ``cfg[field]`` records for ``wpath``; None (with one warning line) if it records none."""
    want = cfg.get(field)
    if want is None:
        if (str(jpath), field) not in _WARNED:
            _WARNED.add((str(jpath), field))
            sys.stderr.write(f"sdebench: warning: checkpoint config {str(jpath)!r} records no {field}; "
                             f"{wpath.name} is loaded unverified (saved before digests were recorded)\n")
        return None
    if not isinstance(want, str) or len(want) != 64 or any(c not in "0123456789abcdef" for c in want):
        raise ConfigError(f"checkpoint config {str(jpath)!r}: {field} must be 64 lower-case hex digits, got {want!r}")
    return want


def _read_safetensors(path: Path, sha256: str | None = None, jpath: Path | None = None) -> dict:
    """The tensors of ``path``; with ``sha256``, first check the file's bytes against that digest."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    if not path.is_file():
        raise ConfigError(f"checkpoint file {str(path)!r} does not exist")
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read checkpoint {str(path)!r}: {exc.strerror}") from None
    if sha256 is not None:
        got = hashlib.sha256(blob).hexdigest()
        if got != sha256:
            raise ConfigError(f"checkpoint {str(path)!r} is damaged: its SHA-256 is {got[:16]}..., "
                              f"{jpath.name if jpath else 'its config'} records {sha256[:16]}... "
                              "(the file changed after it was saved)")
    try:
        return load(blob)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"cannot read checkpoint {str(path)!r}: {msg}") from None


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"checkpoint config {str(path)!r} does not exist")
    try:
        cfg = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"checkpoint config {str(path)!r} is not valid JSON: {exc}") from None
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        raise ConfigError(f"checkpoint config {str(path)!r} is not an {FORMAT} file (format="
                          f"{cfg.get('format') if isinstance(cfg, dict) else None!r})")
    bad = arch_error(cfg.get("arch"))
    if bad:
        raise ConfigError(f"checkpoint config {str(path)!r}: {bad}")
    return cfg


def _weights(stem: Path, cfg: dict, suffix: str = ".safetensors", field: str = WEIGHTS_HASH) -> dict:
    """The verified tensors of ``<stem><suffix>`` against the digest ``cfg[field]`` of ``<stem>.json``."""
    jpath, wpath = stem.with_name(stem.name + ".json"), stem.with_name(stem.name + suffix)
    if not wpath.is_file():
        raise ConfigError(f"checkpoint file {str(wpath)!r} does not exist")
    return _read_safetensors(wpath, expected_hash(cfg, field, jpath, wpath), jpath)


def record_hashes(stem) -> dict:
    """Add the SHA-256 of ``<stem>.safetensors`` (and of ``<stem>.state.safetensors`` if present) to
    ``<stem>.json`` of a checkpoint saved before digests were recorded; the weight files are not touched.
    A digest already recorded must match (a damaged file is never blessed). Returns the new config."""
    stem = _stem(stem)
    jpath = stem.with_name(stem.name + ".json")
    try:
        cfg = json.loads(jpath.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read checkpoint config {str(jpath)!r}: {exc}") from None
    for suffix, field in ((".safetensors", WEIGHTS_HASH), (".state.safetensors", STATE_HASH)):
        wpath = stem.with_name(stem.name + suffix)
        if not wpath.is_file():
            if suffix == ".safetensors":
                raise ConfigError(f"checkpoint file {str(wpath)!r} does not exist")
            continue
        got = hashlib.sha256(wpath.read_bytes()).hexdigest()
        if cfg.get(field) not in (None, got):
            raise ConfigError(f"checkpoint {str(wpath)!r} is damaged: its SHA-256 is {got[:16]}..., "
                              f"{jpath.name} records {str(cfg[field])[:16]}...")
        cfg[field] = got
    _atomic(jpath, lambda p: p.write_text(json.dumps(cfg, indent=1) + "\n"))
    return cfg


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    tmp.replace(path)


def _load_into(net: torch.nn.Module, tensors: dict, path: Path, prefix: str = "") -> None:
    own = net.state_dict()
    got = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    missing = sorted(set(own) - set(got))
    extra = sorted(set(got) - set(own))
    if missing or extra:
        what = f"lacks weight {missing[0]!r}" if missing else f"has unexpected weight {extra[0]!r}"
        raise ConfigError(f"checkpoint {str(path)!r} does not match its architecture: it {what}")
    for k, v in own.items():
        if tuple(got[k].shape) != tuple(v.shape):
            raise ConfigError(f"checkpoint {str(path)!r}: weight {k!r} has shape {tuple(got[k].shape)}, "
                              f"the architecture needs {tuple(v.shape)}")
    net.load_state_dict({k: got[k].to(v.dtype) for k, v in own.items()})


def load_checkpoint(path, device="cpu") -> tuple[UNet, dict]:
    """(EMA network in eval mode, config) from ``<stem>.safetensors`` + ``<stem>.json``, verified."""
    stem = _stem(path)
    cfg = _read_json(stem.with_name(stem.name + ".json"))
    tensors = _weights(stem, cfg)
    try:
        net = UNet(**cfg["arch"])
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ConfigError(f"checkpoint {str(stem)!r} has an invalid architecture {cfg['arch']}: {exc}") from None
    _load_into(net, tensors, stem.with_name(stem.name + ".safetensors"))
    return net.to(device).eval(), cfg


def save_checkpoint(stem, ema: torch.nn.Module, cfg: dict, net=None, opt=None, gen=None) -> None:
    """Write the EMA weights and the JSON config (and, with net/opt/gen, the resume state) atomically; the
    JSON, written last, records the SHA-256 of each weight file's bytes."""
    from safetensors.torch import save

    stem = _stem(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)

    def write_tensors(suffix: str, tensors: dict) -> str:
        blob = save(tensors)
        _atomic(stem.with_name(stem.name + suffix), lambda p: p.write_bytes(blob))
        return hashlib.sha256(blob).hexdigest()

    weights = {k: v.detach().float().cpu().contiguous() for k, v in ema.state_dict().items()}
    cfg = dict(cfg)
    cfg[WEIGHTS_HASH] = write_tensors(".safetensors", weights)
    if net is not None:
        state = {f"net.{k}": v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
        sd = opt.state_dict()
        for i, st in sd["state"].items():
            for k, v in st.items():
                state[f"opt.{i}.{k}"] = torch.as_tensor(v).detach().cpu().contiguous()
        state["rng"] = gen.get_state().contiguous()
        cfg["param_groups"] = [{k: v for k, v in g.items() if k != "params"} for g in sd["param_groups"]]
        cfg[STATE_HASH] = write_tensors(".state.safetensors", state)
    _atomic(stem.with_name(stem.name + ".json"), lambda p: p.write_text(json.dumps(cfg, indent=1) + "\n"))


def _load_state(stem: Path, cfg: dict, net, opt, gen) -> None:
    path = stem.with_name(stem.name + ".state.safetensors")
    tensors = _weights(stem, cfg, ".state.safetensors", STATE_HASH)
    _load_into(net, tensors, path, prefix="net.")
    sd = opt.state_dict()
    state = {}
    for i in range(len(list(net.parameters()))):
        keys = [k for k in tensors if k.startswith(f"opt.{i}.")]
        if keys:
            state[i] = {k.split(".", 2)[2]: tensors[k] for k in keys}
    sd["state"] = state
    try:
        opt.load_state_dict(sd)
    except (ValueError, KeyError, RuntimeError) as exc:
        raise ConfigError(f"optimizer state in {str(path)!r} does not match the model: {exc}") from None
    if "rng" not in tensors:
        raise ConfigError(f"checkpoint {str(path)!r} lacks the RNG state")
    gen.set_state(tensors["rng"].to(torch.uint8))


def dsm_loss(net, sde, x0: torch.Tensor, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Per-sample eps-matching loss (mean over pixels)."""
    from .images import net_inputs

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
    from sdebench.sde import get_sde

    from .images import load_data

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
