"""Chunk transition semantics, with expectations computed by hand (the README's "Chunk transitions")."""

import numpy as np
import pytest

from chunkrl.data.chunks import ChunkSampler, ChunkSpec, enumerate_chunks
from chunkrl.data.trajectories import Trajectories
from tests.conftest import make_store

G = 0.9


def spec(h=3, boundary="mask"):
    return ChunkSpec(horizon=h, discount=G, boundary=boundary)


def test_full_chunk_inside_a_trajectory_sums_h_discounted_rewards(two_trajectories):
    c = enumerate_chunks(two_trajectories, spec(h=2))
    # start 0: rewards 1, 2 -> 1 + 0.9 * 2
    assert c.reward_h[0] == pytest.approx(1 + G * 2)
    assert c.tau[0] == 2
    assert c.bootstrap_discount[0] == pytest.approx(G**2)
    assert c.next_observations[0][0] == 101.0  # s_2 is the next observation of step 1
    np.testing.assert_array_equal(c.valid[0], [1, 1])
    np.testing.assert_array_equal(c.actions[0, :, 0], [0.5, 1.5])
    assert c.td_weight[0] == 1.0


def test_terminal_inside_chunk_stops_the_return_and_the_bootstrap(two_trajectories):
    c = enumerate_chunks(two_trajectories, spec(h=3))
    # start 1: steps 1, 2(terminal), 3 -> return stops after step 2
    assert c.reward_h[1] == pytest.approx(2 + G * 3)
    assert c.tau[1] == 2
    assert c.bootstrap_discount[1] == 0.0
    np.testing.assert_allclose(c.partial_returns[1], [2, 2 + G * 3, 2 + G * 3], rtol=1e-6)
    # actions after the terminal were really taken: still valid
    np.testing.assert_array_equal(c.valid[1], [1, 1, 1])
    np.testing.assert_array_equal(c.actions[1, :, 0], [1.5, 2.5, 3.5])
    assert c.td_weight[1] == 1.0


def test_chunk_starting_on_a_terminal_has_one_step_return(two_trajectories):
    c = enumerate_chunks(two_trajectories, spec(h=3))
    assert c.reward_h[2] == pytest.approx(3.0)
    assert c.tau[2] == 1
    assert c.bootstrap_discount[2] == 0.0
    assert c.next_observations[2][0] == 102.0


def test_trajectory_end_pads_actions_and_masks_td_in_mask_mode(two_trajectories):
    c = enumerate_chunks(two_trajectories, spec(h=3, boundary="mask"))
    # start 4: last step of trajectory A, next steps belong to B and must never be read
    np.testing.assert_array_equal(c.valid[4], [1, 0, 0])
    np.testing.assert_array_equal(c.actions[4, :, 0], [4.5, 0, 0])
    assert c.reward_h[4] == pytest.approx(5.0)
    assert c.tau[4] == 1
    assert c.td_weight[4] == 0.0
    # start 3: steps 3, 4 then the end
    assert c.reward_h[3] == pytest.approx(4 + G * 5)
    assert c.td_weight[3] == 0.0


def successful_online_episode():
    """An online episode that ends at its terminal success (step 3), as OGBench's task envs do, then
    another episode: chunks of h = 3 starting at steps 2 and 3 hold padding after the terminal."""
    return make_store([-1.0, -1.0, -1.0, 0.0, -1.0, -1.0, -1.0], [0, 0, 0, 1, 0, 0, 0], [0, 0, 0, 1, 0, 0, 1])


def test_mask_mode_leaves_chunks_padded_after_a_terminal_success_out_of_td():
    c = enumerate_chunks(successful_online_episode(), spec(h=3, boundary="mask"))
    np.testing.assert_array_equal(c.valid[2], [1, 1, 0])  # steps 2, 3 (terminal and end), then padding
    assert c.reward_h[2] == pytest.approx(-1.0 + G * 0.0) and c.bootstrap_discount[2] == 0.0
    # the paper's rule: only chunks whose every position is real take part in TD
    np.testing.assert_array_equal(c.td_weight[:4], [1, 1, 0, 0])
    fast = ChunkSampler(successful_online_episode(), spec(h=3, boundary="mask")).gather(np.arange(4))
    np.testing.assert_array_equal(fast.td_weight, [1, 1, 0, 0])


def test_truncate_mode_keeps_chunks_padded_after_a_terminal_with_no_bootstrap():
    c = enumerate_chunks(successful_online_episode(), spec(h=3, boundary="truncate"))
    np.testing.assert_array_equal(c.td_weight[:4], [1, 1, 1, 1])
    np.testing.assert_array_equal(c.valid[3], [1, 0, 0])
    assert c.reward_h[3] == 0.0 and c.tau[3] == 1 and c.bootstrap_discount[3] == 0.0


