"""The command line's answers to user mistakes: one clear line and exit code 2, never a traceback."""

import importlib.util
import os
import subprocess
import sys

import pytest

from chunkrl import cli
from chunkrl.cli import main


def test_an_unknown_command_is_named_with_the_closest_one(capsys):
    assert main(["trian"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'trian'" in err and "Did you mean: train?" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["eval", "run", "--episodes", "0"],
        ["data", "generate", "puzzle-3x3-play-v0", "--episodes", "0"],
        ["data", "generate", "puzzle-3x3-play-v0", "--workers", "-1"],
    ],
)
def test_counts_below_one_are_refused_by_the_parser(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2 and "must be at least 1" in capsys.readouterr().err


def test_error_text_is_printed_verbatim_including_brackets(tmp_path, capsys):
    # the message must survive rich's markup: [wandb] is not a style tag
    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here, so --wandb does not fail")
    run = tmp_path / "run"
    assert main(["train", "--wandb", "--run-dir", str(run), "--online-steps", "0", "--offline-steps", "1"]) == 2
    assert "pip install 'chunkrl[wandb]'" in capsys.readouterr().err
    assert not run.exists()


def test_a_run_dir_that_is_a_file_is_refused_and_left_alone(tmp_path, capsys):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    assert main(["train", "--run-dir", str(target), "--offline-steps", "1", "--online-steps", "0"]) == 2
    assert "is a file, not a directory" in capsys.readouterr().err
    assert target.read_text() == "mine"


def test_an_internal_error_shows_its_traceback_and_asks_for_a_report(monkeypatch, capsys):
    def broken(argv):
        raise ZeroDivisionError("a bug")

    monkeypatch.setitem(cli.COMMANDS, "train", broken)
    assert main(["train"]) == 1
    err = capsys.readouterr().err
    assert "ZeroDivisionError" in err and "Please report it" in err


def test_plotting_a_run_without_evaluations_is_an_error_not_an_empty_picture(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("agent: qc-fql\nenv: puzzle-3x3-play-singletask-task1-v0\n")
    (run / "eval.csv").write_text("step,phase,success\n")
    assert main(["plot", str(run)]) == 2
    assert "holds no evaluations yet" in capsys.readouterr().err
    assert not (run / "success.png").exists()


def test_generating_into_a_read_only_directory_fails_before_any_episode(tmp_path, monkeypatch, capsys):
    import os

    from chunkrl.envs.scripted import ogbench as generate

    monkeypatch.setattr(os, "access", lambda path, mode: False)  # as for a read-only directory (root ignores modes)
    monkeypatch.setattr(generate, "_collect", lambda *args: pytest.fail("episodes were generated"))
    code = main(["data", "generate", "puzzle-3x3-play-v0", "--episodes", "1", "--out", str(tmp_path / "d.npz")])
    assert code == 2 and "cannot write to" in capsys.readouterr().err


def test_a_second_ctrl_c_exits_130_without_a_traceback(monkeypatch, capsys):
    def interrupted(argv):
        raise KeyboardInterrupt

    monkeypatch.setitem(cli.COMMANDS, "train", interrupted)
    assert main(["train"]) == 130
    err = capsys.readouterr().err
    assert "second Ctrl-C" in err and "Traceback" not in err


def test_an_unwritable_run_directory_is_one_line_naming_the_path(tmp_path, monkeypatch, capsys):
    from pathlib import Path

    def read_only(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", read_only)  # root ignores permission bits, so simulate them
    run = tmp_path / "ro" / "run"
    assert main(["train", "--run-dir", str(run), "--offline-steps", "1", "--online-steps", "0"]) == 2
    err = capsys.readouterr().err
    assert "Permission denied" in err and str(run) in err.replace("\n", "") and "Traceback" not in err


def test_output_into_a_pipe_whose_reader_has_gone_ends_quietly():
    """`chunkrl train --help | head -1`: the reader stops early; the command ends with 0 and says nothing."""
    read, write = os.pipe()
    os.close(read)  # the reader has gone before the first write (67 kB of help)
    try:
        command = [sys.executable, "-m", "chunkrl.cli", "train", "--help"]
        done = subprocess.run(command, stdout=write, stderr=subprocess.PIPE, timeout=120)
    finally:
        os.close(write)
    assert (done.returncode, done.stderr.decode()) == (0, "")


def test_a_broken_pipe_that_is_not_standard_output_is_an_error(monkeypatch, capsys):
    def broken(argv):
        raise BrokenPipeError(32, "Broken pipe (a worker's connection)")

    monkeypatch.setitem(cli.COMMANDS, "train", broken)
    assert main(["train"]) == 2
    assert "a worker's connection" in capsys.readouterr().err
