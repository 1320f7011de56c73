"""benchmarks/value_reach.py: how far back from the data's successes a run's critic values reach."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from chunkrl.data.chunks import ChunkSampler, ChunkSpec
from chunkrl.data.trajectories import Trajectories
from chunkrl.train.checkpoint import resolve_checkpoint
from chunkrl.train.run import train
from tests.conftest import load_benchmark, make_store, tiny_config


@pytest.fixture(scope="module")
def reach():
    return load_benchmark("value_reach")


# two trajectories, steps 0-9 and 10-19; successes at steps 3-4 (entered at 3), 7 and 12
TERMINALS = np.isin(np.arange(20), [3, 4, 7, 12])
ENDS = np.isin(np.arange(20), [9, 19])


def test_a_start_reaches_its_success_entry_within_its_trajectory_with_no_success_on_the_way(reach):
    assert reach.success_entries(TERMINALS, ENDS).tolist() == [3, 7, 12]
    starts, entries = reach.steps_before(TERMINALS, ENDS, 2)
    assert (starts.tolist(), entries.tolist()) == ([1, 5, 10], [3, 7, 12])
    # k = 3: step 4 (7 - 3) is a success on the way to 7, step 9 (12 - 3) lies in the first trajectory
    assert [a.tolist() for a in reach.steps_before(TERMINALS, ENDS, 3)] == [[0], [3]]
    assert [a.tolist() for a in reach.steps_before(TERMINALS, ENDS, 4)] == [[], []]
    assert reach.steps_before(TERMINALS, ENDS, 0)[0].tolist() == [3, 7, 12]


def test_a_success_on_a_trajectorys_first_step_is_an_entry_after_one_that_ended_the_last(reach):
    terminals, ends = np.isin(np.arange(6), [2, 3]), np.isin(np.arange(6), [2, 5])
    assert reach.success_entries(terminals, ends).tolist() == [2, 3]


def test_the_data_paths_return_is_discounted_up_to_and_including_its_entry(reach):
    rewards = np.where(TERMINALS, 0.0, -(np.arange(20) + 1.0))
    starts, entries = reach.steps_before(TERMINALS, ENDS, 2)
    # 1 -> 3: -2 + 0.5 * -3 + 0.25 * 0; 5 -> 7: -6 + 0.5 * -7; 10 -> 12: -11 + 0.5 * -12
    assert reach.path_returns(rewards, starts, entries, 0.5).tolist() == [-3.5, -9.5, -17.0]
    assert reach.path_returns(np.array([-1.0, 2.0]), np.array([1]), np.array([1]), 0.9).tolist() == [2.0]


@pytest.mark.parametrize(("method", "scored"), [("qc-fql", 2), ("fql-n", 1), ("qc-rlpd", 2), ("diffusion-ql", 2)])
def test_the_values_are_the_critic_ensembles_mean_over_the_chunks_it_scores(reach, method, scored):
    """Each family's own critic path: the chunk critics score the whole chunk, FQL-n its first action only."""
    from chunkrl.agents.registry import build_agent
    from chunkrl.config import TrainConfig, from_dict, resolve_method

    torch.manual_seed(0)
    config = resolve_method(from_dict(TrainConfig, {"agent": method, "horizon": 2}))
    agent = build_agent(config, 2, 1, torch.device("cpu")).eval()
    store = make_store(np.where(TERMINALS, 0.0, -1.0), TERMINALS, ENDS)
    sampler = ChunkSampler(store, ChunkSpec(2, 0.99, config.boundary))
    starts = np.array([1, 5, 10])
    actions = torch.tensor(store.actions[starts[:, None] + np.arange(scored)].reshape(3, scored))
    with torch.no_grad():
        expected = agent.critic(torch.tensor(store.observations[starts]), actions).mean().item()
    q, target = reach.critic_values(agent, sampler, starts)
    assert q == pytest.approx(expected, rel=1e-6)
    assert np.isfinite(target)


@pytest.fixture
def marked_successes(reach, monkeypatch):
    """The tiny data hold no success of the task: mark some (steps 30-31 and 150; rewards -1 a step, 0 there)."""
    real_loader = reach.load_dataset

    def with_successes(config, env, extra, console):
        steps = real_loader(config, env, extra, console).step_arrays()
        marked = np.isin(np.arange(len(steps.rewards)), [30, 31, 150])
        steps.terminals[:] = marked
        steps.rewards[:] = np.where(marked, 0.0, -1.0)
        return Trajectories.from_arrays(steps)

    monkeypatch.setattr(reach, "load_dataset", with_successes)