def test_sampler_leaves_out_partial_returns_unless_asked(two_trajectories):
    assert ChunkSampler(two_trajectories, spec()).gather(np.array([1])).partial_returns is None
    asked = ChunkSampler(two_trajectories, spec(), partial_returns=True).gather(np.array([1]))
    np.testing.assert_allclose(asked.partial_returns[0], [2, 2 + G * 3, 2 + G * 3], rtol=1e-6)


def test_truncate_mode_bootstraps_a_cut_chunk_with_gamma_tau(two_trajectories):
    c = enumerate_chunks(two_trajectories, spec(h=3, boundary="truncate"))
    # start 6: steps 6, 7 then the time-limit end -> bootstrap from s_8 with γ^2
    assert c.reward_h[6] == pytest.approx(20 + G * 30)
    assert c.tau[6] == 2
    assert c.bootstrap_discount[6] == pytest.approx(G**2)
    assert c.next_observations[6][0] == 107.0
    assert c.td_weight[6] == 1.0
    np.testing.assert_array_equal(c.valid[6], [1, 1, 0])


def test_horizon_one_is_the_ordinary_one_step_transition(two_trajectories):
    c = enumerate_chunks(two_trajectories, spec(h=1))
    np.testing.assert_allclose(c.reward_h, [1, 2, 3, 4, 5, 10, 20, 30])
    np.testing.assert_allclose(c.bootstrap_discount, [G, G, 0, G, G, G, G, G], rtol=1e-6)
    np.testing.assert_array_equal(c.td_weight, np.ones(8))
    np.testing.assert_array_equal(c.next_observations[:, 0], np.arange(8) + 100)


@pytest.mark.parametrize("boundary", ["mask", "truncate"])
@pytest.mark.parametrize(("h", "length"), [(1, None), (2, None), (3, None), (5, None), (2, 4), (1, 3)])
def test_vectorized_sampler_matches_reference_enumeration(boundary, h, length):
    rng = np.random.default_rng(h)
    n = 60
    ends = rng.random(n) < 0.15
    ends[-1] = True
    store = make_store(rng.normal(size=n), rng.random(n) < 0.1, ends, obs_dim=3, action_dim=2)
    s = ChunkSpec(horizon=h, discount=G, boundary=boundary, action_length=length)
    reference = enumerate_chunks(store, s)
    fast = ChunkSampler(store, s, partial_returns=True).gather(np.arange(n))
    for name in reference.__dataclass_fields__:
        if getattr(reference, name) is None:  # no observation histories asked for
            assert getattr(fast, name) is None, name
            continue
        np.testing.assert_allclose(getattr(fast, name), getattr(reference, name), rtol=1e-5, err_msg=name)


def test_sampler_reads_an_open_trajectory_up_to_its_newest_step():
    store = make_store([1.0, 1.0], [0, 0], [0, 1])
    online = Trajectories(2, 1, capacity=10)
    online.extend(store)
    online.add(np.zeros(2), np.ones(1), 2.0, False, False, np.ones(2))
    online.add(np.ones(2), np.ones(1), 3.0, False, False, np.ones(2) * 2)
    batch = ChunkSampler(online, spec(h=3, boundary="truncate")).gather(np.array([2]))
    assert batch.tau[0] == 2
    assert batch.reward_h[0] == pytest.approx(2 + G * 3)
    np.testing.assert_array_equal(batch.valid[0], [1, 1, 0])


def test_to_torch_keeps_names_and_types(two_trajectories):
    batch = ChunkSampler(two_trajectories, spec()).sample(4).to_torch()
    assert batch.actions.shape == (4, 3, 1)
    assert batch.tau.dtype.is_floating_point is False
    assert batch.reward_h.dtype.is_floating_point


def test_mixed_sampler_draws_symmetric_halves_and_falls_back_to_offline_data():
    from chunkrl.data.chunks import MixedChunkSampler

    offline_store = make_store(np.zeros(20), np.zeros(20), [0] * 19 + [1])  # rewards 0
    online_store = Trajectories(2, 1, capacity=50)
    mixed = MixedChunkSampler(ChunkSampler(offline_store, spec()), ChunkSampler(online_store, spec()))
    assert mixed.split(256) == (256, 0)  # no online data yet
    assert len(mixed.sample(8)) == 8
    for t in range(10):
        online_store.add(np.zeros(2), np.zeros(1), 1.0, False, t == 9, np.zeros(2))  # rewards 1
    assert mixed.split(256) == (128, 128)
    batch = mixed.sample(256)
    # offline chunks have return 0, online ones a positive return: exactly half of each
    assert (batch.reward_h == 0).sum() == 128 and (batch.reward_h > 0).sum() == 128
    with pytest.raises(ValueError, match="online_fraction"):
        MixedChunkSampler(mixed.offline, mixed.online, online_fraction=1.5)


