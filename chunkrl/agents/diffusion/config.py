"""Settings of the chunked diffusion agents (diffusion-ql, cpql)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from chunkrl.agents.section import AgentSection, network_problems
from chunkrl.nets.unet1d import UNetConfig


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
    weights before it, as CPQL's code). None: the method's (docs/methods/diffusion.md)."""
    next_actor: Literal["ema", "online"] | None = None
    """Which actor proposes the next chunk a' of the TD target: the EMA actor (Diffusion-QL's code) or the
    actor itself (CPQL's code). None: the method's."""
    eta: float | None = None
    """Weight of the normalised Q term in the actor loss; None: the method's value for the task's domain
    (Diffusion-QL 0.005, its Kitchen value; CPQL 0.005 too, chosen by measurement: docs/results.md)."""
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
