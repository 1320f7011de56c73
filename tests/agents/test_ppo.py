"""Chunk PPO: clipping, an update on a rollout, imitation vs RL checkpoints and shape validation."""

import numpy as np
import pytest
import torch
from rich.console import Console
from safetensors.torch import save_file

from chunkrl.agents.ppo.config import ChunkPPOConfig
from chunkrl.agents.ppo.ppo import ChunkBCAgent, ChunkPPOAgent, clipped_surrogate
from chunkrl.data.rollouts import RolloutBatch
from chunkrl.nets.tokenizer import ChunkTokenizer, TokenizerSettings
from chunkrl.train.checkpoint import CheckpointError, load_initial_weights


def test_clipped_surrogate_stops_the_gradient_beyond_the_clip():
    advantages = torch.tensor([1.0, 1.0, -1.0, -1.0])
    log_ratio = torch.log(torch.tensor([1.5, 1.1, 0.5, 0.9])).requires_grad_()
    loss = clipped_surrogate(log_ratio, advantages, clip=0.2)
    loss.backward()
    # ratio 1.5 with A > 0 and ratio 0.5 with A < 0 are past the clip: no gradient; the others move
    assert log_ratio.grad[0] == 0 and log_ratio.grad[2] == 0
    assert log_ratio.grad[1] != 0 and log_ratio.grad[3] != 0
    expected = -(1.2 * 1 + 1.1 * 1 + 0.8 * -1 + 0.9 * -1) / 4  # min(rA, clip(r)A) per row
    assert abs(loss.item() - expected) < 1e-6


def test_a_huge_log_ratio_gives_a_finite_loss_and_gradient():
    from chunkrl.agents.ppo.ppo import LOG_RATIO_MAX

    log_ratio = torch.tensor([800.0, 0.1, 800.0]).requires_grad_()  # exp(800) overflows float32 (and float64)
    advantages = torch.tensor([1.0, 1.0, -1.0])
    loss = clipped_surrogate(log_ratio, advantages, clip=0.2)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(log_ratio.grad).all()
    # row 0 is clipped (1.2), row 1 moves with r = e^0.1, row 2 (A < 0) takes the bounded ratio e^LOG_RATIO_MAX
    expected = -(1.2 + np.exp(0.1) - np.exp(LOG_RATIO_MAX)) / 3
    assert abs(loss.item() - expected) / abs(expected) < 1e-5
    assert log_ratio.grad[0] == 0 and log_ratio.grad[2] == 0 and log_ratio.grad[1] != 0


def test_a_per_element_surrogate_gives_each_element_its_decisions_advantage_and_skips_padding():
    log_ratio = torch.log(torch.tensor([[1.5, 0.5], [1.1, 1.0]]))
    advantages = torch.tensor([2.0, -1.0])
    mask = torch.tensor([[True, True], [True, False]])
    # row 0 (A = 2): min(3.0, 1.2 * 2) = 2.4 and min(1.0, 0.8 * 2) = 1.0; row 1 (A = -1): min(-1.1, -1.1) = -1.1
    assert clipped_surrogate(log_ratio, advantages, 0.2, mask).item() == pytest.approx(-(2.4 + 1.0 - 1.1) / 3)


@pytest.mark.parametrize(("actor", "ratio"), [("tokens", "token"), ("gaussian", "dimension")])
def test_a_prepared_rollouts_element_log_probs_sum_to_the_collected_chunk_log_prob(actor, ratio):
    config = ChunkPPOConfig(width=16, layers=1, heads=2, hidden_dims=(16,), actor=actor, ratio=ratio)
    _, ppo = agents(config)
    observations = torch.randn(32, 3)
    encoded, log_pi, values, _ = ppo.collect(observations)
    batch = ppo.prepare_rollout(RolloutBatch(observations, encoded, log_pi, values, values, values))
    torch.testing.assert_close(batch.element_log_probs.sum(1), log_pi, atol=1e-3, rtol=1e-4)
    metrics = ppo.update(batch)  # before any step every ratio is 1: nothing clipped, no KL
    assert float(metrics["ppo/clip_fraction"]) == 0 and abs(float(metrics["ppo/approx_kl"])) < 1e-5


