"""The one atomic writer and the output-folder guard (ropekit.fileio): a writer killed mid-write leaves the old file
intact; an in-place rewrite keeps the file's mode; --overwrite removes only what the command wrote."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys

import pytest

from ropekit.fileio import MARKER, OutputFolderError, atomic_write, claim_output_folder

_KILLED_WRITER = """
import sys, time
from ropekit.fileio import atomic_write

def writer(tmp):
    with open(tmp, "wb") as f:
        f.write(b"NEW" * 1000)
        f.flush()
        print("writing", flush=True)
        time.sleep(60)  # killed here, half-way through

atomic_write(sys.argv[1], writer)
"""


def test_a_writer_killed_mid_write_leaves_the_old_file_intact(tmp_path):
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"OLD contents")
    script = tmp_path / "writer.py"
    script.write_text(_KILLED_WRITER)
    proc = subprocess.Popen([sys.executable, str(script), str(target)], stdout=subprocess.PIPE, env=os.environ)
    try:
        assert proc.stdout.readline().strip() == b"writing"  # the temporary file holds part of the new data
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert target.read_bytes() == b"OLD contents"
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) == 1 and leftovers[0].startswith(".model.safetensors.")  # hidden, never the target


def test_in_place_rewrite_keeps_the_mode_and_a_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")
    os.chmod(target, 0o644)
    atomic_write(target, b"new")
    assert target.read_bytes() == b"new" and stat.S_IMODE(target.stat().st_mode) == 0o644

    def failing(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, failing)
    assert target.read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]
    with pytest.raises(ValueError, match="is a folder"):
        atomic_write(tmp_path, b"x")
    with pytest.raises(ValueError, match="does not exist"):
        atomic_write(tmp_path / "no" / "f", b"x")
    fresh = tmp_path / "fresh"
    atomic_write(fresh, b"x")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600


def test_overwrite_removes_only_what_the_command_wrote(tmp_path):
    out = tmp_path / "out"
    marker = claim_output_folder(out, command="report", entries=["index.html", "results"])
    (out / "index.html").write_text("ours")
    (out / "results").mkdir()
    (out / "results" / "a.csv").write_text("1")
    (out / "mine.txt").write_text("the user's")
    again = claim_output_folder(out, command="report", entries=["index.html", "results"])
    assert again["run_id"] == marker["run_id"] and (out / "index.html").exists()  # reuse: nothing removed
    fresh = claim_output_folder(out, command="report", entries=["index.html", "results"], overwrite=True)
    assert fresh["run_id"] != marker["run_id"]
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "mine.txt"]
    with pytest.raises(OutputFolderError, match="holds the output of `ropekit report`"):
        claim_output_folder(out, command="train", entries=["ckpt"], overwrite=True)
    user = tmp_path / "user"
    user.mkdir()
    (user / "index.html").write_text("the user's page")
    with pytest.raises(OutputFolderError, match=r"--out .* not written by `ropekit report`.*index\.html"):
        claim_output_folder(user, command="report", entries=["index.html"], overwrite=True)
    assert (user / "index.html").read_text() == "the user's page"
