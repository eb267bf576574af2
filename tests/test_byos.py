"""Bring your own solver: sdebench.benchmark / sdebench.check_order on plain functions (sdebench/byos.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

import sdebench
from sdebench.errors import ConfigError, NFEBudgetError
from sdebench.run import CellConfig, crn_base_steps, is_timing, run_cell
from sdebench.solvers import SOLVERS
from sdebench.solvers.ode import euler, heun
from sdebench.solvers.reverse_sde import em
from sdebench.verify import ORDER_TOL, OrderMismatch

ROOT = Path(__file__).resolve().parents[1]


# ---- user solvers written against the public objects only (not the registered code) -----------------
def my_euler(model, x, grid, sde, noise):
    """Euler on the probability-flow ODE dx/dt = f x - g^2/2 score (first order)."""
    for t, s in zip(grid[:-1], grid[1:]):
        x = x - (t - s) * (sde.f(t) * x - 0.5 * sde.g2(t) * model.score(x, t))
    return x


def my_heun(model, x, grid, sde, noise):
    """Heun (explicit trapezoid) on the probability-flow ODE (second order, 2 NFE per step)."""

    def v(y, t):
        return sde.f(t) * y - 0.5 * sde.g2(t) * model.score(y, t)

    for t, s in zip(grid[:-1], grid[1:]):
        d = v(x, t)
        x = x - (t - s) * 0.5 * (d + v(x - (t - s) * d, s))
    return x


def greedy_euler(model, x, grid, sde, noise):
    """Calls the model twice per step while declaring one."""
    for t, s in zip(grid[:-1], grid[1:]):
        model.score(x, t)
        x = x - (t - s) * (sde.f(t) * x - 0.5 * sde.g2(t) * model.score(x, t))
    return x


@pytest.fixture(autouse=True)
def registry_unchanged():
    before = dict(SOLVERS)
    yield
    assert SOLVERS == before  # no call leaves a user:* solver behind, whether it returned or raised


# ---- orders: the registry test's measurement -----------------------------------------------------------
def test_user_euler_is_first_order():
    res = sdebench.check_order(my_euler, order=1)
    assert res.passed and abs(res.measured - 1) <= ORDER_TOL, str(res)
    assert res.nfe == [20, 40, 80] and res.steps == [20, 40, 80] and res.solver == "user:my_euler"
    assert res.ci95[0] <= res.measured <= res.ci95[1]
    with pytest.raises(OrderMismatch, match=r"user:my_euler: measured order 1\.\d\d .*declared 2 \+- 0.25: FAILED"):
        sdebench.check_order(my_euler, order=2)
    flagged = sdebench.check_order(my_euler, order=2, strict=False)
    assert not flagged.passed and flagged.measured == res.measured


def test_user_heun_is_second_order():
    res = sdebench.check_order(my_heun, order=2, nfe_per_step=2)
    assert res.passed and abs(res.measured - 2) <= ORDER_TOL, str(res)
    assert res.nfe == [40, 80, 160] and res.steps == [20, 40, 80]


@pytest.mark.parametrize("fn,kind,nfe_per_step,schedule", [(heun, "ode", 2, "logsnr"), (em, "sde", 1, "uniform")])
def test_check_order_equals_the_registry_measurement(fn, kind, nfe_per_step, schedule):
    """The plain function of a registered solver, checked as a user solver, gives the registry test's numbers."""
    from sdebench.verify import exact_w2_curve, fitted_slope

    spec = SOLVERS[fn.__name__]
    assert spec.order_grid == schedule
    steps, errs = exact_w2_curve(spec, spec.verification_nfes(), schedule)
    res = sdebench.check_order(fn, order=spec.order, kind=kind, nfe_per_step=nfe_per_step, schedule=schedule)
    assert res.passed and res.w2 == errs.tolist() and res.measured == -fitted_slope(steps, errs)


# ---- the DataFrame: the same rows as the registered solvers through run_cell ---------------------------
NONDET = {"solver"}  # the name differs (and timing, sdebench.run.is_timing, is not reproducible)