def test_a_ratio_for_the_other_actor_is_refused():
    assert any(
        "ratio token is for the tokens actor" in p
        for p in ChunkPPOConfig(actor="gaussian", ratio="token").problems("ppo")
    )
    assert any(
        "ratio dimension is for the gaussian actor" in p for p in ChunkPPOConfig(ratio="dimension").problems("ppo")
    )


def tokenizer_for(horizon=2, action_dim=2):
    rng = np.random.default_rng(0)
    return ChunkTokenizer.fit(rng.uniform(-1, 1, (200, horizon, action_dim)), TokenizerSettings(bpe=False, scale=2.0))


def agents(config=None, **changes):
    config = config or ChunkPPOConfig(width=16, layers=1, heads=2, hidden_dims=(16,), **changes)
    tokenizer = tokenizer_for()
    torch.manual_seed(0)
    return ChunkBCAgent(3, 2, 2, config, tokenizer=tokenizer), ChunkPPOAgent(3, 2, 2, config, tokenizer=tokenizer)


def test_ppo_update_moves_the_policy_towards_positive_advantages():
    _, ppo = agents(learning_rate=1e-2, target_kl=None)
    observations = torch.randn(16, 3)
    encoded, log_pi, values, _ = ppo.collect(observations)
    advantages = torch.linspace(-1, 1, 16)
    batch = RolloutBatch(observations, encoded, log_pi, values, advantages, values + advantages)
    for _ in range(5):
        metrics = ppo.update(batch)
    new_log_pi, _ = ppo.actor_backbone.evaluate(observations, encoded)
    change = (new_log_pi - log_pi).detach()
    assert change[advantages > 0].mean() > change[advantages < 0].mean()
    assert {"ppo/approx_kl", "ppo/clip_fraction", "ppo/ratio_mean", "ppo/value_loss"} <= set(metrics)
    assert float(metrics["ppo/approx_kl"]) > 0


@pytest.mark.parametrize(("actor", "ratio"), [("tokens", "chunk"), ("tokens", "token"), ("gaussian", "dimension")])
def test_on_a_two_armed_chunk_bandit_ppo_raises_the_probability_of_the_better_chunk(actor, ratio):
    """One decision per episode: a chunk whose first action is positive pays 1, any other 0. The advantage is
    chunk GAE against V(s) (the only value input kept), and V learns alongside; P(better chunk) must rise, with
    one ratio per chunk, per token or per dimension."""
    from chunkrl.data.rollouts import chunk_gae

    config = ChunkPPOConfig(
        width=16, layers=1, heads=2, hidden_dims=(16,), learning_rate=3e-3, target_kl=None, actor=actor, ratio=ratio
    )
    torch.manual_seed(0)
    ppo = ChunkPPOAgent(3, 2, 2, config, tokenizer=tokenizer_for())
    observations = torch.ones(256, 3)

    def better(chunks):
        return torch.as_tensor(chunks[:, 0, 0] > 0, dtype=torch.float32)

    start = better(ppo.collect(observations)[3]).mean()
    for _ in range(6):  # rollouts
        encoded, log_pi, values, chunks = ppo.collect(observations)
        one = torch.ones(1, 256)
        rewards = better(chunks)[None]
        advantages, returns = chunk_gae(rewards, values[None], 0 * one, one.long(), one.bool(), one.bool(), 0.99, 0.95)
        batch = ppo.prepare_rollout(RolloutBatch(observations, encoded, log_pi, values, advantages[0], returns[0]))
        for _ in range(4):  # epochs of one full batch
            ppo.update(batch)
    end = better(ppo.collect(observations)[3]).mean()
    assert end > start + 0.15, (start, end)


