"""`ropekit report` / `ropekit experiment` write only into their own folder: the user's index.html and results/
in a folder the report did not create survive, and --overwrite removes only what the report wrote."""

from __future__ import annotations

import pytest

from ropekit.cli import main
from ropekit.fileio import MARKER

ANALYSIS = ["--preset", "tiny", "--only", "analysis", "--workers", "1"]


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_report_refuses_a_folder_it_did_not_write(tmp_path, capsys, overwrite):
    site = tmp_path / "site"
    (site / "results").mkdir(parents=True)
    (site / "index.html").write_text("<h1>the user's page</h1>")
    (site / "results" / "mine.csv").write_text("a,b\n")
    assert main(["report", "--out", str(site), *ANALYSIS, *overwrite]) == 2
    err = capsys.readouterr().err
    assert "not written by `ropekit report`" in err and "Traceback" not in err
    assert main(["experiment", "analysis", "--preset", "tiny", "--out", str(site), *overwrite]) == 2
    assert (site / "index.html").read_text() == "<h1>the user's page</h1>"
    assert sorted(p.name for p in site.rglob("*")) == ["index.html", "mine.csv", "results"]


def test_report_overwrite_removes_only_its_own_output(tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(["report", "--out", str(out), *ANALYSIS]) == 0
    (out / "notes.md").write_text("the user's notes")
    assert main(["report", "--out", str(out), *ANALYSIS]) == 0  # its own folder: updated (from the cache)
    assert main(["report", "--out", str(out), *ANALYSIS, "--overwrite"]) == 0
    assert (out / "notes.md").read_text() == "the user's notes" and (out / MARKER).is_file()
    assert (out / "index.html").is_file()
    trainrun = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "lm",
                "--out",
                str(trainrun),
                "--steps",
                "1",
                "--context-len",
                "8",
                "--eval-every",
                "0",
                "--d-model",
                "16",
                "--n-heads",
                "2",
                "--n-layers",
                "1",
                "--batch-size",
                "2",
                "--no-progress",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["report", "--out", str(trainrun), *ANALYSIS]) == 2  # another command's folder
    assert "holds the output of `ropekit train`" in capsys.readouterr().err
