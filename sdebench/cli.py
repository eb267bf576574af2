"""The ``sdebench`` command line. Each subcommand lives in ``sdebench/commands/<name>.py`` and
defines ``add_parser(subparsers)`` (returning its parser) and ``main(args) -> int``.

Bad input (a ConfigError) prints one line on stderr and exits with code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .errors import ConfigError

# subcommand modules under sdebench.commands, in the order `sdebench --help` lists them
COMMANDS = ["run", "list", "sweep", "results", "plot", "report", "train", "validate", "orders", "tune"]


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse's own convention, without the usage dump)
        sys.stderr.write(f"sdebench: error: {message}\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sdebench", description="Benchmark diffusion-model samplers against exact ground truth.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMANDS:
        mod = importlib.import_module(f"sdebench.commands.{name}")
        p = mod.add_parser(sub)
        p.set_defaults(_main=mod.main)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._main(args) or 0)
    except ConfigError as exc:
        sys.stderr.write(f"sdebench: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("sdebench: interrupted\n")
        return 130
    except BrokenPipeError:  # the reader went away (`sdebench list | head`): stop quietly, as cat does
        try:
            sys.stdout = open(os.devnull, "w")  # so the interpreter's final flush does not fail again
        except OSError:
            pass
        return 141


if __name__ == "__main__":
    raise SystemExit(main())
