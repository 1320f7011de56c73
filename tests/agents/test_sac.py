"""The chunked SAC family: target entropy, actor objectives, TD target, gradient paths, BC term."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from chunkrl.agents.sac.config import SACAgentConfig
from chunkrl.agents.sac.sac import ChunkedSACAgent, bc_weight, objective_weights, target_entropy
from chunkrl.data.chunks import ChunkBatch, ChunkSampler, ChunkSpec
from chunkrl.nets.act import ACTActorConfig
from chunkrl.nets.actors import chunk_log_likelihood
from chunkrl.nets.distributions import tanh_gaussian_log_prob
from tests.conftest import make_store

OBS, ACT, H = 4, 2, 3
SMALL = {"actor_hidden_dims": (16,), "critic_hidden_dims": (16,), "num_critics": 2}


class KnownCritic(nn.Module):
    """Two members: Q = obs[0] + a[0] and obs[0] + a[0] + 2 (mean +1, population std 1)."""

    def forward(self, observations, actions):
        base = observations[:, 0] + actions[:, 0]
        return torch.stack([base, base + 2.0])


def make_agent(**overrides):
    torch.manual_seed(0)
    return ChunkedSACAgent(OBS, ACT, H, SACAgentConfig(**{**SMALL, **overrides}))


def make_batch(batch_size=5, valid=None, tau=None):
    generator = torch.Generator().manual_seed(1)
    valid = torch.ones(batch_size, H) if valid is None else valid
    tau = torch.full((batch_size,), H) if tau is None else tau
    return ChunkBatch(
        observations=torch.randn(batch_size, OBS, generator=generator),
        actions=(torch.rand(batch_size, H, ACT, generator=generator) * 2 - 1) * valid[..., None],
        valid=valid,
        reward_h=torch.randn(batch_size, generator=generator),
        tau=tau,
        bootstrap_discount=0.99**tau,
        next_observations=torch.randn(batch_size, OBS, generator=generator),
        td_weight=torch.ones(batch_size),
    )


@pytest.mark.parametrize(
    ("scaling", "expected"),
    [("none", -0.5 * 2), ("linear", -0.5 * 2 * 4), ("sqrt", -0.5 * 2 * 2.0)],
)
def test_target_entropy_scales_with_the_chunk(scaling, expected):
    config = SACAgentConfig(target_entropy_scaling=scaling)
    assert target_entropy(config, horizon=4, action_dim=2) == pytest.approx(expected)


def test_an_explicit_target_entropy_is_used_as_is():
    assert target_entropy(SACAgentConfig(target_entropy=-3.0, target_entropy_scaling="sqrt"), 4, 2) == -3.0


def test_temporal_weights_are_decay_powers_normalised():
    weights = objective_weights(SACAgentConfig(temporal_decay=0.5), horizon=3)
    assert weights.tolist() == pytest.approx([4 / 7, 2 / 7, 1 / 7])


@pytest.mark.parametrize(
    ("objective", "first_dims_value"),
    [
        ("standard", 0.1),
        ("conservative", -0.3),
        ("temporal_weighted", (4 * 0.1 + 2 * -0.3 + 1 * 0.6) / 7),
    ],
)
def test_single_action_objectives_score_each_action_at_the_chunk_state(objective, first_dims_value):
    agent = make_agent(critic_input="first_action", actor_objective=objective, temporal_decay=0.5, rho=0.5)
    agent.critic = KnownCritic()
    observations = torch.tensor([[1.0, 0, 0, 0], [-2.0, 0, 0, 0]])
    chunk = torch.tensor([[0.1, 9.0], [-0.3, 9.0], [0.6, 9.0]]).flatten()  # a_t[0] = 0.1, -0.3, 0.6
    values = agent.actor_values(observations, torch.stack([chunk, chunk]))
    # pessimistic value: mean - rho * std = (base + 1) - 0.5
    expected = observations[:, 0] + first_dims_value + 0.5
    assert values.tolist() == pytest.approx(expected.tolist())


def test_the_chunk_critic_scores_the_whole_chunk():
    agent = make_agent(rho=0.0)
    seen = []
    agent.critic.register_forward_hook(lambda module, inputs, output: seen.append(inputs[1].shape))
    agent.actor_values(torch.zeros(3, OBS), torch.zeros(3, H * ACT))
    assert seen == [torch.Size([3, H * ACT])]


def test_a_chunk_critic_rejects_per_action_objectives():
    with pytest.raises(ValueError, match="critic_input first_action"):
        make_agent(actor_objective="conservative")


@pytest.mark.parametrize("critic_input", ["chunk", "first_action"])
def test_td_target_uses_the_pessimistic_target_critic(critic_input):
    agent = make_agent(critic_input=critic_input, rho=0.5)
    agent.target_critic = KnownCritic()  # the online critic keeps its random weights: it must not be used
    batch = make_batch()
    torch.manual_seed(3)
    next_chunks = agent.actor.sample(batch.next_observations)[0]
    value = batch.next_observations[:, 0] + next_chunks[:, 0] + 1.0 - 0.5
    torch.manual_seed(3)
    target = agent.td_target(batch)
    assert torch.allclose(target, batch.reward_h + batch.bootstrap_discount * value, atol=1e-6)


def test_the_default_target_is_the_plain_mean_of_the_target_ensemble():
    agent = make_agent()  # rho left at its default: the paper's mean aggregation
    agent.target_critic = KnownCritic()
    batch = make_batch()
    torch.manual_seed(3)
    next_chunks = agent.actor.sample(batch.next_observations)[0]
    value = batch.next_observations[:, 0] + next_chunks[:, 0] + 1.0  # mean of the two members, no std term
    torch.manual_seed(3)
    assert torch.allclose(agent.td_target(batch), batch.reward_h + batch.bootstrap_discount * value, atol=1e-6)


def test_the_actor_maximises_the_plain_mean_by_default_and_the_lower_bound_with_rho():
    observations, chunks = torch.randn(4, OBS), torch.rand(4, H * ACT) * 2 - 1
    for rho, offset in ((0.0, 1.0), (0.5, 0.5)):
        agent = make_agent(rho=rho)
        agent.critic = KnownCritic()
        expected = observations[:, 0] + chunks[:, 0] + offset
        torch.testing.assert_close(agent.actor_values(observations, chunks), expected)


class ThreeMembers(nn.Module):
    """Q = obs[0] + a[0] + (0, 3, -1): mean + 2/3, min - 1, population std sqrt(26/9)."""

    def forward(self, observations, actions):
        base = observations[:, 0] + actions[:, 0]
        return torch.stack([base, base + 3.0, base - 1.0])


def test_min_aggregation_takes_the_true_minimum_over_every_critic_in_target_and_objective():
    agent = make_agent(num_critics=3, q_aggregation="min")
    agent.target_critic, agent.critic = ThreeMembers(), ThreeMembers()
    batch = make_batch()
    torch.manual_seed(3)
    next_chunks = agent.actor.sample(batch.next_observations)[0]
    value = batch.next_observations[:, 0] + next_chunks[:, 0] - 1.0  # the lowest member, not mean - std
    torch.manual_seed(3)
    assert torch.allclose(agent.td_target(batch), batch.reward_h + batch.bootstrap_discount * value, atol=1e-6)
    observations, chunks = torch.randn(4, OBS), torch.rand(4, H * ACT) * 2 - 1
    expected = observations[:, 0] + chunks[:, 0] - 1.0
    torch.testing.assert_close(agent.actor_values(observations, chunks), expected)
    # mean - rho * std would be 2/3 - rho * 1.70: no rho gives the minimum for three members in general
    assert SACAgentConfig(q_aggregation="min", rho=1.0).problems("sac") == [
        "sac.rho applies to q_aggregation mean; with min leave it at 0 (got 1.0)"
    ]


@pytest.mark.parametrize("rows", ["all", "dataset"])
def test_bc_imitates_the_online_half_of_a_batch_only_when_asked(rows):
    agent = make_agent(bc_rows=rows)
    batch = make_batch(batch_size=4)
    batch.from_dataset = torch.tensor([1.0, 1.0, 0.0, 0.0])
    mean, log_std = torch.randn(4, H * ACT), torch.randn(4, H * ACT) * 0.3
    per_row = -chunk_log_likelihood(mean, log_std, batch.actions, batch.valid)
    expected = per_row[:2].mean() if rows == "dataset" else per_row.mean()
    torch.testing.assert_close(agent.bc_term(mean, log_std, batch), expected)


def test_a_first_action_critic_with_the_standard_objective_replans_every_step_by_default():
    from chunkrl.config import TrainConfig, resolve_method

    first = SACAgentConfig(critic_input="first_action")
    assert resolve_method(TrainConfig(agent="qc-rlpd", sac=first)).execute_horizon == 1
    conservative = SACAgentConfig(critic_input="first_action", actor_objective="conservative")
    assert resolve_method(TrainConfig(agent="qc-rlpd", sac=conservative)).execute_horizon is None  # whole chunk
    assert resolve_method(TrainConfig(agent="qc-rlpd", sac=first, execute_horizon=3)).execute_horizon == 3
    assert resolve_method(TrainConfig(agent="qc-rlpd")).execute_horizon is None


def test_the_entropy_backup_subtracts_the_temperature_times_log_prob():
    agent = make_agent(rho=0.0, backup_entropy=True, init_temperature=0.5)
    agent.target_critic = KnownCritic()
    batch = make_batch()
    torch.manual_seed(3)
    next_chunks, next_log_prob = agent.actor.sample(batch.next_observations)[:2]
    value = batch.next_observations[:, 0] + next_chunks[:, 0] + 1.0 - 0.5 * next_log_prob
    torch.manual_seed(3)
    assert torch.allclose(agent.td_target(batch), batch.reward_h + batch.bootstrap_discount * value, atol=1e-5)


def test_actor_loss_reaches_actor_and_temperature_but_never_the_critic():
    agent = make_agent()
    loss, metrics = agent.actor_loss(make_batch())
    agent.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    assert all(p.grad is None or torch.count_nonzero(p.grad) == 0 for p in agent.critic.parameters())
    assert all(p.grad is not None for p in agent.actor.parameters())
    # d/dlogT [T (H - H*)] = T (H - H*), and T = 1 at the start
    expected = float(metrics["actor/entropy"]) - agent.target_entropy
    assert float(agent.log_temperature.grad) == pytest.approx(expected, rel=1e-5)
    assert float(metrics["actor/target_entropy"]) == pytest.approx(-0.5 * ACT * H)


def test_bc_loss_is_alpha_times_the_negative_chunk_log_likelihood():
    agent = make_agent(bc_alpha=0.25)
    _, metrics = agent.actor_loss(make_batch())
    nll = float(metrics["actor/bc_term"].detach())
    assert float(metrics["actor/bc_loss"].detach()) == pytest.approx(0.25 * nll)
    assert bc_weight(SACAgentConfig(bc_alpha=None), step=0) == 0.0  # None (no method default applied): no BC


def test_chunk_log_likelihood_leaves_padded_positions_out():
    mean, log_std = torch.randn(1, H * ACT), torch.randn(1, H * ACT) * 0.3
    chunks = torch.rand(1, H, ACT) * 1.6 - 0.8
    valid = torch.tensor([[1.0, 1.0, 0.0]])
    got = chunk_log_likelihood(mean, log_std, chunks, valid)
    two = 2 * ACT
    expected = tanh_gaussian_log_prob(mean[:, :two], log_std[:, :two], torch.atanh(chunks.flatten(1)[:, :two]))
    assert torch.allclose(got, expected, atol=1e-4)


def test_update_moves_the_target_critic_by_tau_and_reports_diagnostics():
    agent = make_agent(target_tau=0.1)
    before = [p.clone() for p in agent.target_critic.parameters()]
    batch = make_batch(tau=torch.tensor([3, 1, 2, 3, 1]))
    metrics = agent.update(batch)
    after_critic = list(agent.critic.parameters())
    for old, new, source in zip(before, agent.target_critic.parameters(), after_critic, strict=True):
        assert torch.allclose(new, 0.9 * old + 0.1 * source, atol=1e-6)
    for name in (
        "actor/log_prob",
        "actor/temperature",
        "actor/target_entropy",
        "chunk/effective_length",
        "chunk/h_step_return",
    ):
        assert torch.isfinite(metrics[name])
    assert float(metrics["chunk/effective_length"]) == pytest.approx(2.0)  # mean of the batch's τ
    assert float(metrics["chunk/h_step_return"]) == pytest.approx(float(batch.reward_h.mean()))


def test_deterministic_acting_is_tanh_of_the_mean_laid_out_step_by_step():
    agent = make_agent()
    observations = np.random.default_rng(0).normal(size=(6, OBS)).astype(np.float32)
    chunks = agent.act(observations, deterministic=True)
    with torch.no_grad():
        mean, _ = agent.actor(torch.as_tensor(observations))
    np.testing.assert_allclose(chunks, torch.tanh(mean).view(6, H, ACT).numpy(), rtol=1e-5, atol=1e-6)
    sampled = agent.act(observations)
    assert sampled.shape == (6, H, ACT) and not np.allclose(sampled, chunks)


@pytest.mark.parametrize(
    ("schedule", "step", "expected"),
    [
        ("constant", 500, 1.0),
        ("linear", 0, 1.0),
        ("linear", 50, 0.55),
        ("linear", 100, 0.1),
        ("linear", 1000, 0.1),
        ("exponential", 50, math.sqrt(1.0 * 0.1)),
        ("exponential", 100, 0.1),
    ],
)
def test_bc_weight_schedules(schedule, step, expected):
    config = SACAgentConfig(bc_alpha=1.0, bc_alpha_end=0.1, bc_decay_steps=100, bc_weight_schedule=schedule)
    assert bc_weight(config, step) == pytest.approx(expected)


def test_an_exponential_decay_to_zero_is_refused_with_the_alternative():
    with pytest.raises(ValueError, match="use linear"):
        make_agent(bc_alpha=1.0, bc_alpha_end=0.0, bc_weight_schedule="exponential")


def test_bc_pretraining_trains_the_actor_by_bc_alone_then_hands_over_to_sac():
    agent = make_agent(bc_alpha=0.5, bc_pretrain_steps=2, bc_loss="mse")
    for _ in range(2):
        metrics = agent.update(make_batch())
        assert float(metrics["actor/loss"]) == pytest.approx(float(metrics["actor/bc_term"]))
        assert float(metrics["actor/bc_weight"]) == 1.0
    metrics = agent.update(make_batch())
    expected = float(metrics["actor/sac_loss"]) + 0.5 * float(metrics["actor/bc_term"])
    assert float(metrics["actor/loss"]) == pytest.approx(expected, rel=1e-5)
    assert int(agent.num_updates) == 3  # saved with the weights, so a resumed run continues the schedule
    assert "num_updates" in agent.state_dict()


def test_the_mse_bc_term_compares_the_deterministic_chunk_on_valid_actions():
    agent = make_agent(bc_loss="mse")
    valid = torch.tensor([[1.0, 1.0, 0.0]] * 5)
    batch = make_batch(valid=valid)
    mean, log_std = agent.actor(batch.observations)
    weights = valid.repeat_interleave(ACT, dim=1)
    expected = ((torch.tanh(mean) - batch.actions.flatten(1)).square() * weights).sum() / weights.sum()
    assert torch.allclose(agent.bc_term(mean, log_std, batch), expected)


def test_an_observation_history_needs_the_act_actor():
    with pytest.raises(ValueError, match="--sac.actor act"):
        make_agent(act=ACTActorConfig(obs_history=3))


def test_an_act_agent_with_history_trains_on_sampled_histories(two_trajectories):
    config = {"actor": "act", "act": ACTActorConfig(width=16, heads=2, feedforward=32, obs_history=2), "bc_alpha": 0.1}
    agent = ChunkedSACAgent(2, 1, 2, SACAgentConfig(**{**SMALL, **config}))
    sampler = ChunkSampler(two_trajectories, ChunkSpec(horizon=2), history=agent.history_length)
    for _ in range(3):
        metrics = agent.update(sampler.sample(8).to_torch())
    assert all(torch.isfinite(v) for v in metrics.values())
    with pytest.raises(ValueError, match="no histories"):
        agent.update(ChunkSampler(two_trajectories, ChunkSpec(horizon=2)).sample(8).to_torch())


# ---------------------------------------------------------------- an actor chunk longer than the critic's horizon
def long_chunk_agent(**overrides):
    torch.manual_seed(0)
    return ChunkedSACAgent(OBS, ACT, 5, SACAgentConfig(**{**SMALL, **overrides}), critic_horizon=2)  # h_a 5, h 2


@pytest.mark.parametrize(
    ("objective", "first_dims_value"),
    [("standard", 0.1), ("conservative", -0.3), ("temporal_weighted", (2 * 0.1 + 1 * -0.3) / 3)],
)
def test_per_action_objectives_run_over_the_critics_actions_only(objective, first_dims_value):
    agent = long_chunk_agent(critic_input="first_action", actor_objective=objective, temporal_decay=0.5, rho=0.5)
    agent.critic = KnownCritic()
    observations = torch.tensor([[1.0, 0, 0, 0]])
    # a_t[0] = 0.1, -0.3 for the critic's two actions; the three after them (-5) must not count
    chunk = torch.tensor([[0.1, 9.0], [-0.3, 9.0], [-5.0, 9.0], [-5.0, 9.0], [-5.0, 9.0]]).flatten()[None]
    assert agent.actor_values(observations, chunk).item() == pytest.approx(1.0 + first_dims_value + 0.5)


def test_the_chunk_critic_scores_the_first_critic_horizon_actions_and_bc_and_entropy_cover_the_whole_chunk():
    agent = long_chunk_agent(bc_alpha=1.0)
    seen = []
    agent.critic.register_forward_hook(lambda module, inputs, output: seen.append(inputs[1].shape))
    agent.actor_values(torch.zeros(3, OBS), torch.zeros(3, 5 * ACT))
    assert seen == [torch.Size([3, 2 * ACT])]
    assert agent.target_entropy == pytest.approx(-0.5 * ACT * 5)  # linear scaling over the actor's 5 actions
    spec = ChunkSpec(horizon=2, discount=0.99, action_length=5)
    rng = np.random.default_rng(0)
    ends = np.zeros(40, bool)
    ends[[19, 39]] = True
    store = make_store(rng.normal(size=40), np.zeros(40), ends, obs_dim=OBS, action_dim=ACT)
    batch = ChunkSampler(store, spec).sample(16).to_torch()
    mean = torch.zeros(16, 5 * ACT, requires_grad=True)
    agent.bc_term(mean, torch.zeros(16, 5 * ACT), batch).backward()
    assert (mean.grad.view(16, 5, ACT)[:, 2:].abs().sum() > 0).item()  # actions past the critic's are imitated
    metrics = agent.update(batch)
    assert all(torch.isfinite(v) for v in metrics.values())
    assert agent.act(np.zeros(OBS, np.float32)).shape == (5, ACT)


@pytest.mark.parametrize(
    ("networks", "floor", "activation", "norm_first"),
    [("fql", -5.0, torch.nn.functional.gelu, False), ("rlpd", -20.0, torch.nn.functional.relu, True)],
)
def test_the_networks_setting_picks_the_hidden_layers_and_the_log_std_floor(networks, floor, activation, norm_first):
    agent = make_agent(networks=networks, actor_layer_norm=True)
    head = agent.actor.net.linears[-1]
    with torch.no_grad():  # a log-std head that asks for a far smaller spread than either floor
        head.bias[ACT * H :] = -50.0
        head.weight[ACT * H :] = 0.0
    _, log_std = agent.actor(torch.randn(3, OBS))
    torch.testing.assert_close(log_std, torch.full_like(log_std, floor))
    # the layers' order itself is checked in tests/nets/test_ensemble.py; here, that both networks get it
    for net in (agent.actor.net, agent.critic.members):
        assert (net.activation, net.norm_first) == (activation, norm_first)


def test_an_unknown_networks_setting_is_refused_with_the_choices():
    with pytest.raises(ValueError, match=r"networks must be one of \['fql', 'rlpd'\], got 'mlp'"):
        make_agent(networks="mlp")


def test_a_log_std_floor_at_or_above_the_ceiling_is_refused():
    from chunkrl.nets.actors import LOG_STD_MAX, MLPChunkActor

    with pytest.raises(ValueError, match=rf"log_std_min must be below the largest log-std {LOG_STD_MAX} \(got 2"):
        MLPChunkActor(3, 4, (8,), log_std_min=LOG_STD_MAX)
    assert MLPChunkActor(3, 4, (8,), log_std_min=LOG_STD_MAX - 0.5).log_std_min == LOG_STD_MAX - 0.5
