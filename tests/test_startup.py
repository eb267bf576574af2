"""Start-up: building the CLI parser, listing and a run without POT metrics load no heavy optional package.

Each check runs in a fresh interpreter (the test process itself has long imported pandas and friends) and
looks at ``sys.modules``; nothing here is timed (benchmarks/startup.py measures the wall times).
"""

import json
import subprocess
import sys

import pytest

from sdebench.problems import PROBLEMS, describe, get_problem, register_problem

# optional heavy packages that `sdebench list` and `sdebench <cmd> --help` must not import
HEAVY = ["pandas", "dask", "distributed", "seaborn", "matplotlib", "sklearn", "ot", "diffusers", "scipy",
         "safetensors", "mlxtend", "pyarrow"]


def _loaded_after(code: str) -> list[str]:
    """The HEAVY packages in sys.modules after running ``code`` in a clean interpreter."""
    prog = code + f"\nimport json, sys\nprint(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    out = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_parser_and_list_load_no_heavy_package():
    code = """
import contextlib, io
import sdebench.cli as cli
parser = cli.build_parser()
for what in ("all", "solvers", "problems", "sdes", "schedules", "metrics"):
    args = parser.parse_args(["list", what])
    with contextlib.redirect_stdout(io.StringIO()) as buf:
        assert args._main(args) == 0
    assert buf.getvalue().strip()
with contextlib.redirect_stdout(io.StringIO()):
    for cmd in cli.COMMANDS:
        try:
            parser.parse_args([cmd, "--help"])
        except SystemExit:
            pass
"""
    assert _loaded_after(code) == []


def test_the_check_sees_a_heavy_import():  # the probe above can fail: importing pandas shows up
    assert "pandas" in _loaded_after("import sdebench.cli; import pandas")


def test_core_modules_load_no_heavy_package():
    """Every first-party module but the table/figure writers (plot, leaderboard, report) imports without pandas
    & co."""
    code = """
import importlib, pkgutil
import sdebench, sdebench.commands, sdebench.metrics, sdebench.problems, sdebench.solvers
for pkg in (sdebench, sdebench.commands, sdebench.metrics, sdebench.problems, sdebench.solvers):
    for m in pkgutil.iter_modules(pkg.__path__):
        name = f"{pkg.__name__}.{m.name}"
        if name not in ("sdebench.plot", "sdebench.leaderboard", "sdebench.report"):
            importlib.import_module(name)
"""
    assert _loaded_after(code) == []


def _run_code(metrics: str) -> str:
    return f"""
import contextlib, io
from sdebench.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    assert main(["run", "--problem", "gmm2d-ring8", "--solver", "heun", "--nfe", "8", "--samples", "200",
                 "--metrics", "{metrics}"]) == 0
"""


def test_run_loads_pot_only_for_its_metrics():
    without = _loaded_after(_run_code("w2_exact,kl_exact,sliced_w2,kl,tv,mmd,mode_mass"))
    assert not {"ot", "sklearn", "scipy"} & set(without), without
    assert "pandas" in without  # the summary table is a DataFrame
    with_emd = _loaded_after(_run_code("sliced_w2,emd_w2"))
    assert "ot" in with_emd, with_emd


def test_describe_matches_the_built_problem():
    for name in PROBLEMS:
        if name.startswith("mnist5k"):
            continue  # builds the 5,000-image data set (~30 s): tests/test_mnist.py checks it (slow)
        if name.startswith("digits"):
            pytest.importorskip("sklearn")
        assert describe(name) == get_problem(name).description, name


def test_listing_does_not_build(monkeypatch):
    def never():
        raise AssertionError("listing built the problem")

    monkeypatch.setitem(PROBLEMS, "test-unbuilt", None)  # restored afterwards
    register_problem("test-unbuilt", never, "described, never built")
    assert describe("test-unbuilt") == "described, never built"
    from sdebench.errors import ConfigError

    def missing():
        raise ConfigError("checkpoint config 'x.json' does not exist")

    monkeypatch.setitem(PROBLEMS, "test-missing", None)
    register_problem("test-missing", never, missing)
    assert describe("test-missing") == "(unavailable: checkpoint config 'x.json' does not exist)"
