"""QC-FQL / FQL-n / FQL: shapes, gradient paths, the TD target, learning on a fixed batch, save/load."""

import numpy as np
import pytest
import torch

from chunkrl.agents.flow.config import FlowAgentConfig
from chunkrl.agents.flow.fql import FQLAgent
from chunkrl.data.chunks import ChunkSampler, ChunkSpec
from chunkrl.nets.ensemble import aggregate
from tests.conftest import make_store

OBS, ACT, H = 6, 2, 3


def small_config(**overrides):
    base = dict(actor_hidden_dims=(32, 32), critic_hidden_dims=(32, 32), flow_steps=4, alpha=100.0)
    return FlowAgentConfig(**{**base, **overrides})


def batch(size=16, seed=0, boundary="mask"):
    rng = np.random.default_rng(seed)
    n = 80
    ends = rng.random(n) < 0.1
    ends[-1] = True
    store = make_store(rng.normal(size=n), rng.random(n) < 0.1, ends, obs_dim=OBS, action_dim=ACT)
    store.actions[: store.size] = np.tanh(rng.normal(size=(n, ACT)))
    return ChunkSampler(store, ChunkSpec(H, 0.9, boundary), seed=seed).sample(size).to_torch()


@pytest.mark.parametrize("chunking", [True, False])
def test_act_returns_a_chunk_or_a_single_action_within_bounds(chunking):
    agent = FQLAgent(OBS, ACT, H, small_config(action_chunking=chunking))
    chunk = agent.act(np.zeros(OBS, np.float32))
    assert chunk.shape == ((H, ACT) if chunking else (1, ACT))
    many = agent.act(np.zeros((4, OBS), np.float32))
    assert many.shape[0] == 4
    assert np.abs(many).max() <= 1.0


def test_flow_sampler_integrates_a_constant_field_exactly():
    agent = FQLAgent(OBS, ACT, H, small_config())
    # make the velocity field output the constant 0.5 regardless of input
    last = agent.flow.net.linears[-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.constant_(last.bias, 0.5)
    noise = torch.full((3, H * ACT), -0.2)
    out = agent.flow_actions(torch.zeros(3, OBS), noise)
    torch.testing.assert_close(out, torch.full_like(noise, 0.3))


def test_critic_target_uses_bootstrap_discount_and_target_critic():
    agent = FQLAgent(OBS, ACT, H, small_config())
    with torch.no_grad():  # a target critic unlike the critic: the loss tells which one the target used
        for p in agent.target_critic.parameters():
            p.add_(torch.randn_like(p))
    b = batch()
    assert len(set(b.bootstrap_discount.tolist())) > 1, "the batch should mix terminal and non-terminal chunks"
    torch.manual_seed(1)
    loss, _ = agent.critic_loss(b)
    torch.manual_seed(1)
    with torch.no_grad():
        next_actions = agent.one_step_actions(b.next_observations)
        next_q = aggregate(agent.target_critic(b.next_observations, next_actions), "mean")
        target = b.reward_h + b.bootstrap_discount * next_q
        q = agent.critic(b.observations, b.actions.flatten(1))
        expected = (((q - target) ** 2) * b.td_weight).sum() / (b.td_weight.sum() * 2)
    torch.testing.assert_close(loss, expected)


def test_chunks_cut_by_trajectory_end_do_not_change_the_critic_loss():
    agent = FQLAgent(OBS, ACT, H, small_config())
    b = batch(size=64)
    assert (b.td_weight == 0).any(), "the fixture should contain masked chunks"
    masked = b.td_weight == 0
    b2 = type(b)(**{k: None if v is None else v.clone() for k, v in vars(b).items()})
    b2.reward_h[masked] += 1000.0  # garbage on masked samples must not matter
    torch.manual_seed(0)
    first, _ = agent.critic_loss(b)
    torch.manual_seed(0)
    second, _ = agent.critic_loss(b2)
    torch.testing.assert_close(first, second)


@pytest.mark.parametrize(
    ("boundary", "chunking", "reads_validity"),
    [("mask", True, False), ("truncate", True, True), ("truncate", False, False)],
)
def test_only_a_chunk_critic_trained_in_truncate_mode_reads_the_validity_mask(boundary, chunking, reads_validity):
    agent = FQLAgent(OBS, ACT, H, small_config(action_chunking=chunking), boundary=boundary)
    assert agent.critic.validity_steps == (H if reads_validity else 0)


def test_truncate_mode_critic_loss_is_blind_to_what_fills_padded_positions():
    agent = FQLAgent(OBS, ACT, H, small_config(), boundary="truncate")
    b = batch(size=64, boundary="truncate")
    padded = b.valid == 0
    assert padded.any() and (b.td_weight == 1).all(), "truncate mode keeps padded chunks as TD samples"
    b2 = type(b)(**{k: None if v is None else v.clone() for k, v in vars(b).items()})
    b2.actions[padded] = 0.9  # real-looking values where the chunk is padded
    torch.manual_seed(0)
    first, _ = agent.critic_loss(b)
    torch.manual_seed(0)
    second, _ = agent.critic_loss(b2)
    torch.testing.assert_close(first, second)


def test_gradient_paths_target_and_teacher_get_nothing_and_q_term_spares_the_critic():
    agent = FQLAgent(OBS, ACT, H, small_config())
    b = batch()
    actor_loss, _ = agent.actor_loss(b)
    agent.zero_grad(set_to_none=True)
    actor_loss.backward()
    # the actor loss trains the flow (BC) and the one-step actor, never the critic
    assert all(p.grad is None for p in agent.critic.parameters())
    assert all(p.grad is None for p in agent.target_critic.parameters())
    assert all(p.grad is not None for p in agent.actor.parameters())

    # without the BC term (no valid actions) the flow is only the distillation teacher: no gradient
    b_no_bc = type(b)(**{k: v for k, v in vars(b).items()})
    b_no_bc.valid = torch.zeros_like(b.valid)  # removes the BC term
    agent.zero_grad(set_to_none=True)
    loss_without_bc, _ = agent.actor_loss(b_no_bc)
    loss_without_bc.backward()
    assert all(p.grad is None or torch.count_nonzero(p.grad) == 0 for p in agent.flow.parameters())
    assert any(p.grad is not None and torch.count_nonzero(p.grad) > 0 for p in agent.actor.parameters())

    agent.zero_grad(set_to_none=True)
    critic_loss, _ = agent.critic_loss(b)
    critic_loss.backward()
    assert all(p.grad is None for p in agent.target_critic.parameters())
    assert all(p.grad is None for p in agent.actor.parameters())


def test_target_critic_tracks_the_critic_by_polyak_averaging():
    agent = FQLAgent(OBS, ACT, H, small_config(target_tau=0.25))
    before = [p.clone() for p in agent.target_critic.parameters()]
    agent.update(batch())
    for old, target, online in zip(before, agent.target_critic.parameters(), agent.critic.parameters(), strict=True):
        torch.testing.assert_close(target, 0.75 * old + 0.25 * online)


@pytest.mark.parametrize("chunking", [True, False])
def test_losses_decrease_on_a_fixed_batch(chunking):
    torch.manual_seed(0)
    agent = FQLAgent(OBS, ACT, H, small_config(action_chunking=chunking, alpha=10.0))
    b = batch(size=64)
    first = agent.update(b)
    for _ in range(150):
        last = agent.update(b)
    assert last["critic/loss"] < first["critic/loss"]
    assert last["actor/bc_flow_loss"] < first["actor/bc_flow_loss"]


def test_save_load_round_trip_gives_identical_actions(tmp_path):
    from chunkrl.train.checkpoint import load_weights

    agent = FQLAgent(OBS, ACT, H, small_config())
    agent.update(batch())
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in agent.state_dict().items()}, tmp_path / "model.safetensors")
    clone = FQLAgent(OBS, ACT, H, small_config())
    load_weights(clone, tmp_path)
    obs = np.random.default_rng(0).normal(size=(5, OBS)).astype(np.float32)
    torch.manual_seed(3)
    a = agent.act(obs)
    torch.manual_seed(3)
    b = clone.act(obs)
    np.testing.assert_array_equal(a, b)


