"""The README's example commands leave a fresh checkout clean: default outputs go under the git-ignored
runs/, and nothing under results/ changes unless a command's --out names it.

The `sdebench ...` lines of the README's bash blocks are parsed and run, in order, in a fresh `git clone`
of this repository, shrunk where they would be slow (--samples 64, --seeds 0,1, no path_err, the main
sweep restricted to 18 of its cells, validate restricted to one check); commands that need a cluster,
train networks, or name a committed file as --out are left out. Then `git status --porcelain` must print nothing.
"""

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from sdebench.cli import main

REPO = Path(__file__).resolve().parents[1]


def readme_commands() -> list[list[str]]:
    text = (REPO / "README.md").read_text()
    cmds = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            argv = shlex.split(line, comments=True)
            if argv[:1] == ["sdebench"]:
                cmds.append(argv[1:])
    return cmds


def _named_committed_output(argv) -> bool:
    return "--out" in argv and argv[argv.index("--out") + 1].startswith(("results/", "problems/"))


def shrink(argv: list[str]) -> list[str] | None:
    """The cheap version of a README command, or None to leave it out."""
    if argv[0] == "train" or "--scheduler" in argv or _named_committed_output(argv):
        return None
    argv = list(argv)
    if argv[0] == "run":
        if "--samples" in argv:
            argv[argv.index("--samples") + 1] = "64"
        else:
            argv += ["--samples", "64"]
        if "--seeds" in argv:
            argv[argv.index("--seeds") + 1] = "0,1"
        if "--metrics" in argv:  # the dopri5 reference of path_err is the slow part of the digits example
            i = argv.index("--metrics") + 1
            argv[i] = ",".join(m for m in argv[i].split(",") if m != "path_err")
    if argv[0] == "validate":
        argv += ["--only", "ddim"]
    if argv[0] == "tune":  # a smaller evaluation budget (the last --budget wins)
        argv += ["--budget", "30"]
    return argv


def test_readme_parsing_finds_the_examples():
    cmds = [c[0] for c in readme_commands()]
    for name in ("run", "sweep", "results", "plot", "report", "orders", "validate", "list"):
        assert name in cmds, name


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(), reason="needs git and a checkout")
def test_readme_examples_leave_a_fresh_clone_clean(tmp_path, monkeypatch, capsys):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    monkeypatch.chdir(clone)
    monkeypatch.delenv("SDEBENCH_GRID_DIR", raising=False)

    import sdebench.sweep

    cells = sdebench.sweep.Sweep.cells

    def fewer_cells(self):  # the main job's cells -> gauss1d, its first two NFE budgets, seed 0
        out = cells(self)
        if self.name != "quick":
            return out
        nfes = sorted({c[1].nfe for c in out})[:2]
        return [c for c in out if c[1].problem == "gauss1d" and c[1].nfe in nfes and c[1].seed == 0]

    monkeypatch.setattr(sdebench.sweep.Sweep, "cells", fewer_cells)
    ran = []
    for argv in readme_commands():
        small = shrink(argv)
        if small is None:
            continue
        if small[0] == "sweep" and "--dry-run" not in small:
            small += ["--serial"]  # no Dask cluster start-up inside the test
        code = main(small)
        err = capsys.readouterr().err
        assert code == 0, (small, err)
        ran.append(small[0])
    assert {"run", "sweep", "results", "plot", "report", "orders", "validate"} <= set(ran), ran
    assert (clone / "runs" / "quick" / "results.parquet").is_file()
    assert (clone / "runs" / "run.csv").is_file() and list((clone / "runs" / "grids").glob("*.png"))
    assert (clone / "runs" / "validation.md").is_file() and (clone / "runs" / "validation-quick.md").is_file()
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=clone,
                            capture_output=True, text=True, check=True).stdout
    assert status == "", status
