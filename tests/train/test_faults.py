"""A non-finite loss stops the run, reports the step and keeps the last good checkpoint."""

import json

import pytest
import torch

from chunkrl.agents.configs import FlowAgentConfig
from chunkrl.agents.fql import FQLAgent
from chunkrl.config import TrainConfig
from chunkrl.train.loop import NonFiniteLoss, train


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny_puzzle_dataset, tmp_path, monkeypatch):
    real_update = FQLAgent.update
    calls = {"n": 0}

    def update_that_diverges(self, batch):
        calls["n"] += 1
        metrics = real_update(self, batch)
        if calls["n"] >= 25:
            metrics["loss/total"] = torch.tensor(float("nan"))
        return metrics

    monkeypatch.setattr(FQLAgent, "update", update_that_diverges)
    config = TrainConfig(
        env="puzzle-3x3-play-singletask-task1-v0",
        dataset_path=tiny_puzzle_dataset,
        offline_steps=100,
        online_steps=0,
        batch_size=16,
        eval_episodes=1,
        eval_interval=0,
        log_interval=5,
        checkpoint_interval=10,
        tensorboard=False,
        flow=FlowAgentConfig(actor_hidden_dims=(16,), critic_hidden_dims=(16,), flow_steps=2),
    )
    run = tmp_path / "run"
    with pytest.raises(NonFiniteLoss, match="at step 25"):
        train(config, run_dir=run)
    assert (run / "checkpoints" / "latest").read_text() == "step_000000020"
    assert json.loads((run / "summary.json").read_text())["status"] == "non-finite loss"