def test_loading_weights_of_another_configuration_explains_the_mismatch(tmp_path):
    from safetensors.torch import save_file

    from chunkrl.train.checkpoint import CheckpointError, load_weights

    small = FQLAgent(OBS, ACT, H, small_config())
    save_file({k: v.contiguous() for k, v in small.state_dict().items()}, tmp_path / "model.safetensors")
    wider = FQLAgent(OBS, ACT, H, small_config(actor_hidden_dims=(64, 64)))
    with pytest.raises(CheckpointError, match="another configuration"):
        load_weights(wider, tmp_path)


@pytest.mark.parametrize("agent_class", ["fql", "best_of_n"])
def test_an_actor_chunk_longer_than_the_critic_horizon_builds_updates_and_acts(agent_class):
    from chunkrl.agents.flow.best_of_n import BestOfNAgent

    cls, extra = (FQLAgent, {}) if agent_class == "fql" else (BestOfNAgent, {"num_samples": 4})
    agent = cls(OBS, ACT, 4, small_config(**extra), critic_horizon=2)  # actor chunk 4, critic horizon 2
    rng = np.random.default_rng(0)
    n = 80
    ends = rng.random(n) < 0.1
    ends[-1] = True
    store = make_store(rng.normal(size=n), np.zeros(n), ends, obs_dim=OBS, action_dim=ACT)
    sampler = ChunkSampler(store, ChunkSpec(2, 0.9, "mask", action_length=4), seed=0)
    batch = sampler.sample(16).to_torch()
    before = [p.detach().clone() for p in agent.critic.parameters()]
    metrics = agent.update(batch)
    assert torch.isfinite(metrics["loss/total"])
    assert any(not torch.equal(a, b) for a, b in zip(before, agent.critic.parameters(), strict=True))
    # the critic reads 2 actions, the policy emits 4
    q = agent.critic(batch.observations, batch.actions[:, :2].flatten(1))
    assert q.shape == (2, 16)
    with pytest.raises(RuntimeError):
        agent.critic(batch.observations, batch.actions.flatten(1))
    assert agent.act(np.zeros(OBS, np.float32)).shape == (4, ACT)
