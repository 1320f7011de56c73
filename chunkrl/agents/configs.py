"""Typed configurations of the agents (kept beside, not inside, the agent modules).

Every agent config can ``summary()`` itself in one line (checkpoint errors quote it) and list its
``problems(section)``: values that could only fail later, checked before a run creates anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated, Literal

import tyro

from chunkrl.nets.tokenizer import TokenizerSettings


def network_problems(section: str, config) -> list[str]:
    """Problems of the settings most agents share: learning rate, Polyak rate, ensemble, layer widths."""
    problems = []
    if config.learning_rate <= 0:
        problems.append(f"{section}.learning_rate must be > 0 (got {config.learning_rate})")
    if not 0.0 < config.target_tau <= 1.0:
        problems.append(f"{section}.target_tau must be in (0, 1] (got {config.target_tau})")
    if config.num_critics < 1:
        problems.append(f"{section}.num_critics must be >= 1 (got {config.num_critics})")
    for dims in ("actor_hidden_dims", "critic_hidden_dims"):
        widths = getattr(config, dims)
        if not all(w >= 1 for w in widths):
            problems.append(f"{section}.{dims} must be positive widths (got {list(widths)})")
    return problems


class AgentSection:
    """What every agent's config section answers besides its own fields (``summary`` and ``problems`` are
    written per section)."""

    def execute_horizon_default(self) -> int | None:
        """Actions executed per query when --execute-horizon is not given; None: the whole chunk."""
        return None


@dataclass
class FlowAgentConfig(AgentSection):
    """The flow agents: FQL family (qc-fql, fql-n, fql) and best-of-N family (qc, bfn-n, bfn).
    Defaults: the paper's."""

    actor_hidden_dims: tuple[int, ...] = (512, 512, 512, 512)
    """Hidden layer widths of the flow (behaviour) policy and of the one-step policy."""
    critic_hidden_dims: tuple[int, ...] = (512, 512, 512, 512)
    """Hidden layer widths of every critic in the ensemble."""
    critic_layer_norm: bool = True
    """LayerNorm in the critic (the paper: yes)."""
    actor_layer_norm: bool = False
    """LayerNorm in the actors (the paper: no)."""
    num_critics: int = 2
    """Critic ensemble size."""
    q_aggregation: Literal["mean", "min"] = "mean"
    """How the ensemble's values are combined in the TD target."""
    learning_rate: float = 3e-4
    """Adam learning rate of every network."""
    target_tau: float = 0.005
    """Polyak rate of the target critic."""
    alpha: float | None = None
    """Distillation weight: actor loss = alpha * ||pi(s,z) - flow(s,z)||^2 - Q(s, pi(s,z)). None: the paper's
    value for the method and the task's domain (its Table 4: QC-FQL 300 on scene, puzzle-3x3 and
    cube-double, 100 on cube-triple/quadruple; FQL 300 except 100 on puzzle-3x3; FQL-n 100), else 100."""
    flow_steps: int = 10
    """Euler steps of the flow policy."""
    normalize_q_loss: bool = False
    """Divide the actor's Q term by the mean |Q| of the batch (FQL option)."""
    num_samples: int | None = None
    """Best-of-N candidates per state (qc, bfn-n, bfn); None: the paper's value (its Table 5: QC 64 on
    puzzle-3x3 and 32 elsewhere; BFN and BFN-n 4)."""
    target_selection: Literal["critic", "target_critic"] = "critic"
    """Best-of-N TD target at s': critic (the paper's code) picks the best of the N chunks with the online
    critic, as when acting, and the target critic scores that chunk; target_critic picks and scores with
    the target critic (a max over its own estimates, biased upwards)."""
    action_chunking: bool = True
    """True: the critic and policy act on the whole chunk (QC-FQL). False: single action with h-step
    return (FQL-n; with horizon 1 this is FQL)."""

    def summary(self) -> str:
        return f"actor {list(self.actor_hidden_dims)}, critic {list(self.critic_hidden_dims)}"

    def problems(self, section: str) -> list[str]:
        problems = network_problems(section, self)
        if self.flow_steps < 1:
            problems.append(f"{section}.flow_steps must be >= 1 (got {self.flow_steps})")
        if self.alpha is not None and self.alpha < 0:
            problems.append(f"{section}.alpha must be >= 0 (got {self.alpha})")
        if self.num_samples is not None and self.num_samples < 1:
            problems.append(f"{section}.num_samples must be >= 1 (got {self.num_samples})")
        return problems


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


