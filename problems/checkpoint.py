"""U-Net checkpoints: writing, validated loading and resume state (training: :mod:`sdebench.training.unet`).

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

import hashlib
import json
import sys
from pathlib import Path

import torch

from sdebench.errors import ConfigError

from .unet import UNet, arch_error

__all__ = ["load_checkpoint", "save_checkpoint", "default_arch", "record_hashes",
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


