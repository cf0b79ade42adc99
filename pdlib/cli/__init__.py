"""The ``pdlib`` command. Each module in ``COMMAND_MODULES`` adds its subcommands through
``register(subparsers)``; a subcommand's handler gets the parsed args and returns an exit code."""
from __future__ import annotations

import argparse
import importlib
import re
import sys

from .output import CLIError

COMMAND_MODULES = (
    "pdlib.cli.theory",          # kstar, memory, budget
    "pdlib.cli.simulate",        # simulate
    "pdlib.cli.data",            # data stats
    "pdlib.cli.profile",         # profile (engine timing fits)
    "pdlib.cli.grid",            # run (papermill grid)
    "pdlib.cli.findings",        # findings (docs/findings.md from a grid run)
    "pdlib.cli.memory_profile",  # profile-memory, compare-estimates
    "pdlib.cli.serving",         # serve-profile
)


class Parser(argparse.ArgumentParser):
    """argparse with a one-line usage error: ``pdlib CMD: error: --OPT must be ..., got 'X'``
    (exit status 2); subcommand parsers inherit it."""

    def error(self, message):
        m = re.match(r"argument ([^:]+): (must be .*)", message)
        if m:  # a range error from output.int_arg / float_arg: name the option first
            message = f"{m[1]} {m[2]}"
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="pdlib", description="pdlib: exclusive-batching theory vs real LLM engines (theory, data, engines, reports)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:
                continue
            raise
        mod.register(sub)
    return parser


def main(argv=None) -> int:
    """Run ``pdlib ARGV``; returns the exit code (0 after ``--help``, 2 on a usage error)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    return run_command(args)


def run_command(args) -> int:
    """Run a parsed subcommand: its exit code, or 2 with ``pdlib CMD: error: ...`` on a user
    error, 130 on Ctrl-C (shared with ``pdlib.cli.memory_profile``'s stand-alone entry)."""
    try:
        return int(args.func(args) or 0)
    except (CLIError, ValueError, FileNotFoundError) as e:
        print(f"pdlib {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pdlib {args.command}: interrupted", file=sys.stderr)
        return 130
