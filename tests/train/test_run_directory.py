"""Run directories: one process at a time, resuming the right thing, files never left half-written."""

import errno
import json
import os
import shutil
import socket
import subprocess

import numpy as np
import pytest
import torch
from rich.console import Console

from chunkrl.config import TrainConfig, load_config, save_config
from chunkrl.data.catalog import load_dataset
from chunkrl.envs.registry import run_env
from chunkrl.files import write_atomically
from chunkrl.train.device import machine_description
from chunkrl.train.run import train
from chunkrl.train.run_dir import RUN_MARKER, RunDirectoryBusy, RunDirectoryLock, lock_holder, new_run_dir
from tests.conftest import tiny_config


def test_a_second_process_on_a_run_directory_is_refused_and_told_who_holds_it(tmp_path):
    assert lock_holder(tmp_path) is None
    with RunDirectoryLock(tmp_path), pytest.raises(RunDirectoryBusy, match=f"in use by process {os.getpid()}"):
        assert lock_holder(tmp_path).startswith(f"process {os.getpid()} on {socket.gethostname()} since ")
        RunDirectoryLock(tmp_path).__enter__()
    assert lock_holder(tmp_path) is None, "a run that ended names no holder"
    with RunDirectoryLock(tmp_path):  # released on exit: the directory can be used again
        pass
    gone = subprocess.Popen(["true"])  # noqa: S607
    gone.wait()
    (tmp_path / ".lock").write_text(f"process {gone.pid} on {socket.gethostname()} since 2026-12-04 04:00:00")
    assert lock_holder(tmp_path) is None, "the line a killed run left behind names a process that is gone"
    (tmp_path / ".lock").write_text("process 1 on another-host since 2026-12-04 04:00:00")
    assert lock_holder(tmp_path) == "process 1 on another-host since 2026-12-04 04:00:00 (another machine: not checked)"


def test_resume_refuses_to_train_while_another_process_holds_the_run(tiny_puzzle_dataset, tmp_path):
    run = tmp_path / "run"
    train(tiny_config(tiny_puzzle_dataset), run_dir=run)
    rows_before = (run / "train.csv").read_text()
    with RunDirectoryLock(run), pytest.raises(RunDirectoryBusy):
        train(TrainConfig(), resume=run)
    assert (run / "train.csv").read_text() == rows_before


def test_resuming_a_checkpoint_path_names_the_command_that_resumes_its_run(tiny_puzzle_dataset, tmp_path):
    run = tmp_path / "run"
    train(tiny_config(tiny_puzzle_dataset), run_dir=run)
    checkpoint = run / "checkpoints" / (run / "checkpoints" / "latest").read_text()
    with pytest.raises(ValueError, match=f"resume its run with `chunkrl train --resume {run}`"):
        train(TrainConfig(), resume=checkpoint)
    assert sorted(p.name for p in checkpoint.iterdir()) == sorted(
        [
            "model.safetensors",
            "optimizer.pt",
            "rng.pt",
            "state.json",
            "config.yaml",
            "checksums.json",
            "normalization.json",
        ]
    ), "nothing may be written inside the checkpoint"


def test_a_run_that_died_before_its_first_checkpoint_resumes_from_its_saved_config(tiny_puzzle_dataset, tmp_path):
    run = new_run_dir(TrainConfig(), tmp_path / "run")  # as `chunkrl train` makes it: marked as a chunkrl run
    save_config(tiny_config(tiny_puzzle_dataset, agent="qc-fql"), run / "config.yaml")
    (run / "train.csv").write_text("step,phase,loss/total\n2,offline,1.0\n")  # rows of the dead process
    summary = train(TrainConfig(), resume=run)
    assert summary["status"] == "finished" and summary["counters"]["offline_step"] == 4
    steps = [line.split(",")[0] for line in (run / "train.csv").read_text().splitlines()[1:]]
    assert steps == ["2", "4"], "the dead run's rows are replaced, not duplicated"


def test_an_unreadable_summary_does_not_block_a_resume(tiny_puzzle_dataset, tmp_path):
    run = tmp_path / "run"
    train(tiny_config(tiny_puzzle_dataset), run_dir=run)
    (run / "summary.json").write_text("")  # what a full disk left before writes were atomic
    config = load_config(run / "config.yaml")
    config.offline_steps = 6
    save_config(config, run / "config.yaml")
    summary = train(TrainConfig(), resume=run)
    assert summary["counters"]["offline_step"] == 6
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"


