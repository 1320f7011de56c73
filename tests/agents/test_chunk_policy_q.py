"""Diffusion-QL and CPQL over chunks: semi-Markov targets, the critic's validity mask, the Q term's
gradient, EMA, the optimizers, action selection."""

import pytest
import torch
from torch import nn

from chunkrl.agents.base import EMA
from chunkrl.agents.diffusion.config import CPQLConfig, DiffusionQLConfig
from chunkrl.agents.diffusion.cpql import CPQLAgent
from chunkrl.agents.diffusion.diffusion_ql import DiffusionQLAgent
from chunkrl.agents.stack import SeedStack
from chunkrl.data.chunks import ChunkSampler, ChunkSpec
from chunkrl.nets.unet1d import UNetConfig
from tests.conftest import make_store

SMALL = dict(
    actor_hidden_dims=(16,),
    critic_hidden_dims=(16,),
    eta=1.0,
    max_grad_norm=10.0,
    act_samples=4,
    target_update="polyak",
    next_actor="ema",
)


def make_agent(kind="diffusion-ql", horizon=3, boundary="truncate", obs_dim=2, action_dim=1, **changes):
    if kind == "cpql":
        return CPQLAgent(obs_dim, action_dim, horizon, CPQLConfig(**{**SMALL, **changes}), boundary=boundary)
    return DiffusionQLAgent(obs_dim, action_dim, horizon, DiffusionQLConfig(**{**SMALL, **changes}), boundary=boundary)


