"""The autoregressive token actor: chunk log-probability = sum of token log-probabilities."""

import numpy as np
import torch
from torch.nn import functional as F

from chunkrl.nets.token_actor import TokenChunkActor
from chunkrl.nets.tokenizer import ChunkTokenizer


def small_actor(max_tokens=6, seed=0):
    torch.manual_seed(seed)
    tokenizer = ChunkTokenizer(2, 1, [-1.0], [1.0], scale=3.0)  # no BPE: 2 symbols per chunk, alphabet 11
    return TokenChunkActor(3, tokenizer, max_tokens, width=16, layers=1, heads=2)


def test_chunk_log_prob_is_the_sum_of_token_log_probs_step_by_step():
    actor = small_actor()
    observations = torch.randn(3, 3)
    encoded = torch.tensor(
        [[4, 7, actor.eos, -1, -1, -1, -1], [1, actor.eos, -1, -1, -1, -1, -1], [0, 2, 3, 5, 6, 9, actor.eos]]
    )
    log_pi, entropy = actor.evaluate(observations, encoded)
    for row in range(3):
        total, prefix = 0.0, []
        for token in encoded[row].tolist():
            if token < 0:
                break
            logits = actor.logits(observations[row : row + 1], torch.tensor([prefix], dtype=torch.long))[0, -1]
            total += float(F.log_softmax(logits.detach(), -1)[token])  # one token at a time, from its own prefix
            prefix.append(token)
        assert abs(log_pi[row].item() - total) < 1e-4
    assert torch.all(entropy > 0)


def test_sampled_log_prob_matches_evaluate_and_eos_is_forced_at_max_tokens():
    actor = small_actor(max_tokens=3)
    observations = torch.randn(64, 3)
    encoded, log_pi = actor.sample(observations)
    again, _ = actor.evaluate(observations, encoded)
    torch.testing.assert_close(log_pi, again, atol=1e-4, rtol=1e-5)
    lengths = (encoded >= 0).sum(1)
    assert torch.all(lengths <= 4)
    assert torch.all(encoded[torch.arange(64), lengths - 1] == actor.eos)  # every sequence ends with EOS


def test_encode_decode_through_the_actor():
    actor = small_actor()
    chunks = np.array([[[0.5], [-0.5]], [[0.0], [0.9]]])
    encoded = actor.encode(chunks)
    assert encoded.shape == (2, 7) and (encoded[:, 2] == actor.eos).all() and (encoded[:, 3:] == -1).all()
    decoded, invalid = actor.decode(encoded)
    assert not invalid.any() and np.abs(decoded - chunks).max() <= 0.5 * np.sqrt(2) / 3.0


