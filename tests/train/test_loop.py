"""The online loop's warm-up policy and the restoring of every random state on resume."""

import numpy as np
import pytest
import torch

from chunkrl.agents.sac.config import SACAgentConfig
from chunkrl.agents.sac.sac import ChunkedSACAgent
from chunkrl.envs.executor import UniformRandomPolicy
from chunkrl.train.build import restore_rng_states
from chunkrl.train.checkpoint import load_online_steps, resolve_checkpoint
from chunkrl.train.run import train
from tests.conftest import tiny_config


def test_uniform_random_policy_draws_one_fresh_action_per_query_within_the_bounds():
    import gymnasium

    space = gymnasium.spaces.Box(low=np.array([-1.0, 0.0]), high=np.array([1.0, 3.0]), dtype=np.float32)
    policy = UniformRandomPolicy(space, seed=0)
    draws = np.concatenate([policy(np.zeros(4)) for _ in range(200)])
    assert draws.shape == (200, 2)  # one action per query: the executor asks again at the next step
    assert (draws >= space.low).all() and (draws <= space.high).all()
    assert draws[:, 1].max() > 2.5 and draws[:, 1].min() < 0.5  # spread over the whole range
    state = policy.rng_state()
    first = policy(np.zeros(4))
    policy.set_rng_state(state)
    np.testing.assert_array_equal(policy(np.zeros(4)), first)


def run_online(tiny_puzzle_dataset, run, warmup):
    """qc-rlpd online for 30 steps (updates from step 20) with an agent that always proposes zeros."""
    config = tiny_config(
        tiny_puzzle_dataset,
        agent="qc-rlpd",
        offline_steps=None,
        online_steps=30,
        start_training=20,
        warmup=warmup,
        batch_size=16,
        log_interval=10,
        sac=SACAgentConfig(actor_hidden_dims=(16,), critic_hidden_dims=(16,), num_critics=2),
    )
    train(config, run_dir=run)
    return load_online_steps(resolve_checkpoint(run)).step_arrays().actions


@pytest.fixture
def zero_proposing_agent(monkeypatch):
    monkeypatch.setattr(
        ChunkedSACAgent,
        "act_tensor",
        lambda self, observations, deterministic=False, history_valid=None: torch.zeros(
            observations.shape[0], self.actor_chunk, self.action_dim
        ),
    )


def test_random_warmup_acts_uniformly_until_training_starts_then_the_agent_acts(
    tiny_puzzle_dataset, tmp_path, zero_proposing_agent
):
    actions = run_online(tiny_puzzle_dataset, tmp_path / "random", warmup=None)  # the RLPD default: random
    assert actions.shape == (30, 5)
    assert (np.abs(actions[:20]) > 0).all() and (np.abs(actions[:20]) <= 1).all()
    assert len(np.unique(actions[:20, 0])) == 20  # a fresh draw every step
    np.testing.assert_array_equal(actions[20:], 0.0)


def test_policy_warmup_lets_the_agent_act_from_the_first_step(tiny_puzzle_dataset, tmp_path, zero_proposing_agent):
    np.testing.assert_array_equal(run_online(tiny_puzzle_dataset, tmp_path / "policy", warmup="policy"), 0.0)


class FakeTrainer:
    def __init__(self):
        self.sampler = type("Sampler", (), {"set_rng_state": lambda self, state: setattr(self, "state", state)})()
        self.warmup_policy = None


def test_resume_restores_the_cuda_random_state_where_a_gpu_is_present(monkeypatch):
    restored = {}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: restored.setdefault("cuda", states))
    cuda_states = [torch.ByteTensor([1, 2, 3])]
    trainer = FakeTrainer()
    restore_rng_states({"torch": torch.get_rng_state(), "sampler": {"s": 1}, "cuda": cuda_states}, trainer)
    assert restored["cuda"] is cuda_states and trainer.sampler.state == {"s": 1}


def test_a_run_with_an_actor_chunk_longer_than_the_critic_horizon_trains_and_records_it(tiny_puzzle_dataset, tmp_path):
    from chunkrl.config import load_config
    from chunkrl.policy import Policy

    run = tmp_path / "run"
    config = tiny_config(tiny_puzzle_dataset, horizon=2, actor_chunk=4, execute_horizon=3)
    summary = train(config, run_dir=run)
    assert summary["status"] == "finished"
    saved = load_config(run / "config.yaml")
    assert (saved.critic_horizon, saved.actor_chunk, saved.execute_horizon) == (2, 4, 3)
    policy = Policy.from_pretrained(run, device="cpu")
    observation = np.zeros(policy.agent.observation_dim, np.float32)
    assert policy.predict_chunk(observation).shape == (4, policy.agent.action_dim)
    assert policy.execute_horizon == 3


