"""DQC: implicit losses by hand, the bounded chunk backup, distillation and value paths, best-of-N by the
partial-chunk critic, and a policy chunk independent of the critic's horizon."""

import numpy as np
import pytest
import torch
from torch import nn

from chunkrl.agents.flow.config import FlowAgentConfig
from chunkrl.agents.flow.dqc import DQCAgent, implicit_loss
from chunkrl.data.chunks import ChunkSampler, ChunkSpec
from tests.conftest import make_store

OBS, ACT = 3, 2
G = 0.9


def small_agent(actor_chunk=1, critic_horizon=2, **overrides):
    torch.manual_seed(0)
    base = dict(actor_hidden_dims=(16,), critic_hidden_dims=(16,), flow_steps=2, num_samples=4)
    return DQCAgent(OBS, ACT, actor_chunk, FlowAgentConfig(**{**base, **overrides}), critic_horizon=critic_horizon)


def fitted_constant(targets, kappa):
    """The probability one logit settles at when gradient descent fits it to ``targets`` with the expectile loss
    (training follows the gradient: the weighted cross-entropy's stationary point, where the weights switch side
    at the prediction)."""
    logit = torch.zeros((), requires_grad=True)
    optimizer = torch.optim.SGD([logit], lr=1.0)
    for _ in range(2000):
        optimizer.zero_grad()
        implicit_loss("expectile", logit.expand(len(targets)), torch.tensor(targets), kappa).sum().backward()
        optimizer.step()
    return float(torch.sigmoid(logit.detach()))


def best_quantile_constant(targets, kappa):
    """The probability (on a fine grid) whose logit minimises the summed quantile loss against ``targets``."""
    grid = torch.linspace(0.01, 0.99, 981)
    logits = torch.logit(grid)[:, None].expand(-1, len(targets))
    losses = implicit_loss("quantile", logits, torch.tensor(targets).expand_as(logits), kappa).sum(1)
    return float(grid[losses.argmin()])


def test_the_expectile_loss_gives_the_mean_at_one_half_and_leans_to_larger_targets_above():
    assert fitted_constant([0.2, 0.8], 0.5) == pytest.approx(0.5, abs=1e-3)
    # weighted mean: (0.1 * 0.2 + 0.9 * 0.8) / (0.1 + 0.9) = 0.74
    assert fitted_constant([0.2, 0.8], 0.9) == pytest.approx(0.74, abs=1e-3)


def test_the_quantile_loss_gives_the_median_at_one_half_and_the_upper_quantile_above():
    assert best_quantile_constant([0.2, 0.5, 0.8], 0.5) == pytest.approx(0.5, abs=1e-3)
    assert best_quantile_constant([0.2, 0.5, 0.8], 0.9) == pytest.approx(0.8, abs=1e-3)


def store_with_a_success():
    """Trajectory A: 4 steps, solved at step 3 (terminal; rewards already offset: 1 at success, else 0);
    trajectory B: 3 steps cut by a time limit."""
    return make_store(
        rewards=[0, 0, 0, 1, 0, 0, 0], terminals=[0, 0, 0, 1, 0, 0, 0], ends=[0, 0, 0, 1, 0, 0, 1], obs_dim=OBS,
        action_dim=ACT,
    )  # fmt: skip


@pytest.mark.parametrize("boundary", ["mask", "truncate"])
def test_the_chunk_backup_is_bounded_and_stops_at_success_and_at_trajectory_ends(boundary):
    agent = small_agent(critic_horizon=2)
    with torch.no_grad():  # V(s) = sigmoid(0) = 0.5 everywhere
        for layer in agent.value.linears:
            layer.weight.zero_()
            layer.bias.zero_()
    spec = ChunkSpec(horizon=2, discount=G, boundary=boundary, action_length=2)
    batch = ChunkSampler(store_with_a_success(), spec).gather(np.array([0, 2, 3, 5, 6])).to_torch()
    targets = agent.chunk_targets(batch)
    # t=0: no reward in 2 steps, bootstrap G^2 * 0.5; t=2: success at the 2nd step (G * 1), no bootstrap;
    # t=3: the success step itself (1); t=5: 2 steps of B, G^2 * 0.5; t=6: B's last step, cut: G * 0.5
    torch.testing.assert_close(targets, torch.tensor([G**2 * 0.5, G, 1.0, G**2 * 0.5, G * 0.5]))
    expected_weight = [1, 1, 0, 1, 0] if boundary == "mask" else [1, 1, 1, 1, 1]
    assert batch.td_weight.tolist() == expected_weight  # mask: chunks padded past a trajectory's end leave TD


def test_distillation_and_the_value_backup_train_their_networks_only():
    agent = small_agent(actor_chunk=2, critic_horizon=4)
    spec = ChunkSpec(horizon=4, discount=G, action_length=4)
    batch = ChunkSampler(store_with_a_success(), spec, seed=0).sample(16).to_torch()
    loss, _ = agent.distillation_loss(batch)
    loss.backward()
    assert all(p.grad is None for p in agent.critic.parameters())  # the chunk critic is the teacher
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in agent.action_critic.parameters())
    agent.zero_grad(set_to_none=True)
    loss, _ = agent.value_loss(batch)
    loss.backward()
    assert all(p.grad is None for p in agent.action_critic.parameters())  # V reads the target copy
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in agent.value.parameters())


