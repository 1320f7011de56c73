"""Chunk-level PPO (``chunk-ppo``) and its imitation pre-training (``chunk-bc``).

One decision is one chunk: the policy (``nets/token_actor.py``: autoregressive tokens, or the Gaussian
baseline) samples a chunk, the environment runs it open loop (``envs/executor.py: ChunkStepEnv``), and
PPO's ratio is that of the whole chunk's probability, ``exp(log π_new(chunk|s) - log π_old(chunk|s))``,
with advantages from chunk-level GAE (``data/rollouts.py``).

Checkpoints keep the actor (``actor_backbone.*``) and the value (``value_head.*``) apart, and the
tokenizer beside them (``tokenizer.json``). An imitation checkpoint (chunk-bc) holds the actor alone;
``load_initial_weights`` tells the kinds apart, validates every shape, and stops on any mismatch unless
``allow_partial`` (then it loads what matches and lists what it skipped).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn

from chunkrl.agents.base import Agent, make_adam
from chunkrl.agents.ppo.config import ChunkPPOConfig
from chunkrl.data.chunks import ChunkBatch
from chunkrl.data.rollouts import RolloutBatch
from chunkrl.nets.token_actor import GaussianChunkPolicy, ResidualChunkPolicy, TokenChunkActor, ValueHead
from chunkrl.nets.tokenizer import ChunkTokenizer

TOKENIZER_FILE = "tokenizer.json"
ADAPTIVE_LR_FACTOR, ADAPTIVE_LR_BOUNDS = 1.5, (1e-8, 1e-2)
"""``desired_kl``'s rule (legged_gym / rsl_rl): the actor's learning rate is divided or multiplied by 1.5 per
minibatch, within these bounds."""
LOG_RATIO_MAX = 20.0
"""Upper bound of a PPO log-ratio (a ratio of about 5e8). A policy imitated tightly (the Gaussian chunk actor
after chunk-bc: standard deviations of e^-5 over 140 numbers) moves its chunk log-probability by hundreds in one
update, and exp() of that overflowed: the first PPO run from such a checkpoint stopped on a NaN loss."""


def clipped_surrogate(
    log_ratio: torch.Tensor, advantages: torch.Tensor, clip: float, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """PPO's policy loss ``-mean(min(r A, clip(r, 1 - ε, 1 + ε) A))`` with ``r = exp(log_ratio)``: one ratio per
    decision ([B]), or one per element ([B, K], the decision's advantage for each, the mean over the elements
    ``mask`` marks). The log-ratio is bounded above by ``LOG_RATIO_MAX`` first: a ratio past it is clipped for a
    positive advantage anyway, and unbounded it overflows to inf, whose gradient (inf x 0) is NaN."""
    ratio = log_ratio.clamp(max=LOG_RATIO_MAX).exp()
    if log_ratio.dim() == 2:
        advantages = advantages[:, None]
    surrogate = torch.min(ratio * advantages, ratio.clamp(1 - clip, 1 + clip) * advantages)
    if mask is None:
        return -surrogate.mean()
    return -(surrogate * mask).sum() / mask.sum().clamp_min(1)


def build_actor(observation_dim: int, tokenizer: ChunkTokenizer, config: ChunkPPOConfig) -> nn.Module:
    if config.residual_basis is not None:  # chunk-ppo only: chunk-bc refuses it
        if config.residual_basis > tokenizer.horizon:
            raise ValueError(
                f"ppo.residual_basis {config.residual_basis} exceeds the chunk's {tokenizer.horizon} steps: a chunk of "
                f"h steps has h independent shapes in time; use at most {tokenizer.horizon}"
            )
        return ResidualChunkPolicy(
            observation_dim, tokenizer, config.hidden_dims, config.residual_basis, config.residual_std
        )
    if config.actor == "tokens":
        return TokenChunkActor(
            observation_dim, tokenizer, tokenizer.max_tokens, config.width, config.layers, config.heads
        )
    return GaussianChunkPolicy(observation_dim, tokenizer, config.hidden_dims, config.log_std_floor)


class TokenPolicyAgent(Agent):
    """What chunk-bc and chunk-ppo share: the actor, its tokenizer, acting, the tokenizer file."""

    unit_actions = False  # the tokenizer maps the demonstrations' quantiles itself

    def __init__(
        self,
        observation_dim,
        action_dim,
        horizon,
        config: ChunkPPOConfig,
        boundary=None,
        tokenizer=None,
        critic_horizon=None,
    ):
        super().__init__(observation_dim, action_dim, horizon, critic_horizon)
        if tokenizer is None or (tokenizer.horizon, tokenizer.action_dim) != (horizon, action_dim):
            raise ValueError(f"{type(self).__name__} needs a tokenizer for chunks of {horizon} x {action_dim}")
        self.config, self.tokenizer = config, tokenizer
        self.actor_backbone = build_actor(observation_dim, tokenizer, config)
        self.invalid_decodes = 0  # malformed sampled chunks since the last log (repaired, counted)

    def decode(self, encoded: torch.Tensor) -> np.ndarray:
        chunks, invalid = self.actor_backbone.decode(encoded)
        self.invalid_decodes += int(invalid.sum())
        return chunks

    def act_tensor(self, observations, deterministic=False, history_valid=None) -> torch.Tensor:
        encoded, _ = self.actor_backbone.sample(
            observations.float(), self.config.temperature, greedy=deterministic, noise=self.noise
        )
        return torch.as_tensor(self.decode(encoded), dtype=torch.float32)

    def extra_files(self) -> dict[str, str]:
        """Files saved beside the weights in every checkpoint."""
        return {TOKENIZER_FILE: self.tokenizer.to_json()}


class ChunkBCAgent(TokenPolicyAgent):
    """Imitation on chunks the trajectory does not cut short: maximise log π(dataset chunk | s) (the tokens'
    cross-entropy; the Gaussian actor's likelihood with ``gaussian_imitation=nll``), or for the Gaussian actor
    ACT's L1 loss on its greedy chunk (``l1``, the default)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.config.residual_basis is not None:
            raise ValueError(
                "ppo.residual_basis is chunk-ppo's fine-tuning of a residual over an imitation policy; chunk-bc "
                "trains the imitation policy itself: drop it here and set it on the chunk-ppo run"
            )
        self.optimizer = make_adam(self.actor_backbone.parameters(), self.config.learning_rate)
        self.l1_imitation = self.config.actor == "gaussian" and self.config.gaussian_imitation == "l1"

    def update(self, batch: ChunkBatch) -> dict[str, torch.Tensor]:
        whole = batch.valid.all(dim=1)
        encoded = self.actor_backbone.encode(batch.actions.cpu().numpy())
        if self.l1_imitation:
            per_chunk, log_pi, entropy = self.actor_backbone.l1_imitation_loss(batch.observations, encoded)
        else:
            log_pi, entropy = self.actor_backbone.evaluate(batch.observations, encoded)
            per_chunk = -log_pi
        loss = (per_chunk * whole).sum() / whole.sum().clamp_min(1)
        nll = -(log_pi.detach() * whole).sum() / whole.sum().clamp_min(1)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = nn.utils.clip_grad_norm_(self.actor_backbone.parameters(), self.config.max_grad_norm)
        self.optimizer.step()
        tokens = (encoded >= 0).sum(1).float().mean() if encoded.dtype == torch.long else torch.tensor(0.0)
        return {
            "loss/total": loss.detach(),
            "bc/nll": nll,
            "bc/grad_norm": norm,
            "bc/tokens": tokens,
            "bc/token_entropy": entropy.mean().detach(),
        }

    def optimizers(self):
        return {"optimizer": self.optimizer}


class ChunkPPOAgent(TokenPolicyAgent):
    """PPO over chunk decisions: clipped surrogate, (optionally clipped) value loss, entropy bonus,
    advantage normalisation, gradient clipping; the loop stops a rollout's epochs on ``target_kl``."""

    progress_metrics = {"ppo/chunk_reward": "chunk reward", "ppo/approx_kl": "kl"}
    fresh_on_init = ("value_head.",)  # an imitation checkpoint has no value head: it starts fresh

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.config.temperature != 1.0:
            raise ValueError(
                f"chunk-ppo trains the policy it samples from, so ppo.temperature must be 1 (got "
                f"{self.config.temperature}): the stored log-probabilities and the PPO ratio are those of temperature "
                "1. Sample at another temperature when evaluating a chunk-bc policy, or after training."
            )
        self.value_head = ValueHead(self.observation_dim, self.config.hidden_dims)
        value_rate = self.config.value_learning_rate or self.config.learning_rate
        offset = []  # the Gaussian actor's learned log-std offset, at its own rate (log_std_learning_rate)
        if self.config.log_std_learning_rate is not None:
            offset = [self.actor_backbone.add_log_std_offset()]
            self.fresh_on_init = (*self.fresh_on_init, "actor_backbone.log_std_offset")  # not in imitation ones
        if self.config.residual_basis is not None:  # the residual and its log-std start fresh over the imitation net
            self.fresh_on_init = (*self.fresh_on_init, "actor_backbone.residual")
            self.needs_initial_weights = True
        named = self.actor_backbone.named_parameters()
        actor = [p for name, p in named if name != "log_std_offset" and p.requires_grad]  # not a frozen imitation
        groups = [{"params": actor}, {"params": list(self.value_head.parameters()), "lr": value_rate}]
        if offset:
            groups.append({"params": offset, "lr": self.config.log_std_learning_rate})
        self.optimizer = make_adam(groups, self.config.learning_rate)
        self.actor_learns = True  # False while the value warms up (prepare_rollout decides, per rollout)
        self._joint = [_ActorCritic(self.actor_backbone, self.value_head)]  # a list: not a submodule

    def distribute(self) -> None:
        """Average gradients over the ranks of ``torch.distributed`` (DistributedDataParallel; it also
        broadcasts rank 0's weights, so that every rank starts from the same ones)."""
        self._joint[0] = nn.parallel.DistributedDataParallel(self._joint[0])

    @torch.no_grad()
    def collect(self, observations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, np.ndarray]:
        """(encoded chunks, log π, V, chunks in action units) for a batch of observations."""
        encoded, log_pi = self.actor_backbone.sample(observations, self.config.temperature, noise=self.noise)
        chunks = self.decode(encoded)
        return encoded, log_pi, self.value(observations), chunks

    @torch.no_grad()
    def value(self, observations: torch.Tensor) -> torch.Tensor:
        """``V(s)`` [B]."""
        return self.value_head(observations)

    @torch.no_grad()
    def prepare_rollout(self, batch: RolloutBatch, online_step: int = 0) -> RolloutBatch:
        """Before a rollout's epochs: whether the actor learns from it (not while ``online_step``, the environment
        steps before this rollout, is within ``value_warmup_steps``) and, with a per-token or per-dimension ratio,
        the collecting policy's log-probability of each element (the policy has not moved since it collected
        them)."""
        self.actor_learns = online_step >= self.config.value_warmup_steps
        if self.config.ratio == "chunk":
            return batch
        elements, _, _ = self.actor_backbone.evaluate_elements(batch.observations, batch.encoded)
        return dataclasses.replace(batch, element_log_probs=elements)

    def update(self, batch: RolloutBatch) -> dict[str, torch.Tensor]:
        c = self.config
        per_element = c.ratio != "chunk"
        log_pi, entropy, values, mask = self._joint[0](batch.observations, batch.encoded, per_element)
        if per_element and batch.element_log_probs is None:
            raise ValueError("a per-element PPO ratio needs the rollout prepared by prepare_rollout")
        log_ratio = (log_pi - batch.element_log_probs) * mask if per_element else log_pi - batch.log_probs
        ratio = log_ratio.exp()
        advantages = batch.advantages
        if c.normalize_advantages and len(advantages) > 1:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        policy_loss = clipped_surrogate(log_ratio, advantages, c.clip, mask if per_element else None)
        value_error = (values - batch.returns).square()
        if c.value_clip is not None:
            clipped = batch.values + (values - batch.values).clamp(-c.value_clip, c.value_clip)
            value_error = torch.max(value_error, (clipped - batch.returns).square())
        value_loss = 0.5 * value_error.mean()
        loss = c.value_coef * value_loss
        if self.actor_learns:  # during the value's warm-up the actor gets no gradient, so Adam leaves it as it is
            loss = loss + policy_loss - c.entropy_coef * entropy.mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        # actor and value clipped apart: the value's gradient (returns in the hundreds) would otherwise set the
        # scale of the actor's step
        norm = nn.utils.clip_grad_norm_(self.actor_backbone.parameters(), c.max_grad_norm)
        value_norm = nn.utils.clip_grad_norm_(self.value_head.parameters(), c.max_grad_norm)
        self.optimizer.step()
        with torch.no_grad():
            counted = mask.float() if per_element else torch.ones_like(ratio)
            approx_kl = (((ratio - 1) - log_ratio) * counted).sum() / counted.sum()
            clip_fraction = (((ratio - 1).abs() > c.clip).float() * counted).sum() / counted.sum()
        return {
            "loss/total": loss.detach(),
            "ppo/policy_loss": policy_loss.detach(),
            "ppo/value_loss": value_loss.detach(),
            "ppo/token_entropy": entropy.mean().detach(),
            "ppo/approx_kl": approx_kl,
            "ppo/clip_fraction": clip_fraction,
            "ppo/ratio_mean": ratio.mean().detach(),
            "ppo/ratio_min": ratio.min().detach(),
            "ppo/ratio_max": ratio.max().detach(),
            "ppo/grad_norm": norm,
            "ppo/value_grad_norm": value_norm,
            "ppo/actor_lr": torch.tensor(self.optimizer.param_groups[0]["lr"]),
            **self._spread_metrics(),
        }

    def _spread_metrics(self) -> dict[str, torch.Tensor]:
        """The learned spreads' summaries: the log-std offset's, or the residual's log-std."""
        metrics = {}
        for name in ("log_std_offset", "residual_log_std"):
            value = getattr(self.actor_backbone, name, None)
            if value is not None:
                metrics |= {f"ppo/{name}_mean": value.detach().mean(), f"ppo/{name}_min": value.detach().min()}
        return metrics

    def adapt_learning_rate(self, approx_kl: float) -> None:
        """After a minibatch whose approximate KL (the mean over the ranks, so that all keep one rate) was
        ``approx_kl``: the actor's learning rate by ``desired_kl``'s rule (the optimizer's first group, saved with
        its state); nothing without ``desired_kl`` or while the value warms up."""
        group, desired = self.optimizer.param_groups[0], self.config.desired_kl
        if desired is None or not self.actor_learns:
            return
        if approx_kl > 2.0 * desired:
            group["lr"] = max(group["lr"] / ADAPTIVE_LR_FACTOR, ADAPTIVE_LR_BOUNDS[0])
        elif approx_kl < 0.5 * desired:
            group["lr"] = min(group["lr"] * ADAPTIVE_LR_FACTOR, ADAPTIVE_LR_BOUNDS[1])

    def stop_epochs(self, metrics: dict[str, torch.Tensor]) -> bool:
        """Whether the latest minibatch moved the policy too far (KL early stopping)."""
        return self.config.target_kl is not None and float(metrics["ppo/approx_kl"]) > self.config.target_kl

    def optimizers(self):
        return {"optimizer": self.optimizer}


class _ActorCritic(nn.Module):
    """Actor and value in one forward pass: what DistributedDataParallel wraps."""

    def __init__(self, actor: nn.Module, value: nn.Module):
        super().__init__()
        self.actor, self.value = actor, value

    def forward(self, observations, encoded, per_element: bool = False):
        """(log π [B] or per element [B, K], entropy [B], V [B], which elements count [B, K] or None)."""
        if per_element:
            elements, mask, entropy = self.actor.evaluate_elements(observations, encoded)
            return elements, entropy, self.value(observations), mask
        log_pi, entropy = self.actor.evaluate(observations, encoded)
        return log_pi, entropy, self.value(observations), None
