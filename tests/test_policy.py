"""Policy.from_pretrained: deployment from safetensors + config, action queue, dict observations."""

from pathlib import Path

import numpy as np
import pytest
import torch

from chunkrl import Policy
from chunkrl.train import checkpoint as ckpt
from chunkrl.train.run import train
from tests.conftest import tiny_config


@pytest.fixture(scope="module")
def trained_run(tiny_puzzle_dataset, tmp_path_factory):
    run = tmp_path_factory.mktemp("policy") / "run"
    train(tiny_config(tiny_puzzle_dataset, horizon=4, execute_horizon=2, seed=3), run_dir=run)
    return run


def test_select_action_replans_every_execute_horizon_steps(trained_run):
    policy = Policy.from_pretrained(trained_run, device="cpu", deterministic=True)
    observation = np.random.default_rng(0).normal(size=policy.agent.observation_dim).astype(np.float32)
    chunk = policy.predict_chunk(observation)
    assert chunk.shape == (4, policy.agent.action_dim)
    planned = []
    original = policy.agent.act
    policy.agent.act = lambda obs, **kwargs: planned.append(obs) or original(obs, **kwargs)  # the agent's queries
    actions = [policy.select_action(observation + step) for step in range(5)]
    assert len(planned) == 3  # steps 0, 2, 4: two actions of each chunk, then a new chunk
    np.testing.assert_array_equal(planned[1], observation + 2)
    np.testing.assert_allclose(actions[0], chunk[0], atol=1e-6)  # deterministic: the same chunk again
    np.testing.assert_allclose(actions[1], chunk[1], atol=1e-6)
    policy.reset()
    assert not policy.queue


def test_weights_match_the_checkpoint_and_dicts_are_accepted(trained_run):
    policy = Policy.from_pretrained(trained_run, device="cpu", deterministic=True)
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


def test_the_deployed_policy_samples_as_the_runs_evaluation_did_by_default(trained_run):
    policy = Policy.from_pretrained(trained_run, device="cpu")
    assert policy.deterministic is False  # evaluate() calls agent.act(..., deterministic=False) too
    observation = np.zeros(policy.agent.observation_dim, np.float32)
    draws = np.stack([policy.predict_chunk(observation) for _ in range(4)])
    assert not np.allclose(draws[0], draws[1:])  # a flow policy's chunks differ with its noise


# The number of actions each method's policy emits per query (h = 4): chunked actors emit the chunk; the
# n-step baselines and the h = 1 methods emit one action.
ACTIONS_PER_QUERY = {
    "qc-fql": 4, "fql-n": 1, "fql": 1, "qc": 4, "bfn-n": 1, "bfn": 1, "qc-rlpd": 4, "rlpd-ac": 4, "rlpd": 1,
    "diffusion-ql": 4, "cpql": 4, "chunk-bc": 4, "chunk-ppo": 4, "dqc": 4,  # dqc: the policy's 4, not its critic's 25
}  # fmt: skip


def tiny_method_config(agent: str):
    from chunkrl.agents.diffusion.config import CPQLConfig, DiffusionQLConfig
    from chunkrl.agents.flow.config import FlowAgentConfig
    from chunkrl.agents.ppo.config import ChunkPPOConfig
    from chunkrl.agents.sac.config import SACAgentConfig
    from chunkrl.config import TrainConfig, resolve_method

    nets = dict(actor_hidden_dims=(8,), critic_hidden_dims=(8,))
    return resolve_method(
        TrainConfig(
            agent=agent,
            horizon=4,
            sparse=agent == "dqc",  # dqc's values are success probabilities: sparse rewards only
            flow=FlowAgentConfig(**nets, flow_steps=2, num_samples=2),
            sac=SACAgentConfig(**nets, num_critics=2),
            diffusion=DiffusionQLConfig(**nets, act_samples=2),
            cpql=CPQLConfig(**nets, act_samples=2),
            ppo=ChunkPPOConfig(width=16, layers=1, heads=2, hidden_dims=(8,)),
        )
    )


