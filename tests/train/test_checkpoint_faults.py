"""Corrupt checkpoints: each file is checked, named when bad, and a resume falls back to a whole one."""

import errno
import pickle
import shutil

import pytest

from chunkrl.config import TrainConfig
from chunkrl.train import checkpoint as ckpt_module
from chunkrl.train import logging as logging_module
from chunkrl.train.checkpoint import CheckpointError, latest_good_checkpoint, load_training_state
from chunkrl.train.run import train
from tests.conftest import tiny_config

FILES = ["model.safetensors", "optimizer.pt", "rng.pt", "state.json", "config.yaml"]


@pytest.fixture(scope="module")
def trained_run(tiny_puzzle_dataset, tmp_path_factory):
    """A tiny run with checkpoints at steps 4 and 6 (keep 2)."""
    run = tmp_path_factory.mktemp("runs") / "run"
    config = tiny_config(tiny_puzzle_dataset, offline_steps=6, checkpoint_interval=2)
    train(config, run_dir=run)
    return run


@pytest.fixture
def run_copy(trained_run, tmp_path):
    return shutil.copytree(trained_run, tmp_path / "run")


def checkpoint(run, step):
    return run / "checkpoints" / f"step_{step:09d}"


@pytest.mark.parametrize("name", FILES)
def test_a_corrupt_file_in_the_latest_checkpoint_is_named_and_the_previous_one_used(run_copy, name):
    path = checkpoint(run_copy, 6) / name
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])  # truncated, as by a crash or full disk
    warnings = []
    assert latest_good_checkpoint(run_copy, warnings.append) == checkpoint(run_copy, 4)
    assert str(path) in warnings[0] and "corrupt" in warnings[0]


def test_latest_naming_a_missing_directory_falls_back_to_the_newest_whole_checkpoint(run_copy):
    (run_copy / "checkpoints" / "latest").write_text("step_000000099")
    warnings = []
    assert latest_good_checkpoint(run_copy, warnings.append) == checkpoint(run_copy, 6)
    assert "step_000000099 is missing" in warnings[0]


def test_no_whole_checkpoint_is_an_error_naming_every_problem(run_copy):
    for step in (4, 6):
        (checkpoint(run_copy, step) / "rng.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match=r"step_000000006/rng.pt is corrupt.*step_000000004/rng.pt is corrupt"):
        latest_good_checkpoint(run_copy, print)


def test_resume_continues_from_the_previous_checkpoint_when_the_latest_is_corrupt(run_copy):
    (checkpoint(run_copy, 6) / "model.safetensors").write_bytes(b"\0" * 64)
    (run_copy / "summary.json").unlink()
    summary = train(TrainConfig(), resume=run_copy)
    assert summary["status"] == "finished" and summary["counters"]["offline_step"] == 6
    steps = [line.split(",")[0] for line in (run_copy / "train.csv").read_text().splitlines()[1:]]
    assert steps == ["2", "4", "6"], "rows after the checkpoint used are logged again, not duplicated"


class Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_a_pickle_with_code_is_refused_with_a_clean_error(run_copy, capsys):
    target = checkpoint(run_copy, 6)
    (target / "checksums.json").unlink()  # as in a checkpoint of another program: nothing to compare with
    (target / "rng.pt").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(CheckpointError, match="refuses to unpickle"):
        load_training_state(target, {})
    assert "this must never run" not in capsys.readouterr().out


def failing_on_second_call(function, name, target=lambda args: " ".join(str(a) for a in args)):
    """``function`` that raises ENOSPC ("no space left on device") the second time it writes ``name``;
    ``target(args)`` tells from a call's arguments what it writes."""
    calls = {"n": 0}

    def wrapper(*args, **kwargs):
        if name in target(args):
            calls["n"] += 1
            if calls["n"] == 2:
                raise OSError(errno.ENOSPC, "No space left on device", name)
        return function(*args, **kwargs)

    return wrapper


@pytest.mark.parametrize(
    ("module", "attribute", "file"),
    [
        (ckpt_module, "save_file", "model.safetensors"),
        (ckpt_module.torch, "save", "optimizer.pt"),
        (ckpt_module.torch, "save", "rng.pt"),
        (ckpt_module, "save_config", "config.yaml"),
        (ckpt_module, "write_atomically", "latest"),
        (logging_module.CsvStream, "write", "train.csv"),
    ],
    ids=["model", "optimizer", "rng", "config", "latest", "train.csv"],
)
def test_a_full_disk_stops_the_run_with_its_error_and_the_last_checkpoint_stays_whole(
    tiny_puzzle_dataset, tmp_path, monkeypatch, module, attribute, file
):
    run = tmp_path / "run"
    original = getattr(module, attribute)
    if attribute == "write":  # CsvStream.write(self, row): the stream's path tells the file
        monkeypatch.setattr(module, attribute, failing_on_second_call(original, file, lambda args: args[0].path.name))
    else:
        monkeypatch.setattr(module, attribute, failing_on_second_call(original, file))
    with pytest.raises(OSError, match="No space left"):  # the first error is the one reported
        train(tiny_config(tiny_puzzle_dataset, offline_steps=4, checkpoint_interval=2), run_dir=run)
    monkeypatch.undo()
    warnings = []
    assert latest_good_checkpoint(run, warnings.append) == checkpoint(run, 2) and not warnings
    summary = train(TrainConfig(), resume=run)
    assert summary["status"] == "finished" and summary["counters"]["offline_step"] == 4


def test_a_summary_that_cannot_be_written_does_not_fail_a_finished_run(tiny_puzzle_dataset, tmp_path, monkeypatch):
    from chunkrl.train import trainer as loop

    real = loop.write_atomically

    def full(path, text):
        if path.name == "summary.json":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, text)

    monkeypatch.setattr(loop, "write_atomically", full)
    summary = train(tiny_config(tiny_puzzle_dataset), run_dir=tmp_path / "run")
    assert summary["status"] == "finished" and not (tmp_path / "run" / "summary.json").exists()