@pytest.mark.parametrize("fn,name,nfe_per_step,kind,nfes", [
    (euler, "euler", 1, "ode", [5, 10, 20]),
    (heun, "heun", 2, "ode", [6, 10, 20]),
    (em, "em", 1, "sde", [5, 10]),
])
def test_benchmark_rows_equal_registered_solver(fn, name, nfe_per_step, kind, nfes):
    problems, seeds, samples = ["gauss1d", "gmm1d"], [0, 3], 200
    df = sdebench.benchmark(fn, problems=problems, nfe=nfes, seeds=seeds, kind=kind, nfe_per_step=nfe_per_step,
                            samples=samples)
    assert len(df) == len(problems) * len(nfes) * len(seeds)
    assert (df["solver"] == f"user:{fn.__name__}").all() and (df["status"] == "ok").all()
    assert "order_check" not in df.attrs
    spec = SOLVERS[name]
    crn = crn_base_steps([spec.steps_for_nfe(n) for n in nfes])
    ref = pd.DataFrame([run_cell(CellConfig(problem=p, sde="vp", solver=name, nfe=n, seed=s, n_samples=samples,
                                            schedule="logsnr", crn_steps=crn))
                        for p in problems for n in nfes for s in seeds])
    assert list(df.columns) == list(ref.columns)  # the columns of `sdebench run` rows
    cols = [c for c in df.columns if c not in NONDET and not is_timing(c)]
    pd.testing.assert_frame_equal(df[cols], ref[cols], check_exact=True)
    assert df["w2_exact"].notna().sum() == len(nfes) * len(seeds)  # gauss1d rows carry the exact metric


def test_benchmark_with_order_attaches_the_check():
    with pytest.warns(UserWarning, match="order check failed: user:my_euler: measured order"):
        df = sdebench.benchmark(my_euler, problems="gauss1d", nfe=[10, 20], samples=50, order=2,
                                metrics=["w2_exact"])
    assert len(df) == 2 and not df.attrs["order_check"].passed  # the rows are kept
    df = sdebench.benchmark(my_heun, problems="gauss1d", nfe=[10, 20], samples=50, order=2, nfe_per_step=2,
                            metrics=["w2_exact", "w1"])
    check = df.attrs["order_check"]
    assert check.passed and check.solver == "user:my_heun", str(check)
    assert {"w2_exact", "w1", "w1_null", "w1_at_floor"} <= set(df.columns)
    assert (df["nfe"] == [10, 20]).all() and (df["steps"] == [5, 10]).all()


def test_solver_options_reach_the_function():
    def damped(model, x, grid, sde, noise, scale: float = 1.0):
        return my_euler(model, x, grid, sde, noise) * scale

    a = sdebench.benchmark(damped, problems="gauss1d", nfe=[8], samples=20, metrics=["w1"])
    b = sdebench.benchmark(damped, problems="gauss1d", nfe=[8], samples=20, metrics=["w1"], scale=0.5)
    assert b["solver_options"].iloc[0] == "scale=0.5" and a["w1"].iloc[0] != b["w1"].iloc[0]
    with pytest.raises(ConfigError, match=r"no option\(s\) \['sclae'\]"):
        sdebench.benchmark(damped, problems="gauss1d", nfe=[8], samples=20, sclae=0.5)


# ---- the harness's NFE count and bad input --------------------------------------------------------------
def test_miscounted_nfe_is_the_harness_error():
    with pytest.raises(NFEBudgetError, match=r"^user:greedy_euler: counted 20 model evaluations but the "
                                             r"budget is 10$"):
        sdebench.benchmark(greedy_euler, problems="gauss1d", nfe=[10], samples=20)
    with pytest.raises(NFEBudgetError, match="counted 40 model evaluations but the budget is 20"):
        sdebench.check_order(greedy_euler, order=1)


def _bad_signature(model, x, grid):
    return x


def _kwargs_only(model, x, grid, sde, noise, **options):
    return x


def _required_option(model, x, grid, sde, noise, eta):
    return x


