"""An ACT-style chunk actor (Action Chunking with Transformers), stochastic for SAC.

``h`` learned query embeddings, one per chunk step, attend through a transformer decoder to memory
tokens made from the observation:

- a single observation [B, obs] is projected straight to ``memory_tokens`` tokens (no encoder: there
  is no sequence to encode);
- an observation history [B, T, obs] (oldest first, with ``valid`` [B, T] marking real observations;
  positions before an episode's start are padding) becomes T tokens with learned position
  embeddings, encoded by a transformer encoder whose attention ignores the padding; the decoder's
  cross-attention ignores it too.

Each decoded step gives the Gaussian mean and log-std of that step's action (tanh-squashed by
``GaussianChunkActor``), from one head or from split heads per named action group (e.g. arm / hand
slices), concatenated in action order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from chunkrl.nets.actors import GaussianChunkActor, bounded_log_std


def parse_action_groups(groups: tuple[str, ...], action_dim: int) -> list[tuple[str, int, int]]:
    """``("arm:0:3", "hand:3:5")`` -> [(name, start, end)] sorted by start; they must tile [0, action_dim)."""
    if not groups:
        return [("action", 0, action_dim)]
    parsed = []
    for group in groups:
        parts = group.split(":")
        if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
            raise ValueError(f"action group {group!r} must read name:start:end, e.g. arm:0:3")
        parsed.append((parts[0], int(parts[1]), int(parts[2])))
    parsed.sort(key=lambda g: g[1])
    position = 0
    for name, start, end in parsed:
        if start != position or end <= start:
            raise ValueError(
                f"action groups {list(groups)} must cover the {action_dim} action dimensions in order without "
                f"gaps or overlaps; group {name!r} spans [{start}, {end}) but the next free dimension is {position}"
            )
        position = end
    if position != action_dim:
        raise ValueError(f"action groups {list(groups)} cover {position} dimensions; the action has {action_dim}")
    return parsed


@dataclass
class ACTActorConfig:
    """The ACT-style transformer chunk actor (``--sac.actor act``)."""

    width: int = 256
    """Token width (d_model)."""
    heads: int = 4
    """Attention heads (must divide the width)."""
    decoder_layers: int = 4
    """Transformer decoder layers over the h chunk-step queries."""
    encoder_layers: int = 2
    """Transformer encoder layers over the observation history (only with obs_history > 1)."""
    feedforward: int = 1024
    """Feed-forward width inside each transformer layer."""
    dropout: float = 0.0
    """Dropout inside the transformer layers (active in training updates only)."""
    memory_tokens: int = 1
    """Tokens a single observation is projected to (obs_history 1)."""
    obs_history: int = 1
    """Observations the actor reads: the current one and the obs_history - 1 before it (padded and
    masked at episode starts). The critic always scores the current observation."""
    action_groups: tuple[str, ...] = ()
    """Split output heads per named slice of the action vector, as name:start:end (e.g. arm:0:3
    hand:3:5); they must cover the action in order. Empty: one head for the whole action."""


class ACTChunkActor(GaussianChunkActor):
    """Transformer decoder over ``h`` chunk-step queries; see the module docstring.

    Args:
        observation_dim: size of one observation.
        action_dim: size of one action ``A``.
        horizon: chunk length ``h``.
        config: width, depth, heads, feed-forward size, dropout, memory tokens, history, action groups.
    """

    def __init__(self, observation_dim: int, action_dim: int, horizon: int, config: ACTActorConfig):
        super().__init__()
        c = self.config = config
        if c.width % c.heads:
            raise ValueError(f"the ACT width ({c.width}) must be divisible by its heads ({c.heads})")
        self.horizon, self.action_dim = horizon, action_dim
        self.groups = parse_action_groups(c.action_groups, action_dim)

        def layer(kind):
            options = {"activation": "gelu", "batch_first": True, "norm_first": True}
            return kind(c.width, c.heads, c.feedforward, c.dropout, **options)

        if c.obs_history > 1:  # tokens per observation, with positions, through an encoder
            self.observation_tokens = None
            self.history_tokens = nn.Linear(observation_dim, c.width)
            self.history_positions = nn.Parameter(torch.randn(c.obs_history, c.width) * 0.02)
            encoder_layer = layer(nn.TransformerEncoderLayer)
            self.encoder = nn.TransformerEncoder(encoder_layer, c.encoder_layers, enable_nested_tensor=False)
        else:  # one observation, projected straight to memory tokens
            self.observation_tokens = nn.Linear(observation_dim, c.width * c.memory_tokens)
            self.encoder = None
        self.queries = nn.Parameter(torch.randn(horizon, c.width) * 0.02)
        self.decoder = nn.TransformerDecoder(layer(nn.TransformerDecoderLayer), c.decoder_layers)
        self.norm = nn.LayerNorm(c.width)
        self.heads = nn.ModuleList(nn.Linear(c.width, 2 * (end - start)) for _, start, end in self.groups)

    def memory(
        self, observations: torch.Tensor, valid: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Memory tokens [B, M, width] and the key padding mask [B, M] (True = ignore) or None."""
        if self.encoder is None:
            if observations.dim() != 2:
                raise ValueError("this ACT actor was built for single observations (obs_history 1) but got a history")
            tokens = self.observation_tokens(observations)
            return tokens.view(observations.shape[0], self.config.memory_tokens, -1), None
        if observations.dim() != 3:
            raise ValueError(
                f"this ACT actor reads histories of {self.config.obs_history} observations [B, T, obs]; "
                f"got shape {tuple(observations.shape)}"
            )
        padding = None if valid is None else ~valid.bool()
        tokens = self.history_tokens(observations) + self.history_positions[-observations.shape[1] :]
        return self.encoder(tokens, src_key_padding_mask=padding), padding

    def forward(
        self, observations: torch.Tensor, valid: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        memory, padding = self.memory(observations, valid)
        queries = self.queries.expand(memory.shape[0], -1, -1)
        decoded = self.norm(self.decoder(queries, memory, memory_key_padding_mask=padding))  # [B, h, width]
        means, log_stds = zip(*(head(decoded).chunk(2, dim=-1) for head in self.heads), strict=True)
        mean = torch.cat(means, dim=-1).flatten(1)  # groups in action order, then steps: [B, h*A]
        log_std = torch.cat(log_stds, dim=-1).flatten(1)
        return mean, bounded_log_std(log_std)
