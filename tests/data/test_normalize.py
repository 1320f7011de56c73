"""Per-dimension statistics and the normaliser: hand-computed values, round trips, edge cases."""

import gymnasium
import numpy as np
import pytest

from chunkrl.data.normalize import Normalizer, feature_stats, fit_normalizer, resolve_action_mode
from chunkrl.data.trajectories import DatasetError, StepArrays, Trajectories
from chunkrl.envs.normalized import NormalizedEnv, in_agent_units


def store_of(actions, observations=None):
    actions = np.asarray(actions, np.float32)
    n = len(actions)
    observations = np.zeros((n, 2), np.float32) if observations is None else np.asarray(observations, np.float32)
    ends = np.zeros(n, bool)
    ends[-1] = True
    steps = StepArrays(observations, actions, np.zeros(n, np.float32), np.zeros(n, bool), ends, observations + 1)
    return Trajectories.from_arrays(steps)


def test_feature_stats_carry_lerobots_keys_computed_by_hand():
    stats = feature_stats(np.array([[0.0, 5.0], [2.0, 5.0], [4.0, 5.0]]))
    assert set(stats) == {"mean", "std", "min", "max", "q01", "q10", "q50", "q90", "q99", "count"}
    assert stats["q50"] == [2.0, 5.0] and stats["q10"] == pytest.approx([0.4, 5.0])  # 0.1 * 2 = 0.2 -> 0.2 * 2
    assert stats["mean"] == [2.0, 5.0] and stats["min"] == [0.0, 5.0] and stats["max"] == [4.0, 5.0]
    assert stats["std"] == pytest.approx([np.sqrt(8 / 3), 0.0])  # population std: ((4 + 0 + 4) / 3) ** 0.5
    # numpy's linear quantile: position 0.01 * (3 - 1) = 0.02 -> 0 + 0.02 * 2; 0.99 * 2 = 1.98 -> 2 + 0.98 * 2
    assert stats["q01"] == pytest.approx([0.04, 5.0]) and stats["q99"] == pytest.approx([3.96, 5.0])
    assert stats["count"] == [3]


def test_min_max_maps_the_datas_range_onto_minus_one_one_and_back():
    actions = np.array([[-3.0, 0.0], [3.0, 2.0], [1.5, 1.0]])
    store = store_of(actions)
    normalizer = fit_normalizer("min_max", "none", store, 2, 2)
    normalizer.apply_to(store)
    np.testing.assert_allclose(store.actions[:3], [[-1.0, -1.0], [1.0, 1.0], [0.5, 0.0]], atol=1e-6)
    np.testing.assert_allclose(normalizer.denormalize_actions(store.actions[:3]), actions, atol=1e-6)
    np.testing.assert_allclose(normalizer.denormalize_actions(np.array([[1.0, 1.0]])), [[3.0, 2.0]])


def test_a_constant_dimension_normalises_to_zero_and_maps_back_to_its_value_without_nan():
    store = store_of([[2.0, -1.0], [2.0, 1.0]], observations=[[7.0, 0.0], [7.0, 2.0]])
    normalizer = fit_normalizer("min_max", "mean_std", store, 2, 2)
    normalizer.apply_to(store)
    assert np.isfinite(store.actions[:2]).all() and np.isfinite(store.observations[:2]).all()
    np.testing.assert_array_equal(store.actions[:2, 0], [0.0, 0.0])
    np.testing.assert_array_equal(store.observations[:2, 0], [0.0, 0.0])
    np.testing.assert_allclose(store.observations[:2, 1], [-1.0, 1.0])  # mean 1, std 1
    # whatever the policy emits for the constant dimension, the robot gets the constant
    np.testing.assert_allclose(normalizer.denormalize_actions(np.array([[0.7, 0.0]])), [[2.0, 0.0]])


def test_quantile_mode_clips_beyond_the_percentiles_and_counts_them():
    actions = np.concatenate([np.linspace(-1, 1, 199), [100.0]])[:, None]
    store = store_of(actions)
    normalizer = fit_normalizer("quantile", "none", store, 2, 1)
    clipped = normalizer.apply_to(store)
    assert clipped >= 1 and store.actions[:200].max() == 1.0 and store.actions[:200].min() == -1.0
    assert normalizer.action_mode == "quantile"


