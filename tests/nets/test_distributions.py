"""Tanh-Gaussian joint log-probabilities, checked by hand and against torch.distributions."""

import math

import pytest
import torch
from torch.distributions import Normal, TransformedDistribution
from torch.distributions.transforms import TanhTransform

from chunkrl.nets.distributions import actions_log_prob, tanh_gaussian_log_prob, tanh_gaussian_sample


def test_one_dimension_matches_a_hand_computation():
    # u = 0.5 under N(0, 1): log N = -0.125 - log sqrt(2 pi); correction log(1 - tanh(0.5)^2)
    expected = -0.125 - 0.5 * math.log(2 * math.pi) - math.log(1 - math.tanh(0.5) ** 2)
    value = tanh_gaussian_log_prob(torch.zeros(1, 1), torch.zeros(1, 1), torch.full((1, 1), 0.5))
    assert value.item() == pytest.approx(expected, rel=1e-6)


def test_joint_log_prob_of_a_chunk_is_the_sum_over_its_dimensions():
    torch.manual_seed(0)
    mean, log_std = torch.randn(4, 10), torch.randn(4, 10) * 0.3
    pre_tanh = mean + log_std.exp() * torch.randn(4, 10)
    reference = TransformedDistribution(Normal(mean, log_std.exp()), [TanhTransform()])
    expected = reference.log_prob(torch.tanh(pre_tanh)).sum(-1)
    torch.testing.assert_close(tanh_gaussian_log_prob(mean, log_std, pre_tanh), expected, rtol=1e-4, atol=1e-4)


def test_weights_drop_padded_dimensions():
    mean, log_std, pre_tanh = torch.zeros(1, 4), torch.zeros(1, 4), torch.tensor([[0.1, 0.2, 0.3, 0.4]])
    weights = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    full = tanh_gaussian_log_prob(mean[:, :2], log_std[:, :2], pre_tanh[:, :2])
    torch.testing.assert_close(tanh_gaussian_log_prob(mean, log_std, pre_tanh, weights), full)


def test_sampled_actions_are_squashed_and_scored_consistently():
    torch.manual_seed(1)
    mean, log_std = torch.randn(3, 6), torch.full((3, 6), -0.5)
    actions, log_prob = tanh_gaussian_sample(mean, log_std)
    assert actions.abs().max() < 1.0
    torch.testing.assert_close(actions_log_prob(mean, log_std, actions), log_prob, rtol=1e-3, atol=1e-3)


def test_acting_samples_follow_the_same_distribution_as_training_samples():
    from chunkrl.nets.actors import MLPChunkActor

    actor = MLPChunkActor(3, 4, (8,))
    observations = torch.zeros(20000, 3)
    torch.manual_seed(0)
    acting = actor.sample_actions(observations)
    training = actor.sample(observations)[0]
    torch.testing.assert_close(acting.mean(0), training.mean(0), atol=0.03, rtol=0)
    torch.testing.assert_close(acting.std(0), training.std(0), atol=0.03, rtol=0)
