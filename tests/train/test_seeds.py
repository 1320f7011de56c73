"""--seeds: several seeds in one process, each a complete run, each following its own separate run."""

import csv
import json

import pytest
import torch
import yaml
from safetensors.torch import load_file

from chunkrl.agents.flow.config import FlowAgentConfig
from chunkrl.agents.stack import SeedStack
from chunkrl.train.run import train
from chunkrl.train.trainer import TrainingInterrupted
from tests.conftest import sigterm_during_update, tiny_config


def seeds_config(dataset, seeds, **changes):
    values = dict(
        seeds=seeds,
        offline_steps=6,
        online_steps=6,
        start_training=2,
        log_interval=1,
        checkpoint_interval=3,
        flow=FlowAgentConfig(actor_hidden_dims=(8,), critic_hidden_dims=(8,), flow_steps=2, alpha=10.0),
    )
    return tiny_config(dataset, **{**values, **changes})


def final_weights(run_dir):
    return load_file(run_dir / "checkpoints" / (run_dir / "checkpoints" / "latest").read_text() / "model.safetensors")


def losses(run_dir):
    with open(run_dir / "train.csv") as f:
        return [(int(row["step"]), float(row["loss/total"])) for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def two_seeds(tiny_puzzle_dataset, tmp_path_factory):
    run = tmp_path_factory.mktemp("seeds") / "run"
    summary = train(seeds_config(tiny_puzzle_dataset, (0, 1)), run_dir=run)
    return run, summary


def test_each_seed_is_a_complete_run_of_its_own(two_seeds):
    run, summary = two_seeds
    assert yaml.safe_load((run / "config.yaml").read_text())["seeds"] == [0, 1]
    for seed in (0, 1):
        lane = run / f"seed_{seed}"
        config = yaml.safe_load((lane / "config.yaml").read_text())
        assert (config["seed"], config["seeds"]) == (seed, [])
        assert (lane / "checkpoints" / "latest").read_text() == "step_000000012"
        assert json.loads((lane / "summary.json").read_text())["status"] == "finished"
        assert [step for step, _ in losses(lane)] == list(range(1, 7)) + list(range(8, 13))
    assert losses(run / "seed_0") != losses(run / "seed_1"), "each seed has its own weights, data and draws"
    assert summary["status"] == "finished"
    assert set(summary["evaluations"]["online_final"]["per_seed"]) == {0, 1}
    assert json.loads((run / "summary.json").read_text())["seeds"] == [0, 1]


def test_a_seed_trained_beside_others_follows_its_own_run_alone(two_seeds, tiny_puzzle_dataset, tmp_path):
    """Seed 1 of --seeds 0 1 and --seeds 1 alone: the same losses step for step, offline and online (own
    dataset copy, replay, samplers, environments and random draws; nothing leaks between seeds)."""
    run, _ = two_seeds
    alone = tmp_path / "alone"
    train(seeds_config(tiny_puzzle_dataset, (1,)), run_dir=alone)
    together, by_itself = losses(run / "seed_1"), losses(alone / "seed_1")
    assert [s for s, _ in together] == [s for s, _ in by_itself]
    assert [v for _, v in together] == pytest.approx([v for _, v in by_itself], rel=1e-5)
    torch.testing.assert_close(final_weights(run / "seed_1"), final_weights(alone / "seed_1"), rtol=1e-4, atol=1e-5)


def test_a_stop_signal_checkpoints_every_seed_and_resume_goes_on_exactly(tiny_puzzle_dataset, tmp_path, monkeypatch):
    config = seeds_config(tiny_puzzle_dataset, (0, 1), online_steps=0)
    straight = tmp_path / "straight"
    train(config, run_dir=straight)

    sigterm_during_update(monkeypatch, SeedStack, 3)  # during step 3
    stopped = tmp_path / "stopped"
    with pytest.raises(TrainingInterrupted):
        train(config, run_dir=stopped)
    monkeypatch.undo()
    assert json.loads((stopped / "summary.json").read_text())["status"] == "interrupted"
    for seed in (0, 1):
        assert (stopped / f"seed_{seed}" / "checkpoints" / "latest").read_text() == "step_000000003"

    assert train(None, resume=stopped)["status"] == "finished"
    for seed in (0, 1):  # Adam's state, samplers and random draws all carried over: the same run
        resumed, uninterrupted = losses(stopped / f"seed_{seed}"), losses(straight / f"seed_{seed}")
        assert [s for s, _ in resumed] == [s for s, _ in uninterrupted] == list(range(1, 7))
        assert [v for _, v in resumed] == pytest.approx([v for _, v in uninterrupted], rel=1e-6)
        torch.testing.assert_close(final_weights(stopped / f"seed_{seed}"), final_weights(straight / f"seed_{seed}"))


def test_repeated_seeds_are_refused(tiny_puzzle_dataset, tmp_path):
    with pytest.raises(ValueError, match="seeds must not repeat"):
        train(seeds_config(tiny_puzzle_dataset, (0, 0)), run_dir=tmp_path / "run")