@dataclass
class SACAgentConfig(AgentSection):
    """The chunked SAC family: QC-RLPD, RLPD-AC and RLPD. Defaults: the paper's RLPD settings."""

    actor_hidden_dims: tuple[int, ...] = (512, 512, 512, 512)
    """Hidden layer widths of the MLP actor."""
    critic_hidden_dims: tuple[int, ...] = (512, 512, 512, 512)
    """Hidden layer widths of every critic in the ensemble."""
    critic_layer_norm: bool = True
    """LayerNorm in the critic (the paper: yes)."""
    actor_layer_norm: bool = False
    """LayerNorm in the actor (the paper: no)."""
    num_critics: int = 10
    """Critic ensemble size (the paper's RLPD: 10)."""
    rho: float = 0.0
    """Pessimism of the ensemble's value: mean - rho * std over members, in the TD target and the actor
    objective. 0 (default): the plain mean over the 10 critics, as in the paper's code."""
    q_aggregation: Literal["mean", "min"] = "mean"
    """The ensemble's value in the TD target and the actor objective: mean (minus rho * std; the paper's code)
    or min, the true minimum over all critics (the SAC-with-Q-chunking specification's target; mean - rho * std
    equals it only for two critics and rho = 1)."""
    learning_rate: float = 3e-4
    """Adam learning rate of the actor, critic and temperature."""
    target_tau: float = 0.005
    """Polyak rate of the target critic."""
    init_temperature: float = 1.0
    """Initial entropy temperature."""
    target_entropy: float | None = None
    """Fixed target entropy; None: -target_entropy_multiplier * action_dim, scaled by target_entropy_scaling."""
    target_entropy_multiplier: float = 0.5
    """Per-action-dimension target entropy magnitude (the paper's code: 0.5)."""
    target_entropy_scaling: Literal["none", "linear", "sqrt"] = "linear"
    """How the target entropy grows with the chunk: none (one action's target), linear (x h: every chunk
    dimension counts, matching the joint log-probability), sqrt (x sqrt(h))."""
    actor: Annotated[Literal["mlp", "act"], tyro.conf.arg(aliases=("--actor",))] = "mlp"
    """Chunk actor: an MLP (the paper's) or the ACT-style transformer (settings under act)."""
    act: ACTActorConfig = field(default_factory=ACTActorConfig)
    """Settings of the ACT-style actor."""
    bc_alpha: float | None = None
    """Weight of the behaviour-cloning term on dataset chunks (the start weight when it decays);
    None: the method's default (QC-RLPD 0.01, RLPD-AC and RLPD 0)."""
    bc_rows: Literal["all", "dataset"] = "all"
    """Which chunks of a batch the BC term imitates: all (the paper's code: with symmetric replay the online
    half too, i.e. the agent's own actions) or dataset (the demonstrations only, as the specification)."""
    bc_loss: Literal["nll", "mse"] = "nll"
    """BC term: negative log-likelihood of the dataset chunk (the paper's), or the squared error of the
    deterministic chunk tanh(mean) against it."""
    bc_weight_schedule: Annotated[
        Literal["constant", "linear", "exponential"], tyro.conf.arg(aliases=("--bc-weight-schedule",))
    ] = "constant"
    """How the BC weight moves from bc_alpha to bc_alpha_end over bc_decay_steps updates (after any BC
    pre-training): constant (stays bc_alpha), linear, or exponential (geometric; both weights > 0)."""
    bc_alpha_end: float = 0.0
    """BC weight at the end of the decay."""
    bc_decay_steps: int = 100_000
    """Updates over which the BC weight decays."""
    bc_pretrain_steps: int = 0
    """First updates in which the actor learns by BC alone (weight 1, no Q or entropy term); the critic
    and temperature keep learning. Then the SAC losses with the scheduled BC weight take over."""
    critic_input: Literal["chunk", "first_action"] = "chunk"
    """chunk: Q(s, a_t..a_t+h-1), an unbiased h-step backup (recommended). first_action: Q(s, a_t) trained
    on the h-step return of the executed chunk (biased when the chunk was not the current policy's)."""
    actor_objective: Literal["standard", "conservative", "temporal_weighted"] = "standard"
    """With critic_input first_action, what the actor maximises: Q of the first action (standard), the
    minimum of Q over the chunk's actions (conservative), or their decay^t-weighted mean (temporal_weighted)."""
    temporal_decay: float = 0.9
    """Decay of the temporal_weighted objective's weights."""
    backup_entropy: bool = False
    """Subtract the entropy bonus in the TD target (classic SAC). The paper's RLPD code does not."""

    def execute_horizon_default(self) -> int | None:
        """A first-action critic with the standard objective trains only the chunk's first action by Q: such an
        agent re-plans every step (executes one action), as the specification's select_action does."""
        if self.critic_input == "first_action" and self.actor_objective == "standard":
            return 1
        return None

    def summary(self) -> str:
        actor = f"actor {list(self.actor_hidden_dims)}"
        if self.actor == "act":
            a = self.act
            actor = f"actor ACT width {a.width}, {a.decoder_layers} decoder layers, history {a.obs_history}"
        return f"{actor}, critic {list(self.critic_hidden_dims)}"

    def problems(self, section: str) -> list[str]:
        problems = network_problems(section, self)
        if self.rho < 0:
            problems.append(f"{section}.rho must be >= 0 (got {self.rho})")
        if self.q_aggregation == "min" and self.rho != 0:
            problems.append(f"{section}.rho applies to q_aggregation mean; with min leave it at 0 (got {self.rho})")
        return problems


