"""The batched critic ensemble computes exactly what E separate networks would."""

import pytest
import torch
from torch.nn import functional as F

from chunkrl.nets.ensemble import Critic, EnsembleMLP, aggregate, polyak_update
from chunkrl.nets.mlp import MLP


def member_forward(ensemble: EnsembleMLP, e: int, x: torch.Tensor, activation=F.gelu, norm_first=False) -> torch.Tensor:
    """Member ``e`` evaluated on its own, layer by layer: Linear, activation, LayerNorm (``norm_first``: Linear,
    LayerNorm, activation)."""
    for i, linear in enumerate(ensemble.linears):
        x = x @ linear.weight[e] + linear.bias[e, 0]
        if i < len(ensemble.linears) - 1:
            norm = ensemble.norms[i]
            if not norm_first:
                x = activation(x)
            x = F.layer_norm(x, (x.shape[-1],)) * norm.weight[e, 0] + norm.bias[e, 0]
            if norm_first:
                x = activation(x)
    return x


@pytest.mark.parametrize(
    "name, activation, norm_first", [("gelu", F.gelu, False), ("relu", F.relu, True)], ids=["fql", "rlpd"]
)
def test_batched_ensemble_matches_members_evaluated_one_by_one(name, activation, norm_first):
    torch.manual_seed(0)
    ensemble = EnsembleMLP(3, 7, (16, 16), 1, layer_norm=True, activation=name, norm_first=norm_first)
    with torch.no_grad():  # make members differ in every parameter, LayerNorm ones included
        for p in ensemble.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    x = torch.randn(5, 7)
    out = ensemble(x)
    assert out.shape == (3, 5, 1)
    for e in range(3):
        torch.testing.assert_close(out[e], member_forward(ensemble, e, x, activation, norm_first), rtol=1e-5, atol=1e-5)


def test_the_mlp_puts_layer_norm_after_the_activation_or_with_norm_first_before_it():
    torch.manual_seed(0)
    for name, activation, norm_first in (("gelu", torch.nn.GELU(), False), ("relu", torch.nn.ReLU(), True)):
        mlp = MLP(4, (8,), 2, layer_norm=True, activation=name, norm_first=norm_first)
        with torch.no_grad():  # a LayerNorm that is not the identity map
            mlp.norms[0].weight.uniform_(0.5, 1.5)
            mlp.norms[0].bias.uniform_(-0.5, 0.5)
        first, norm, last = mlp.linears[0], mlp.norms[0], mlp.linears[1]
        layers = (first, norm, activation, last) if norm_first else (first, activation, norm, last)
        x = torch.randn(6, 4)
        torch.testing.assert_close(mlp(x), torch.nn.Sequential(*layers)(x))


def test_aggregation_mean_and_min():
    q = torch.tensor([[1.0, 4.0], [3.0, 2.0]])
    torch.testing.assert_close(aggregate(q, "mean"), torch.tensor([2.0, 3.0]))
    torch.testing.assert_close(aggregate(q, "min"), torch.tensor([1.0, 2.0]))


def test_polyak_update_moves_target_by_tau():
    source, target = MLP(2, (3,), 1), MLP(2, (3,), 1)
    before = [p.clone() for p in target.parameters()]
    polyak_update(target.parameters(), source.parameters(), 0.1)
    for old, new, src in zip(before, target.parameters(), source.parameters(), strict=True):
        torch.testing.assert_close(new, 0.9 * old + 0.1 * src)


def test_mlp_layer_norm_only_when_asked():
    assert MLP(2, (4, 4), 1).norms is None
    assert len(MLP(2, (4, 4), 1, layer_norm=True).norms) == 2


def test_a_chunk_critic_with_validity_ignores_padded_actions_and_reads_the_mask():
    torch.manual_seed(0)
    critic = Critic(observation_dim=3, action_dim=3 * 2, hidden_dims=(16,), ensemble_size=2, validity_steps=3)
    observations = torch.randn(1, 3)
    chunk = torch.rand(1, 6) * 2 - 1
    valid = torch.tensor([[1.0, 1.0, 0.0]])
    padded = chunk.clone()
    padded[:, 4:] = 0.0  # what the sampler stores after the trajectory's end
    other_tail = chunk.clone()
    other_tail[:, 4:] = torch.tensor([0.7, -0.3])  # real-looking actions where the chunk is padded
    q = critic(observations, padded, valid)
    # whatever sits in a padded position, the critic sees the same input: only the mask tells it apart
    torch.testing.assert_close(critic(observations, other_tail, valid), q)
    assert not torch.allclose(critic(observations, padded, torch.ones(1, 3)), q)
    # valid=None means every position is real
    torch.testing.assert_close(critic(observations, chunk), critic(observations, chunk, torch.ones(1, 3)))


def test_a_critic_without_validity_ignores_the_mask_argument():
    critic = Critic(observation_dim=3, action_dim=2, hidden_dims=(8,), ensemble_size=2)
    observations, actions = torch.randn(4, 3), torch.randn(4, 2)
    torch.testing.assert_close(critic(observations, actions, torch.zeros(4, 5)), critic(observations, actions))
