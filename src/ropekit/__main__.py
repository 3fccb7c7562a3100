"""``python -m ropekit ...``: the same command line as the ``ropekit`` script (:func:`ropekit.cli.main`)."""

from __future__ import annotations

import sys

from ropekit.cli import main

if __name__ == "__main__":
    sys.exit(main())