class SumCritic(nn.Module):
    """Two members scoring a chunk by the sum of its numbers (and that + 1)."""

    def forward(self, observations, actions, valid=None):
        return torch.stack([actions.sum(-1), actions.sum(-1) + 1.0])


def test_acting_picks_the_candidate_the_partial_chunk_critic_values_most():
    agent = small_agent(actor_chunk=1, critic_horizon=3, num_samples=4)
    candidates = torch.tensor([[0.1, 0.2], [0.9, -0.5], [0.5, 0.4], [-1.0, 1.0]])  # sums 0.3, 0.4, 0.9, 0.0
    agent.candidates = lambda observations: (
        observations.repeat_interleave(4, 0),
        candidates.repeat(len(observations), 1),
    )
    agent.action_critic = SumCritic()
    chunks = agent.act_tensor(torch.zeros(2, OBS))
    torch.testing.assert_close(chunks, torch.tensor([[[0.5, 0.4]], [[0.5, 0.4]]]))


@pytest.mark.parametrize(("actor_chunk", "critic_horizon"), [(1, 5), (5, 5), (1, 25), (5, 25)])
def test_the_policys_chunk_and_the_critics_horizon_are_independent(actor_chunk, critic_horizon):
    agent = small_agent(actor_chunk=actor_chunk, critic_horizon=critic_horizon)
    rng = np.random.default_rng(0)
    n = 120
    ends = np.zeros(n, bool)
    ends[[59, 119]] = True
    store = make_store(rng.integers(0, 2, n).astype(float), np.zeros(n), ends, obs_dim=OBS, action_dim=ACT)
    spec = ChunkSpec(critic_horizon, G, "mask", action_length=max(actor_chunk, critic_horizon))
    batch = ChunkSampler(store, spec, seed=0).sample(32).to_torch()
    metrics = agent.update(batch)
    assert all(torch.isfinite(v) for v in metrics.values())
    if critic_horizon > actor_chunk:
        assert agent.critic(batch.observations, batch.actions.flatten(1), batch.valid).shape == (2, 32)  # h * A
    else:  # one horizon: no chunk critic to distil from
        assert not hasattr(agent, "critic") and "distill/loss" not in metrics
    assert agent.action_critic(batch.observations, batch.actions[:, :actor_chunk].flatten(1)).shape == (2, 32)
    assert agent.act(np.zeros(OBS, np.float32)).shape == (actor_chunk, ACT)


def test_a_backup_above_one_is_clipped_to_a_probability():
    agent = small_agent(critic_horizon=2)
    store = make_store(rewards=[1, 1, 0], terminals=[0, 0, 0], ends=[0, 0, 1], obs_dim=OBS, action_dim=ACT)
    batch = ChunkSampler(store, ChunkSpec(horizon=2, discount=G)).gather(np.array([0])).to_torch()
    assert batch.reward_h.item() == pytest.approx(1 + G)  # rewards of 1 that did not end the episode
    assert agent.chunk_targets(batch).item() == 1.0


def test_with_one_horizon_the_partial_chunk_critic_learns_the_backup_itself_as_the_authors_qc():
    agent = small_agent(actor_chunk=2, critic_horizon=2, distill_kappa=0.9)
    assert not hasattr(agent, "critic")  # nothing to distil: no chunk critic, no parameters of it in the optimizer
    with torch.no_grad():  # V(s) = 0.5 and every partial-chunk critic member's value = 0.5 (logit 0)
        for network in (agent.value, agent.action_critic):
            for parameter in network.parameters():
                parameter.zero_()
    spec = ChunkSpec(horizon=2, discount=G, boundary="mask", action_length=2)
    batch = ChunkSampler(store_with_a_success(), spec).gather(np.array([0, 2, 3, 5, 6])).to_torch()
    loss, metrics = agent.one_horizon_loss(batch)
    # targets (as the chunk backup above): G^2/2 = 0.405, G = 0.9, 1, 0.405, G/2 = 0.45 against a prediction of
    # 0.5: weight 0.9 above it, 0.1 below; the cross-entropy at logit 0 is ln 2 whatever the target; t=3 and t=6
    # lack their 2nd action (the trajectory ended) and do not count: ln 2 * (0.1 + 0.9 + 0.1) / 3
    assert loss.item() == pytest.approx(np.log(2) * 1.1 / 3, rel=1e-5)
    assert metrics["critic/target_mean"].item() == pytest.approx((0.405 + 0.9 + 1.0 + 0.405 + 0.45) / 5, rel=1e-5)
    before = [p.clone() for p in agent.action_critic.parameters()]
    metrics = agent.update(batch)
    assert set(metrics) >= {"critic/loss", "value/loss", "actor/loss"} and "distill/loss" not in metrics
    assert any(not torch.equal(a, b) for a, b in zip(before, agent.action_critic.parameters(), strict=True))
