"""The ``ropekit`` command: one entry point, one subcommand per task.

Subpackages add commands through a module with ``register(subparsers)`` listed in ``_COMMAND_MODULES``;
``register`` must stay cheap (heavy imports belong inside the command's handler).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["main"]

_COMMAND_MODULES: tuple[str, ...] = (
    "ropekit.commands.verify",
    "ropekit.commands.freqs",
    "ropekit.report.cli",
    "ropekit.hf.convert",
    "ropekit.train.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ropekit", description="Rotary position embeddings: checks, tables, experiments."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ValueError as e:  # bad input: one clear line, no traceback
        print(f"ropekit {args.command}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and closed early
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
