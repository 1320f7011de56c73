"""Real robot data in its own units: a LeRobot folder whose actions span [-3, 3] trains every kind of
[-1, 1] agent, the run records its normalisation, and the deployed Policy answers in the data's units."""

import json

import numpy as np
import pytest
import yaml

from chunkrl import Policy
from chunkrl.agents.diffusion.config import DiffusionQLConfig
from chunkrl.agents.sac.config import SACAgentConfig
from chunkrl.data.normalize import FILE, Normalizer
from chunkrl.data.sources.lerobot import write_lerobot
from chunkrl.data.trajectories import DatasetError, StepArrays, Trajectories
from chunkrl.train.run import train
from tests.conftest import tiny_config

RANGE = np.array([3.0, 3.0])  # the data's actions lie in [-3, 3]: radians, say


@pytest.fixture(scope="module")
def wide_lerobot(tmp_path_factory):
    """A LeRobot v3 folder: 4 episodes of 25 steps, 2-D actions uniform in [-3, 3] (both ends reached),
    5-D states far from zero mean."""
    rng = np.random.default_rng(0)
    n = 100
    observations = rng.normal(10.0, 4.0, (n, 5)).astype(np.float32)
    actions = rng.uniform(-3, 3, (n, 2)).astype(np.float32)
    actions[0], actions[1] = -RANGE, RANGE
    ends = np.zeros(n, bool)
    ends[24::25] = True
    steps = StepArrays(observations, actions, -np.ones(n, np.float32), np.zeros(n, bool), ends, observations + 0.1)
    out = tmp_path_factory.mktemp("wide") / "lerobot"
    return write_lerobot(Trajectories.from_arrays(steps), out, fps=10)


def offline_config(folder, agent, **changes):
    """An offline run without a simulator (``--env none``) on ``folder``: the tiny settings of the tests."""
    nets = dict(actor_hidden_dims=(16,), critic_hidden_dims=(16,))
    sections = dict(sac=SACAgentConfig(**nets, num_critics=2), diffusion=DiffusionQLConfig(**nets, act_samples=4))
    return tiny_config(folder, agent=agent, env="none", horizon=3, **{**sections, **changes})


@pytest.mark.parametrize("agent", ["qc-fql", "qc-rlpd", "diffusion-ql"])
def test_a_dataset_in_its_own_units_trains_and_the_policy_answers_in_those_units(wide_lerobot, tmp_path, agent):
    run = tmp_path / "run"
    summary = train(offline_config(wide_lerobot, agent), run_dir=run)
    assert summary["status"] == "finished"
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert (saved["action_norm"], saved["obs_norm"]) == ("min_max", "mean_std")  # what auto resolved to
    checkpoint = next((run / "checkpoints").glob("step_*"))
    stats = json.loads((checkpoint / FILE).read_text())
    np.testing.assert_allclose(stats["action"]["scale"], RANGE, rtol=1e-6)  # half of max - min
    policy = Policy.from_pretrained(run, device="cpu")
    rng = np.random.default_rng(1)
    actions = []
    for _ in range(10):
        policy.reset()
        actions += [policy.select_action(rng.normal(10.0, 4.0, 5)) for _step in range(6)]
    actions = np.stack(actions)
    assert (np.abs(actions) <= 3.0 + 1e-4).all()
    assert np.abs(actions).max() > 1.5  # the [-1, 1] of the agent reaches the data's ±3


def test_a_resumed_run_keeps_the_statistics_it_started_with(wide_lerobot, tmp_path):
    run = tmp_path / "run"
    train(offline_config(wide_lerobot, "qc-fql", checkpoint_interval=2), run_dir=run)
    first = (run / "checkpoints" / "step_000000004" / FILE).read_text()
    config = (run / "config.yaml").read_text().replace("offline_steps: 4", "offline_steps: 6")
    (run / "config.yaml").write_text(config)
    train(None, resume=run)
    assert (run / "checkpoints" / "step_000000006" / FILE).read_text() == first
    assert Normalizer.from_json(first).action_mode == "min_max"


def test_unnormalised_actions_the_agent_cannot_emit_are_refused_with_the_fix(wide_lerobot, tmp_path):
    with pytest.raises(DatasetError, match=r"reach 3.*--action-norm min_max"):
        train(offline_config(wide_lerobot, "qc-fql", action_norm="none"), run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()  # nothing was trained: no run directory left behind


def test_a_dataset_of_trajectories_shorter_than_the_chunk_is_refused_where_no_chunk_could_train(tmp_path):
    n = 12
    rng = np.random.default_rng(0)
    observations = rng.normal(size=(n, 5)).astype(np.float32)
    ends = np.zeros(n, bool)
    ends[1::2] = True  # six trajectories of 2 steps
    steps = StepArrays(observations, rng.uniform(-1, 1, (n, 2)).astype(np.float32), -np.ones(n, np.float32),
                       np.zeros(n, bool), ends, observations)  # fmt: skip
    folder = write_lerobot(Trajectories.from_arrays(steps), tmp_path / "short")
    with pytest.raises(DatasetError, match="every trajectory is shorter than the horizon 3"):
        train(offline_config(folder, "qc-fql", boundary="mask"), run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()
