"""The ACT-style chunk actor: shapes, log-probability, padding masks, split heads, save/load."""

import pytest
import torch
from safetensors.torch import save_file
from torch import distributions as D

from chunkrl.agents.sac.config import SACAgentConfig
from chunkrl.agents.sac.sac import ChunkedSACAgent
from chunkrl.nets.act import ACTActorConfig, ACTChunkActor, parse_action_groups
from chunkrl.nets.distributions import tanh_gaussian_log_prob
from chunkrl.train.checkpoint import load_weights

OBS, ACT, H = 6, 5, 4
SMALL = {"width": 32, "heads": 4, "decoder_layers": 2, "encoder_layers": 1, "feedforward": 64}


def make_actor(**overrides) -> ACTChunkActor:
    torch.manual_seed(0)
    return ACTChunkActor(OBS, ACT, H, ACTActorConfig(**{**SMALL, **overrides})).eval()


def test_single_observations_and_histories_give_one_gaussian_per_chunk_dimension():
    single = make_actor(memory_tokens=2)
    mean, log_std = single(torch.randn(3, OBS))
    assert mean.shape == log_std.shape == (3, H * ACT)
    assert single.encoder is None  # no sequence to encode
    history = make_actor(obs_history=4)
    chunks, log_prob, mean, _ = history.sample(torch.randn(3, 4, OBS), torch.ones(3, 4))
    assert chunks.shape == (3, H * ACT) and log_prob.shape == (3,)


def test_log_probability_is_the_joint_tanh_gaussian_of_the_mlp_actor():
    actor = make_actor()
    torch.manual_seed(1)
    chunks, log_prob, mean, log_std = actor.sample(torch.randn(2, OBS))
    pre_tanh = torch.atanh(chunks.clamp(-1 + 1e-6, 1 - 1e-6))
    # the same formula the MLP actor uses, and torch.distributions' tanh-transformed Normal
    assert torch.allclose(log_prob, tanh_gaussian_log_prob(mean, log_std, pre_tanh), atol=1e-3)
    reference = D.TransformedDistribution(D.Normal(mean, log_std.exp()), [D.TanhTransform()])
    assert torch.allclose(log_prob, reference.log_prob(chunks).sum(-1), rtol=1e-3, atol=1e-2)


def test_padded_history_positions_are_ignored_and_valid_ones_are_not():
    actor = make_actor(obs_history=3)
    history = torch.randn(1, 3, OBS)
    valid = torch.tensor([[0.0, 1.0, 1.0]])  # the episode started one step ago
    reference = actor(history, valid)[0]
    changed_padding = history.clone()
    changed_padding[:, 0] = 100.0
    assert torch.allclose(actor(changed_padding, valid)[0], reference, atol=1e-5)
    changed_past = history.clone()
    changed_past[:, 1] += 1.0
    assert not torch.allclose(actor(changed_past, valid)[0], reference, atol=1e-3)


def test_split_heads_are_concatenated_in_action_order():
    actor = make_actor(action_groups=("hand:3:5", "arm:0:3"))  # given out of order on purpose
    assert [name for name, _, _ in actor.groups] == ["arm", "hand"]
    with torch.no_grad():
        for head, value in zip(actor.heads, (1.0, 2.0), strict=True):
            head.weight.zero_()
            head.bias.zero_()
            head.bias[: head.out_features // 2] = value  # the mean half of each head
    mean, _ = actor(torch.randn(1, OBS))
    assert mean.view(H, ACT).tolist() == [[1.0, 1.0, 1.0, 2.0, 2.0]] * H


@pytest.mark.parametrize(
    ("groups", "message"),
    [(("arm:0:3",), "cover 3"), (("arm:0:3", "hand:2:5"), "without gaps or overlaps"), (("arm-0-3",), "name:start")],
)
def test_bad_action_groups_are_explained(groups, message):
    with pytest.raises(ValueError, match=message):
        parse_action_groups(groups, ACT)


def test_an_agent_with_the_act_actor_round_trips_through_safetensors(tmp_path):
    config = SACAgentConfig(actor="act", act=ACTActorConfig(**SMALL, obs_history=2), critic_hidden_dims=(16,))
    torch.manual_seed(0)
    agent = ChunkedSACAgent(OBS, ACT, H, config)
    save_file({k: v.contiguous() for k, v in agent.state_dict().items()}, tmp_path / "model.safetensors")
    torch.manual_seed(1)
    restored = ChunkedSACAgent(OBS, ACT, H, config)
    load_weights(restored, tmp_path)
    history, valid = torch.randn(2, 2, OBS).numpy(), torch.tensor([[0.0, 1.0], [1.0, 1.0]]).numpy()
    expected = agent.act(history, deterministic=True, history_valid=valid)
    assert restored.history_length == 2
    assert (restored.act(history, deterministic=True, history_valid=valid) == expected).all()


def test_dropout_is_off_while_acting_and_back_on_for_updates():
    config = SACAgentConfig(actor="act", act=ACTActorConfig(**SMALL, dropout=0.5), critic_hidden_dims=(16,))
    agent = ChunkedSACAgent(OBS, ACT, H, config)
    observation = torch.randn(OBS).numpy()
    assert agent.has_dropout and agent.training
    first = agent.act(observation, deterministic=True)
    assert (agent.act(observation, deterministic=True) == first).all()
    assert agent.training  # updates still use dropout
    observations = torch.randn(1, OBS)
    assert not torch.equal(agent.actor(observations)[0], agent.actor(observations)[0])


def test_each_actor_reads_only_the_input_it_was_built_for():
    with pytest.raises(ValueError, match="histories of 3 observations"):
        make_actor(obs_history=3)(torch.randn(2, OBS))
    with pytest.raises(ValueError, match="built for single observations"):
        make_actor()(torch.randn(2, 3, OBS), torch.ones(2, 3))