@pytest.mark.parametrize("agent", sorted(ACTIONS_PER_QUERY))
def test_every_method_deploys_actions_of_the_action_size_in_the_datas_units(agent):
    from chunkrl.agents.registry import METHODS, build_agent
    from chunkrl.data.normalize import Normalizer
    from chunkrl.nets.tokenizer import ChunkTokenizer

    assert set(ACTIONS_PER_QUERY) == set(METHODS)  # a new method gets its line here
    config = tiny_method_config(agent)
    action_dim, scale = 3, np.array([3.0, 0.5, 2.0])
    tokenizer = ChunkTokenizer.for_bounds(config.horizon, -scale, scale, 4.0)  # token policies: their own units
    agent_ = build_agent(config, 5, action_dim, torch.device("cpu"), tokenizer).eval()
    normalizer = Normalizer("min_max", "none", np.zeros(action_dim), scale, np.zeros(5), np.ones(5))
    if not agent_.unit_actions:
        normalizer = Normalizer.identity(5, action_dim)
    policy = Policy(agent_, config, normalizer=normalizer)
    rng = np.random.default_rng(0)
    chunk = policy.predict_chunk(rng.normal(size=5))
    assert chunk.shape == (ACTIONS_PER_QUERY[agent], action_dim)
    actions = np.stack([policy.select_action(rng.normal(size=5)) for _ in range(40)])
    assert actions.shape == (40, action_dim)
    assert (np.abs(actions) <= scale + 1e-5).all()  # inside the data's range, in its units
    assert (np.abs(actions) > 1.0).any(axis=0)[[0, 2]].all()  # beyond the agents' [-1, 1] where the data is


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_non_finite_or_malformed_observation_is_refused_even_while_a_chunk_runs(trained_run, bad):
    policy = Policy.from_pretrained(trained_run, device="cpu")
    observation = np.zeros(policy.agent.observation_dim, np.float32)
    policy.select_action(observation)  # a chunk of 2 queued: the next step would not query the agent
    broken = observation.copy()
    broken[3] = bad
    with pytest.raises(ValueError, match=r"NaN or infinite values at positions \[3\]"):
        policy.select_action(broken)
    with pytest.raises(ValueError, match="trained on"):
        policy.select_action(observation[:5])
    with pytest.raises(ValueError, match="not an array of numbers"):
        policy.select_action({"observation.state": "forty"})
    policy.reset()
    with pytest.raises(ValueError, match="not an array of numbers|trained on"):
        policy.select_action(None)


def rewrite_checksums(checkpoint):
    """As a tamperer would: make checksums.json agree with the edited files."""
    import json

    from chunkrl.train.checkpoint import file_digest

    listing = json.loads((checkpoint / "checksums.json").read_text())
    (checkpoint / "checksums.json").write_text(json.dumps({name: file_digest(checkpoint / name) for name in listing}))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.update(observation_dim="10"), "not whole numbers"),
        (lambda s: s.update(observation_dim=10**12), "not whole numbers from 1 to 1000000"),
        (lambda s: s.update(action_dim=0), "not whole numbers"),
    ],
)
def test_damaged_sizes_are_refused_before_anything_is_allocated(trained_run, tmp_path, edit, message):
    import json
    import shutil

    from chunkrl.train.checkpoint import CheckpointError

    checkpoint = shutil.copytree(ckpt.resolve_checkpoint(trained_run), tmp_path / "checkpoint")
    state = json.loads((checkpoint / "state.json").read_text())
    edit(state)
    (checkpoint / "state.json").write_text(json.dumps(state))
    rewrite_checksums(checkpoint)
    with pytest.raises(CheckpointError, match=message):
        Policy.from_pretrained(checkpoint, device="cpu")


def test_an_unknown_agent_name_in_a_checkpoint_is_named(trained_run, tmp_path):
    import shutil

    checkpoint = shutil.copytree(ckpt.resolve_checkpoint(trained_run), tmp_path / "checkpoint")
    config = (checkpoint / "config.yaml").read_text().replace("agent: qc-fql", "agent: qc-fqll")
    (checkpoint / "config.yaml").write_text(config)
    rewrite_checksums(checkpoint)
    with pytest.raises(ValueError, match="Unknown agent 'qc-fqll'"):
        Policy.from_pretrained(checkpoint, device="cpu")


def test_deploying_a_policy_imports_neither_the_trainer_nor_data_generation_nor_simulators():
    import subprocess
    import sys

    fixture = Path(__file__).parent / "fixtures" / "format_2026_12" / "chunk-bc-checkpoint"
    code = (
        "import sys; from chunkrl import Policy; "
        f"Policy.from_pretrained({str(fixture)!r}, device='cpu').predict_chunk([0.0] * 55); "
        "print(' '.join(sys.modules))"
    )
    loaded = set(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    )
    forbidden = {
        "chunkrl.train.trainer", "chunkrl.train.run", "chunkrl.train.build", "chunkrl.train.on_policy",
        "chunkrl.train.seeds", "chunkrl.data.catalog", "chunkrl.envs.scripted", "ogbench", "mujoco", "gym_aloha",
    }  # fmt: skip
    assert "chunkrl.policy" in loaded and not forbidden & loaded
