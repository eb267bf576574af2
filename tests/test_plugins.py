"""Plugins: solver modules are discovered, and a separately installed package adds a solver, a problem and
a metric through entry points (sdebench.plugins).

The plugin package is the README's recipe, read from its ``# file:`` code blocks (plus faulty entry
points); it is pip-installed into the test environment for this module and uninstalled afterwards. Every
check of the installed plugin runs in a fresh interpreter (the registry loads plugins once, at import).
"""

from __future__ import annotations

import importlib
import math
import re
import subprocess
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import numpy as np
import pytest

import sdebench.plugins as plugins
from sdebench.run import CellConfig, run_cell
from sdebench.solvers import MODULES, SOLVERS
from sdebench.solvers.base import FACTORIES

ROOT = Path(__file__).resolve().parents[1]
DIST = "sdebench-demo-plugin"


def readme_plugin_files() -> dict[str, str]:
    """The README's plugin recipe: every fenced block whose first line is ``# file: <path>``."""
    text = (ROOT / "README.md").read_text()
    files = {}
    for m in re.finditer(r"```[a-z]*\n# file: (\S+)\n(.*?)```", text, re.S):
        files[m.group(1)] = m.group(2)
    return files


# beyond the recipe: a plugin that cannot be imported, and two that claim built-in names
EXTRA_ENTRY_POINTS = {  # group header -> lines added under it
    '[project.entry-points."sdebench.solvers"]': ['broken = "sdebench_demo_plugin.broken"',
                                                  'clash = "sdebench_demo_plugin.clash"'],
    '[project.entry-points."sdebench.problems"]': ['gauss1d = "sdebench_demo_plugin.problems:demo_gauss"'],
    '[project.entry-points."sdebench.metrics"]': ['w2 = "sdebench_demo_plugin.metrics:MEAN_ERROR"'],
}

BROKEN_MODULE = "import sdebench_missing_dependency  # noqa: F401\n"

CLASH_MODULE = '''\
from sdebench.solvers import register


@register("demo-second", kind="ode", order=1, nfe_per_step=1)
def demo_second(model, x, grid, sde, noise):
    return x


@register("euler", kind="ode", order=1, nfe_per_step=1)
def euler(model, x, grid, sde, noise):
    return x
'''


def _pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args],
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def demo_plugin(tmp_path_factory):
    """Install the demo plugin package (no dependencies, no build isolation: offline) for this module."""
    pytest.importorskip("setuptools")  # the build backend of --no-build-isolation (in the `test` extra)
    src = tmp_path_factory.mktemp("plugin")
    files = readme_plugin_files()
    lines = files["pyproject.toml"].splitlines()
    for header, extra in EXTRA_ENTRY_POINTS.items():
        i = lines.index(header)
        lines[i + 1:i + 1] = extra
    files["pyproject.toml"] = "\n".join(lines) + "\n"
    files["sdebench_demo_plugin/broken.py"] = BROKEN_MODULE
    files["sdebench_demo_plugin/clash.py"] = CLASH_MODULE
    for name, text in files.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text(text)
    out = _pip("install", "--no-deps", "--no-build-isolation", "--no-index", str(src))
    assert out.returncode == 0, out.stderr
    try:
        yield src
    finally:
        _pip("uninstall", "-y", DIST)


def _cli(*args: str) -> subprocess.CompletedProcess:
    code = "import sys; from sdebench.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT)


def _stderr_lines(out) -> list[str]:
    return [ln for ln in out.stderr.splitlines() if ln.strip()]


def test_readme_recipe_is_complete():
    files = readme_plugin_files()
    assert set(files) == {"pyproject.toml", "sdebench_demo_plugin/__init__.py", "sdebench_demo_plugin/solvers.py",
                          "sdebench_demo_plugin/problems.py", "sdebench_demo_plugin/metrics.py"}
    for group in plugins.GROUPS:
        assert f'[project.entry-points."{group}"]' in files["pyproject.toml"]


# ---- built-in discovery ---------------------------------------------------------------------------------
def test_solver_modules_are_discovered_not_listed():
    """MODULES is every public module file of solvers/ but base.py, and each of them registers solvers."""
    here = Path(sys.modules["sdebench.solvers"].__file__).parent
    on_disk = sorted(p.stem for p in here.glob("*.py") if not p.stem.startswith("_") and p.stem != "base")
    assert list(MODULES) == on_disk and len(on_disk) >= 10
    owners = {spec.fn.__module__ for spec in SOLVERS.values()}
    owners |= {f.__module__ for f in FACTORIES.values()}  # "<prefix>:<name>" families (diffusers_peer)
    assert {f"sdebench.solvers.{m}" for m in MODULES} <= owners


