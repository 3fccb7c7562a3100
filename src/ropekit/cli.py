"""The ``ropekit`` command: one entry point, one subcommand per task.

Subpackages add commands through a module with ``register(subparsers)`` listed in ``_COMMAND_MODULES``;
``register`` must stay cheap (heavy imports belong inside the command's handler).

Errors: a user error (a ``ValueError`` naming the argument and what is expected, or a path of the wrong kind) is
one line on stderr and exit status 2; ``--debug`` or ``ROPEKIT_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

__all__ = ["main"]

_COMMAND_MODULES: tuple[str, ...] = (
    "ropekit.commands.verify",
    "ropekit.commands.freqs",
    "ropekit.report.cli",
    "ropekit.hf.convert",
    "ropekit.train.cli",
)


def _add_debug(parser: argparse.ArgumentParser) -> None:
    """``--debug`` on a parser and every subcommand's parser below it (so it may follow the subcommand)."""
    parser.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the full traceback of an error (also: ROPEKIT_DEBUG=1)",
    )
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in {id(p): p for p in action.choices.values()}.values():
                _add_debug(child)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: the message and where the usage is, not the whole usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (usage: {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ropekit", description="Rotary position embeddings: checks, tables, experiments.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    _add_debug(parser)
    return parser


def user_error(e: BaseException) -> str | None:
    """The one-line message for an error caused by the input, or ``None`` for a bug (shown with its traceback).

    Bad values raise ``ValueError`` (``CheckpointError``, ``OutputFolderError`` are ones) with a message naming the
    argument; a path of the wrong kind raises an ``OSError`` that names the file."""
    if isinstance(e, ValueError):
        return str(e)
    if isinstance(e, OSError) and e.filename is not None:
        what = {
            FileNotFoundError: "does not exist",
            FileExistsError: "already exists",
            IsADirectoryError: "is a folder, not a file",
            NotADirectoryError: "is not a folder (or a part of the path is a file)",
            PermissionError: "is not accessible (permission denied)",
        }.get(type(e), e.strerror or "cannot be used")
        return f"{e.filename} {what}"
    if type(e).__name__ == "SafetensorError":  # safetensors' own type, not a ValueError
        return f"not a readable safetensors file ({e})"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = getattr(args, "debug", False) or os.environ.get("ROPEKIT_DEBUG", "") not in ("", "0")
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # output piped into `head` and closed early
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"ropekit {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        message = None if debug else user_error(e)
        if message is None:
            raise
        print(f"ropekit {args.command}: error: {message}", file=sys.stderr)  # bad input: one line, no traceback
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
