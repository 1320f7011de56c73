"""Policy.from_pretrained: deployment from safetensors + config, action queue, dict observations."""

import numpy as np
import pytest
import torch

from chunkrl import Policy
from chunkrl.train import checkpoint as ckpt
from chunkrl.train.loop import train
from tests.conftest import tiny_config


@pytest.fixture(scope="module")
def trained_run(tiny_puzzle_dataset, tmp_path_factory):
    run = tmp_path_factory.mktemp("policy") / "run"
    train(tiny_config(tiny_puzzle_dataset, horizon=4, execute_horizon=2, seed=3), run_dir=run)
    return run


def test_select_action_replans_every_execute_horizon_steps(trained_run):
    policy = Policy.from_pretrained(trained_run, device="cpu")
    observation = np.random.default_rng(0).normal(size=policy.agent.observation_dim).astype(np.float32)
    chunk = policy.predict_chunk(observation)
    assert chunk.shape == (4, policy.agent.action_dim)
    planned = []
    original = policy.predict_chunk
    policy.predict_chunk = lambda obs: planned.append(obs) or original(obs)
    actions = [policy.select_action(observation + step) for step in range(5)]
    assert len(planned) == 3  # steps 0, 2, 4: two actions of each chunk, then a new chunk
    np.testing.assert_array_equal(planned[1], observation + 2)
    np.testing.assert_allclose(actions[0], chunk[0], atol=1e-6)  # deterministic: the same chunk again
    np.testing.assert_allclose(actions[1], chunk[1], atol=1e-6)
    policy.reset()
    assert not policy.queue


def test_weights_match_the_checkpoint_and_dicts_are_accepted(trained_run):
    policy = Policy.from_pretrained(trained_run, device="cpu")
    saved = ckpt.resolve_checkpoint(trained_run)
    assert saved.name.startswith("step_")
    from safetensors.torch import load_file

    tensors = load_file(saved / "model.safetensors")
    for name, value in policy.agent.state_dict().items():
        torch.testing.assert_close(value, tensors[name])
    observation = np.zeros(policy.agent.observation_dim, np.float32)
    np.testing.assert_allclose(
        policy.predict_chunk({"observation.state": observation}), policy.predict_chunk(observation), atol=1e-6
    )
    with pytest.raises(ValueError, match="trained on"):
        policy.predict_chunk(np.zeros(3))
    with pytest.raises(KeyError, match="observation.state"):
        policy.predict_chunk({"state": observation})