def test_readme_in_tree_recipe(tmp_path, monkeypatch):
    """The README's in-tree recipe, verbatim, as a new file of the solvers package: discovered on its own,
    run, and its declared order verified by the registry order test."""
    import sdebench.solvers as pkg

    text = (ROOT / "README.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", text, re.S) if '@register("my-euler"' in b)
    (tmp_path / "my_euler.py").write_text(block)
    monkeypatch.setattr(pkg, "__path__", [*pkg.__path__, str(tmp_path)])  # as if the file were in solvers/
    assert "my_euler" in pkg._discover()
    try:
        importlib.import_module("sdebench.solvers.my_euler")
        import test_registry_orders as orders

        orders.test_declared_order("my-euler")
        spec = SOLVERS["my-euler"]
        assert SOLVERS["my-euler"].summary.startswith("x_{i+1} = x_i - h_i (f x - g^2/2 score)")
        mine = orders.exact_w2_curve(spec, (20, 40), "logsnr")[1]
        ref = orders.exact_w2_curve(SOLVERS["euler"], (20, 40), "logsnr")[1]
        assert np.allclose(mine, ref, rtol=1e-9, atol=0), (mine, ref)  # the same method as `euler`
    finally:
        SOLVERS.pop("my-euler", None)
        sys.modules.pop("sdebench.solvers.my_euler", None)


def test_duplicate_registration_names_both():
    from sdebench.solvers import register

    def euler(model, x, grid, sde, noise):
        return x

    with pytest.raises(ValueError, match=r"'euler' registered twice: by sdebench\.solvers\.ode\.euler and by "
                                         r"test_plugins\.test_duplicate_registration_names_both\.<locals>\.euler"):
        register("euler", kind="ode", order=1, nfe_per_step=1)(euler)


# ---- the loaders, on entry points made here (no install) -----------------------------------------------
def _fake_entry_points(monkeypatch, group: str, eps: dict[str, str]):
    made = [EntryPoint(name, value, group) for name, value in eps.items()]
    monkeypatch.setattr(plugins, "plugin_entry_points", lambda group: [e for e in made if e.group == group])


def test_failing_solver_plugin_is_one_line_and_adds_nothing(monkeypatch, capsys):
    registry = {}

    def partial():  # registers one solver, then fails: the registration is rolled back
        registry["half"] = object()
        raise RuntimeError("boom\nsecond line")

    mod = type(sys)("sdebench_fake_plugin")
    mod.partial, mod.nothing = partial, lambda: None
    monkeypatch.setitem(sys.modules, "sdebench_fake_plugin", mod)
    _fake_entry_points(monkeypatch, "sdebench.solvers",
                       {"p1": "sdebench_fake_plugin:partial", "p2": "sdebench_missing_module_xyz",
                        "p3": "sdebench_fake_plugin:nothing"})
    assert plugins.load_solver_plugins(registry) == [] and registry == {}
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3, err
    assert "'p1' (sdebench_fake_plugin:partial)" in err[0] and "RuntimeError: boom second line" in err[0]
    assert "'p2'" in err[1] and "ModuleNotFoundError" in err[1] and "sdebench_missing_module_xyz" in err[1]
    assert "'p3'" in err[2] and "registered no solver" in err[2]


def test_problem_plugins_register_lazily(monkeypatch, capsys):
    from sdebench.errors import ConfigError

    _fake_entry_points(monkeypatch, "sdebench.problems",
                       {"lazy": "sdebench_missing_module_xyz:make", "gauss1d": "elsewhere:make"})
    problems = {"gauss1d": lambda: None}
    assert plugins.load_problem_plugins(problems) == ["lazy"]  # nothing imported yet
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "'gauss1d' (elsewhere:make)" in err[0] and "already registered" in err[0]
    with pytest.raises(ConfigError, match=r"problem 'lazy': .*ModuleNotFoundError.*sdebench_missing_module_xyz"):
        problems["lazy"]()


