"""Output paths and count flags: every output of every command is checked before any work starts (one line,
exit 2, the path named); a write that still fails after the work is done saves the rows to a fallback file;
seeds lie in [0, 2^63 - 1] and counts are >= their minimum, on the command line and in sweep files."""

from pathlib import Path

import pandas as pd
import pytest

from sdebench import io
from sdebench.cli import main
from sdebench.errors import MAX_SEED, ConfigError

RUN = ["run", "--problem", "gauss1d", "--solver", "em", "--samples", "50", "--nfe", "4", "--metrics", "w2_exact"]
SWEEP = ('name = "t"\nproblems = ["gauss1d"]\nnfe = [4, 8]\nseeds = [0, 1]\nsamples = 64\n'
         'metrics = ["w2_exact"]\nsolvers = ["em", "euler"]\n')


def _one_line_exit_2(capsys, argv, *needles):
    code = main(argv)
    cap = capsys.readouterr()
    assert code == 2, (argv, cap.err)
    lines = [ln for ln in cap.err.strip().splitlines() if ln]
    assert len(lines) == 1 and "Traceback" not in cap.err, cap.err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0], cap.out


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A results table, a sweep file and its store, and the three kinds of bad output place."""
    d = tmp_path_factory.mktemp("inputs")
    table = d / "r.csv"
    assert main(["run", "--problem", "gauss1d", "--solver", "em,euler", "--nfe", "4,8", "--seeds", "0,1",
                 "--samples", "64", "--metrics", "w2_exact", "--out", str(table)]) == 0
    sweep = d / "s.toml"
    sweep.write_text(SWEEP + f'out = "{d / "store"}"\n')
    assert main(["sweep", str(sweep), "--serial", "--no-report", "--progress", "quiet"]) == 0
    afile = d / "afile"
    afile.write_text("x")
    adir = d / "adir.csv"
    adir.mkdir()
    return {"table": str(table), "sweep": str(sweep), "store": str(d / "store"), "afile": afile, "adir": adir}


# each command with its output option set to ARG: (kind, argv(inputs, ARG), suffix added to the base path to
# make ARG, suffix of the first file the check names); "dir" outputs are folders
COMMANDS = {
    "run": ("file", lambda i, a: RUN + ["--out", a], ".csv", ""),
    "orders": ("file", lambda i, a: ["orders", i["table"], "--bootstrap", "10", "--out", a], ".parquet", ""),
    "results": ("file", lambda i, a: ["results", i["store"], "--out", a], ".csv", ""),
    "tune": ("file", lambda i, a: ["tune", "--problem", "gauss1d", "--solver", "heun", "--nfe", "4", "--objective",
                                   "w2_exact", "--method", "dp", "--samples", "16", "--out", a], ".json", ""),
    "validate": ("file", lambda i, a: ["validate", "--quick", "--only", "ddim", "--out", a], ".md", ""),
    "train": ("file", lambda i, a: ["train", "--data", "digits", "--steps", "1", "--out", a], "", ".safetensors"),
    "train-classifier": ("file", lambda i, a: ["train", "--classifier", "--epochs", "1", "--out", a], "",
                         ".safetensors"),
    "train-distill": ("file", lambda i, a: ["train", "--consistency", "--teacher", "heun", "--N", "18", "--steps", "1",
                                          "--out", a], "",
                      ".safetensors"),
    "sweep": ("dir", lambda i, a: ["sweep", i["sweep"], "--serial", "--out", a], "", ""),
    "sweep-dry-run": ("dir", lambda i, a: ["sweep", i["sweep"], "--dry-run", "--out", a], "", ""),
    "plot": ("dir", lambda i, a: ["plot", i["table"], "--out", a], "", ""),
    "report": ("dir", lambda i, a: ["report", i["table"], "--out", a], "", ""),
    "validate-figures": ("dir", lambda i, a: ["validate", "--quick", "--only", "ddim", "--out",
                                              str(Path(i["table"]).parent / "v.md"), "--figures", a], "", ""),
}


@pytest.mark.parametrize("case", ["proc", "parent-is-a-file", "wrong-kind-exists"])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_output_is_checked_before_any_work(capsys, tmp_path, inputs, command, case):
    kind, argv, suffix, named_suffix = COMMANDS[command]
    afile = tmp_path / "afile"
    afile.write_text("x")
    if case == "proc":
        base, reason = "/proc/forbidden", "folder '/proc' is not writable"
    elif case == "parent-is-a-file":
        base, reason = str(afile / "x"), f"{str(afile)!r} is a file, not a folder"
    elif kind == "file":  # an existing folder where the file goes
        base, reason = str(tmp_path / "exists"), "is an existing folder, not a file"
        Path(base + suffix + named_suffix).mkdir()
    else:  # an existing file where the folder goes
        base, reason = str(afile), "is a file, not a folder"
    arg = base + suffix
    line, out = _one_line_exit_2(capsys, argv(inputs, arg), reason)
    assert repr(arg + named_suffix) in line, line  # the message names the path
    assert "wrote" not in out and "PASS" not in out and "cells" not in out, out  # no work was done


def test_guidance_sweep_checks_its_outputs_first(tmp_path, capsys):
    afile = tmp_path / "f"
    afile.write_text("x")
    line, out = _one_line_exit_2(capsys, ["sweep", "sweeps/guidance.toml", "--serial", "--out", str(afile / "g")],
                                 "is a file, not a folder")
    assert "ran " not in out and not (tmp_path / "g").exists()


def test_default_store_outputs_of_results_are_checked(tmp_path, capsys, inputs):
    import shutil

    store = tmp_path / "store"
    shutil.copytree(inputs["store"], store)
    (store / "results.csv").unlink(missing_ok=True)
    (store / "results.csv").mkdir()
    _one_line_exit_2(capsys, ["results", str(store)], "results.csv", "is an existing folder")


def test_a_write_failing_after_the_work_saves_the_rows(tmp_path, capsys, monkeypatch):
    """The output was fine when checked, then became a folder while the cells ran: the rows go to a
    fallback file under ./runs/rescued/ whose path is printed; nothing computed is lost."""
    import sdebench.commands.run
    import sdebench.run

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "rows.csv"
    real = sdebench.run.run_cell

    def run_cell(cfg, **kw):
        out.mkdir(exist_ok=True)
        return real(cfg, **kw)

    monkeypatch.setattr(sdebench.run, "run_cell", run_cell)
    monkeypatch.setattr(sdebench.commands.run, "run_cell", run_cell)  # the command's own (module-top) binding
    line, _ = _one_line_exit_2(capsys, RUN + ["--seeds", "0,1,2", "--out", str(out)], str(out),
                               "the 3 rows were saved to ")
    saved = Path(line.split("saved to ")[1])
    assert saved.is_file() and saved.parent == (tmp_path / "runs" / "rescued")
    df = pd.read_csv(saved)
    assert list(df["seed"]) == [0, 1, 2] and set(df["status"]) == {"ok"} and df["w2_exact"].gt(0).all()


def test_write_table_and_write_text_rescue(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    df = pd.DataFrame({"a": [1, 2]})
    p = io.write_table(df, tmp_path / "sub" / "t.parquet")  # creates the folder, atomic rename
    assert pd.read_parquet(p).equals(df) and not [q for q in p.parent.iterdir() if q.name.startswith(".")]
    (tmp_path / "d.md").mkdir()
    with pytest.raises(ConfigError, match="its content was saved to") as exc:
        io.write_text(tmp_path / "d.md", "hello")
    assert Path(str(exc.value).split("saved to ")[1]).read_text() == "hello"


def test_checks_create_nothing(tmp_path):
    io.check_output_file(tmp_path / "a" / "b" / "c.csv")
    io.check_output_dir(tmp_path / "x" / "y")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv,needle", [
    (RUN + ["--seeds", "18446744073709551615"], "--seeds must be <= 9223372036854775807 (2^63 - 1), got 1844"),
    (RUN + ["--seeds", "9223372036854775808"], "--seeds must be <= 9223372036854775807"),
    (RUN + ["--seeds", "-1"], "--seeds must be >= 0, got -1"),
    (RUN + ["--seeds", "0,-5"], "--seeds must be >= 0, got -5"),
    (RUN[:-4] + ["--nfe", "4,0"], "--nfe must be >= 1, got 0"),
    (RUN + ["--samples", "1"], "--samples must be >= 2, got 1"),
    (RUN + ["--samples", "100,200"], "--samples takes one integer"),
    (["sweep", "sweeps/quick.toml", "--workers", "0", "--dry-run"], "--workers must be >= 1, got 0"),
    (["sweep", "sweeps/quick.toml", "--workers", "-3", "--dry-run"], "--workers must be >= 1, got -3"),
    (["sweep", "sweeps/quick.toml", "--retries", "-1", "--dry-run"], "--retries must be >= 0"),
    (["sweep", "sweeps/quick.toml", "--serial", "--workers", "2", "--dry-run"], "--serial"),
    (["train", "--seed", "-1"], "--seed must be >= 0, got -1"),
    (["train", "--seed", str(2**64)], "--seed must be <= 9223372036854775807"),
    (["train", "--steps", "0"], "--steps must be >= 1, got 0"),
    (["train", "--batch", "0"], "--batch must be >= 1, got 0"),
    (["train", "--checkpoint-every", "0"], "--checkpoint-every must be >= 1, got 0"),
    (["train", "--classifier", "--epochs", "0"], "--epochs must be >= 1, got 0"),
    (["train", "--score-matching", "dsm", "--problem", "gmm1d", "--nfe", "0"], "--nfe must be >= 1, got 0"),
    (["train", "--consistency", "--problem", "gmm1d", "--N", "4,0"], "--N must be >= 1, got 0"),
    (["train", "--lr", "-1"], "--lr must be a positive number"),
    (["train", "--ema", "1"], "--ema must lie in [0, 1)"),
    (["orders", "x.csv", "--bootstrap", "5"], "--bootstrap must be >= 10"),
])
def test_counts_and_seeds_are_range_checked_on_the_command_line(capsys, argv, needle):
    _one_line_exit_2(capsys, argv, needle)


def test_report_counts_are_checked(capsys, inputs, tmp_path):
    report = ["report", inputs["table"], "--out", str(tmp_path)]
    _one_line_exit_2(capsys, report + ["--nfe", "0"], "--nfe must be >= 1")
    _one_line_exit_2(capsys, report + ["--tol", "0"], "--tol must be positive")


@pytest.mark.parametrize("line,needle", [
    ("seeds = [18446744073709551615]", "seeds must hold integers in [0, 9223372036854775807] (2^63 - 1), got 1844"),
    ("seeds = [-1]", "seeds must hold integers in [0, 9223372036854775807] (2^63 - 1), got -1"),
    ("seeds = 0", "seeds must be a count in [1, 1000000] or a list, got 0"),
    ("seeds = 10000000000", "seeds must be a count in [1, 1000000]"),
    ("nfe = [0]", "nfe must hold integers >= 1, got 0"),
    ("samples = 1", "samples must be an integer >= 2, got 1"),
])
def test_counts_and_seeds_are_range_checked_in_sweep_files(tmp_path, capsys, line, needle):
    key = line.split(" ")[0]
    text = "\n".join(ln for ln in SWEEP.splitlines() if not ln.startswith(key + " ")) + "\n" + line + "\n"
    f = tmp_path / "s.toml"
    f.write_text(text + f'out = "{tmp_path / "o"}"\n')
    msg, _ = _one_line_exit_2(capsys, ["sweep", str(f), "--dry-run"], str(f))
    assert needle in msg, msg


def test_the_largest_seed_runs(capsys, tmp_path):
    """2^63 - 1 is a valid seed: every metric's random stream accepts it (it used to overflow)."""
    out = tmp_path / "r.csv"
    assert main(["run", "--problem", "gauss1d", "--solver", "em", "--nfe", "4", "--samples", "64",
                 "--seeds", f"0,{MAX_SEED}", "--metrics", "w2_exact,w2,sliced_w2,mmd", "--out", str(out)]) == 0
    df = pd.read_csv(out)
    assert set(df["status"]) == {"ok"} and MAX_SEED in set(df["seed"])


def test_validate_writes_under_runs_by_default(tmp_path, monkeypatch, capsys):
    """`validate --quick` never touches the committed results/validation.md unless --out names it."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "validation.md").write_text("committed")
    assert main(["validate", "--quick", "--only", "ddim"]) == 0
    assert "wrote runs/validation-quick.md" in capsys.readouterr().out
    assert "ddim" in (tmp_path / "runs" / "validation-quick.md").read_text()
    assert (tmp_path / "results" / "validation.md").read_text() == "committed"
