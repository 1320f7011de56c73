"""ChunkQueue (shared by the executor and Policy) and EpisodeStats (episode counting for every stepper)."""

import numpy as np
import pytest

from chunkrl.envs.chunk_queue import ChunkQueue
from chunkrl.envs.episodes import EpisodeStats


class CountingPolicy:
    """Answers chunk number q as [[10q + 1], [10q + 2], [10q + 3]] (flat, to check the reshape), and records
    what it was asked with."""

    def __init__(self):
        self.calls = []

    def __call__(self, observation, history_valid=None):
        self.calls.append((np.array(observation), None if history_valid is None else np.array(history_valid)))
        q = len(self.calls) - 1
        return np.array([10 * q + 1, 10 * q + 2, 10 * q + 3], np.float32)  # flat [h * A] with A = 1


def test_the_queue_runs_k_actions_of_each_chunk_then_asks_again():
    queue, policy = ChunkQueue(action_dim=1, execute_horizon=2), CountingPolicy()
    actions = []
    for t in range(5):
        queue.observe(np.array([float(t)]))
        actions.append(float(queue.action(policy)[0]))
    assert actions == [1, 2, 11, 12, 21]  # k = 2 of each 3-action chunk
    assert queue.queries == 3 and len(queue) == 1
    assert [float(obs[0]) for obs, _ in policy.calls] == [0, 2, 4]  # queried at the observation of its step


def test_without_an_execute_horizon_the_whole_chunk_runs_and_reset_empties_the_queue():
    queue, policy = ChunkQueue(action_dim=1), CountingPolicy()
    queue.observe(np.zeros(1))
    assert [float(queue.action(policy)[0]) for _ in range(4)] == [1, 2, 3, 11]
    queue.reset()
    assert len(queue) == 0 and len(queue.history) == 0


def test_a_history_is_padded_and_marked_before_the_episode_start():
    queue, policy = ChunkQueue(action_dim=1, execute_horizon=1, history=3), CountingPolicy()
    for t in range(4):
        queue.observe(np.array([t + 1.0, -(t + 1.0)]))
        queue.action(policy)
    (first, first_valid), (_, second_valid), _, (fourth, fourth_valid) = policy.calls
    np.testing.assert_array_equal(first, [[0, 0], [0, 0], [1, -1]])
    np.testing.assert_array_equal(first_valid, [0, 0, 1])
    np.testing.assert_array_equal(second_valid, [0, 1, 1])
    np.testing.assert_array_equal(fourth, [[2, -2], [3, -3], [4, -4]])  # the last three only
    np.testing.assert_array_equal(fourth_valid, [1, 1, 1])


def test_a_bad_execute_horizon_or_history_is_refused():
    with pytest.raises(ValueError, match="execute_horizon"):
        ChunkQueue(1, execute_horizon=0)
    with pytest.raises(ValueError, match="history"):
        ChunkQueue(1, history=0)


def test_episode_statistics_are_summed_per_environment_and_restart_after_each_end():
    stats = EpisodeStats(num_envs=2)
    assert stats.add([1.0, 2.0], [3, 3], [False, False], [False, False], [False, False]) == []
    finished = stats.add([4.0, 0.5], [2, 3], [True, False], [True, False], [False, False])
    assert finished == [{"return": 5.0, "length": 5.0, "success": 1.0, "diverged": 0.0}]
    finished = stats.add([1.0, 1.0], [1, 1], [True, True], [False, False], [False, True])
    assert finished == [
        {"return": 1.0, "length": 1.0, "success": 0.0, "diverged": 0.0},  # env 0 started again after its end
        {"return": 3.5, "length": 7.0, "success": 0.0, "diverged": 1.0},
    ]


def test_temporal_ensembling_averages_every_running_chunks_action_for_this_step_oldest_weighted_most():
    m = 0.5
    queue, policy = ChunkQueue(action_dim=1, history=1, temporal_ensemble=m), CountingPolicy()
    actions = []
    for t in range(4):
        queue.observe(np.array([float(t)]))
        actions.append(float(queue.action(policy)[0]))
    w = np.exp(-m * np.arange(3))
    # chunk q predicts [10q + 1, 10q + 2, 10q + 3] for its steps 0, 1, 2 (asked at step q)
    assert actions[0] == pytest.approx(1.0)  # only chunk 0, at its step 0
    assert actions[1] == pytest.approx((w[0] * 2 + w[1] * 11) / w[:2].sum())  # chunk 0 step 1, chunk 1 step 0
    assert actions[2] == pytest.approx((w[0] * 3 + w[1] * 12 + w[2] * 21) / w.sum())
    assert actions[3] == pytest.approx((w[0] * 13 + w[1] * 22 + w[2] * 31) / w.sum())  # chunk 0 has run out
    assert queue.queries == 4 and len(queue) == 3
    queue.reset()
    assert len(queue) == 0


def test_temporal_ensembling_is_refused_with_an_execute_horizon_above_one():
    with pytest.raises(ValueError, match="queries every step"):
        ChunkQueue(1, execute_horizon=3, temporal_ensemble=0.01)