@dataclass
class UNetConfig:
    """The temporal U-Net denoiser (``--diffusion.backbone unet``), Diffusion Policy's design."""

    channels: tuple[int, ...] = (64, 128, 256)
    """Channels per level; L levels halve the chunk's time axis L - 1 times (the chunk is padded to fit).
    Diffusion Policy uses (256, 512, 1024): about 16x the parameters, for GPUs."""
    kernel_size: int = 5
    """Temporal kernel of the convolutions."""
    groups: int = 8
    """GroupNorm groups (must divide every channel count)."""
    step_dim: int = 128
    """Width of the diffusion-step embedding."""


@dataclass
class ChunkPolicyQConfig(AgentSection):
    """What Diffusion-QL and CPQL share: the denoiser, the critic pair, the EMA actor, the Q term and
    how actions are chosen. Defaults: Diffusion-QL's (arXiv 2208.06193 and its code)."""

    backbone: Literal["mlp", "unet"] = "mlp"
    """Denoiser: mlp (Diffusion-QL's, over the flattened chunk) or unet (temporal U-Net, settings under unet)."""
    actor_hidden_dims: tuple[int, ...] = (256, 256, 256)
    """Hidden widths of the MLP denoiser (Mish)."""
    unet: UNetConfig = field(default_factory=UNetConfig)
    """Settings of the U-Net denoiser."""
    obs_horizon: int = 1
    """Observations the policy is conditioned on: the current one and the obs_horizon - 1 before it
    (zero-padded and masked at episode starts); the critic scores the current observation."""
    critic_hidden_dims: tuple[int, ...] = (256, 256, 256)
    """Hidden widths of each critic (Mish, as Diffusion-QL's)."""
    critic_layer_norm: bool = False
    """LayerNorm in the critics (Diffusion-QL: no)."""
    num_critics: int = 2
    """Critic heads; targets take the minimum over heads, the Q term uses two of them."""
    learning_rate: float = 3e-4
    """Adam learning rate of the actor and of the critics (separate optimizers)."""
    max_grad_norm: float | None = None
    """Gradient-norm bound of the actor and of the critics (each clipped separately); None: the
    method's value (Diffusion-QL 10, from its Kitchen setting; CPQL 8, from its Adroit pen setting)."""
    target_tau: float = 0.005
    """Polyak rate of the target critics (with target_update polyak)."""
    target_update: Literal["polyak", "ema"] | None = None
    """How the target critics follow the critics: polyak (every update at target_tau, Diffusion-QL's code)
    or ema (the EMA actor's schedule: ema_decay every ema_every updates from ema_start, held at the initial
    weights before it, as CPQL's code). None: the method's (see the README)."""
    next_actor: Literal["ema", "online"] | None = None
    """Which actor proposes the next chunk a' of the TD target: the EMA actor (Diffusion-QL's code) or the
    actor itself (CPQL's code). None: the method's."""
    eta: float | None = None
    """Weight of the normalised Q term in the actor loss; None: the method's value for the task's domain
    (see the README: Diffusion-QL 0.005, its Kitchen value; CPQL 0.1, its Adroit pen value)."""
    ema_decay: float = 0.995
    """Decay of the EMA actor (target actions; CPQL's consistency target)."""
    ema_every: int = 5
    """Updates between EMA steps."""
    ema_start: int = 1000
    """Updates before which the EMA actor simply follows the actor."""
    max_q_backup: bool = False
    """Target from max over max_q_samples next chunks per head, then the min over heads (Diffusion-QL's
    AntMaze setting); False: one next chunk, min over heads."""
    max_q_samples: int = 10
    """Next chunks sampled per state with max_q_backup."""
    act: Literal["softmax", "greedy"] = "softmax"
    """How a chunk is picked among act_samples candidates: softmax over their Q (the official procedure)
    or greedy (argmax)."""
    act_samples: int = 50
    """Candidate chunks per action query."""

    def summary(self) -> str:
        if self.backbone == "unet":
            actor = f"U-Net denoiser {list(self.unet.channels)} kernel {self.unet.kernel_size}"
        else:
            actor = f"MLP denoiser {list(self.actor_hidden_dims)}"
        return f"{actor}, history {self.obs_horizon}, critic {list(self.critic_hidden_dims)}"

    def problems(self, section: str) -> list[str]:
        problems = network_problems(section, self)
        need = [
            (self.num_critics >= 2, f"num_critics must be >= 2 (got {self.num_critics})"),
            (self.obs_horizon >= 1, f"obs_horizon must be >= 1 (got {self.obs_horizon})"),
            (self.eta is None or self.eta >= 0, f"eta must be >= 0 (got {self.eta})"),
            (0.0 <= self.ema_decay < 1.0, f"ema_decay must be in [0, 1) (got {self.ema_decay})"),
            (self.ema_every >= 1, f"ema_every must be >= 1 (got {self.ema_every})"),
            (self.ema_start >= 0, f"ema_start must be >= 0 (got {self.ema_start})"),
            (self.max_q_samples >= 1, f"max_q_samples must be >= 1 (got {self.max_q_samples})"),
            (self.act_samples >= 1, f"act_samples must be >= 1 (got {self.act_samples})"),
            (
                self.max_grad_norm is None or self.max_grad_norm > 0,
                f"max_grad_norm must be > 0 (got {self.max_grad_norm})",
            ),
            (
                all(c >= 1 and c % self.unet.groups == 0 for c in self.unet.channels) and self.unet.channels,
                f"unet.channels must be multiples of unet.groups={self.unet.groups} (got {list(self.unet.channels)})",
            ),
            (self.unet.kernel_size % 2 == 1, f"unet.kernel_size must be odd (got {self.unet.kernel_size})"),
        ]
        return problems + [f"{section}.{text}" for ok, text in need if not ok]