def test_observation_histories_are_padded_and_masked_at_trajectory_starts(two_trajectories):
    # observations are [t, t]; next_observations [t + 100, t + 100]; trajectory B starts at step 5
    sampler = ChunkSampler(two_trajectories, ChunkSpec(horizon=2, discount=0.9), history=3)
    batch = sampler.gather(np.array([0, 1, 6, 3]))
    np.testing.assert_array_equal(batch.history_valid, [[0, 0, 1], [0, 1, 1], [0, 1, 1], [1, 1, 1]])
    np.testing.assert_array_equal(batch.observation_history[:, :, 0], [[0, 0, 0], [0, 0, 1], [0, 5, 6], [1, 2, 3]])
    # s_{t+τ}: chunk 0 jumps to s_2 = next_obs[1] (history s_0, s_1, s_2); chunk 1 stops at the terminal
    # (step 2, next_obs[2] = 102); chunk 6 ends with trajectory B (s_8 = next_obs[7]); chunk 3 reaches s_5
    # = next_obs[4], whose history is s_3, s_4 (same trajectory A) and next_obs[4]
    np.testing.assert_array_equal(batch.next_history_valid, [[1, 1, 1], [1, 1, 1], [1, 1, 1], [1, 1, 1]])
    np.testing.assert_array_equal(
        batch.next_observation_history[:, :, 0], [[0, 1, 101], [1, 2, 102], [6, 7, 107], [3, 4, 104]]
    )
    first = sampler.gather(np.array([5]))
    np.testing.assert_array_equal(first.history_valid, [[0, 0, 1]])
    np.testing.assert_array_equal(first.next_history_valid, [[1, 1, 1]])  # s_7's history: s_5, s_6, s_7
    np.testing.assert_array_equal(first.next_observation_history[0, :, 0], [5, 6, 106])
    mixed = ChunkSampler(two_trajectories, ChunkSpec(horizon=1), history=3).gather(np.array([5]))
    np.testing.assert_array_equal(mixed.next_history_valid, [[0, 1, 1]])  # s_6's history: (pad), s_5, s_6
    np.testing.assert_array_equal(mixed.next_observation_history[0, :, 0], [0, 5, 105])


def test_batches_mark_the_chunks_that_start_in_the_dataset(two_trajectories):
    sampler = ChunkSampler(two_trajectories, ChunkSpec(2, 0.9, "mask"), dataset_steps=5)
    np.testing.assert_array_equal(sampler.gather(np.array([0, 4, 5, 7])).from_dataset, [1, 1, 0, 0])
    every = ChunkSampler(two_trajectories, ChunkSpec(2, 0.9, "mask"))  # a store of dataset steps only
    np.testing.assert_array_equal(every.gather(np.array([0, 7])).from_dataset, [1, 1])


def test_an_actor_chunk_longer_than_the_critic_horizon_carries_actions_past_the_backup(two_trajectories):
    # critic horizon 2, actor chunk 4: the return and bootstrap span 2 steps, actions and validity 4
    s = ChunkSpec(horizon=2, discount=G, boundary="mask", action_length=4)
    batch = ChunkSampler(two_trajectories, s).gather(np.array([0, 3]))
    assert batch.actions.shape == (2, 4, 1) and batch.valid.shape == (2, 4)
    # from step 0: r0 + γ r1 = 1 + 0.9 * 2; actions a0..a3 all inside trajectory A (steps 0-4)
    np.testing.assert_allclose(batch.reward_h[0], 1.0 + G * 2.0)
    np.testing.assert_allclose(batch.actions[0, :, 0], [0.5, 1.5, 2.5, 3.5])
    assert batch.tau[0] == 2 and np.isclose(batch.bootstrap_discount[0], G**2)
    np.testing.assert_allclose(batch.next_observations[0], [101.0, 101.0])  # s_2 is next_observation of step 1
    # from step 3: a3, a4 real, then trajectory A ends: the tail is padding, yet the critic's 2 actions are
    # whole, so in mask mode the chunk stays a TD sample (with one horizon of 4 it would not be)
    np.testing.assert_allclose(batch.valid[1], [1, 1, 0, 0])
    np.testing.assert_allclose(batch.reward_h[1], 4.0 + G * 5.0)
    assert batch.td_weight[1] == 1.0
    assert ChunkSampler(two_trajectories, spec(h=4)).gather(np.array([3])).td_weight[0] == 0.0