def test_a_tiny_run_is_read_back_with_its_data_and_checkpoint(
    reach, tiny_puzzle_dataset, tmp_path, marked_successes, capsys, monkeypatch
):  # noqa: E501
    from matplotlib.axes import Axes

    drawn, plot = [], Axes.plot
    monkeypatch.setattr(Axes, "plot", lambda ax, *a, **kw: drawn.append((a, kw.get("label"))) or plot(ax, *a, **kw))
    run = tmp_path / "run"
    train(tiny_config(tiny_puzzle_dataset, agent="qc-fql", sparse=True), run_dir=run)
    image = tmp_path / "reach.png"
    assert reach.main([str(run), "--steps-before", "1", "10", "40", "--plot", str(image)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2] == "| k | chunks | data path's return | qc-fql at step 4 |"
    rows = [line.split(" | ") for line in lines[4:8]]
    assert [row[:3] for row in rows[:3]] == [["| 1", "2", "-1.00"], ["| 10", "2", "-9.56"], ["| 40", "1", "-33.10"]]
    assert rows[-1][0] == "| random" and all(np.isfinite(float(row[3].rstrip(" |"))) for row in rows)
    (q_steps, q_values), q_label = drawn[0][0][:2], drawn[0][1]
    assert (list(q_steps), q_label) == ([1, 10, 40], "qc-fql at step 4")
    assert [f"{q:.2f}" for q in q_values] == [row[3].rstrip(" |") for row in rows[:3]]
    (path_steps, path_values), path_label = drawn[1][0][:2], drawn[1][1]
    assert (list(path_steps), path_label) == ([1, 10, 40], "the data path's return")
    assert path_values == pytest.approx([-1.0, -(1 - 0.99**10) / 0.01, -(1 - 0.99**40) / 0.01])
    assert image.stat().st_size > 0 and lines[-1] == f"wrote {image}"


def test_checkpoints_of_one_data_read_it_once_normalise_a_copy_each_and_are_told_apart(
    reach, tiny_puzzle_dataset, tmp_path, marked_successes, capsys, monkeypatch
):
    reads, loader = [], reach.load_dataset
    monkeypatch.setattr(reach, "load_dataset", lambda *a: reads.append(a[0].env) or loader(*a))
    run = tmp_path / "a" / "run"  # normalised observations: normalising the read store itself would do it twice
    train(tiny_config(tiny_puzzle_dataset, agent="qc-fql", sparse=True, obs_norm="mean_std"), run_dir=run)
    shutil.copytree(run, tmp_path / "b" / "run")  # the same run elsewhere: its label says where
    assert reach.main([str(run), str(tmp_path / "b" / "run"), "--steps-before", "1", "10"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2] == "| k | chunks | data path's return | qc-fql at step 4 (a) | qc-fql at step 4 (b) |"
    rows = [line.split(" | ")[3:] for line in lines[4:7]]
    assert len(reads) == 1
    assert all(first == second.rstrip(" |") for first, second in rows)  # the second normalised its own copy


def test_runs_whose_labels_repeat_are_told_apart_by_their_paths(reach):
    runs = [Path("/x/chunking/qc-fql/scene/seed_0"), Path("/x/networks/qc-fql-4x512/scene/seed_0")] * 2
    labels = ["qc-fql at step 5", "qc-fql at step 5", "qc-fql at step 9", "fql at step 9"]
    assert reach.told_apart(labels, runs) == [
        "qc-fql at step 5 (chunking/qc-fql)",
        "qc-fql at step 5 (networks/qc-fql-4x512)",
        "qc-fql at step 9",
        "fql at step 9",
    ]
    # one run's checkpoint twice, and two runs one of which lies inside the other's path
    assert reach.told_apart(["a", "a"], [Path("/x/r"), Path("/x/r")]) == ["a", "a"]
    assert reach.told_apart(["a", "a"], [Path("/x/r"), Path("/x/r/s")]) == ["a (r)", "a (s)"]


def test_data_without_a_success_are_refused(reach, tiny_puzzle_dataset, tmp_path):
    run = tmp_path / "run"
    train(tiny_config(tiny_puzzle_dataset, agent="qc-fql", sparse=True), run_dir=run)
    with pytest.raises(SystemExit, match="hold no success"):
        reach.main([str(run)])


def trained_at(run: Path, copy: Path, **changes) -> Path:
    """``run`` copied to ``copy`` with ``changes`` written into its checkpoint's config: the same weights, read
    as a run of other settings (what the refusals compare; training each for real only costs the suite time)."""
    shutil.copytree(run, copy)
    config_file = resolve_checkpoint(copy) / "config.yaml"
    config_file.write_text(yaml.safe_dump({**yaml.safe_load(config_file.read_text()), **changes}))
    return copy


def test_runs_at_another_discount_reward_or_task_are_refused_before_any_data_is_read(
    reach, tiny_puzzle_dataset, tmp_path, monkeypatch
):
    first = tmp_path / "first"
    train(tiny_config(tiny_puzzle_dataset, agent="qc-fql", sparse=True), run_dir=first)
    offset = tmp_path / "offset"  # DQC trains on the sparse reward + 1: its data path's returns are others
    train(tiny_config(tiny_puzzle_dataset, agent="dqc", sparse=True, horizon=2, critic_horizon=4), run_dir=offset)

    def no_read(*_):
        raise AssertionError("data read (or a simulator built) before the runs' settings were compared")

    monkeypatch.setattr(reach, "load_dataset", no_read)  # the refusal comes from the configs alone
    monkeypatch.setattr(reach, "run_env", no_read)
    other = trained_at(first, tmp_path / "other", discount=0.9)
    with pytest.raises(SystemExit, match="at discount 0.9 with the sparse reward on data .*, but the first run is"):
        reach.main([str(first), str(other)])
    dense = trained_at(first, tmp_path / "dense", sparse=False)  # the task's own reward: returns in other units
    with pytest.raises(SystemExit, match="0.99 with the task's own reward on data .*, but .* with the sparse reward"):
        reach.main([str(first), str(dense)])
    fewer = trained_at(first, tmp_path / "fewer", dataset_episodes=1)
    with pytest.raises(SystemExit, match="on data .* 1\\), but the first run is .* None\\): compare runs of one"):
        reach.main([str(first), str(fewer)])
    with pytest.raises(SystemExit, match="dqc trains on rewards offset by 1.0, the first run by 0.0"):
        reach.main([str(first), str(offset)])