@dataclass
class DiffusionQLConfig(ChunkPolicyQConfig):
    """Diffusion-QL over action chunks (``--agent diffusion-ql``)."""

    schedule: Literal["vp", "linear", "cosine"] = "vp"
    """Noise schedule (Diffusion-QL: vp)."""
    steps: int = 5
    """Diffusion steps T (Diffusion-QL: 5)."""

    def problems(self, section: str) -> list[str]:
        extra = [] if self.steps >= 1 else [f"{section}.steps must be >= 1 (got {self.steps})"]
        return super().problems(section) + extra


@dataclass
class CPQLConfig(ChunkPolicyQConfig):
    """CPQL over action chunks (``--agent cpql``): a consistency policy (Karras parameterisation)."""

    bc_loss: Literal["consistency", "reconstruction"] = "consistency"
    """consistency: the consistency-training loss of the CPQL paper (against the EMA actor at the
    adjacent noise level); reconstruction: the weighted reconstruction loss of the authors' code."""
    bc_weight: float = 1.0
    """Weight of that loss (CPQL's alpha)."""
    sample_steps: int = 1
    """Denoising steps when sampling (1: one-step, the default; more: re-noise and denoise again)."""
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0
    sigma_data: float = 0.5
    scales: int = 40
    """Noise levels of the Karras discretisation used in training (CPQL: 40)."""

    def problems(self, section: str) -> list[str]:
        need = [
            (self.sample_steps >= 1, f"sample_steps must be >= 1 (got {self.sample_steps})"),
            (
                0 < self.sigma_min < self.sigma_max,
                f"needs 0 < sigma_min < sigma_max (got {self.sigma_min}, {self.sigma_max})",
            ),
            (self.scales >= 2, f"scales must be >= 2 (got {self.scales})"),
            (self.bc_weight >= 0, f"bc_weight must be >= 0 (got {self.bc_weight})"),
        ]
        return super().problems(section) + [f"{section}.{text}" for ok, text in need if not ok]