@pytest.fixture
def ends_and_terminal():
    """Trajectory A: steps 0-2, ended by a time limit after step 2 (no terminal).
    Trajectory B: steps 3-8, a terminal at step 4 (play data goes on after it)."""
    rewards = [1.0, 2.0, 3.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    terminals = [0, 0, 0, 0, 1, 0, 0, 0, 0]
    ends = [0, 0, 1, 0, 0, 0, 0, 0, 1]
    return make_store(rewards, terminals, ends)


@pytest.mark.parametrize("boundary", ["truncate", "mask"])
def test_semi_markov_targets_worked_by_hand(ends_and_terminal, boundary):
    """h = 3, γ = 0.5 and a next-state value of 10 everywhere: y = R + (1 - done) γ^τ · 10."""
    agent = make_agent(boundary=boundary)
    agent.target_values = lambda batch: torch.full((len(batch),), 10.0)
    sampler = ChunkSampler(ends_and_terminal, ChunkSpec(horizon=3, discount=0.5, boundary=boundary))
    batch = sampler.gather([0, 1, 3, 5]).to_torch()
    y = agent.td_target(batch).tolist()
    # mid-trajectory, full chunk: R = 1 + 0.5·2 + 0.25·3 = 2.75, bootstrap γ³ = 0.125 from s_3
    assert y[0] == pytest.approx(2.75 + 0.125 * 10)
    # cut by the time limit after 2 steps: τ = 2, R = 2 + 0.5·3 = 3.5, bootstrap γ² from the last next state
    assert y[1] == pytest.approx(3.5 + 0.25 * 10)
    assert batch.tau[1].item() == 2 and batch.valid[1].tolist() == [1, 1, 0]
    # a terminal at the 2nd step: τ = 2, R = 1 + 0.5·1 = 1.5, no bootstrap
    assert y[2] == pytest.approx(1.5)
    # after the terminal, mid-trajectory again: R = 1 + 0.5 + 0.25 = 1.75, γ³
    assert y[3] == pytest.approx(1.75 + 0.125 * 10)
    # truncate: every chunk is a TD sample; mask: the one cut by the trajectory's end leaves the TD loss
    expected = [1, 1, 1, 1] if boundary == "truncate" else [1, 0, 1, 1]
    assert batch.td_weight.tolist() == expected


def test_the_truncate_critic_ignores_whatever_lies_in_padded_positions():
    agent = make_agent(horizon=3, action_dim=2)
    observations = torch.randn(4, 2)
    valid = torch.tensor([[1.0, 1.0, 0.0]] * 4)
    actions = torch.randn(4, 3, 2)
    garbage = actions.clone()
    garbage[:, 2] = torch.randn(4, 2) * 50
    q = agent.critic(observations, actions.flatten(1), valid)
    assert torch.equal(q, agent.critic(observations, garbage.flatten(1), valid))
    assert not torch.equal(q, agent.critic(observations, garbage.flatten(1)))  # all-real: the tail counts


def test_max_q_backup_takes_each_heads_best_sample_then_the_min_over_heads(ends_and_terminal):
    agent = make_agent(max_q_backup=True, max_q_samples=3)
    draws = iter([torch.tensor([0.0, 1.0, 2.0, 5.0, 4.0, 3.0])])  # 2 states x 3 samples, one value per chunk
    agent.sample_chunks = lambda model, cond: next(draws).view(-1, 1, 1).expand(-1, 3, 1)

    class Heads(nn.Module):  # head 1: Q = chunk value; head 2: Q = 10 - chunk value
        def forward(self, observations, actions, valid=None):
            v = actions[:, 0]
            return torch.stack([v, 10 - v])

    agent.target_critic = Heads()
    batch = ChunkSampler(ends_and_terminal, ChunkSpec(3, 0.5, "truncate")).gather([0, 5]).to_torch()
    # state 1: head 1 max 2, head 2 max 10 → 2; state 2: head 1 max 5, head 2 max 7 → 5
    assert agent.target_values(batch).tolist() == [2.0, 5.0]


@pytest.mark.parametrize("kind", ["diffusion-ql", "cpql"])
def test_the_normalised_q_term_trains_only_the_actor_and_the_td_loss_only_the_critic(ends_and_terminal, kind):
    agent = make_agent(kind)
    batch = ChunkSampler(ends_and_terminal, ChunkSpec(3, 0.5, "truncate"), seed=0).sample(8).to_torch()

    def grads(module):
        return [p.grad for p in module.parameters()]

    agent.actor_loss(batch)[1]["actor/q_loss"].backward()
    assert all(g is None for g in grads(agent.critic))
    assert any(g is not None and g.abs().sum() > 0 for g in grads(agent.actor))
    agent.zero_grad(set_to_none=True)
    agent.critic_loss(batch)[0].backward()
    assert all(g is None for g in grads(agent.actor)) and all(g is None for g in grads(agent.ema_actor))
    assert all(g is not None for g in grads(agent.critic))


def test_ema_follows_before_its_start_then_averages_every_k_updates():
    source = nn.Linear(1, 1, bias=False)
    ema = EMA(source, decay=0.5, every=2, start=2)
    values = []
    for w in [1.0, 2.0, 4.0, 8.0, 16.0]:
        source.weight.data.fill_(w)
        ema.step()
        values.append(ema.module.weight.item())
    # updates 0, 1 (< start): copy; update 2 (even): 0.5·2 + 0.5·4 = 3; update 3 (odd): stays 3;
    # update 4: 0.5·3 + 0.5·16 = 9.5
    assert values == [1.0, 2.0, 3.0, 3.0, 9.5]
    assert ema.updates.item() == 5 and "updates" in dict(ema.named_buffers())


def test_the_ema_target_rule_holds_the_target_critic_before_the_start_then_averages_every_k_updates(
    ends_and_terminal,
):
    agent = make_agent("cpql", target_update="ema", ema_start=2, ema_every=2, ema_decay=0.5)
    sampler = ChunkSampler(ends_and_terminal, ChunkSpec(3, 0.5, "truncate"), seed=0)
    initial = [p.clone() for p in agent.target_critic.parameters()]
    expected = initial
    for update in range(5):
        agent.update(sampler.sample(8).to_torch())
        critic = [p.detach().clone() for p in agent.critic.parameters()]
        if update >= 2 and update % 2 == 0:  # CPQL's code: 0.5 of the way every 2nd update from update 2
            expected = [0.5 * e + 0.5 * c for e, c in zip(expected, critic, strict=True)]
        target = list(agent.target_critic.parameters())
        assert all(torch.allclose(t, e) for t, e in zip(target, expected, strict=True)), update
        if update < 2:  # held at its initial weights (not following the critic, unlike the EMA actor)
            assert all(torch.equal(t, i) for t, i in zip(target, initial, strict=True))


@pytest.mark.parametrize("next_actor", ["ema", "online"])
def test_the_next_chunk_of_the_target_comes_from_the_actor_the_option_names(ends_and_terminal, next_actor):
    agent = make_agent("cpql", next_actor=next_actor)
    used = []
    original = agent.sample_chunks

    def recording(model, conditioning):
        used.append(model)
        return original(model, conditioning)

    agent.sample_chunks = recording
    batch = ChunkSampler(ends_and_terminal, ChunkSpec(3, 0.5, "truncate"), seed=0).sample(8).to_torch()
    agent.td_target(batch)
    assert used == [agent.ema_actor if next_actor == "ema" else agent.actor]


def test_an_update_clips_each_optimizers_gradients_and_steps_the_ema(ends_and_terminal):
    agent = make_agent(max_grad_norm=1e-3, ema_start=0, ema_every=1, ema_decay=0.5)
    assert sorted(agent.optimizers()) == ["actor", "critic"]
    before = [p.clone() for p in agent.ema_actor.parameters()]
    batch = ChunkSampler(ends_and_terminal, ChunkSpec(3, 0.5, "truncate"), seed=0).sample(8).to_torch()
    metrics = agent.update(batch)
    assert metrics["critic/grad_norm"] > 1e-3 and metrics["actor/grad_norm"] > 1e-3  # norms before clipping
    for name in ("actor", "critic"):
        clipped = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in agent.groups[name].parameters]))
        assert clipped.item() == pytest.approx(1e-3, rel=1e-3)
    after = list(agent.ema_actor.parameters())
    expected = [0.5 * b + 0.5 * p for b, p in zip(before, agent.actor.parameters(), strict=True)]
    assert all(torch.allclose(a, e) for a, e in zip(after, expected, strict=True))


