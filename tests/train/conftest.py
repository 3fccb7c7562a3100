"""Run the rotary ops on the eager backend here: the compiled C++ kernel is tested in tests/kernels, and its
first build in a fresh environment takes about a minute, which would dominate this folder's time budget."""

import os

os.environ.setdefault("ROPEKIT_BACKEND", "eager")