@dataclass
class ChunkPPOConfig(AgentSection):
    """Chunk-level PPO (chunk-ppo) and its imitation pre-training (chunk-bc): one decision is one chunk."""

    actor: Literal["tokens", "gaussian"] = "tokens"
    """tokens: the autoregressive transformer over FAST-style chunk tokens; gaussian: the continuous
    tanh-Gaussian chunk baseline."""
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
    """Adam learning rate (actor and value head)."""
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
    clip: float = 0.2
    """PPO ratio clip ε."""
    value_clip: float | None = None
    """Clip the value update to ±value_clip around the collected value (None: plain squared error)."""
    value_coef: float = 0.5
    """Weight of the value loss."""
    entropy_coef: float = 0.0
    """Weight of the entropy bonus (mean entropy per token, or per dimension for the Gaussian actor)."""
    max_grad_norm: float = 0.5
    """Gradient norm bound."""
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
        if self.learning_rate <= 0:
            problems.append(f"{section}.learning_rate must be > 0 (got {self.learning_rate})")
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
        optional = {"value_clip": self.value_clip, "target_kl": self.target_kl}  # None: off
        positive.update({k: v for k, v in optional.items() if v is not None})
        for name, value in positive.items():
            if not (math.isfinite(value) and value > 0):  # NaN fails every comparison: check it explicitly
                problems.append(f"{section}.{name} must be a number > 0 (got {value})")
        for name in ("value_coef", "entropy_coef"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                problems.append(f"{section}.{name} must be a number >= 0 (got {value})")
        return problems
