"""A non-finite loss stops the run, reports the step and keeps the last good checkpoint."""

import json

import pytest
import torch
from safetensors.torch import save_file

from chunkrl.agents.flow.config import FlowAgentConfig
from chunkrl.agents.flow.fql import FQLAgent
from chunkrl.config import TrainConfig
from chunkrl.train.run import train
from chunkrl.train.trainer import NonFiniteLoss
from tests.conftest import tiny_config


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
    config = tiny_config(
        tiny_puzzle_dataset,
        offline_steps=100,
        batch_size=16,
        log_interval=5,
        checkpoint_interval=10,
        flow=FlowAgentConfig(actor_hidden_dims=(16,), critic_hidden_dims=(16,), flow_steps=2),
    )
    run = tmp_path / "run"
    with pytest.raises(NonFiniteLoss, match="at step 25"):
        train(config, run_dir=run)
    assert (run / "checkpoints" / "latest").read_text() == "step_000000020"
    assert json.loads((run / "summary.json").read_text())["status"] == "non-finite loss"


def test_a_mismatch_with_an_act_checkpoint_names_its_transformer_settings(tmp_path):
    from chunkrl.agents.sac.config import SACAgentConfig
    from chunkrl.agents.sac.sac import ChunkedSACAgent
    from chunkrl.config import save_config
    from chunkrl.nets.act import ACTActorConfig
    from chunkrl.train.checkpoint import CheckpointError, load_weights

    act = ACTActorConfig(width=16, heads=2, feedforward=32, decoder_layers=1, obs_history=2)
    saved = SACAgentConfig(actor="act", act=act, critic_hidden_dims=(8,))
    save_file(
        {k: v.contiguous() for k, v in ChunkedSACAgent(3, 1, 2, saved).state_dict().items()},
        tmp_path / "model.safetensors",
    )
    save_config(TrainConfig(agent="qc-rlpd", sac=saved), tmp_path / "config.yaml")
    with pytest.raises(CheckpointError, match="ACT width 16, 1 decoder layers, history 2"):
        load_weights(ChunkedSACAgent(3, 1, 2, SACAgentConfig(critic_hidden_dims=(8,))), tmp_path)


def test_a_mismatch_with_a_diffusion_checkpoint_names_its_denoiser_and_never_needs_known_fields(tmp_path, monkeypatch):
    from chunkrl.agents.diffusion.config import DiffusionQLConfig
    from chunkrl.agents.diffusion.diffusion_ql import DiffusionQLAgent
    from chunkrl.config import save_config
    from chunkrl.nets.unet1d import UNetConfig
    from chunkrl.train import checkpoint
    from chunkrl.train.checkpoint import CheckpointError, load_weights

    unet = UNetConfig(channels=(8, 16), groups=4, step_dim=8)
    resolved = dict(eta=1.0, max_grad_norm=1.0, target_update="polyak", next_actor="ema")
    saved = DiffusionQLConfig(backbone="unet", unet=unet, critic_hidden_dims=(8,), **resolved)
    save_file(
        {k: v.contiguous() for k, v in DiffusionQLAgent(3, 1, 2, saved).state_dict().items()},
        tmp_path / "model.safetensors",
    )
    save_config(TrainConfig(agent="diffusion-ql", diffusion=saved), tmp_path / "config.yaml")
    other = DiffusionQLConfig(actor_hidden_dims=(8,), critic_hidden_dims=(8,), **resolved)
    with pytest.raises(CheckpointError, match=r"U-Net denoiser \[8, 16\] kernel 5, history 1, critic \[8\]"):
        load_weights(DiffusionQLAgent(3, 1, 2, other), tmp_path)

    class Bare:  # an agent config with none of the fields other agents have, and no summary
        pass

    monkeypatch.setattr(checkpoint, "agent_config", lambda config: Bare())
    with pytest.raises(CheckpointError, match=r"\(agent diffusion-ql, horizon 5, env [^,]+\): "):
        load_weights(DiffusionQLAgent(3, 1, 2, other), tmp_path)


def test_a_nan_before_any_checkpoint_says_none_was_written(tiny_puzzle_dataset, tmp_path, monkeypatch):
    real_update = FQLAgent.update

    def update_that_diverges(self, batch):
        metrics = real_update(self, batch)
        metrics["loss/total"] = torch.tensor(float("inf"))
        return metrics

    monkeypatch.setattr(FQLAgent, "update", update_that_diverges)
    run = tmp_path / "run"
    with pytest.raises(NonFiniteLoss, match="at step 1 .*no checkpoint had been written yet"):
        train(tiny_config(tiny_puzzle_dataset, checkpoint_interval=10), run_dir=run)
    assert not (run / "checkpoints").exists()


def test_a_row_torn_by_a_crash_is_dropped_on_resume(tmp_path):
    from chunkrl.train.logging import CsvStream

    path = tmp_path / "train.csv"
    # the disk filled while row "10,offline,0.2" was written: only its first character arrived
    path.write_bytes(b"step,phase,loss\r\n2,offline,1.0\r\n4,offline,0.5\r\n1")
    CsvStream(path).drop_after(4)
    assert path.read_bytes() == b"step,phase,loss\r\n2,offline,1.0\r\n4,offline,0.5\r\n"
