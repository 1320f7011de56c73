"""Shared fixtures: tiny hand-made trajectory stores. Under pytest-xdist (one worker per core) every worker, and
every command it starts, computes with one thread: two busy workers with two threads each would slow each
other down many-fold on a 2-core machine."""

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from chunkrl.data.trajectories import StepArrays, Trajectories

if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by the CLI tests' subprocesses
    torch.set_num_threads(1)


def load_benchmark(name: str):
    """The module of ``benchmarks/NAME.py`` (benchmarks are scripts, not a package), imported once."""
    if name not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def make_store(rewards, terminals, ends, obs_dim=2, action_dim=1):
    """A store whose observation at step t is [t, t] and whose action is [t + 0.5]."""
    n = len(rewards)
    t = np.arange(n, dtype=np.float32)
    steps = StepArrays(
        observations=np.repeat(t[:, None], obs_dim, axis=1),
        actions=np.repeat(t[:, None] + 0.5, action_dim, axis=1),
        rewards=np.asarray(rewards, np.float32),
        terminals=np.asarray(terminals, bool),
        ends=np.asarray(ends, bool),
        next_observations=np.repeat(t[:, None] + 100.0, obs_dim, axis=1),  # "s_{t+1}" marked +100
    )
    return Trajectories.from_arrays(steps)


@pytest.fixture
def two_trajectories():
    """Trajectory A: steps 0-4 with a terminal at step 2 (play data continues after it).
    Trajectory B: steps 5-7, ended by a time limit."""
    rewards = [1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 20.0, 30.0]
    terminals = [0, 0, 1, 0, 0, 0, 0, 0]
    ends = [0, 0, 0, 0, 1, 0, 0, 1]
    return make_store(rewards, terminals, ends)


@pytest.fixture(scope="session")
def tiny_puzzle_dataset(tmp_path_factory):
    """A real OGBench puzzle-3x3 play dataset: 2 training + 1 validation episodes of 201 stored steps,
    generated with OGBench's oracles (fast enough for tests)."""
    from chunkrl.envs.scripted.ogbench import GenerationSettings, generate_dataset

    out = tmp_path_factory.mktemp("data") / "puzzle-3x3-play-v0.npz"
    settings = GenerationSettings(dataset="puzzle-3x3-play-v0", episodes=2, max_episode_steps=201)
    generate_dataset(settings, out, workers=1)
    return out


def tiny_config(dataset, **changes):
    """A tiny offline run on ``dataset`` (the tiny puzzle file): 4 offline steps, 8-unit flow networks,
    batch 8, one evaluation episode of at most 50 steps at the end (a whole puzzle episode is 500 and costs
    seconds), no TensorBoard; ``changes`` override any field."""
    from chunkrl.agents.flow.config import FlowAgentConfig
    from chunkrl.config import TrainConfig

    values = dict(
        env="puzzle-3x3-play-singletask-task1-v0",
        dataset_path=dataset,
        offline_steps=4,
        online_steps=0,
        batch_size=8,
        eval_episodes=1,
        max_episode_steps=50,
        eval_interval=0,
        log_interval=2,
        checkpoint_interval=0,
        tensorboard=False,
        flow=FlowAgentConfig(actor_hidden_dims=(8,), critic_hidden_dims=(8,), flow_steps=2),
    )
    return TrainConfig(**{**values, **changes})


def sigterm_during_update(monkeypatch, owner, call: int) -> None:
    """Patch ``owner.update`` so that SIGTERM arrives during its ``call``-th call, as a real one would."""
    import os
    import signal

    real, calls = owner.update, {"n": 0}

    def update(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == call:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(owner, "update", update)