def test_auto_leaves_data_in_unit_range_alone_uses_finite_bounds_and_otherwise_the_datas_range():
    unit = np.array([[-1.0], [0.5]])
    assert resolve_action_mode("auto", unit) == "none"
    assert resolve_action_mode("auto", unit, np.array([-1.0]), np.array([1.0])) == "none"
    assert resolve_action_mode("auto", unit, np.array([-3.14]), np.array([3.14])) == "bounds"
    assert resolve_action_mode("auto", np.array([[2.5]])) == "min_max"
    assert resolve_action_mode("auto", np.array([[2.5]]), np.array([-np.inf]), np.array([np.inf])) == "min_max"
    with pytest.raises(DatasetError, match="finite action bounds"):
        resolve_action_mode("bounds", unit)
    with pytest.raises(DatasetError, match="has none"):
        resolve_action_mode("min_max", None)


def test_auto_observations_stay_raw_on_ogbench_and_are_standardised_elsewhere():
    store = store_of([[0.0], [0.5]], observations=[[0.0, 1.0], [2.0, 3.0]])
    assert fit_normalizer("auto", "auto", store, 2, 1, ogbench=True).is_identity
    other = fit_normalizer("auto", "auto", store, 2, 1)
    assert other.observation_mode == "mean_std" and other.action_mode == "none"
    np.testing.assert_allclose(other.observation_center, [1.0, 2.0])


def test_the_statistics_round_trip_through_json_and_a_corrupt_file_is_named():
    store = store_of([[-3.0], [3.0]], observations=[[0.0, 1.0], [2.0, 5.0]])
    normalizer = fit_normalizer("min_max", "mean_std", store, 2, 1)
    back = Normalizer.from_json(normalizer.to_json())
    assert (back.action_mode, back.observation_mode) == ("min_max", "mean_std")
    for name in ("action_center", "action_scale", "observation_center", "observation_scale"):
        np.testing.assert_array_equal(getattr(back, name), getattr(normalizer, name))
    with pytest.raises(DatasetError, match="stats.json is not a chunkrl normalisation file"):
        Normalizer.from_json('{"action": 1}', "stats.json")
    with pytest.raises(DatasetError, match="non-finite"):
        Normalizer.from_json(normalizer.to_json().replace("-3.0", "NaN", 1).replace("3.0", "NaN"))


class Recorder(gymnasium.Env):
    """Records the actions it receives; observations are fixed numbers."""

    def __init__(self):
        self.action_space = gymnasium.spaces.Box(np.array([-2.0, 0.0]), np.array([2.0, 1.0]), dtype=np.float32)
        self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.received = []

    def reset(self, *, seed=None, options=None):
        return np.array([3.0, 4.0], np.float32), {}

    def step(self, action):
        self.received.append(np.asarray(action))
        return np.array([5.0, 6.0], np.float32), 0.0, False, False, {}


def test_the_wrapped_environment_takes_unit_actions_and_gives_normalised_observations():
    raw = Recorder()
    normalizer = Normalizer(
        "bounds", "mean_std", np.array([0.0, 0.5]), np.array([2.0, 0.5]), np.array([1.0, 2.0]), np.array([2.0, 0.0])
    )
    env = in_agent_units(raw, normalizer)
    assert isinstance(env, NormalizedEnv)
    assert env.action_space.low.tolist() == [-1, -1] and env.action_space.high.tolist() == [1, 1]
    observation, _ = env.reset()
    np.testing.assert_allclose(observation, [1.0, 0.0])  # (3 - 1) / 2; a zero std gives 0
    observation, *_ = env.step(np.array([1.0, -1.0]))
    np.testing.assert_allclose(raw.received[-1], [2.0, 0.0])  # the bounds' corners
    np.testing.assert_allclose(observation, [2.0, 0.0])
    assert in_agent_units(raw, Normalizer.identity(2, 2)) is raw
