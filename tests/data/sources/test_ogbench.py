"""Loading OGBench files for single-task training: relabelling, sparse rewards, and bad input."""

import numpy as np
import pytest

from chunkrl.data.sources.ogbench import load_single_task, read_npz
from chunkrl.data.trajectories import DatasetError
from chunkrl.envs.ogbench import parse_task
from chunkrl.envs.registry import make_task_env

TASK = parse_task("puzzle-3x3-play-singletask-task1-v0")


@pytest.fixture(scope="module")
def env():
    e = make_task_env(TASK)
    yield e
    e.close()


def test_task_names_split_into_dataset_and_gym_id():
    assert TASK.dataset_name == "puzzle-3x3-play-v0"
    assert TASK.gym_id == "puzzle-3x3-singletask-task1-v0"
    assert parse_task("scene-play-singletask-v0").gym_id == "scene-singletask-v0"


def test_unknown_environment_lists_close_matches():
    with pytest.raises(ValueError, match="Did you mean: scene-play-singletask-task2-v0"):
        parse_task("scene-play-singletask-task2-v1")


def test_loading_drops_ogbench_final_rows_and_links_next_observations(tiny_puzzle_dataset, env):
    store = load_single_task(tiny_puzzle_dataset, TASK, env, sparse=False)
    raw = read_npz(tiny_puzzle_dataset)
    assert store.size == 400  # 2 episodes x (201 stored rows - 1 final observation)
    assert store.num_trajectories == 2
    np.testing.assert_array_equal(np.flatnonzero(store.ends[:400]), [199, 399])
    np.testing.assert_array_equal(store.next_observations[0], raw["observations"][1])
    np.testing.assert_array_equal(store.next_observations[199], raw["observations"][200])
    np.testing.assert_array_equal(store.observations[200], raw["observations"][201])


def test_rewards_follow_ogbench_relabelling_and_sparse_option(tiny_puzzle_dataset, env):
    dense = load_single_task(tiny_puzzle_dataset, TASK, env, sparse=False)
    sparse = load_single_task(tiny_puzzle_dataset, TASK, env, sparse=True)
    n = dense.size
    # puzzle-3x3 task 1: dense reward = -(number of wrong buttons), in [-9, 0]
    assert dense.rewards[:n].min() >= -9 and dense.rewards[:n].max() <= 0
    np.testing.assert_array_equal(sparse.rewards[:n], np.where(dense.rewards[:n] == 0, 0.0, -1.0))
    # the task is complete exactly where the reward is 0
    np.testing.assert_array_equal(dense.terminals[:n], dense.rewards[:n] == 0)


def test_extra_capacity_leaves_room_for_online_steps(tiny_puzzle_dataset, env):
    store = load_single_task(tiny_puzzle_dataset, TASK, env, sparse=True, extra_capacity=50)
    assert store.capacity == 450


def test_missing_file_says_how_to_generate_it(tmp_path):
    with pytest.raises(DatasetError, match="chunkrl data generate"):
        read_npz(tmp_path / "nothing.npz")


def test_truncated_file_is_reported_as_corrupt(tiny_puzzle_dataset, tmp_path):
    broken = tmp_path / "broken.npz"
    broken.write_bytes(tiny_puzzle_dataset.read_bytes()[:5000])
    with pytest.raises(DatasetError, match="corrupt or truncated"):
        read_npz(broken)


def test_a_file_without_actions_is_named_as_not_an_ogbench_dataset_not_as_corrupt(tiny_puzzle_dataset, tmp_path):
    with np.load(tiny_puzzle_dataset) as data:
        arrays = {k: data[k] for k in data.files if k != "actions"}
    np.savez(tmp_path / "mine.npz", **arrays)
    with pytest.raises(DatasetError, match=r"lacks the arrays \['actions'\]") as error:
        read_npz(tmp_path / "mine.npz")
    assert "corrupt" not in str(error.value)


def test_arrays_of_different_lengths_are_rejected_with_their_sizes(tiny_puzzle_dataset, env, tmp_path):
    with np.load(tiny_puzzle_dataset) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["actions"] = arrays["actions"][:-10]
    np.savez(tmp_path / "short.npz", **arrays)
    with pytest.raises(DatasetError, match=r"402 observations but \{'actions': 392\}"):
        load_single_task(tmp_path / "short.npz", TASK, env, sparse=False)


def test_dataset_of_another_environment_is_rejected(tiny_puzzle_dataset):
    scene = parse_task("scene-play-singletask-task2-v0")
    env = make_task_env(scene)
    with pytest.raises(DatasetError, match="expects 40 and 5"):
        load_single_task(tiny_puzzle_dataset, scene, env, sparse=False)


def test_online_rewards_and_terminals_line_up_with_the_relabelled_dataset(tmp_path):
    """OGBench's single-task envs use success_timing='pre': the reward and terminal returned by step t
    describe s_t, the state *before* a_t, and relabelling scores a stored step by its own state s_t
    too. Press buttons with a scripted arm in a real environment, store the episode the way OGBench's
    data collection does, load it through chunkrl, and compare step by step."""
    env = make_task_env(TASK)
    assert env.unwrapped._success_timing == "pre"
    observation, _ = env.reset(seed=0)
    rows = {k: [] for k in ("observations", "actions", "terminals", "qpos", "qvel", "button_states")}
    online_rewards, online_terminals = [], []
    for t in range(240):  # up and down while drifting over the button grid: presses some buttons
        action = np.array([0.8 * np.sin(t / 40), 0.8 * np.cos(t / 55), -1.0 if (t // 15) % 2 == 0 else 1.0, 0, 0])
        next_observation, reward, terminated, _, info = env.step(action)
        last = t == 239
        for key, value in zip(
            rows,
            (observation, action, last, info["prev_qpos"], info["prev_qvel"], info["prev_button_states"]),
            strict=True,
        ):
            rows[key].append(value)
        online_rewards.append(reward)
        online_terminals.append(terminated)
        observation = next_observation
    path = tmp_path / "episode.npz"
    np.savez(path, **{k: np.asarray(v) for k, v in rows.items()})
    store = load_single_task(path, TASK, env, sparse=False)
    stored = store.step_arrays()
    # the last recorded row is the trajectory's final observation, not a step
    np.testing.assert_array_equal(stored.rewards, np.asarray(online_rewards[:-1], np.float32))
    np.testing.assert_array_equal(stored.terminals, np.asarray(online_terminals[:-1]))
    assert len(set(online_rewards)) > 1, "the scripted presses must change the reward, or this test shows nothing"


def test_an_environment_that_relabelled_a_dataset_steps_after_a_seeded_reset_as_a_fresh_one(tiny_puzzle_dataset):
    """An offline run evaluates in the environment that relabelled its data (train/build.py): the relabelling moves
    the simulator through the data's states, and nothing of that may outlast the evaluation's seeded reset."""
    used, fresh = make_task_env(TASK), make_task_env(TASK)
    load_single_task(tiny_puzzle_dataset, TASK, used, sparse=False)
    fresh.reset(seed=7)
    moved = used.unwrapped.compute_observation()
    assert not np.array_equal(moved, fresh.unwrapped.compute_observation())  # left at a state of the data
    actions = np.random.default_rng(0).uniform(-1, 1, (2, 30, *fresh.action_space.shape))

    def rollout(env):  # two episodes: the seeded reset, then one that continues the environment's generator
        observations = [env.reset(seed=7)[0]]
        for episode in actions:
            observations += [env.step(action)[0] for action in episode] + [env.reset()[0]]
        return np.array(observations)

    np.testing.assert_array_equal(rollout(used), rollout(fresh))