@pytest.mark.parametrize("kind", ["diffusion-ql", "cpql"])
def test_greedy_acting_picks_the_candidate_the_target_critic_values_most(kind):
    agent = make_agent(kind, act="greedy", act_samples=5)
    candidates = torch.linspace(-1, 1, 10).view(10, 1, 1).expand(-1, 3, 1)  # 2 states x 5 candidates
    agent.sample_chunks = lambda model, cond: candidates

    class Score(nn.Module):  # state 1 prefers the smallest chunk value, state 2 the largest
        def forward(self, observations, actions, valid=None):
            return (actions[:, 0] * observations[:, 0]).expand(2, -1)

    agent.target_critic = Score()
    chunks = agent.act(torch.tensor([[-1.0, 0.0], [1.0, 0.0]]).numpy())
    assert chunks.shape == (2, 3, 1)
    assert chunks[0, 0, 0] == pytest.approx(-1.0) and chunks[1, 0, 0] == pytest.approx(1.0)


def test_policies_on_an_observation_history_condition_on_it():
    agent = make_agent(obs_horizon=3, backbone="unet", unet=UNetConfig(channels=(8, 16), groups=4, step_dim=8))
    assert agent.history_length == 3
    history = torch.randn(3, 2).numpy()
    chunk = agent.act(history, history_valid=torch.tensor([0.0, 1.0, 1.0]).numpy())
    assert chunk.shape == (3, 1) and abs(chunk).max() <= 1.0
    with pytest.raises(ValueError, match="histories of 3 observations"):
        agent.act(torch.randn(2).numpy())


def test_unset_method_values_and_stacked_seeds_are_refused_clearly():
    with pytest.raises(ValueError, match="eta is unset"):
        DiffusionQLAgent(2, 1, 3, DiffusionQLConfig(max_grad_norm=1.0))
    with pytest.raises(ValueError, match="does not support yet"):
        SeedStack([make_agent(), make_agent()], noise_seeds=[0, 1])


def test_seeds_for_an_agent_that_cannot_be_stacked_are_refused_before_anything_is_created(tmp_path):
    from chunkrl.train.run import train
    from tests.conftest import tiny_config

    config = tiny_config(tmp_path / "never-read.npz", agent="cpql", seeds=(0, 1))
    with pytest.raises(ValueError, match="does not support yet.*Nothing was created"):
        train(config, run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()