def test_evaluating_a_corrupt_checkpoint_names_the_file(run_copy):
    from chunkrl.train.evaluate import evaluate_checkpoint

    (checkpoint(run_copy, 6) / "config.yaml").write_text("agent: qc-fql\n")  # edited after it was written
    with pytest.raises(CheckpointError, match="step_000000006/config.yaml is corrupt"):
        evaluate_checkpoint(run_copy, episodes=1)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("listing", "message"),
    [
        ({"../../../../dev/zero": "0" * 64}, "not a file name inside"),
        ({"/etc/passwd": "0" * 64}, "not a file name inside"),
        ({"zero": "0" * 64}, "not a regular file"),  # a link inside the checkpoint to /dev/zero
        (["model.safetensors"], "not a mapping of file names to checksums"),
    ],
)
def test_checksums_naming_anything_but_the_checkpoints_own_files_are_refused_without_reading(
    run_copy, listing, message
):
    import json

    from chunkrl import Policy
    from chunkrl.train.evaluate import evaluate_checkpoint

    target = checkpoint(run_copy, 6)
    (target / "zero").symlink_to("/dev/zero")
    (target / "checksums.json").write_text(json.dumps(listing))
    for load in (ckpt_module.verify_checkpoint, lambda c: Policy.from_pretrained(c, device="cpu"), evaluate_checkpoint):
        with pytest.raises(CheckpointError, match=message):
            load(target)
    warnings = []
    assert latest_good_checkpoint(run_copy, warnings.append) == checkpoint(run_copy, 4)  # resume: the whole one
    assert message in warnings[0]


@pytest.mark.parametrize("content", ["/tmp/other_run/checkpoints/step_000000006", "../../other/step_1", "step_6\n..x"])
def test_latest_names_only_a_step_of_its_own_run(run_copy, content):
    (run_copy / "checkpoints" / "latest").write_text(content)
    with pytest.raises(CheckpointError, match="not a step_<n> checkpoint of this run"):
        ckpt_module.resolve_checkpoint(run_copy)
    warnings = []
    assert latest_good_checkpoint(run_copy, warnings.append) == checkpoint(run_copy, 6)  # resume: the newest step
    assert "not a step_<n> checkpoint" in warnings[0]


@pytest.mark.parametrize(
    ("attribute", "failing_call", "error"),
    [  # the call that writes the second checkpoint: save_file once per checkpoint, torch.save twice
        ("save_file", 2, lambda: ckpt_module.SafetensorError("Error while serializing: IoError(Os { code: 28 })")),
        ("torch_save", 3, lambda: RuntimeError("[enforce fail at inline_container.cc:664] PytorchStreamWriter failed")),
    ],
)
def test_a_full_disk_as_the_writers_report_it_is_an_error_naming_the_checkpoint_not_a_bug(
    tiny_puzzle_dataset, tmp_path, monkeypatch, attribute, failing_call, error
):
    calls = {"n": 0}
    module, name = (ckpt_module.torch, "save") if attribute == "torch_save" else (ckpt_module, "save_file")
    original = getattr(module, name)

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == failing_call:
            raise error()
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, failing)
    run = tmp_path / "run"
    with pytest.raises(OSError, match=r"could not write the checkpoint .*step_000000004 .*previous checkpoint"):
        train(tiny_config(tiny_puzzle_dataset, offline_steps=4, checkpoint_interval=2), run_dir=run)
    assert not list((run / "checkpoints").glob(".*partial"))  # nothing half-written is left
