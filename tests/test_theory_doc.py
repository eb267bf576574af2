"""The repository carries its own theory: no reference points outside it, every in-repository anchor
exists, and the identities docs/theory.md states beyond the other tests hold for every SDE."""

from __future__ import annotations

import math
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from sdebench.sde import SDES, get_sde

ROOT = Path(__file__).resolve().parents[1]

# Documents that live outside the repository; spelled in pieces so this file does not match itself.
OUTSIDE = tuple(name + ".md" for name in ("THEORY", "DEPENDENCIES", "DESIGN")) + ("../" + "shared",)
TEXT_SUFFIXES = {".py", ".md", ".toml", ".json", ".txt", ".cfg", ".ini", ".yml", ".yaml", ".sh", ".csv", ""}
SKIP_DIRS = {".git", ".venv", ".asv", "__pycache__", "node_modules"}


def _tracked_text_files() -> list[Path]:
    try:
        cmd = ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"]  # tracked + new, not ignored
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, check=True, timeout=60)
        paths = [ROOT / p for p in out.stdout.decode().split("\0") if p]
    except (OSError, subprocess.SubprocessError):  # not a git checkout (e.g. an unpacked sdist)
        paths = [p for p in ROOT.rglob("*") if not (set(p.relative_to(ROOT).parts) & SKIP_DIRS)
                 and not any(part.endswith(".egg-info") for part in p.parts)]
    files = []
    for p in paths:
        if p.is_file() and p.suffix in TEXT_SUFFIXES:
            try:
                files.append((p, p.read_text(encoding="utf-8")))
            except UnicodeDecodeError:
                continue
    return files


FILES = _tracked_text_files()


def test_walk_sees_the_repository():
    names = {p.relative_to(ROOT).as_posix() for p, _ in FILES}
    assert {"README.md", "docs/theory.md", "docs/pitfalls.md", "sdebench/sde.py", ".ci/run"} <= names


def test_no_reference_leaves_the_repository():
    hits = [f"{p.relative_to(ROOT)}:{i}: {line.strip()[:100]}"
            for p, text in FILES for i, line in enumerate(text.splitlines(), 1)
            if any(bad in line for bad in OUTSIDE)]
    assert not hits, "references to documents outside the repository:\n" + "\n".join(hits)


def _slug(heading: str) -> str:
    """GitHub's anchor for a markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(md: Path) -> set[str]:
    out, fenced = set(), False
    for line in md.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            out.add(_slug(line.lstrip("#")))
    return out


REF = re.compile(r"((?:[\w.-]+/)*[\w.-]+\.md)#([\w-]+)")


def test_every_anchor_into_the_theory_pages_exists():
    """A reference to a section of theory.md, pitfalls.md or solvers.md (the page, "#", the heading's anchor;
    in code comments, docstrings, docs and results) names a heading that exists on that page."""
    pages = {name: _anchors(ROOT / "docs" / name) for name in ("theory.md", "pitfalls.md", "solvers.md")}
    assert {"forward-sdes", "gaussian-mixture-targets", "exact-gaussian-output-law", "distances-between-gaussians",
            "solver-orders", "change-of-variables-density", "statistics"} <= pages["theory.md"]
    bad, seen = [], 0
    for p, text in FILES:
        for m in REF.finditer(text):
            name = m.group(1).split("/")[-1]
            if name in pages and m.group(1) in (name, f"docs/{name}"):
                seen += 1
                if m.group(2) not in pages[name]:
                    bad.append(f"{p.relative_to(ROOT)}: {m.group(0)}")
    assert seen >= 40, seen  # the walk did find the references (about 70 at the time of writing)
    assert not bad, "anchors that match no heading:\n" + "\n".join(bad)


# ---- identities stated in docs/theory.md and not checked elsewhere --------------------------------------
@pytest.mark.parametrize("name", sorted(SDES))
def test_g2_is_minus_two_sigma2_dlambda_dt(name):
    """docs/theory.md#forward-sdes: g(t)^2 = -2 sigma_t^2 d(lambda_t)/dt (what lets lambda-based solvers run
    on every SDE). Central differences of the closed-form lambda against the closed-form g^2."""
    sde = get_sde(name)
    for t in np.linspace(0.05, 0.95, 7) * sde.T:
        e = 1e-5 * sde.T
        tt = torch.tensor([t - e, t + e], dtype=torch.float64)
        lam = sde.lambda_(tt)
        dlam = float(lam[1] - lam[0]) / (2 * e)
        t64 = torch.tensor(t, dtype=torch.float64)
        lhs, rhs = float(sde.g2(t64)), -2 * float(sde.sigma2(t64)) * dlam
        assert math.isclose(lhs, rhs, rel_tol=1e-6), (name, t, lhs, rhs)


@pytest.mark.parametrize("name", sorted(SDES))
def test_exponential_integrator_noise_variance(name):
    """docs/theory.md#exponential-integrators: int_t^s (alpha_t/alpha_u)^2 g(u)^2 du = sigma_t^2 expm1(2 h),
    h = lambda_t - lambda_s (the variance `ei` injects), by 48-node Gauss-Legendre quadrature."""
    sde = get_sde(name)
    nodes, weights = np.polynomial.legendre.leggauss(48)
    for s, t in ((0.9, 0.6), (0.3, 0.25), (0.05, 0.01)):
        s, t = s * sde.T, t * sde.T
        u = torch.as_tensor(0.5 * (s - t) * nodes + 0.5 * (s + t), dtype=torch.float64)
        a_t = sde.alpha(torch.tensor(t, dtype=torch.float64))
        quad = float(0.5 * (s - t) * (torch.as_tensor(weights) * (a_t / sde.alpha(u)) ** 2 * sde.g2(u)).sum())
        h = float(sde.lambda_(torch.tensor(t, dtype=torch.float64)) - sde.lambda_(torch.tensor(s, dtype=torch.float64)))
        closed = float(sde.sigma2(torch.tensor(t, dtype=torch.float64))) * math.expm1(2 * h)
        assert math.isclose(quad, closed, rel_tol=1e-9), (name, s, t, quad, closed)


def test_early_stopping_is_order_delta_for_a_gaussian():
    """docs/theory.md#early-stopping: the coupling bound is O(sqrt(delta)) but for N(m, s^2) the exact W2
    is O(delta); both statements checked on VP."""
    from sdebench.metrics.gaussian import w2

    sde, m, s2 = get_sde("vp"), 1.5, 0.25
    deltas = np.array([1e-5, 1e-4, 1e-3])
    exact, bound = [], []
    for dl in deltas:
        t = torch.tensor(dl, dtype=torch.float64)
        a, sig2 = float(sde.alpha(t)), float(sde.sigma2(t))
        exact.append(w2([a * m], [[a * a * s2 + sig2]], [m], [[s2]]))
        bound.append(abs(1 - a) * math.sqrt(m * m + s2) + math.sqrt(sig2))
    assert all(e <= b for e, b in zip(exact, bound))
    assert abs(np.polyfit(np.log(deltas), np.log(exact), 1)[0] - 1) < 0.05
    assert abs(np.polyfit(np.log(deltas), np.log(bound), 1)[0] - 0.5) < 0.05