def test_during_the_value_warm_up_only_the_value_head_learns_at_its_own_rate():
    _, ppo = agents(learning_rate=1e-4, value_learning_rate=1e-2, value_warmup_steps=1000, target_kl=None)
    assert [g["lr"] for g in ppo.optimizer.param_groups] == [1e-4, 1e-2]  # actor, value head
    observations = torch.randn(16, 3)
    encoded, log_pi, values, _ = ppo.collect(observations)
    batch = RolloutBatch(observations, encoded, log_pi, values, torch.linspace(-1, 1, 16), values + 1.0)
    actor = {k: v.clone() for k, v in ppo.actor_backbone.state_dict().items()}
    value = {k: v.clone() for k, v in ppo.value_head.state_dict().items()}
    ppo.update(ppo.prepare_rollout(batch, online_step=999))  # still warming up: the actor stays as it is
    assert all(torch.equal(actor[k], v) for k, v in ppo.actor_backbone.state_dict().items())
    moved = [(v - value[k]).abs().max() for k, v in ppo.value_head.state_dict().items()]
    assert max(moved) > 5e-3  # Adam's first step is about the learning rate, 1e-2
    ppo.update(ppo.prepare_rollout(batch, online_step=1000))  # warmed up: the actor learns too
    assert any(not torch.equal(actor[k], v) for k, v in ppo.actor_backbone.state_dict().items())


def test_the_desired_kl_rule_scales_the_actors_learning_rate_by_one_and_a_half():
    _, ppo = agents(learning_rate=1e-3, value_learning_rate=1e-2, desired_kl=0.01)
    actor, value = ppo.optimizer.param_groups
    ppo.adapt_learning_rate(0.03)  # above twice the desired KL: divided by 1.5
    assert actor["lr"] == pytest.approx(1e-3 / 1.5) and value["lr"] == 1e-2  # the value head keeps its rate
    ppo.adapt_learning_rate(0.015)  # within [desired / 2, 2 desired]: kept
    assert actor["lr"] == pytest.approx(1e-3 / 1.5)
    ppo.adapt_learning_rate(0.001)  # below half: multiplied by 1.5
    assert actor["lr"] == pytest.approx(1e-3)
    for _ in range(100):
        ppo.adapt_learning_rate(1.0)
    assert actor["lr"] == 1e-8  # the lower bound
    observations = torch.randn(16, 3)
    encoded, log_pi, values, _ = ppo.collect(observations)
    far = RolloutBatch(observations, encoded, log_pi - 1.0, values, torch.linspace(-1, 1, 16), values)
    actor["lr"] = 1e-3
    metrics = ppo.update(far)  # every ratio e^1: approx KL e - 2 = 0.72 > 0.02, so the rule divides the rate
    assert float(metrics["ppo/approx_kl"]) == pytest.approx(np.e - 2, rel=1e-4)
    ppo.adapt_learning_rate(float(metrics["ppo/approx_kl"]))
    assert actor["lr"] == pytest.approx(1e-3 / 1.5)
    ppo.actor_learns = False  # while the value warms up the rate stays
    ppo.adapt_learning_rate(1.0)
    assert actor["lr"] == pytest.approx(1e-3 / 1.5)


def test_the_actors_clipped_gradient_does_not_depend_on_the_size_of_the_value_loss():
    observations = torch.randn(16, 3)
    grads = []
    for offset in (0.0, 1e4):  # returns at the values, or 10,000 above them
        _, ppo = agents(target_kl=None, max_grad_norm=0.5)
        encoded, log_pi, values, _ = ppo.collect(observations)
        batch = RolloutBatch(observations, encoded, log_pi, values, torch.linspace(-1, 1, 16), values + offset)
        metrics = ppo.update(batch)
        grads.append(torch.cat([p.grad.flatten() for p in ppo.actor_backbone.parameters()]))
        value_grad = torch.cat([p.grad.flatten() for p in ppo.value_head.parameters()])
        assert value_grad.norm() <= 0.5 + 1e-5
    torch.testing.assert_close(grads[0], grads[1])  # the same actor gradient, clipped by its own norm only
    assert float(metrics["ppo/value_grad_norm"]) > 100  # the value's was large, and clipped apart


