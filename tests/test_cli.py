"""The command line: bad input is one line on stderr with exit code 2; good input writes tidy rows."""

import subprocess
import sys

import pandas as pd
import pytest
import torch
from cli_checks import fails_one_line as _fails

from sdebench.cli import main
from sdebench.problems import GaussianMixture, register_problem
from sdebench.run import CellConfig, run_cell

BASE = ["run", "--problem", "gauss1d", "--solver", "em", "--samples", "50", "--nfe", "4"]




@pytest.mark.parametrize(
    "argv,match",
    [
        (["run", "--problem", "gauss1d", "--solver", "nope", "--nfe", "4"], "unknown solver 'nope'; valid: "),
        (["run", "--problem", "nope", "--solver", "em", "--nfe", "4"], "unknown problem 'nope'"),
        (["run", "--problem", "gauss1d", "--sde", "xx", "--solver", "em"], "unknown SDE 'xx'"),
        (["run", "--problem", "gauss1d", "--solver", "heun", "--nfe", "5"], "accepts multiples of 2"),
        (["run", "--problem", "gauss1d", "--solver", "em", "--nfe", "0"], "--nfe must be >= 1, got 0"),
        (["run", "--problem", "gauss1d", "--solver", "em", "--nfe", "a"], "--nfe must be comma-separated integers"),
        (BASE[:-4] + ["--samples", "1"], "samples must be >= 2, got 1"),
        (BASE + ["--t-end", "2"], "t_end must lie in (0, T) = (0, 1), got 2.0"),
        (BASE + ["--t-end", "nan"], "--t-end must be finite"),
        (BASE + ["--schedule", "cosine"], "unknown schedule 'cosine'"),
        (BASE + ["--init", "zero"], "init must be 'exact' or 'prior'"),
        (BASE + ["--dtype", "float16"], "unknown dtype 'float16'"),
        (BASE + ["--metrics", "w9"], "unknown metric(s) ['w9']"),
        (BASE + ["-o", "eta=0.5"], "solver 'em' has no option(s) ['eta']"),
        (BASE + ["--out", "/proc/forbidden/r.parquet"], "cannot write '/proc/forbidden/r.parquet': folder '/proc'"),
        (BASE + ["--out", "r.txt"], "must end in .parquet or .csv"),
        (BASE + ["--device", "cuda:0"], "CUDA is not available") if not torch.cuda.is_available() else
        (BASE + ["--device", "tpu"], "unknown device"),
    ],
)
def test_bad_input_is_one_line_exit_2(capsys, argv, match):
    _fails(capsys, argv, match)


def test_ddim_eta_out_of_range(capsys):
    code = main(["run", "--problem", "gauss1d", "--solver", "ddim", "--nfe", "4", "-o", "eta=2"])
    assert code == 2 and "eta must lie in [0, 1]" in capsys.readouterr().err


def test_run_writes_tidy_rows(tmp_path, capsys):
    out = tmp_path / "r.csv"
    assert main(["run", "--problem", "gmm1d", "--solver", "em,ddim", "--nfe", "4,8", "--seeds", "0,1",
                 "--samples", "200", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "w1_null" in printed and "wrote 8 rows" in printed
    df = pd.read_csv(out)
    assert len(df) == 8
    for col in ("problem", "sde", "solver", "schedule", "nfe", "steps", "seed", "n_samples", "t_end", "init", "dtype",
                "device", "w1", "w1_null", "w2", "w2_null", "status", "wall_s", "torch_version", "git_commit"):
        assert col in df.columns, col
    assert (df["status"] == "ok").all() and sorted(df["nfe"].unique()) == [4, 8]


def test_diverged_cell_is_a_row_not_a_crash():
    class Exploding(GaussianMixture):
        def model_functions(self, sde):
            return {"score": lambda x, t: torch.full_like(x, float("inf"))}

    register_problem("test-exploding", lambda: Exploding([1.0], [[0.0]], [[[1.0]]], name="test-exploding"))
    row = run_cell(CellConfig(problem="test-exploding", solver="em", nfe=3, n_samples=10))
    assert row["status"] == "diverged" and "non-finite" in row["error"]


def test_console_script_and_list():
    out = subprocess.run([sys.executable, "-m", "sdebench.cli", "list", "solvers"], capture_output=True, text=True)
    assert out.returncode == 0 and "em " in out.stdout and "heun" in out.stdout
    out = subprocess.run([sys.executable, "-m", "sdebench.cli", "list"], capture_output=True, text=True)
    for section in ("SOLVERS", "PROBLEMS", "SDES", "SCHEDULES", "METRICS", "gmm2d-ring8", "cou", "logsnr"):
        assert section in out.stdout


def test_a_closed_pipe_is_not_a_traceback():
    """`sdebench list | head`: the reader goes away; no BrokenPipeError traceback, exit 141 as cat would."""
    import subprocess
    import sys

    code = "import sys; from sdebench.cli import main; sys.exit(main(['list']))"
    for _ in range(3):
        p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        p.stdout.close()  # nobody reads: the first print fails
        err = p.stderr.read().decode()
        p.wait()
        assert "Traceback" not in err and p.returncode == 141, (p.returncode, err)