def test_a_failed_write_leaves_the_old_file_whole(tmp_path, monkeypatch):
    path = tmp_path / "summary.json"
    path.write_text('{"status": "finished"}')

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_atomically(path, '{"status": "interrupted", "much": "more"}')
    assert path.read_text() == '{"status": "finished"}'
    assert list(tmp_path.iterdir()) == [path], "no temporary file is left behind"


def test_resume_never_trains_in_a_folder_chunkrl_did_not_create(tiny_puzzle_dataset, tmp_path):
    folder = tmp_path / "my_experiment"
    folder.mkdir()
    save_config(tiny_config(tiny_puzzle_dataset), folder / "config.yaml")  # a chunkrl-looking config
    mine = {"train.csv": "step,phase,loss\n7,mine,0.5\n", "eval.csv": "step,success\n9,1.0\n", "summary.json": "{}"}
    for name, text in mine.items():
        (folder / name).write_text(text)
    with pytest.raises(ValueError, match=f"not a run directory chunkrl created .*no {RUN_MARKER} marker"):
        train(TrainConfig(), resume=folder)
    assert {p.name for p in folder.iterdir()} == {"config.yaml", *mine}  # nothing added
    for name, text in mine.items():
        assert (folder / name).read_text() == text  # nothing replaced or truncated


def test_a_run_from_before_markers_is_recognised_by_its_checkpoints_and_resumes(tiny_puzzle_dataset, tmp_path):
    run = tmp_path / "run"
    train(tiny_config(tiny_puzzle_dataset, offline_steps=2), run_dir=run)
    (run / RUN_MARKER).unlink()
    config = (run / "config.yaml").read_text().replace("offline_steps: 2", "offline_steps: 4")
    (run / "config.yaml").write_text(config)
    assert train(TrainConfig(), resume=run)["counters"]["offline_step"] == 4
    assert (run / RUN_MARKER).is_file()


def test_a_resumed_runs_wall_time_counts_every_segment(tiny_puzzle_dataset, tmp_path):
    run = tmp_path / "run"
    train(tiny_config(tiny_puzzle_dataset, offline_steps=2), run_dir=run)
    summary = json.loads((run / "summary.json").read_text())
    summary["wall_seconds"] = 1000.0  # as if the first segment had taken 1000 s
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "config.yaml").write_text((run / "config.yaml").read_text().replace("offline_steps: 2", "offline_steps: 4"))
    resumed = train(TrainConfig(), resume=run)
    assert 1000.0 < resumed["wall_seconds"] < 1000.0 + 600  # the earlier segment plus this one
    assert resumed["machine"] == machine_description(torch.device("cpu"))  # what the time was measured on
    assert f"{torch.get_num_threads()} threads" in resumed["machine"] and "torch" in resumed["machine"]


def test_a_run_records_its_training_data_and_refuses_to_resume_on_other_data(tiny_puzzle_dataset, tmp_path):
    data = tmp_path / "puzzle-3x3-play-v0.npz"
    shutil.copy(tiny_puzzle_dataset, data)
    run = tmp_path / "run"
    config = tiny_config(data, checkpoint_interval=2)
    summary = train(config, run_dir=run)
    store = load_dataset(config, run_env(config), 0, Console(quiet=True))
    assert summary["data"] == {"transitions": store.size, "sha256": store.content_digest()}
    assert json.loads((run / "summary.json").read_text())["data"] == summary["data"]
    with np.load(data) as arrays:
        changed = {name: arrays[name].copy() for name in arrays.files}
    changed["observations"][3, 0] += 0.01  # regenerated a little differently
    np.savez(data, **changed)
    saved = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(saved.replace("offline_steps: 4", "offline_steps: 6"))  # a longer budget
    (run / "checkpoints" / "latest").write_text("step_000000002")  # train.csv holds rows past it (step 4)
    rows_before = {name: (run / name).read_text() for name in ("train.csv", "eval.csv", "summary.json")}
    with pytest.raises(ValueError, match=f"{run} started on other training data than this resume loads"):
        train(None, resume=run)
    assert {name: (run / name).read_text() for name in rows_before} == rows_before  # the refusal changed no file
    shutil.copy(tiny_puzzle_dataset, data)  # the data it started on: the resume goes on
    assert train(None, resume=run)["counters"]["offline_step"] == 6