def test_chunk_ppo_refuses_a_sampling_temperature_it_would_not_train_at():
    with pytest.raises(ValueError, match="ppo.temperature must be 1"):
        agents(temperature=0.5)


def save_weights(agent, directory):
    directory.mkdir()
    save_file({k: v.contiguous() for k, v in agent.state_dict().items()}, directory / "model.safetensors")
    return directory


def test_imitation_checkpoint_loads_the_actor_and_a_fresh_value_head(tmp_path):
    bc, ppo = agents()
    with torch.no_grad():
        for p in bc.parameters():
            p.add_(1.0)  # tell the BC weights from the PPO agent's own initialisation
    value_before = {k: v.clone() for k, v in ppo.value_head.state_dict().items()}
    console = Console(record=True, width=200)
    load_initial_weights(ppo, save_weights(bc, tmp_path / "bc"), False, console)
    for name, tensor in bc.actor_backbone.state_dict().items():
        torch.testing.assert_close(ppo.actor_backbone.state_dict()[name], tensor)
    for name, tensor in value_before.items():
        torch.testing.assert_close(ppo.value_head.state_dict()[name], tensor)
    text = console.export_text()
    assert "imitation (actor only)" in text and "fresh (not in the checkpoint): value_head." in text


def test_a_log_std_offset_starts_at_the_imitation_policy_and_learns_at_its_own_rate(tmp_path):
    config = dict(width=16, layers=1, heads=2, hidden_dims=(16,), actor="gaussian", ratio="dimension")
    bc, _ = agents(ChunkPPOConfig(**config))
    _, ppo = agents(ChunkPPOConfig(**config, learning_rate=1e-6, log_std_learning_rate=1e-2, desired_kl=1e-4))
    console = Console(record=True, width=200)
    load_initial_weights(ppo, save_weights(bc, tmp_path / "bc"), False, console)
    assert "fresh (not in the checkpoint): actor_backbone.log_std_offset" in console.export_text()
    observations = torch.randn(8, 3)
    torch.testing.assert_close(
        ppo.actor_backbone.distribution(observations), bc.actor_backbone.distribution(observations)
    )
    actor, _, offset = ppo.optimizer.param_groups
    assert offset["params"] == [ppo.actor_backbone.log_std_offset] and offset["lr"] == 1e-2
    assert all(p is not ppo.actor_backbone.log_std_offset for p in actor["params"])
    with torch.no_grad():
        ppo.actor_backbone.log_std_offset[0] = -0.5  # the first number's spread narrowed by e^-0.5
    _, log_std = ppo.actor_backbone.distribution(observations)
    _, imitated = bc.actor_backbone.distribution(observations)
    torch.testing.assert_close(log_std[:, 0], (imitated[:, 0] - 0.5).clamp(min=-5.0))
    torch.testing.assert_close(log_std[:, 1:], imitated[:, 1:])
    encoded, log_pi, values, _ = ppo.collect(observations)
    batch = ppo.prepare_rollout(RolloutBatch(observations, encoded, log_pi, values, torch.randn(8), values))
    ppo.adapt_learning_rate(float(ppo.update(batch)["ppo/approx_kl"]))  # below half the target: the actor's x1.5
    assert actor["lr"] == pytest.approx(1.5e-6) and offset["lr"] == 1e-2
    assert (ppo.actor_backbone.log_std_offset[1:] != 0).any()  # and the offset learned
    assert any(
        "log_std_learning_rate is for the gaussian" in p
        for p in ChunkPPOConfig(log_std_learning_rate=1e-3).problems("ppo")
    )


def test_rl_checkpoint_loads_both_networks(tmp_path):
    _, source = agents()
    with torch.no_grad():
        for p in source.parameters():
            p.mul_(-1.0)
    _, target = agents()
    console = Console(record=True, width=200)
    load_initial_weights(target, save_weights(source, tmp_path / "rl"), False, console)
    for name, tensor in source.state_dict().items():
        torch.testing.assert_close(target.state_dict()[name], tensor)
    assert "full checkpoint" in console.export_text()