@pytest.mark.parametrize("call,message", [
    (lambda: sdebench.benchmark(42), r"the solver must be a function fn\(model, x, grid, sde, noise, \*\*options\), "
                                     r"got 42 \(not callable\)"),
    (lambda: sdebench.benchmark(_bad_signature), r"solver _bad_signature\(model, x, grid\) does not have the "
                                                 r"signature"),
    (lambda: sdebench.benchmark(_kwargs_only), r"_kwargs_only\(model, x, grid, sde, noise, \*\*options\) does not"),
    (lambda: sdebench.benchmark(_required_option), r"_required_option\(.*eta\) does not have"),
    (lambda: sdebench.check_order(_bad_signature, order=1), "does not have the signature"),
    (lambda: sdebench.benchmark(my_euler, problems=["gauss1d", "gmm9d"]), r"unknown problem 'gmm9d'"),
    (lambda: sdebench.benchmark(my_euler, nfe=[5, 0]), r"nfe must be >= 1, got 0"),
    (lambda: sdebench.benchmark(my_euler, nfe=[2.5]), r"nfe must be an integer, got 2.5"),
    (lambda: sdebench.benchmark(my_euler, nfe=[]), r"nfe must be a non-empty list, got \[\]"),
    (lambda: sdebench.benchmark(my_euler, seeds=[-1]), r"seed must be >= 0, got -1"),
    (lambda: sdebench.benchmark(my_euler, samples=1), r"samples must be >= 2, got 1"),
    (lambda: sdebench.benchmark(my_euler, kind="pde"), r"kind must be 'ode' or 'sde', got 'pde'"),
    (lambda: sdebench.benchmark(my_euler, order=-1), r"order must be a positive number, got -1"),
    (lambda: sdebench.benchmark(my_euler, sde="vq"), r"unknown SDE 'vq'"),
    (lambda: sdebench.benchmark(my_euler, schedule="cosine2"), r"unknown schedule 'cosine2'"),
    (lambda: sdebench.benchmark(my_euler, metrics=["w3"]), r"unknown metric\(s\) \['w3'\]"),
    (lambda: sdebench.benchmark(my_heun, nfe=[5], nfe_per_step=2), r"costs 2 NFE per step and cannot use NFE=5"),
    (lambda: sdebench.check_order(my_euler, order=1, nfe=[0, 10]), r"nfe must be >= 1, got 0"),
    (lambda: sdebench.check_order(my_euler, order=1, nfe=[10]), r"at least two NFE budgets"),
    (lambda: sdebench.benchmark(euler, name="heun"), r"solver name 'heun' is already registered"),
])
def test_bad_input_is_one_config_error_line(call, message):
    with pytest.raises(ConfigError, match=message) as exc:
        call()
    assert "\n" not in str(exc.value)


def test_an_ode_solver_that_draws_noise_is_refused():
    def noisy(model, x, grid, sde, noise):
        for i, (t, s) in enumerate(zip(grid[:-1], grid[1:])):
            x = x - (t - s) * (sde.f(t) * x - 0.5 * sde.g2(t) * model.score(x, t)) + 0.01 * noise.dW(i)
        return x

    with pytest.raises(ConfigError, match=r"^solver 'user:noisy' is declared kind='ode' but uses noise.dW; "
                                          r"declare kind='sde'"):
        sdebench.benchmark(noisy, problems="gauss1d", nfe=[4], samples=10)
    df = sdebench.benchmark(noisy, problems="gauss1d", nfe=[4], samples=10, kind="sde", metrics=["w1"])
    assert df["status"].tolist() == ["ok"] and df["kind"].tolist() == ["sde"]


def test_temporary_registration_is_visible_inside_only():
    from sdebench.byos import temporary_solver

    with temporary_solver(my_euler, order=1) as spec:
        assert SOLVERS["user:my_euler"] is spec and spec.family == "user" and spec.verified_order == 1
        with pytest.raises(ConfigError, match="already registered"):
            sdebench.benchmark(my_euler)
    assert "user:my_euler" not in SOLVERS


def test_failed_cells_keep_their_rows_and_warn():
    def broken(model, x, grid, sde, noise):
        model.score(x, grid[0])
        raise RuntimeError("boom")

    with pytest.warns(UserWarning, match=r"1 of 1 cells did not finish ok; .*RuntimeError: boom"):
        df = sdebench.benchmark(broken, problems="gauss1d", nfe=[1], samples=10)
    assert df["status"].tolist() == ["error"]