# ---- an installed plugin package, seen by fresh interpreters ----------------------------------------------
def test_plugin_is_listed_and_faulty_plugins_are_one_line_each(demo_plugin):
    """`sdebench list solvers` shows the plugin solver; the plugin problem and metric are registered; each
    faulty entry point is skipped with one line on stderr naming it and the reason, and the CLI works."""
    code = ("import sys; from sdebench.cli import main; rc = main(['list', 'solvers']); "
            "from sdebench.problems import PROBLEMS, describe; from sdebench.run import METRICS; "
            "print('PROBLEM', list(PROBLEMS).count('demo-gauss'), describe('demo-gauss')); "
            "print('METRIC', METRICS['demo-mean-err']); sys.exit(rc)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    solver = [ln for ln in lines if ln.split()[:1] == ["demo-euler"]]
    assert len(solver) == 1 and "ODE" in solver[0] and "Euler on the probability-flow ODE" in solver[0]
    assert "demo-second" not in out.stdout  # the clashing plugin registered nothing
    assert "PROBLEM 1 N(0.5, 0.3^2) (demo plugin)" in lines
    assert ("METRIC |sample mean - target mean|, summed over coordinates (demo plugin) "
            "[plugin sdebench_demo_plugin.metrics:MEAN_ERROR]") in lines

    err = _stderr_lines(out)
    assert len(err) == 4 and all(ln.startswith("sdebench: skipped sdebench.") for ln in err), err
    by_group = {g: [ln for ln in err if f"{g} plugin" in ln] for g in plugins.GROUPS}
    broken, clash = by_group["sdebench.solvers"]
    assert "plugin 'broken' (sdebench_demo_plugin.broken from sdebench-demo-plugin 0.1.0)" in broken
    assert "ModuleNotFoundError" in broken and "sdebench_missing_dependency" in broken
    assert "plugin 'clash'" in clash and "sdebench.solvers.ode.euler" in clash \
        and "sdebench_demo_plugin.clash.euler" in clash
    [problem] = by_group["sdebench.problems"]
    assert "'gauss1d'" in problem and "already registered by the built-in problem from sdebench.problems.presets" \
        in problem
    [metric] = by_group["sdebench.metrics"]
    assert "'w2'" in metric and "already registered by a built-in metric" in metric


def test_plugin_solver_problem_and_metric_run(demo_plugin, tmp_path):
    import pandas as pd

    table = tmp_path / "rows.csv"
    run = _cli("run", "--problem", "gauss1d,demo-gauss", "--solver", "demo-euler,euler", "--nfe", "20",
               "--schedule", "logsnr", "--metrics", "w2_exact,w2,demo-mean-err", "--samples", "4000",
               "--out", str(table))
    assert run.returncode == 0, run.stderr
    rows = pd.read_csv(table).set_index(["problem", "solver"])
    assert sorted(rows.index) == [(p, s) for p in ("demo-gauss", "gauss1d") for s in ("demo-euler", "euler")]
    assert (rows["status"] == "ok").all() and (rows["nfe"] == 20).all()
    # an independent implementation of Euler: the exact W2 of its output law equals the built-in one's
    w2 = rows["w2_exact"]
    for problem in ("gauss1d", "demo-gauss"):
        assert w2[problem, "demo-euler"] > 1e-3, w2
        assert math.isclose(w2[problem, "demo-euler"], w2[problem, "euler"], rel_tol=1e-9), w2
    # the plugin metric, with its null, on every row. |mean bias| of a 1-D Gaussian output law <= its exact
    # W2, so the sample mean error is at most w2_exact + 4 Monte Carlo standard errors (std 0.5 / 0.3)
    assert rows[["demo-mean-err", "demo-mean-err_null"]].notna().all().all()
    std = pd.Series({"gauss1d": 0.5, "demo-gauss": 0.3})[rows.index.get_level_values("problem")].to_numpy()
    bound = rows["w2_exact"].to_numpy() + 4 * 1.01 * std / math.sqrt(4000)
    assert (rows["demo-mean-err"].to_numpy() <= bound).all(), (rows["demo-mean-err"], bound)
    assert (rows["demo-mean-err_null"].to_numpy() <= 4 * 1.01 * std / math.sqrt(4000)).all()


def test_plugin_solver_order_is_verified_by_the_registry_test(demo_plugin):
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          str(ROOT / "tests" / "test_registry_orders.py"), "-k", "demo"],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout[-2000:]
    assert "1 passed" in out.stdout, out.stdout[-2000:]


PROBLEM_MODULE = '''
import torch

from sdebench.problems.gmm import GaussianMixture

ORDER = 15


def gauss_shifted():
    return GaussianMixture(torch.ones(1, dtype=torch.float64), torch.full((1, 1), -3.0, dtype=torch.float64),
                           torch.full((1, 1, 1), 0.25, dtype=torch.float64), name="gauss-shifted")


ENTRIES = {"gauss-shifted": (gauss_shifted, "N(-3, 0.5^2)")}
'''


def test_a_problem_module_is_discovered_without_a_list(tmp_path, monkeypatch):
    """A problem module is one file in problems/ with ENTRIES; ORDER places it (presets 10, labelled 20,
    images 30)."""
    import sdebench.problems as pkg

    (tmp_path / "zz_problem.py").write_text(PROBLEM_MODULE)
    monkeypatch.setattr(pkg, "__path__", [*pkg.__path__, str(tmp_path)])
    try:
        modules = pkg.problem_modules()
        names = [m.__name__.rsplit(".", 1)[1] for m in modules]
        assert names == ["presets", "zz_problem", "labelled", "images"]
        assert set(pkg.PROBLEMS) >= {n for m in modules if m.__name__.endswith(("presets", "labelled", "images"))
                                     for n in m.ENTRIES}
        build, description = modules[1].ENTRIES["gauss-shifted"]
        monkeypatch.setitem(pkg.PROBLEMS, "gauss-shifted", pkg.ProblemEntry("gauss-shifted", build, description))
        row = run_cell(CellConfig(problem="gauss-shifted", solver="heun", nfe=200, metrics=("w2_exact",)))
        assert row["w2_exact"] < 1e-2
    finally:
        sys.modules.pop("sdebench.problems.zz_problem", None)
