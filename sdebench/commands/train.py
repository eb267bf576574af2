"""``sdebench train``: train a small U-Net eps model on an image data set by denoising score matching."""

from __future__ import annotations

import shlex
import sys

from sdebench.errors import MAX_SEED, ConfigError, check_int
from sdebench.io import check_output_file
from sdebench.metrics.images import save_classifier
from sdebench.problems import get_problem
from sdebench.problems.checkpoint import _stem
from sdebench.problems.images import TEACHERS, load_data
from sdebench.sde import get_sde
from sdebench.training.classifier import train_classifier
from sdebench.training.consistency import distill_unet, distillation_table
from sdebench.training.learned import learned_table
from sdebench.training.unet import train_dsm


def add_parser(sub):
    p = sub.add_parser("train", help="train a U-Net score model on images (denoising score matching)",
                       description="Train a small time-conditioned U-Net by denoising score matching "
                                   "(EMA weights, periodic safetensors checkpoints, --resume).")
    p.add_argument("--data", default="digits", help="digits, mnist5k or folder:<path> (MNIST/CIFAR-10 files)")
    p.add_argument("--sde", default="vp", help="forward SDE the training times are drawn from (default vp)")
    p.add_argument("--steps", type=int, default=4000, help="optimizer steps in total (default 4000)")
    p.add_argument("--batch", type=int, default=128, help="batch size (default 128)")
    p.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate (default 2e-3)")
    p.add_argument("--ema", type=float, default=0.999, help="EMA decay of the saved weights (default 0.999)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--base", type=int, default=None, help="U-Net base channels (default 16 for 8x8, else 32)")
    p.add_argument("--mults", default=None, help="channel multipliers per level, e.g. 1,2 (default 1,2 for 8x8, "
                                                 "1,2,2 otherwise)")
    p.add_argument("--out", default=None, help="checkpoint stem (default runs/checkpoints/<data>_unet)")
    p.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints (default 500)")
    p.add_argument("--resume", action="store_true", help="continue from <out>.state.safetensors")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--amp", action="store_true", help="bfloat16 autocast (off by default)")
    p.add_argument("--classifier", action="store_true",
                   help="instead: train the small feature classifier used by the fd metric")
    p.add_argument("--epochs", type=int, default=30, help="classifier epochs (default 30)")
    p.add_argument("--problem", default=None, help="analytic target for --score-matching / --consistency")
    p.add_argument("--score-matching", default=None, metavar="OBJ",
                   help="instead: train MLP scores on --problem with these objectives (dsm,ssm,ism) and print "
                        "their score errors and sampling errors")
    p.add_argument("--consistency", action="store_true",
                   help="instead: consistency distillation into an MLP on --problem from --teacher solvers")
    p.add_argument("--teacher", default="euler,heun", help="distillation teacher ODE solvers (default euler,heun)")
    p.add_argument("--N", default="4,8,16", help="teacher grid intervals for distillation (default 4,8,16)")
    p.add_argument("--iters", type=int, default=2000, help="MLP training iterations (default 2000)")
    p.add_argument("--solver", default="heun", help="sampler for --score-matching (default heun)")
    p.add_argument("--nfe", type=int, default=100, help="its NFE (default 100)")
    p.add_argument("--samples", type=int, default=2000, help="samples for the error estimates (default 2000)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def check_stem(stem: str) -> str:
    """The checkpoint files ``<stem>.safetensors`` / ``.json`` / ``.state.safetensors`` can be written."""
    base = str(_stem(stem))
    for suffix in (".safetensors", ".json", ".state.safetensors"):
        check_output_file(base + suffix, None)
    return stem


def _check_counts(args) -> None:
    check_int(args.seed, "--seed", 0, MAX_SEED)
    for flag, lo in (("steps", 1), ("batch", 1), ("checkpoint_every", 1), ("epochs", 1), ("iters", 1),
                     ("nfe", 1), ("samples", 2)):
        check_int(getattr(args, flag), "--" + flag.replace("_", "-"), lo)
    for flag in ("lr",):
        if not (args.lr > 0 and args.lr < float("inf")):
            raise ConfigError(f"--{flag} must be a positive number, got {args.lr}")
    if not 0 <= args.ema < 1:
        raise ConfigError(f"--ema must lie in [0, 1), got {args.ema}")


def main(args) -> int:
    _check_counts(args)
    arch = {}
    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    if args.base is not None:
        if args.base < 8 or args.base % 8:
            raise ConfigError(f"--base must be a positive multiple of 8, got {args.base}")
        arch["base"] = args.base
    if args.mults is not None:
        try:
            arch["mults"] = [int(m) for m in args.mults.split(",")]
        except ValueError:
            raise ConfigError(f"--mults must be comma-separated integers, got {args.mults!r}") from None
        if not arch["mults"] or min(arch["mults"]) < 1:
            raise ConfigError(f"--mults must be positive integers, got {args.mults!r}")
    safe_data = args.data.replace("folder:", "").rstrip("/").split("/")[-1] or "data"
    if args.classifier:
        return _train_classifier(args, safe_data)
    if args.consistency and args.problem is None:
        return _distill_images(args, safe_data)
    if args.score_matching or args.consistency:
        return _mlp_experiments(args)
    out = check_stem(args.out or f"runs/checkpoints/{safe_data}_unet")
    command = "sdebench " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["train"] else ""
    cfg = train_dsm(data=args.data, sde_name=args.sde, steps=args.steps, batch=args.batch, lr=args.lr,
                    ema_decay=args.ema, seed=args.seed, out=out, ckpt_every=args.checkpoint_every,
                    resume=args.resume, device=args.device, arch=arch, amp=args.amp,
                    progress=not args.no_progress, command=command, log=print)
    print(f"trained {cfg['params']} parameters for {cfg['step']} steps in {cfg['wall_s']:.1f} s; "
          f"train loss {cfg['train_loss']:.4f}, held-out loss {cfg['heldout_loss']:.4f} "
          f"(train-split eval {cfg['train_eval_loss']:.4f}); wrote {out}.safetensors and {out}.json")
    return 0


def _train_classifier(args, safe_data: str) -> int:
    import time

    out = check_stem(args.out or f"runs/checkpoints/{safe_data}_classifier")
    data = load_data(args.data)
    t0 = time.perf_counter()
    clf, acc = train_classifier(data, epochs=args.epochs, seed=args.seed)
    from pathlib import Path

    Path(out).parent.mkdir(parents=True, exist_ok=True)
    command = "sdebench " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["train"] else ""
    save_classifier(out, clf, {"data": args.data, "epochs": args.epochs, "seed": args.seed,
                               "test_accuracy": acc, "command": command})
    print(f"classifier on {args.data}: held-out accuracy {acc:.4f} ({len(data.test)} images), "
          f"trained in {time.perf_counter() - t0:.1f} s; wrote {out}.safetensors and {out}.json")
    return 0


def _mlp_experiments(args) -> int:
    import pandas as pd

    if args.problem is None:
        raise ConfigError("--score-matching and --consistency need --problem (an analytic target, e.g. gmm2d-ring8)")
    problem = get_problem(args.problem)
    if not hasattr(problem, "K"):
        raise ConfigError(f"--problem {args.problem!r} is not an analytic mixture target")
    if args.iters < 1 or args.samples < 2:
        raise ConfigError(f"need --iters >= 1 and --samples >= 2, got {args.iters}, {args.samples}")
    sde = get_sde(args.sde)
    if args.score_matching:
        objs = [o.strip() for o in args.score_matching.split(",")]
        rows = learned_table(problem, sde, objs, iters=args.iters, solver=args.solver, nfe=args.nfe,
                             n=args.samples, seed=args.seed, log=None)
    else:
        try:
            Ns = [int(v) for v in args.N.split(",")]
        except ValueError:
            raise ConfigError(f"--N must be comma-separated integers, got {args.N!r}") from None
        for v in Ns:
            check_int(v, "--N", 1)
        rows = distillation_table(problem, sde, [t.strip() for t in args.teacher.split(",")], Ns,
                                  iters=args.iters, n=args.samples, seed=args.seed)
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.float_format", "{:.4g}".format):
        print(pd.DataFrame(rows).to_string(index=False))
    return 0


def _distill_images(args, safe_data: str) -> int:
    if args.data not in TEACHERS:
        raise ConfigError(f"--consistency without --problem distills the committed model of --data "
                          f"{' or '.join(TEACHERS)}; got --data {args.data!r}")
    teachers = [t.strip() for t in args.teacher.split(",")]
    if len(teachers) != 1:
        raise ConfigError(f"U-Net distillation takes one --teacher, got {args.teacher!r}")
    try:
        N = int(args.N)
    except ValueError:
        raise ConfigError(f"U-Net distillation takes one --N, got {args.N!r}") from None
    check_int(N, "--N", 1)
    out = check_stem(args.out or f"runs/checkpoints/{safe_data}_consistency")
    command = "sdebench " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["train"] else ""
    cfg = distill_unet(TEACHERS[args.data](), teacher=teachers[0], N=N, steps=args.steps, batch=args.batch,
                       lr=args.lr, seed=args.seed, out=out, progress=not args.no_progress, command=command,
                       ckpt_every=args.checkpoint_every)
    print(f"distilled {cfg['teacher']} (N={cfg['N']}) into a U-Net for {cfg['step']} steps in {cfg['wall_s']:.1f} s;"
          f" final loss {cfg['train_loss']:.4g}; wrote {out}.safetensors and {out}.json")
    return 0