# ---- the example notebook runs --------------------------------------------------------------------------
NOTEBOOK = ROOT / "docs" / "byos.ipynb"


def _run_notebook() -> tuple[str, list[str]]:
    """Execute docs/byos.ipynb with a Jupyter kernel (nbclient); if no kernel can start here, run its code
    cells in order with exec. Returns (how, the text each code cell printed)."""
    import ast
    import contextlib
    import io

    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    try:
        from jupyter_client.kernelspec import NoSuchKernel
        from nbclient import NotebookClient

        client = NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}})
        try:
            client.execute()
        except (NoSuchKernel, RuntimeError, OSError) as exc:  # kernel cannot start: fall back below
            if "kernel" not in str(exc).lower() and not isinstance(exc, NoSuchKernel):
                raise
            raise ImportError(str(exc)) from exc
        out = []
        for cell in nb.cells:
            if cell.cell_type == "code":
                text = ""
                for o in cell.get("outputs", []):
                    assert o.output_type != "error", f"{o.get('ename')}: {o.get('evalue')}"
                    text += o.get("text", "") + o.get("data", {}).get("text/plain", "")
                out.append(text)
        return "nbclient", out
    except ImportError:
        scope: dict = {"__name__": "__main__"}
        out = []
        for cell in nb.cells:
            if cell.cell_type == "code":
                buf = io.StringIO()
                tree = ast.parse(cell.source)
                last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
                with contextlib.redirect_stdout(buf):
                    exec(compile(tree, str(NOTEBOOK), "exec"), scope)
                    if last is not None:  # shown as a notebook shows a cell's last expression
                        value = eval(compile(ast.Expression(last.value), str(NOTEBOOK), "eval"), scope)
                        if value is not None:
                            print(repr(value))
                out.append(buf.getvalue())
        return "exec", out


def test_notebook_executes_and_reports_the_declared_order():
    how, outputs = _run_notebook()
    text = "\n".join(outputs)
    orders = [float(m) for m in re.findall(r"measured order (\d+\.\d+)", text)]
    assert len(orders) >= 2, text  # the user's Euler (order 1) and Heun (order 2)
    assert abs(orders[0] - 1) <= ORDER_TOL and abs(orders[1] - 2) <= ORDER_TOL, (how, orders)
    assert text.count(": passed") == 2, text
    # the two rejections it demonstrates: Euler declared second order, and a miscounted NFE
    assert re.search(r"rejected: user:my_euler: measured order 1\.\d\d .*declared 2 \+- 0.25: FAILED", text), text
    assert "rejected: user:my_heun: counted 20 model evaluations but the budget is 10" in text, text
    assert "user:my_euler" in text and "gmm1d" in text  # the DataFrame is shown
    print(f"notebook executed with {how}")


# ---- the README's example -------------------------------------------------------------------------------
def _readme_section() -> str:
    text = (ROOT / "README.md").read_text()
    return text[text.index("## Bring your own solver"):text.index("\n## ", text.index("## Bring your own solver") + 3)]


def test_readme_order_line_is_what_check_order_prints():
    section = _readme_section()
    line = next(ln for ln in section.splitlines() if ln.startswith("user:heun: measured order"))
    assert str(sdebench.check_order(heun, order=2, nfe_per_step=2)) == line


def test_default_nfe_is_steps_times_cost():
    df = sdebench.benchmark(heun, problems="gauss1d", nfe_per_step=2, samples=10, metrics=["w2_exact"])
    assert df["nfe"].tolist() == [10, 20, 40, 80] and df["steps"].tolist() == [5, 10, 20, 40]


@pytest.mark.slow
def test_readme_example_prints_what_the_readme_shows():
    import contextlib
    import io

    section = _readme_section()
    code = re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)
    shown = re.search(r"```text\n(.*?)```", section, flags=re.S).group(1)
    scope: dict = {}
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(code, scope)
        for expr in re.findall(r"^>>> (.*)$", shown, flags=re.M):
            exec(expr, scope)
    assert buf.getvalue().split() == re.sub(r"^>>> .*$", "", shown, flags=re.M).split()