def test_cached_decoding_samples_the_same_tokens_and_log_probs_as_the_full_prefix():
    from chunkrl.nets.noise import GeneratorNoise

    torch.manual_seed(1)
    tokenizer = ChunkTokenizer(2, 1, [-1.0], [1.0], scale=3.0)
    actor = TokenChunkActor(3, tokenizer, max_tokens=6, width=32, layers=3, heads=4)  # several layers and heads
    observations = torch.randn(128, 3)
    for greedy, temperature in ((False, 1.0), (False, 1.7), (True, 1.0)):
        cached = actor.sample(observations, temperature, greedy, GeneratorNoise(5), cache=True)
        full = actor.sample(observations, temperature, greedy, GeneratorNoise(5), cache=False)
        torch.testing.assert_close(cached[0], full[0], rtol=0, atol=0)  # the same tokens, EOS and padding
        torch.testing.assert_close(cached[1], full[1], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(cached[1], actor.evaluate(observations, cached[0])[0], atol=1e-4, rtol=1e-5)
    lengths = (cached[0] >= 0).sum(1)
    assert lengths.min() < lengths.max()  # rows that ended early beside rows that ran on: the padding path is used


def test_gaussian_l1_imitation_is_the_greedy_chunks_error_plus_a_weighted_log_std_likelihood():
    from chunkrl.nets.distributions import actions_log_probs
    from chunkrl.nets.token_actor import LOG_STD_FIT_WEIGHT, GaussianChunkPolicy

    # the encoded chunk is the Gaussian sample before tanh; the squashed target here is [0.2, -0.5]

    tokenizer = ChunkTokenizer(2, 1, np.array([-1.0]), np.array([1.0]))
    policy = GaussianChunkPolicy(3, tokenizer, (8,))
    mean = torch.tensor([[0.5, -1.0]], requires_grad=True)
    log_std = torch.tensor([[-1.0, 0.0]], requires_grad=True)
    policy.distribution = lambda observations: (mean, log_std)
    target = torch.tensor([[0.2, -0.5]])
    loss, log_pi, entropy = policy.l1_imitation_loss(torch.zeros(1, 3), torch.atanh(target))
    greedy = np.tanh([0.5, -1.0])
    l1 = np.abs(greedy - [0.2, -0.5]).mean()  # 0.5 * (|0.4621 - 0.2| + |-0.7616 + 0.5|)
    nll = -actions_log_probs(mean.detach(), log_std.detach(), target, epsilon=1e-5).mean()
    expected_loss = torch.tensor([l1 + LOG_STD_FIT_WEIGHT * float(nll)], dtype=torch.float32)
    torch.testing.assert_close(loss, expected_loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(log_pi, actions_log_probs(mean, log_std, target, epsilon=1e-5).sum(-1).detach())
    loss.sum().backward()
    # the mean learns from the L1 term alone: d/dmean |tanh(mean) - y| / 2 = sign * (1 - tanh^2) / 2
    expected = np.sign(greedy - [0.2, -0.5]) * (1 - greedy**2) / 2
    torch.testing.assert_close(mean.grad, torch.tensor(expected[None], dtype=torch.float32))
    assert (log_std.grad != 0).all()  # the log-std follows the likelihood
    # the logged log-probability and entropy are evaluate's, from the same forward pass
    expected_log_pi, expected_entropy = policy.evaluate(torch.zeros(1, 3), torch.atanh(target))
    torch.testing.assert_close(log_pi, expected_log_pi.detach())
    torch.testing.assert_close(entropy, expected_entropy.detach())


def test_gaussian_chunks_stay_inside_the_squash_edge_and_round_trip():
    from chunkrl.nets.token_actor import SQUASH_EDGE, GaussianChunkPolicy

    tokenizer = ChunkTokenizer(2, 2, np.array([0.0, -1.0]), np.array([1.0, 3.0]))
    policy = GaussianChunkPolicy(3, tokenizer, (8,))
    chunks = np.array([[[0.0, -1.0], [1.0, 3.0]], [[0.5, 1.0], [0.25, 0.0]]])  # the bounds and inside them
    encoded = policy.encode(chunks)
    # encoded before tanh: the bounds land on ±atanh(SQUASH_EDGE) (not on tanh's edge), the middle of the range on 0
    edge = np.arctanh(SQUASH_EDGE)  # 1.472
    np.testing.assert_allclose(encoded[0].numpy(), [-edge, -edge, edge, edge], rtol=1e-6)
    half = np.arctanh(0.5 * SQUASH_EDGE)
    np.testing.assert_allclose(encoded[1].numpy(), [0.0, 0.0, -half, -half], atol=1e-6)
    decoded, invalid = policy.decode(encoded)
    np.testing.assert_allclose(decoded, chunks, atol=1e-6)
    assert not invalid.any()


def test_a_log_std_floor_bounds_the_gaussian_actors_spread_where_it_acts_and_learns():
    from chunkrl.nets.distributions import actions_log_probs
    from chunkrl.nets.token_actor import GaussianChunkPolicy

    tokenizer = ChunkTokenizer(2, 1, np.array([-1.0]), np.array([1.0]))
    policy = GaussianChunkPolicy(3, tokenizer, (8,), log_std_floor=-2.0)
    with torch.no_grad():
        policy.net.linears[-1].weight.zero_()
        policy.net.linears[-1].bias.copy_(torch.tensor([0.1, -0.2, -4.0, -1.0]))  # means, then log-stds
    observations = torch.zeros(1, 3)
    mean, log_std = policy.distribution(observations)
    torch.testing.assert_close(log_std, torch.tensor([[-2.0, -1.0]]))  # -4 raised to the floor, -1 kept
    encoded, log_pi = policy.sample(observations)
    squashed = torch.tanh(encoded)  # the same density, reached from the squashed chunk
    expected = actions_log_probs(mean, torch.tensor([[-2.0, -1.0]]), squashed, epsilon=1e-5).sum(-1)
    torch.testing.assert_close(log_pi, expected)  # sampled and scored with the floored spread
    torch.testing.assert_close(policy.evaluate(observations, encoded)[0], expected)
    assert GaussianChunkPolicy(3, tokenizer, (8,)).log_std_min == -5.0  # no floor: the network's own bound


def test_a_gaussian_chunk_past_tanhs_edge_is_scored_exactly_from_its_pre_tanh_sample():
    from chunkrl.nets.token_actor import GaussianChunkPolicy

    tokenizer = ChunkTokenizer(1, 1, np.array([-1.0]), np.array([1.0]))
    policy = GaussianChunkPolicy(3, tokenizer, (8,))
    with torch.no_grad():
        policy.net.linears[-1].weight.zero_()
        policy.net.linears[-1].bias.copy_(torch.tensor([30.0, -5.0]))  # a mean far past tanh's edge, log-std -5
    observations = torch.zeros(1, 3)
    encoded, log_pi = policy.sample(observations, greedy=True)
    assert float(encoded) == 30.0  # kept before tanh (tanh(30) is 1.0 in float32)
    # log N(30; 30, e^-5) - log(1 - tanh(30)^2) = 5 - log sqrt(2 pi) - 2 (log 2 - 30)
    expected = 5.0 - 0.5 * np.log(2 * np.pi) - 2 * (np.log(2.0) - 30.0)  # 62.6948
    np.testing.assert_allclose(float(log_pi), expected, rtol=1e-5)
    np.testing.assert_allclose(float(policy.evaluate(observations, encoded)[0].detach()), expected, rtol=1e-5)
    with torch.no_grad():  # a mean moved by a tenth of a standard deviation moves the log-probability by 1/200
        policy.net.linears[-1].bias[0] += 0.1 * np.exp(-5.0)
    np.testing.assert_allclose(float(policy.evaluate(observations, encoded)[0].detach()), expected - 0.005, rtol=1e-5)
    decoded, _ = policy.decode(encoded)
    np.testing.assert_allclose(decoded, [[[1.0]]])  # the squashed chunk is clipped to the tokenizer's bounds


def test_a_residual_chunk_is_the_frozen_greedy_chunk_plus_cosine_shapes_scored_from_its_coefficients():
    from chunkrl.nets.token_actor import SQUASH_EDGE, ResidualChunkPolicy

    tokenizer = ChunkTokenizer(2, 1, np.array([-1.0]), np.array([1.0]))
    policy = ResidualChunkPolicy(3, tokenizer, (8,), basis=2, initial_std=0.05)
    assert not any(p.requires_grad for p in policy.net.parameters())  # the imitation network is frozen
    with torch.no_grad():
        policy.net.linears[-1].weight.zero_()
        policy.net.linears[-1].bias.copy_(torch.tensor([np.arctanh(0.45), np.arctanh(-0.45), -5.0, -5.0]))
        observations = torch.zeros(1, 3)
        start, _ = policy.sample(observations, greedy=True)
        policy.residual.linears[-1].bias.copy_(torch.tensor([0.1, 0.2]))  # offset 0.1, cosine shape 0.2
    torch.testing.assert_close(start[0, :2], torch.tensor([0.45, -0.45]))  # zero residual: the greedy chunk
    encoded, log_pi = policy.sample(observations, greedy=True)
    # cos(pi k (t + 1/2) / 2): k=0 -> 1, 1; k=1 -> 0.7071, -0.7071
    torch.testing.assert_close(encoded[0], torch.tensor([0.45 + 0.1 + 0.14142, -0.45 + 0.1 - 0.14142, 0.1, 0.2]))
    per_coefficient = -np.log(0.05) - 0.5 * np.log(2 * np.pi)  # 2.07679 at the mean
    np.testing.assert_allclose(float(log_pi), 2 * per_coefficient, rtol=1e-5)
    moved = encoded.clone()
    moved[0, 2] += 0.05  # the offset one standard deviation away: half a nat less
    elements, _, _ = policy.evaluate_elements(observations, moved)
    np.testing.assert_allclose(elements.detach().numpy(), [[per_coefficient - 0.5, per_coefficient]], rtol=1e-5)
    decoded, _ = policy.decode(encoded)
    np.testing.assert_allclose(decoded[0, :, 0], [0.69142 / SQUASH_EDGE, -0.49142 / SQUASH_EDGE], rtol=1e-4)
