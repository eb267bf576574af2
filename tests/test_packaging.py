"""A plain (non-editable) install ships one namespace, sdebench, with every subpackage the CLI needs."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_plain_install_imports_the_same_modules(tmp_path):
    target = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                        "--target", str(target), str(ROOT)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    top = {p.name for p in target.iterdir()}
    assert "sdebench" in top and not ({"solvers", "problems", "tests", "benchmarks"} & top), top
    env = {**os.environ, "PYTHONPATH": str(target)}
    code = ("import sdebench, sdebench.solvers as s, sdebench.problems as p; "
            f"assert s.__file__.startswith({str(target)!r}) and p.__file__.startswith({str(target)!r}); "
            "import sdebench.validate; from sdebench.cli import main; raise SystemExit(main(['list', 'solvers']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "heun" in r.stdout