def test_dqc_trains_with_a_critic_longer_than_its_chunk_and_reports_the_tasks_own_returns(
    tiny_puzzle_dataset, tmp_path
):
    from chunkrl.config import load_config
    from chunkrl.policy import Policy

    with pytest.raises(ValueError, match="add --sparse"):
        train(tiny_config(tiny_puzzle_dataset, agent="dqc"), run_dir=tmp_path / "dense")
    run = tmp_path / "run"
    config = tiny_config(tiny_puzzle_dataset, agent="dqc", sparse=True, horizon=2, critic_horizon=6)
    summary = train(config, run_dir=run)
    assert summary["status"] == "finished"
    saved = load_config(run / "config.yaml")
    assert (saved.critic_horizon, saved.actor_chunk) == (6, 2)
    final = summary["evaluations"]["offline_final"]
    assert final["return"] < 0 or final["success"] > 0  # the sparse task's -1 per step, not the training offset
    policy = Policy.from_pretrained(run, device="cpu")
    assert policy.predict_chunk(np.zeros(policy.agent.observation_dim, np.float32)).shape == (2, 5)


def test_a_declared_reward_offset_reaches_the_training_data_but_not_evaluation(tiny_puzzle_dataset, tmp_path):
    from chunkrl.config import resolve_method
    from chunkrl.train.build import build_trainer

    config = resolve_method(tiny_config(tiny_puzzle_dataset, agent="dqc", sparse=True, horizon=2, critic_horizon=6))
    (tmp_path / "run").mkdir()
    trainer = build_trainer(config, tmp_path / "run", None)
    rewards = trainer.store.rewards[: trainer.store.size]
    assert set(np.unique(rewards)) <= {0.0, 1.0}  # sparse -1 / 0 became 0 / 1 (no -1 is left)
    still = np.zeros(trainer.env.action_space.shape, np.float32)
    trainer.env.reset(seed=0)
    assert trainer.env.step(still)[1] in (0.0, 1.0)  # online steps are offset as the dataset was
    trainer.eval_executor.env.reset(seed=0)
    assert trainer.eval_executor.env.step(still)[1] in (-1.0, 0.0)  # evaluation keeps the task's sparse reward


@pytest.mark.parametrize(
    ("agent", "online_steps", "simulators"), [("qc-fql", 0, 1), ("qc-fql", 6, 2), ("chunk-ppo", 8, 1)]
)
def test_only_a_run_that_steps_its_training_environment_builds_another_to_evaluate_in(
    tiny_puzzle_dataset, tmp_path, monkeypatch, agent, online_steps, simulators
):
    """An offline run's evaluations share the simulator that gave the spaces and relabelled the data (the seeded
    reset of each evaluation starts it afresh: tests/data/sources/test_ogbench.py); an online phase steps that one
    between evaluations, which then get their own. An on-policy run rolls out in vector environments of its own
    (built when it starts), so its evaluations share the one built here too."""
    import chunkrl.train.build as build
    from chunkrl.config import resolve_method

    built, real = [], build.run_env
    monkeypatch.setattr(build, "run_env", lambda config: built.append(real(config)) or built[-1])
    (tmp_path / "run").mkdir()
    config = resolve_method(tiny_config(tiny_puzzle_dataset, agent=agent, online_steps=online_steps, start_training=2))
    trainer = build.build_trainer(config, tmp_path / "run", None)
    assert len(built) == simulators
    assert trainer.env.unwrapped is built[0].unwrapped
    assert (trainer.eval_executor.env.unwrapped is trainer.env.unwrapped) == (simulators == 1)


def test_a_run_with_temporal_ensembling_evaluates_and_deploys_with_a_query_every_step(tiny_puzzle_dataset, tmp_path):
    from chunkrl.policy import Policy

    run = tmp_path / "run"
    summary = train(tiny_config(tiny_puzzle_dataset, temporal_ensemble=0.01), run_dir=run)
    assert summary["status"] == "finished" and "offline_final" in summary["evaluations"]
    policy = Policy.from_pretrained(run, device="cpu")
    queries = []
    original = policy.agent.act
    policy.agent.act = lambda obs, **kwargs: queries.append(obs) or original(obs, **kwargs)
    for _ in range(3):
        policy.select_action(np.zeros(policy.agent.observation_dim, np.float32))
    assert len(queries) == 3  # ensembling asks for a chunk at every step (without it: one query per 5 steps)


