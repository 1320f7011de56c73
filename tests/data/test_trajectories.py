"""The step store: boundaries, terminals and appends."""

import hashlib

import numpy as np
import pytest

from chunkrl.data.chunks import ChunkSampler, ChunkSpec
from chunkrl.data.trajectories import NO_INDEX, DatasetError, StepArrays, Trajectories
from tests.conftest import make_store


def test_index_arrays_point_at_trajectory_last_step_and_next_terminal(two_trajectories):
    np.testing.assert_array_equal(two_trajectories.episode_last[:8], [4, 4, 4, 4, 4, 7, 7, 7])
    expected_terminal = [2, 2, 2, NO_INDEX, NO_INDEX, NO_INDEX, NO_INDEX, NO_INDEX]
    np.testing.assert_array_equal(two_trajectories.next_terminal[:8], expected_terminal)
    assert two_trajectories.num_trajectories == 2


def test_appending_steps_matches_building_from_arrays(two_trajectories):
    online = Trajectories(2, 1, capacity=8)
    arrays = two_trajectories.step_arrays()
    for t in range(8):
        online.add(
            arrays.observations[t],
            arrays.actions[t],
            arrays.rewards[t],
            arrays.terminals[t],
            arrays.ends[t],
            arrays.next_observations[t],
        )
    np.testing.assert_array_equal(online.episode_last, two_trajectories.episode_last)
    np.testing.assert_array_equal(online.next_terminal, two_trajectories.next_terminal)


def test_open_trajectory_reports_its_newest_step_as_last():
    store = Trajectories(1, 1, capacity=5)
    store.add(np.zeros(1), np.zeros(1), 0.0, False, False, np.zeros(1))
    store.add(np.zeros(1), np.zeros(1), 0.0, False, False, np.zeros(1))
    np.testing.assert_array_equal(store.last_step_of(np.array([0, 1])), [1, 1])
    assert store.num_trajectories == 1


def test_nan_rewards_are_rejected_with_a_clear_message():
    with pytest.raises(DatasetError, match="NaN"):
        make_store([1.0, np.nan], [0, 0], [0, 1])


def test_unterminated_last_trajectory_is_rejected():
    with pytest.raises(DatasetError, match="truncated"):
        make_store([1.0, 1.0], [0, 0], [0, 0])


def test_misaligned_arrays_are_rejected():
    steps = StepArrays(
        np.zeros((3, 2)), np.zeros((2, 1)), np.zeros(3), np.zeros(3, bool), np.ones(3, bool), np.zeros((3, 2))
    )
    with pytest.raises(DatasetError, match="align"):
        Trajectories.from_arrays(steps)


def test_capacity_overflow_is_an_error():
    store = Trajectories(1, 1, capacity=1)
    store.add(np.zeros(1), np.zeros(1), 0.0, False, True, np.zeros(1))
    with pytest.raises(DatasetError, match="capacity"):
        store.add(np.zeros(1), np.zeros(1), 0.0, False, True, np.zeros(1))


def test_first_step_of_each_trajectory_is_known_for_blocks_and_appended_steps(two_trajectories):
    assert two_trajectories.episode_first[:8].tolist() == [0, 0, 0, 0, 0, 5, 5, 5]
    store = Trajectories(2, 1, capacity=10)
    for end in [0, 1, 0, 0]:
        store.add(np.zeros(2), np.zeros(1), 0.0, False, bool(end), np.zeros(2))
    assert store.episode_first[:4].tolist() == [0, 0, 2, 2]


def test_a_memory_mapped_store_samples_the_same_chunks_as_one_in_memory(two_trajectories, tmp_path):
    steps = two_trajectories.step_arrays()
    mapped = Trajectories(steps.observations.shape[1], steps.actions.shape[1], len(steps.rewards), tmp_path / "m")
    mapped.extend(two_trajectories)
    assert isinstance(mapped.observations, np.memmap) and (tmp_path / "m" / "observations.npy").exists()
    for name in ("episode_first", "episode_last", "next_terminal", "observations", "rewards", "terminals"):
        np.testing.assert_array_equal(getattr(mapped, name), getattr(two_trajectories, name)[: mapped.capacity])
    spec = ChunkSpec(3, 0.9)
    a, b = ChunkSampler(mapped, spec, seed=4).sample(32), ChunkSampler(two_trajectories, spec, seed=4).sample(32)
    for field in ("observations", "actions", "valid", "reward_h", "bootstrap_discount", "next_observations"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


def test_a_memory_mapped_store_never_overwrites_files(two_trajectories, tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "mine.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not empty"):
        Trajectories(3, 2, 10, tmp_path / "m")
    assert (tmp_path / "m" / "mine.txt").read_text() == "keep me"


def test_the_content_digest_is_the_sha256_of_the_filled_steps_and_changes_with_any_of_them(two_trajectories):
    t = np.arange(8, dtype=np.float32)
    by_hand = hashlib.sha256()
    for block in (
        np.repeat(t[:, None], 2, axis=1),  # observations [t, t]
        t[:, None] + 0.5,  # actions
        np.array([1, 2, 3, 4, 5, 10, 20, 30], np.float32),  # rewards
        np.array([0, 0, 1, 0, 0, 0, 0, 0], bool),  # terminals
        np.array([0, 0, 0, 0, 1, 0, 0, 1], bool),  # ends
        np.repeat(t[:, None] + 100.0, 2, axis=1),  # next observations
    ):
        by_hand.update(block.tobytes())
    assert two_trajectories.content_digest() == by_hand.hexdigest()
    roomy = Trajectories.from_arrays(two_trajectories.step_arrays(), capacity=20)  # unfilled rows do not count
    assert roomy.content_digest() == by_hand.hexdigest()
    roomy.rewards[7] += 1.0
    assert roomy.content_digest() != by_hand.hexdigest()
