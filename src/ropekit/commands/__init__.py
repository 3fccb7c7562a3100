"""Subcommands of the ``ropekit`` command that belong to no subpackage: ``verify`` and ``freqs``.

Each module has ``register(subparsers)`` (cheap) and a handler; :mod:`ropekit.cli` lists them.
"""
