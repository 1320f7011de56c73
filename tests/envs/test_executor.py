"""Open-loop chunk execution: query cadence, execution horizon, queue reset at episode ends."""

import gymnasium
import numpy as np

from chunkrl.envs.executor import ChunkExecutor, evaluate
from chunkrl.envs.registry import SparseReward, make_env


class CountingEnv(gymnasium.Env):
    """Observation = step counter; the episode ends after ``length`` steps; records actions."""

    observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (1,), np.float32)
    action_space = gymnasium.spaces.Box(-1, 1, (1,), np.float32)

    def __init__(self, length=7):
        self.length, self.t, self.actions = length, 0, []

    def reset(self, *, seed=None, options=None):
        self.t = 0
        return np.array([0.0], np.float32), {}

    def step(self, action):
        self.actions.append(float(action[0]))
        self.t += 1
        done = self.t >= self.length
        return np.array([self.t], np.float32), 1.0, done, False, {"success": done}


def chunk_policy(observation):
    """A chunk of 3 actions that encode the observation they were planned from."""
    return np.array([[observation[0] / 100 + i / 1000] for i in range(3)], np.float32)


def test_chunks_run_open_loop_and_the_agent_is_queried_every_h_steps():
    env = CountingEnv(length=7)
    executor = ChunkExecutor(env)
    for _ in range(6):
        executor.step(chunk_policy)
    assert executor.queries == 2
    np.testing.assert_allclose(env.actions, [0.0, 0.001, 0.002, 0.03, 0.031, 0.032])


def test_execution_horizon_replans_after_k_actions():
    env = CountingEnv(length=10)
    executor = ChunkExecutor(env, execute_horizon=2)
    for _ in range(4):
        executor.step(chunk_policy)
    assert executor.queries == 2
    np.testing.assert_allclose(env.actions, [0.0, 0.001, 0.02, 0.021])


def test_episode_end_clears_the_queue():
    env = CountingEnv(length=4)
    executor = ChunkExecutor(env)
    steps = [executor.step(chunk_policy) for _ in range(5)]
    assert steps[3].done and not steps[4].done
    # step 4 ends the episode mid-chunk; the next step starts a fresh chunk from the reset observation
    np.testing.assert_allclose(env.actions, [0.0, 0.001, 0.002, 0.03, 0.0])
    assert executor.queries == 3


def test_evaluate_reports_success_return_and_length():
    executor = ChunkExecutor(CountingEnv(length=5))
    results = evaluate(executor, chunk_policy, episodes=3)
    assert results == {"success": 1.0, "return": 5.0, "length": 5.0, "episodes": 3.0}


def test_sparse_reward_is_minus_one_until_full_success():
    env = SparseReward(CountingEnv())
    assert env.reward(-3.0) == -1.0 and env.reward(0.0) == 0.0


def test_real_ogbench_environment_runs_chunks():
    env = make_env("puzzle-3x3-play-singletask-task1-v0", sparse=True)
    executor = ChunkExecutor(env, seed=0)
    zero_chunk = lambda observation: np.zeros((5, 5), np.float32)  # noqa: E731
    steps = [executor.step(zero_chunk) for _ in range(10)]
    assert executor.queries == 2
    for before, after in zip(steps[:-1], steps[1:], strict=True):  # one episode, stepped in order
        np.testing.assert_array_equal(after.observation, before.next_observation)
    assert all(np.array_equal(step.action, np.zeros(5)) for step in steps)


def test_histories_hold_every_step_and_are_padded_after_each_reset():
    seen = []

    def history_policy(history, history_valid):
        seen.append((history[:, 0].tolist(), history_valid.tolist()))
        return np.zeros((2, 1), np.float32)

    executor = ChunkExecutor(CountingEnv(length=5), history=3)
    for _ in range(7):  # queries at steps 0, 2, 4 (episode ends after step 5: reset), then 5
        executor.step(history_policy)
    assert seen == [
        ([0, 0, 0], [0, 0, 1]),  # the episode's first observation, padded
        ([0, 1, 2], [1, 1, 1]),  # every step is in the history, not only query steps
        ([2, 3, 4], [1, 1, 1]),
        ([0, 0, 0], [0, 0, 1]),  # a new episode starts a new, padded history
    ]


def test_chunk_step_returns_the_discounted_chunk_reward_and_tau():
    from chunkrl.envs.executor import ChunkStepEnv

    class RewardEnv(CountingEnv):
        def step(self, action):
            observation, _, done, truncated, info = super().step(action)
            return observation, float(self.t), done, truncated, info  # reward t at step t: 1, 2, 3, ...

    env = ChunkStepEnv(RewardEnv(length=5), horizon=3, gamma=0.5)
    env.reset()
    _, reward, terminated, _, info = env.step(np.zeros((3, 1)))
    assert reward == 1 + 0.5 * 2 + 0.25 * 3 and info["tau"] == 3 and info["reward_sum"] == 6 and not terminated
    _, reward, terminated, _, info = env.step(np.zeros((3, 1)))
    assert reward == 4 + 0.5 * 5 and info["tau"] == 2 and terminated  # the episode ended inside the chunk
    assert env.env.actions == [0.0] * 5
    partial = ChunkStepEnv(RewardEnv(length=5), horizon=3, gamma=0.5, execute_horizon=1)
    partial.reset()
    _, reward, _, _, info = partial.step(np.zeros((3, 1)))
    assert reward == 1 and info["tau"] == 1  # only the first k = 1 action ran
