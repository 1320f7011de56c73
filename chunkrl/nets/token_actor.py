"""Chunk policies for on-policy training: the autoregressive token actor and a Gaussian baseline.

The interface the PPO agent relies on (a pretrained VLA can implement the same four methods):

- ``encode(chunks)``: dataset chunks ``[B, h, A]`` (numpy, action units) -> the policy's encoding of
  them (token ids padded with -1, or a continuous chunk), as a tensor;
- ``decode(encoded)``: encoding -> (chunks ``[B, h, A]`` numpy in action units, invalid ``[B]`` bool);
- ``sample(observations, temperature, greedy, noise)``: a sampled encoding and its log-probability;
- ``evaluate(observations, encoded)``: log-probability ``[B]``, mean entropy per token (or per
  dimension) ``[B]`` of given encodings; differentiable (the PPO and imitation losses).

The value is a separate module (``ValueHead``) so that checkpoints keep the actor and the value apart.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from chunkrl.nets.actors import LOG_STD_MAX, LOG_STD_MIN
from chunkrl.nets.distributions import gaussian_log_probs, tanh_gaussian_log_probs
from chunkrl.nets.mlp import MLP
from chunkrl.nets.noise import GLOBAL_NOISE, GlobalNoise
from chunkrl.nets.tokenizer import ChunkTokenizer


class TokenChunkActor(nn.Module):
    """A decoder-only transformer over a chunk's tokens, conditioned on an observation prefix.

    Position 0 holds the observation's embedding; position ``i`` holds token ``i`` of the chunk and
    predicts token ``i + 1``; after the chunk's last token comes ``EOS`` (id ``vocab_size``). At most
    ``max_tokens`` tokens precede ``EOS``: at that position only ``EOS`` can be emitted, in sampling and
    in ``evaluate`` alike. ``log π(chunk | s)`` is the sum of the log-probabilities of the chunk's tokens
    and its ``EOS``.
    """

    def __init__(
        self,
        observation_dim: int,
        tokenizer: ChunkTokenizer,
        max_tokens: int,
        width: int = 128,
        layers: int = 2,
        heads: int = 4,
    ):
        super().__init__()
        self.tokenizer, self.max_tokens = tokenizer, max_tokens
        self.eos = tokenizer.vocab_size
        self.observation_embedding = MLP(observation_dim, (width,), width)
        self.token_embedding = nn.Embedding(tokenizer.vocab_size + 1, width)
        self.position_embedding = nn.Parameter(torch.zeros(max_tokens + 1, width))
        nn.init.normal_(self.position_embedding, std=0.02)
        layer = nn.TransformerEncoderLayer(width, heads, 2 * width, dropout=0.0, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, tokenizer.vocab_size + 1)
        last = torch.zeros(tokenizer.vocab_size + 1, dtype=torch.bool)
        last[: self.eos] = True
        self.register_buffer("only_eos", last, persistent=False)  # logits masked at the last position

    # ------------------------------------------------------------------ network
    def logits(self, observations: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Next-token logits [B, L + 1, V + 1] for observation prefixes and L given tokens (ids >= 0)."""
        length = tokens.shape[1]
        x = torch.cat([self.observation_embedding(observations)[:, None], self.token_embedding(tokens)], dim=1)
        x = x + self.position_embedding[: length + 1]
        mask = nn.Transformer.generate_square_subsequent_mask(length + 1, device=x.device, dtype=x.dtype)
        logits = self.head(self.norm(self.blocks(x, mask=mask, is_causal=True)))
        if length == self.max_tokens:  # the position after max_tokens tokens may only end the chunk
            logits[:, -1] = logits[:, -1].masked_fill(self.only_eos, float("-inf"))
        return logits

    def evaluate(self, observations: torch.Tensor, encoded: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log π of each encoded chunk [B], mean entropy per predicted token [B]); ``encoded`` [B, max+1]
        holds the chunk's tokens, ``EOS``, then -1."""
        token_log_probs, present, mean_entropy = self.evaluate_elements(observations, encoded)
        return token_log_probs.sum(1), mean_entropy

    def evaluate_elements(
        self, observations: torch.Tensor, encoded: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(log-probability of each predicted token [B, max+1], 0 at padding; which positions are tokens or EOS
        [B, max+1]; mean entropy per predicted token [B]): what a per-token PPO ratio reads."""
        targets = encoded.long()
        present = targets >= 0
        inputs = targets[:, :-1].clamp_min(0)  # padding never reaches a real position (causal mask)
        log_probs = F.log_softmax(self.logits(observations, inputs).float(), dim=-1)
        chosen = log_probs.gather(-1, targets.clamp_min(0)[..., None])[..., 0]
        token_log_probs = torch.where(present, chosen, 0.0)  # padding may sit where only EOS is allowed (-inf)
        probabilities = log_probs.exp()
        entropy = -(probabilities * log_probs.nan_to_num(neginf=0.0)).sum(-1)
        mean_entropy = torch.where(present, entropy, 0.0).sum(1) / present.sum(1).clamp_min(1)
        return token_log_probs, present, mean_entropy

    def _decode_step(self, x: torch.Tensor, caches: list) -> torch.Tensor:
        """One position through every layer, attending to the keys and values cached for the positions
        before it (``caches[layer]`` is ``(keys, values)`` [B, heads, T, d], extended in place): the next-token
        logits [B, V + 1]. The same arithmetic as ``blocks`` (pre-norm ``TransformerEncoderLayer``), with the
        earlier positions' keys and values kept instead of recomputed."""
        for index, layer in enumerate(self.blocks.layers):
            attention = layer.self_attn
            batch, _, width = x.shape
            heads = attention.num_heads
            q, k, v = F.linear(layer.norm1(x), attention.in_proj_weight, attention.in_proj_bias).chunk(3, dim=-1)
            q, k, v = (t.view(batch, 1, heads, width // heads).transpose(1, 2) for t in (q, k, v))
            if caches[index] is not None:
                k, v = torch.cat([caches[index][0], k], dim=2), torch.cat([caches[index][1], v], dim=2)
            caches[index] = (k, v)
            attended = F.scaled_dot_product_attention(q, k, v)  # one query: it may see every cached position
            x = x + attention.out_proj(attended.transpose(1, 2).reshape(batch, 1, width))
            x = x + layer.linear2(layer.activation(layer.linear1(layer.norm2(x))))
        return self.head(self.norm(x))[:, 0]

    @torch.no_grad()
    def sample(
        self,
        observations: torch.Tensor,
        temperature: float = 1.0,
        greedy: bool = False,
        noise: GlobalNoise = GLOBAL_NOISE,
        cache: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Autoregressive sampling (Gumbel-max on ``logits / temperature``, or argmax): (encoded [B, max+1],
        log π under temperature 1 [B], the distribution ``evaluate`` scores). Every environment's chunk is
        sampled in the one batch. ``cache``: keep each layer's keys and values across decoding steps (one
        position of work per token); False re-runs the whole prefix for every token (the reference the
        cache is tested against)."""
        batch = observations.shape[0]
        encoded = torch.full((batch, self.max_tokens + 1), -1, dtype=torch.long, device=observations.device)
        log_pi = torch.zeros(batch, device=observations.device)
        done = torch.zeros(batch, dtype=torch.bool, device=observations.device)
        caches: list = [None] * len(self.blocks.layers)
        position = self.observation_embedding(observations)[:, None] + self.position_embedding[0]
        for i in range(self.max_tokens + 1):
            if not cache:
                logits = self.logits(observations, encoded[:, :i].clamp_min(0))[:, -1].float()
            else:
                if i > 0:  # the token chosen last enters at position i
                    position = (
                        self.token_embedding(encoded[:, i - 1].clamp_min(0))[:, None] + self.position_embedding[i]
                    )
                logits = self._decode_step(position, caches).float()
                if i == self.max_tokens:  # after max_tokens tokens only EOS may follow
                    logits = logits.masked_fill(self.only_eos, float("-inf"))
            if greedy:
                token = logits.argmax(-1)
            else:
                gumbel = -torch.log(-torch.log(noise.uniform(logits.shape, logits.device).clamp(1e-20, 1.0)))
                token = (logits / temperature + gumbel).argmax(-1)
            chosen = F.log_softmax(logits, -1).gather(-1, token[:, None])[:, 0]
            log_pi += torch.where(done, 0.0, chosen)
            encoded[:, i] = torch.where(done, -1, token)
            done |= token == self.eos
            if bool(done.all()):
                break
        return encoded, log_pi

    # ------------------------------------------------------------------ chunks
    def encode(self, chunks: np.ndarray) -> torch.Tensor:
        """Chunks [B, h, A] -> encoded [B, max+1] (tokens, EOS, -1); sequences longer than ``max_tokens``
        are cut (and counted invalid when decoded)."""
        sequences = self.tokenizer.encode(chunks)
        encoded = np.full((len(sequences), self.max_tokens + 1), -1, dtype=np.int64)
        for row, ids in enumerate(sequences):
            ids = ids[: self.max_tokens]
            encoded[row, : len(ids)] = ids
            encoded[row, len(ids)] = self.eos
        return torch.from_numpy(encoded).to(self.position_embedding.device)

    def decode(self, encoded: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        rows = encoded.cpu().numpy()
        sequences = []
        for row in rows:
            stop = np.flatnonzero((row == self.eos) | (row < 0))
            sequences.append(row[: stop[0] if len(stop) else len(row)])
        return self.tokenizer.decode(sequences)


SQUASH_EDGE = 0.9
"""The Gaussian chunk actor works on the tokenizer's [-1, 1] scaled into [-0.9, 0.9]. At the edges of tanh a
target needs an unbounded mean: with the demonstrations' extremes (a gripper fully open or shut) at exactly ±1 the
fitted means ran to ±7.5 and the log-stds of those numbers to their upper bound (2), so a sampled chunk opened and
shut the grippers at random (scripted transfer-cube: 1 episode in 20 succeeded sampled, 18 in 20 greedy)."""
LOG_STD_FIT_WEIGHT = 0.01
"""Weight of the log-std's likelihood in the Gaussian actor's L1 imitation loss. The mean and the log-std share
one network: at weight 1 the likelihood's gradients (through the log-std) swamped the L1 loss's, and the greedy
chunk fitted ten times worse (first action 0.035 rad mean absolute error on the 50 scripted transfer-cube
demonstrations, against 0.0033 at weight 0 and 0.0039 at 0.01; h 10, 512x3, 5,000 steps of 256)."""


def gaussian_entropy(log_std: torch.Tensor) -> torch.Tensor:
    """Entropy per dimension of the pre-squash Gaussian, averaged over the dimensions [B]."""
    return (log_std + 0.5 * math.log(2 * math.pi * math.e)).mean(-1)


class GaussianChunkPolicy(nn.Module):
    """The continuous baseline: a tanh-Gaussian over the flattened normalised chunk (an MLP gives the mean
    and log-std of each of the ``h * A`` dimensions). The chunk lives in ``[-SQUASH_EDGE, SQUASH_EDGE]``
    and is mapped to action units by the tokenizer's quantile normalisation (no DCT, no tokens).

    Its encoded chunk is the Gaussian sample *before* tanh: stored as it was drawn, it is scored exactly. (Scored
    from the squashed chunk through atanh, a dimension whose mean sat far past tanh's edge came back clamped at
    1 - 1e-5, hundreds of standard deviations from its mean, and PPO's ratio of it overflowed on any step.)"""

    def __init__(
        self,
        observation_dim: int,
        tokenizer: ChunkTokenizer,
        hidden_dims=(256, 256),
        log_std_floor: float | None = None,
    ):
        super().__init__()
        self.tokenizer = tokenizer
        self.log_std_min = LOG_STD_MIN if log_std_floor is None else max(LOG_STD_MIN, log_std_floor)
        self.chunk_dim = tokenizer.horizon * tokenizer.action_dim
        self.net = MLP(observation_dim, hidden_dims, 2 * self.chunk_dim)
        self.register_parameter("log_std_offset", None)  # chunk-ppo's learned offset (add_log_std_offset)

    def add_log_std_offset(self) -> nn.Parameter:
        """A learned offset of the log-std, one per number of the chunk, starting at 0 (the policy unchanged)."""
        self.log_std_offset = nn.Parameter(torch.zeros(self.chunk_dim, device=self.net.linears[0].weight.device))
        return self.log_std_offset

    def distribution(self, observations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.net(observations).chunk(2, dim=-1)
        if self.log_std_offset is not None:
            log_std = log_std + self.log_std_offset
        return mean, log_std.clamp(self.log_std_min, LOG_STD_MAX)

    def evaluate(self, observations: torch.Tensor, encoded: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log π [B], entropy per dimension of the pre-squash Gaussian [B])."""
        per_dimension, _, entropy = self.evaluate_elements(observations, encoded)
        return per_dimension.sum(1), entropy

    def evaluate_elements(
        self, observations: torch.Tensor, encoded: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(log-probability of each dimension of the chunk [B, h*A], all of them present, entropy per dimension
        [B]): what a per-dimension PPO ratio reads."""
        mean, log_std = self.distribution(observations)
        per_dimension = tanh_gaussian_log_probs(mean, log_std, encoded.float())
        return per_dimension, torch.ones_like(per_dimension, dtype=torch.bool), gaussian_entropy(log_std)

    def l1_imitation_loss(
        self, observations: torch.Tensor, encoded: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(per-chunk imitation loss [B], and for the logs, detached: log π of the chunk [B] and the entropy per
        dimension [B], as ``evaluate`` gives them, from the same forward pass). The loss is the mean absolute
        error of the greedy chunk ``tanh(mean)`` (ACT's reconstruction loss, in normalised units) plus
        ``LOG_STD_FIT_WEIGHT`` times the negative log-likelihood of the chunk under the log-std with the mean
        held fixed, so that the spread PPO later samples from follows the residuals."""
        mean, log_std = self.distribution(observations)
        l1 = (torch.tanh(mean) - torch.tanh(encoded.float())).abs().mean(-1)
        per_dimension = tanh_gaussian_log_probs(mean.detach(), log_std, encoded.float())
        loss = l1 - LOG_STD_FIT_WEIGHT * per_dimension.mean(-1)
        return loss, per_dimension.sum(-1).detach(), gaussian_entropy(log_std).detach()

    @torch.no_grad()
    def sample(self, observations, temperature: float = 1.0, greedy: bool = False, noise: GlobalNoise = GLOBAL_NOISE):
        mean, log_std = self.distribution(observations)
        pre_tanh = mean if greedy else mean + temperature * log_std.exp() * noise.normal(mean.shape, mean.device)
        return pre_tanh, tanh_gaussian_log_probs(mean, log_std, pre_tanh).sum(-1)

    def encode(self, chunks: np.ndarray) -> torch.Tensor:
        normalized = self.tokenizer.normalize(np.asarray(chunks, dtype=np.float64)).reshape(len(chunks), -1)
        pre_tanh = np.arctanh(normalized * SQUASH_EDGE)  # within ±atanh(SQUASH_EDGE) = ±1.47
        return torch.as_tensor(pre_tanh, dtype=torch.float32, device=self.net.linears[0].weight.device)

    def decode(self, encoded: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        squashed = torch.tanh(encoded.float()).cpu().numpy()
        normalized = squashed.reshape(-1, self.tokenizer.horizon, self.tokenizer.action_dim) / SQUASH_EDGE
        return self.tokenizer.unnormalize(normalized), np.zeros(len(normalized), dtype=bool)


def cosine_basis(horizon: int, functions: int) -> torch.Tensor:
    """``[horizon, functions]``: column k is ``cos(pi k (t + 1/2) / horizon)`` over the chunk's steps t (the DCT-II
    shapes FAST tokenizes, unscaled: column 0 is all ones, so that its coefficient is an offset in action units)."""
    steps = torch.arange(horizon, dtype=torch.float64)[:, None] + 0.5
    return torch.cos(math.pi * torch.arange(functions, dtype=torch.float64)[None, :] * steps / horizon).float()


class ResidualChunkPolicy(GaussianChunkPolicy):
    """chunk-ppo's residual over a frozen Gaussian imitation policy (ResiP, Ankile et al. 2024, does this per step
    on top of a chunked imitation policy; here one correction per chunk decision).

    The imitation network (``net``, loaded from the chunk-bc checkpoint by ``--init-from``) is frozen and gives
    its greedy chunk ``b = tanh(mean)``. A fresh MLP reads the observation and ``b`` and gives the mean of
    ``K x A`` coefficients ``c`` (its last layer starts at zero, so the policy starts as the imitation policy's
    greedy chunk), with a learned state-independent log-std per coefficient. The executed chunk is
    ``b + basis @ c`` (``cosine_basis``: K smooth shapes in time per action dimension), clamped to the squashed
    range. So PPO explores ``K x A`` numbers whose noise is smooth over the chunk (K = 1: one offset per action
    dimension) rather than ``h x A`` independent ones, in units of the normalised action, and with the imitation
    network's scale (means in the hundreds before tanh after chunk-bc's L1) out of the gradient's way.

    Its encoding is ``[chunk (h*A, squashed units), c (K*A)]``: decoded from the chunk, scored exactly from the
    coefficients (a Gaussian, no tanh)."""

    def __init__(self, observation_dim: int, tokenizer: ChunkTokenizer, hidden_dims, basis: int, initial_std: float):
        super().__init__(observation_dim, tokenizer, hidden_dims)
        self.net.requires_grad_(False)
        self.coefficients = basis * tokenizer.action_dim
        self.register_buffer("basis", cosine_basis(tokenizer.horizon, basis), persistent=False)
        self.residual = MLP(observation_dim + self.chunk_dim, hidden_dims, self.coefficients)
        nn.init.zeros_(self.residual.linears[-1].weight)
        nn.init.zeros_(self.residual.linears[-1].bias)
        self.residual_log_std = nn.Parameter(torch.full((self.coefficients,), math.log(initial_std)))

    def add_log_std_offset(self) -> nn.Parameter:
        raise ValueError("the residual policy learns its own log-std (residual_log_std): it takes no offset")

    @torch.no_grad()
    def base_chunk(self, observations: torch.Tensor) -> torch.Tensor:
        """The frozen imitation policy's greedy chunk [B, h*A] in squashed units."""
        return torch.tanh(self.net(observations).chunk(2, dim=-1)[0])

    def residual_distribution(self, observations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(base chunk [B, h*A], coefficient mean [B, K*A], log-std [B, K*A])."""
        base = self.base_chunk(observations)
        mean = self.residual(observations, base)
        return base, mean, self.residual_log_std.clamp(LOG_STD_MIN, LOG_STD_MAX).expand_as(mean)

    def evaluate_elements(self, observations, encoded):
        _, mean, log_std = self.residual_distribution(observations)
        per_coefficient = gaussian_log_probs(mean, log_std, encoded[:, self.chunk_dim :].float())
        return per_coefficient, torch.ones_like(per_coefficient, dtype=torch.bool), gaussian_entropy(log_std)

    def l1_imitation_loss(self, observations, encoded):
        raise ValueError("the residual policy is for chunk-ppo fine-tuning; chunk-bc trains the Gaussian actor")

    @torch.no_grad()
    def sample(self, observations, temperature: float = 1.0, greedy: bool = False, noise: GlobalNoise = GLOBAL_NOISE):
        base, mean, log_std = self.residual_distribution(observations)
        c = mean if greedy else mean + temperature * log_std.exp() * noise.normal(mean.shape, mean.device)
        shapes = c.view(len(c), -1, self.tokenizer.action_dim)  # [B, K, A]
        correction = torch.einsum("tk,bka->bta", self.basis, shapes).flatten(1)
        encoded = torch.cat([(base + correction).clamp(-1.0, 1.0), c], dim=1)
        return encoded, gaussian_log_probs(mean, log_std, c).sum(-1)

    def encode(self, chunks: np.ndarray) -> torch.Tensor:
        raise ValueError("the residual policy cannot encode a dataset chunk: its coefficients depend on the state")

    def decode(self, encoded: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        squashed = encoded[:, : self.chunk_dim].float().cpu().numpy()
        normalized = squashed.reshape(-1, self.tokenizer.horizon, self.tokenizer.action_dim) / SQUASH_EDGE
        return self.tokenizer.unnormalize(normalized), np.zeros(len(normalized), dtype=bool)


class ValueHead(nn.Module):
    """``V(s)``: the baseline of chunk-level GAE. (A value of the state and the chosen chunk would be an
    action-dependent baseline: once it fits, every advantage is about 0 and PPO learns nothing.)"""

    def __init__(self, observation_dim: int, hidden_dims=(256, 256)):
        super().__init__()
        self.net = MLP(observation_dim, hidden_dims, 1)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.net(observations)[..., 0]
