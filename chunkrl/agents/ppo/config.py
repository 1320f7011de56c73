"""Settings of chunk-level PPO and its imitation pre-training (chunk-ppo, chunk-bc)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from chunkrl.agents.section import AgentSection
from chunkrl.nets.tokenizer import TokenizerSettings


@dataclass
class ChunkPPOConfig(AgentSection):
    """Chunk-level PPO (chunk-ppo) and its imitation pre-training (chunk-bc): one decision is one chunk."""

    actor: Literal["tokens", "gaussian"] = "tokens"
    """tokens: the autoregressive transformer over FAST-style chunk tokens; gaussian: the continuous
    tanh-Gaussian chunk baseline."""
    gaussian_imitation: Literal["l1", "nll"] = "l1"
    """How chunk-bc fits the Gaussian actor: l1 (ACT's loss, the mean absolute error of the greedy chunk, with
    the log-std fitted by likelihood around it) or nll (the likelihood of mean and log-std together). The
    token actor always uses the tokens' cross-entropy."""
    log_std_floor: float | None = None
    """Lower bound of the Gaussian actor's log standard deviations (pre-tanh, normalised units) wherever it acts
    and learns; None: the network's own bound (-5). A floor gives PPO room to explore around a tightly imitated
    policy."""
    residual_basis: int | None = None
    """chunk-ppo with the Gaussian actor from an imitation checkpoint: fine-tune a residual over the frozen imitation
    policy instead of the imitation network itself (``nets/token_actor.py: ResidualChunkPolicy``): this many smooth
    shapes in time per action dimension (1: one offset per dimension held over the chunk; at most the chunk's
    length), whose coefficients PPO samples. None: PPO moves the imitation network's own weights."""
    residual_std: float = 0.02
    """Initial standard deviation of the residual's coefficients (normalised action units, where the
    demonstrations span [-0.9, 0.9]); learned from there."""
    width: int = 128
    """Transformer width (token actor)."""
    layers: int = 2
    """Transformer layers (token actor)."""
    heads: int = 4
    """Attention heads (token actor)."""
    hidden_dims: tuple[int, ...] = (256, 256)
    """Hidden widths of the value head (and of the Gaussian actor)."""
    value_input: Literal["state"] = "state"
    """What the value head reads: the state, V(s). (state-chunk, V(s, chunk), was removed: an action-dependent
    baseline makes every advantage about 0 once it fits, so PPO learned nothing with it.)"""
    tokenizer: TokenizerSettings = field(default_factory=TokenizerSettings)
    """How chunks become tokens (fitted on the dataset; saved with every checkpoint)."""
    learning_rate: float = 3e-4
    """Adam learning rate of the actor (and of the value head unless value_learning_rate is set)."""
    value_learning_rate: float | None = None
    """Adam learning rate of the value head (None: learning_rate). Fine-tuning an imitation policy wants the two
    apart: a small step for the actor, whose chunks it must not wreck, and a usual one for the fresh value head."""
    desired_kl: float | None = None
    """Adapt the actor's learning rate after every minibatch to keep its approximate KL near this value (legged_gym /
    rsl_rl's rule: divide by 1.5 above twice it, multiply by 1.5 below half of it, within [1e-8, 1e-2]); None: a
    fixed learning rate. The KL is the logged ``ppo/approx_kl``: per chunk for the chunk ratio, per element for the
    token and dimension ratios. It sets the step by how far the policy moves, whatever its spread: an imitation
    policy with standard deviations of e^-5 needs steps a hundred times smaller than one with e^-0.5."""
    log_std_learning_rate: float | None = None
    """Gaussian actor under chunk-ppo: a learned offset of its log-std (one per number of the chunk, starting at 0,
    so that PPO starts from the imitation policy as it is) with this Adam rate of its own, not scaled by
    desired_kl; None: no offset. The network's own spread moves only at the actor's rate, which fine-tuning keeps
    at 1e-6 to 1e-8, too slow for PPO to narrow or widen it."""
    value_warmup_steps: int = 0
    """Environment steps at the start of the run in which only the value head learns (the actor collects but is
    not updated), so that the first policy updates read advantages from a fitted value rather than a fresh one."""
    num_envs: int = 4
    """Environments stepped together (gymnasium's vector API)."""
    chunks_per_update: int = 128
    """Decisions collected per rollout, over all environments (a multiple of num_envs)."""
    epochs: int = 4
    """Passes over each rollout."""
    minibatch_size: int = 32
    """Decisions per gradient step."""
    gae_lambda: float = 0.95
    """GAE λ, applied once per decision."""
    ratio: Literal["chunk", "token", "dimension"] = "chunk"
    """Granularity of the PPO ratio: chunk (one ratio per decision, the joint probability of the whole chunk),
    token (one per predicted token of the token actor, each clipped, the decision's advantage for all of them) or
    dimension (one per number of the Gaussian actor's chunk)."""
    clip: float = 0.2
    """PPO ratio clip ε."""
    value_clip: float | None = None
    """Clip the value update to ±value_clip around the collected value (None: plain squared error)."""
    value_coef: float = 0.5
    """Weight of the value loss."""
    entropy_coef: float = 0.0
    """Weight of the entropy bonus (mean entropy per token, or per dimension for the Gaussian actor)."""
    max_grad_norm: float = 0.5
    """Gradient norm bound, of the actor's and of the value head's gradients apart."""
    target_kl: float | None = 0.05
    """Stop a rollout's epochs early once a minibatch's approximate KL exceeds this (None: never)."""
    normalize_advantages: bool = True
    """Standardise advantages within each minibatch."""
    temperature: float = 1.0
    """Sampling temperature of the token actor (evaluation and, for chunk-bc, acting). chunk-ppo needs 1: it
    trains the policy it samples from, and its stored log-probabilities are those of temperature 1."""

    def summary(self) -> str:
        return f"{self.actor} actor, width {self.width}, layers {self.layers}, value {list(self.hidden_dims)}"

    def problems(self, section: str) -> list[str]:
        problems = self.tokenizer.problems(f"{section}.tokenizer")
        positive = ("width", "layers", "heads", "num_envs", "chunks_per_update", "epochs", "minibatch_size")
        problems += [f"{section}.{n} must be >= 1 (got {getattr(self, n)})" for n in positive if getattr(self, n) < 1]
        rates = {"learning_rate": self.learning_rate, "value_learning_rate": self.value_learning_rate}
        rates["log_std_learning_rate"] = self.log_std_learning_rate
        if self.log_std_learning_rate is not None and self.actor != "gaussian":
            problems.append(f"{section}.log_std_learning_rate is for the gaussian actor (this one: {self.actor})")
        for name, rate in rates.items():
            if rate is not None and not (math.isfinite(rate) and rate > 0):
                problems.append(f"{section}.{name} must be a number > 0 (got {rate})")
        if self.value_warmup_steps < 0:
            problems.append(f"{section}.value_warmup_steps must be >= 0 (got {self.value_warmup_steps})")
        wanted = {"token": "tokens", "dimension": "gaussian"}.get(self.ratio, self.actor)
        if wanted != self.actor:
            problems.append(f"{section}.ratio {self.ratio} is for the {wanted} actor (this one: {self.actor})")
        if self.residual_basis is not None:
            if self.actor != "gaussian":
                problems.append(f"{section}.residual_basis is for the gaussian actor (this one: {self.actor})")
            if self.residual_basis < 1:
                problems.append(f"{section}.residual_basis must be >= 1 (got {self.residual_basis})")
            if self.log_std_learning_rate is not None:
                problems.append(
                    f"{section}.log_std_learning_rate and residual_basis exclude each other: the residual's log-std is "
                    "a parameter of its own, learned at learning_rate"
                )
        if not (math.isfinite(self.residual_std) and 0 < self.residual_std <= 1):
            problems.append(f"{section}.residual_std must be in (0, 1] (got {self.residual_std})")
        if self.log_std_floor is not None and not (math.isfinite(self.log_std_floor) and -5 <= self.log_std_floor < 2):
            problems.append(f"{section}.log_std_floor must be in [-5, 2) (got {self.log_std_floor})")
        if self.width % self.heads:
            problems.append(f"{section}.width {self.width} must be a multiple of heads {self.heads}")
        if self.num_envs >= 1 and self.chunks_per_update % self.num_envs:
            problems.append(
                f"{section}.chunks_per_update {self.chunks_per_update} must be a multiple of num_envs {self.num_envs}"
            )
        if self.minibatch_size > self.chunks_per_update:
            problems.append(
                f"{section}.minibatch_size {self.minibatch_size} exceeds chunks_per_update {self.chunks_per_update}"
            )
        if not 0.0 <= self.gae_lambda <= 1.0:
            problems.append(f"{section}.gae_lambda must be in [0, 1] (got {self.gae_lambda})")
        positive = {"clip": self.clip, "temperature": self.temperature, "max_grad_norm": self.max_grad_norm}
        optional = {"value_clip": self.value_clip, "target_kl": self.target_kl, "desired_kl": self.desired_kl}
        positive.update({k: v for k, v in optional.items() if v is not None})
        for name, value in positive.items():
            if not (math.isfinite(value) and value > 0):  # NaN fails every comparison: check it explicitly
                problems.append(f"{section}.{name} must be a number > 0 (got {value})")
        for name in ("value_coef", "entropy_coef"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                problems.append(f"{section}.{name} must be a number >= 0 (got {value})")
        return problems