@pytest.mark.parametrize("acting", ["sampled", "deterministic"])
def test_evaluations_act_as_eval_acting_says(tiny_puzzle_dataset, tmp_path, monkeypatch, acting):
    from chunkrl.agents.flow.fql import FQLAgent

    flags = []
    original = FQLAgent.act_tensor

    def recording(self, observations, deterministic=False, history_valid=None):
        flags.append(deterministic)
        return original(self, observations, deterministic, history_valid)

    monkeypatch.setattr(FQLAgent, "act_tensor", recording)
    train(tiny_config(tiny_puzzle_dataset, agent="qc-fql", eval_acting=acting), run_dir=tmp_path / "run")
    assert flags and set(flags) == {acting == "deterministic"}  # offline: only the final evaluation acts


def test_imitation_is_evaluated_deterministically_and_every_other_method_sampled():
    from chunkrl.agents.registry import METHODS
    from chunkrl.config import TrainConfig, resolve_method

    for agent in METHODS:
        env = "aloha-transfer-cube" if agent.startswith("chunk-") else "puzzle-3x3-play-singletask-task1-v0"
        resolved = resolve_method(TrainConfig(agent=agent, env=env, sparse=agent == "dqc"))
        assert resolved.eval_acting == ("deterministic" if agent == "chunk-bc" else "sampled"), agent
    assert resolve_method(TrainConfig(agent="chunk-bc", eval_acting="sampled")).eval_acting == "sampled"


@pytest.mark.parametrize("cut", [2, 4], ids=["periodic", "final"])
def test_a_stop_signal_during_an_evaluation_stops_at_once_and_the_resume_evaluates_that_step(
    tiny_puzzle_dataset, tmp_path, monkeypatch, cut
):
    """SIGTERM in the second of three evaluation episodes at step ``cut`` (2: a periodic evaluation, 4: the
    phase's final one): the run checkpoints there without finishing or recording that evaluation, and the
    resume evaluates step ``cut`` before it goes on, so every evaluation is there once, as in a run never cut."""
    import json
    import os
    import signal

    from chunkrl.envs.executor import ChunkExecutor
    from chunkrl.train.trainer import TrainingInterrupted

    config = tiny_config(tiny_puzzle_dataset, eval_interval=2, eval_episodes=3, max_episode_steps=10)
    real_episode, episodes = ChunkExecutor.run_episode, []

    def episode_then_sigterm(self, policy):
        episodes.append(1)
        if len(episodes) == (3 if cut == 4 else 0) + 2:  # the second episode of the evaluation at `cut`
            os.kill(os.getpid(), signal.SIGTERM)
        return real_episode(self, policy)

    monkeypatch.setattr(ChunkExecutor, "run_episode", episode_then_sigterm)
    run = tmp_path / "run"
    with pytest.raises(TrainingInterrupted):
        train(config, run_dir=run)
    assert len(episodes) == (3 if cut == 4 else 0) + 2  # the third episode never ran
    assert (run / "checkpoints" / "latest").read_text() == f"step_{cut:09d}"
    rows = (run / "eval.csv").read_text().splitlines()[1:] if (run / "eval.csv").exists() else []
    assert [int(r.split(",")[0]) for r in rows] == ([2] if cut == 4 else [])  # the cut one is not recorded

    monkeypatch.setattr(ChunkExecutor, "run_episode", real_episode)
    summary = train(None, resume=run)
    assert summary["status"] == "finished"
    steps = [int(r.split(",")[0]) for r in (run / "eval.csv").read_text().splitlines()[1:]]
    assert steps == [2, 4]
    final = json.loads((run / "summary.json").read_text())["evaluations"]["offline_final"]
    assert final["step"] == 4 and final["episodes"] == 3


def test_a_resume_with_no_summary_evaluates_only_what_its_curve_lacks(tiny_puzzle_dataset, tmp_path, monkeypatch):
    """A run killed outright leaves no (or an older) summary.json; the resume reads the evaluations from eval.csv:
    stopped at step 3 after the evaluation at 2, it evaluates at 4 only, not again at 3."""
    from chunkrl.agents.flow.fql import FQLAgent
    from chunkrl.train.trainer import TrainingInterrupted
    from tests.conftest import sigterm_during_update

    config = tiny_config(tiny_puzzle_dataset, eval_interval=2, eval_episodes=1, max_episode_steps=10)
    sigterm_during_update(monkeypatch, FQLAgent, 3)
    run = tmp_path / "run"
    with pytest.raises(TrainingInterrupted):
        train(config, run_dir=run)
    monkeypatch.undo()
    assert (run / "checkpoints" / "latest").read_text() == "step_000000003"
    (run / "summary.json").unlink()  # as a SIGKILL leaves it
    assert train(None, resume=run)["status"] == "finished"
    assert [int(r.split(",")[0]) for r in (run / "eval.csv").read_text().splitlines()[1:]] == [2, 4]
