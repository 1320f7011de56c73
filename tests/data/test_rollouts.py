"""Chunk-level GAE with variable executed lengths τ, against a hand computation."""

import torch

from chunkrl.data.rollouts import Rollout, chunk_gae


def test_gae_with_variable_tau_by_hand():
    g, lam = 0.9, 0.5
    # one environment, four decisions: taus 3, 2, 1 (the episode hit its time limit inside the third chunk),
    # then a new episode whose first chunk (tau 2) ends on a terminal.
    rewards = torch.tensor([[1.0], [2.0], [0.5], [3.0]])
    values = torch.tensor([[10.0], [8.0], [6.0], [1.0]])
    next_values = torch.tensor([[8.0], [6.0], [7.0], [99.0]])  # V(s_{t+τ}); the time limit bootstraps from 7
    taus = torch.tensor([[3], [2], [1], [2]])
    terminals = torch.tensor([[False], [False], [False], [True]])
    ends = torch.tensor([[False], [False], [True], [True]])
    advantages, returns = chunk_gae(rewards, values, next_values, taus, terminals, ends, g, lam)

    d3 = 3.0 + 0.0 - 1.0  # terminal: no bootstrap
    d2 = 0.5 + g**1 * 7.0 - 6.0  # time limit inside the chunk: γ^1 V(final observation)
    d1 = 2.0 + g**2 * 6.0 - 8.0
    d0 = 1.0 + g**3 * 8.0 - 10.0
    a3 = d3
    a2 = d2  # the episode ended: nothing carried from the next episode
    a1 = d1 + g**2 * lam * a2  # γ^τ with τ = 2 between decisions, λ once per decision
    a0 = d0 + g**3 * lam * a1
    expected = torch.tensor([[a0], [a1], [a2], [a3]])
    torch.testing.assert_close(advantages, expected)
    torch.testing.assert_close(returns, expected + values)


def test_a_fixed_gamma_per_chunk_would_differ_when_a_chunk_is_cut_short():
    kwargs = dict(values=torch.zeros(1, 1), next_values=torch.ones(1, 1), terminals=torch.zeros(1, 1, dtype=torch.bool))
    kwargs["ends"] = torch.ones(1, 1, dtype=torch.bool)
    short, _ = chunk_gae(torch.zeros(1, 1), taus=torch.tensor([[1]]), gamma=0.5, lam=1.0, **kwargs)
    full, _ = chunk_gae(torch.zeros(1, 1), taus=torch.tensor([[4]]), gamma=0.5, lam=1.0, **kwargs)
    assert float(short) == 0.5 and float(full) == 0.5**4


def test_rollout_rows_flatten_decisions_of_every_environment():
    rollout = Rollout(2, 3, 4, (5,), torch.long, "cpu")
    for t in range(2):
        rollout.add(
            observations=torch.full((3, 4), float(t)),
            encoded=torch.full((3, 5), t),
            log_probs=torch.zeros(3),
            values=torch.zeros(3),
            next_values=torch.zeros(3),
            rewards=torch.arange(3.0) + 10 * t,
            taus=torch.ones(3, dtype=torch.long),
            terminals=torch.zeros(3, dtype=torch.bool),
            ends=torch.zeros(3, dtype=torch.bool),
        )
    assert rollout.full
    batch = rollout.batch(gamma=1.0, lam=1.0)
    assert len(batch) == 6
    # environment 1: rewards 1 then 11, no discount, bootstrap 0 -> advantages 12 and 11
    assert batch.advantages.tolist() == [10.0, 12.0, 14.0, 10.0, 11.0, 12.0]