def test_shape_mismatch_stops_unless_partial_init_is_allowed(tmp_path):
    _, source = agents()
    wider = ChunkPPOConfig(width=16, layers=1, heads=2, hidden_dims=(32,))  # value head of another width
    _, target = agents(wider)
    path = save_weights(source, tmp_path / "rl")
    with pytest.raises(
        CheckpointError, match=r"value_head\.net\.linears\.0\.weight: checkpoint \(16, 3\) vs agent \(32, 3\)"
    ):
        load_initial_weights(target, path, False, Console(record=True))
    before = {k: v.clone() for k, v in target.value_head.state_dict().items()}
    console = Console(record=True, width=300)
    load_initial_weights(target, path, True, console)
    text = console.export_text()
    assert "skipped value_head.net.linears.0.weight" in text
    torch.testing.assert_close(target.value_head.net.linears[0].weight, before["net.linears.0.weight"])  # kept fresh
    torch.testing.assert_close(target.actor_backbone.head.weight, source.actor_backbone.head.weight)  # loaded


def test_a_log_std_floor_outside_the_networks_range_is_refused():
    assert any("log_std_floor must be in [-5, 2)" in p for p in ChunkPPOConfig(log_std_floor=3.0).problems("ppo"))
    assert any("log_std_floor" in p for p in ChunkPPOConfig(log_std_floor=float("nan")).problems("ppo"))
    assert not ChunkPPOConfig(log_std_floor=-3.0).problems("ppo")


def test_a_residual_starts_at_the_imitation_policy_and_ppo_leaves_the_imitation_network_frozen(tmp_path):
    config = dict(width=16, layers=1, heads=2, hidden_dims=(16,), actor="gaussian", ratio="dimension")
    bc, _ = agents(ChunkPPOConfig(**config))
    ppo = ChunkPPOAgent(3, 2, 2, ChunkPPOConfig(**config, learning_rate=1e-2, target_kl=None, residual_basis=2),
                        tokenizer=tokenizer_for())  # fmt: skip
    console = Console(record=True, width=200)
    load_initial_weights(ppo, save_weights(bc, tmp_path / "bc"), False, console)
    assert "fresh (not in the checkpoint): actor_backbone.residual" in console.export_text()
    assert ppo.needs_initial_weights and not bc.needs_initial_weights
    observations = torch.randn(8, 3)
    torch.testing.assert_close(ppo.act_tensor(observations, True), bc.act_tensor(observations, True))
    imitation = {k: v.clone() for k, v in ppo.actor_backbone.net.state_dict().items()}
    encoded, log_pi, values, _ = ppo.collect(observations)
    assert encoded.shape == (8, 2 * 2 + 2 * 2)  # the chunk (h 2 x A 2), then 2 shapes x 2 dimensions
    batch = ppo.prepare_rollout(RolloutBatch(observations, encoded, log_pi, values, torch.randn(8), values))
    for _ in range(2):  # twice: at first the residual's zero last layer passes no gradient back to its input
        metrics = ppo.update(batch)
    torch.testing.assert_close(metrics["ppo/residual_log_std_mean"], ppo.actor_backbone.residual_log_std.mean())
    for name, tensor in ppo.actor_backbone.net.state_dict().items():
        torch.testing.assert_close(tensor, imitation[name])  # frozen
    assert (ppo.actor_backbone.residual.linears[-1].weight != 0).any()  # the residual learned
    assert not (ppo.actor_backbone.residual_log_std == np.log(0.02)).all()  # and its spread
    with pytest.raises(ValueError, match="residual_basis 3 exceeds the chunk's 2 steps"):
        ChunkPPOAgent(3, 2, 2, ChunkPPOConfig(**config, residual_basis=3), tokenizer=tokenizer_for())
    with pytest.raises(ValueError, match="chunk-bc trains the imitation policy itself"):
        ChunkBCAgent(3, 2, 2, ChunkPPOConfig(**config, residual_basis=1), tokenizer=tokenizer_for())
    assert any("residual_basis is for the gaussian actor" in p for p in ChunkPPOConfig(residual_basis=1).problems("p"))
