"""From the console script: export a dataset to LeRobot v3, read it back identically, train on it, and
train offline on a robomimic file without an environment."""

import json

import h5py
import numpy as np
import pytest

from chunkrl.config import TrainConfig
from chunkrl.data.catalog import load_dataset
from chunkrl.data.sources.lerobot import read_lerobot
from chunkrl.envs.registry import make_env
from tests.cli.test_end_to_end import ENV, TINY, chunkrl, refusal

pytestmark = pytest.mark.slow


def test_export_to_lerobot_then_train_qc_fql_on_it(tiny_puzzle_dataset, tmp_path):
    out = tmp_path / "lerobot"
    chunkrl("data", "export", "--env", ENV, "--dataset-path", tiny_puzzle_dataset, "--sparse", "--out", out)
    original = load_dataset(
        TrainConfig(env=ENV, dataset_path=tiny_puzzle_dataset, sparse=True), make_env(ENV, True), 0, _quiet()
    ).step_arrays()
    back = read_lerobot(out).step_arrays()
    for name in ("observations", "actions", "rewards", "terminals", "ends", "next_observations"):
        np.testing.assert_array_equal(getattr(back, name), getattr(original, name), err_msg=name)
    run = tmp_path / "run"
    chunkrl("train", "--env", ENV, "--dataset-path", out, "--offline-steps", 4, "--online-steps", 0, *TINY,
            "--run-dir", run)  # fmt: skip
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"
    wrong = refusal("train", "--env", "cube-single-play-singletask-task1-v0", "--dataset-path", out,
                    "--offline-steps", 4, *TINY, "--run-dir", tmp_path / "wrong")  # fmt: skip
    assert "Pick the matching --env" in wrong


def test_robomimic_offline_without_an_environment(tmp_path):
    path = tmp_path / "lift.hdf5"
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as file:
        for i in range(3):
            demo = file.create_group(f"data/demo_{i}")
            demo["actions"] = rng.uniform(-1, 1, (20, 7)).astype(np.float32)
            demo["rewards"] = np.array([0.0] * 19 + [1.0])
            demo["dones"] = np.array([0] * 19 + [1])
            demo["obs/object"] = rng.normal(size=(20, 10)).astype(np.float32)
            demo["obs/robot0_eef_pos"] = rng.normal(size=(20, 3)).astype(np.float32)
    run = tmp_path / "run"
    chunkrl("train", "--env", "none", "--dataset-path", path, "--offline-steps", 4, "--online-steps", 0, *TINY,
            "--run-dir", run)  # fmt: skip
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["counters"]["offline_step"] == 4
    refused = refusal("train", "--env", "none", "--dataset-path", path, "--online-steps", 10, *TINY,
                      "--run-dir", tmp_path / "online")  # fmt: skip
    assert "--env none trains offline" in refused


def _quiet():
    from rich.console import Console

    return Console(quiet=True)
