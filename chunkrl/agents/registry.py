"""Agents by method name: the one place where a method is resolved.

Each method name maps to an agent class, the section of the run config that configures it, the
settings that define the method, and what data and schedule it needs (its run defaults: offline and
online steps, replay, warm-up and the chunk boundary mode; the observation history is declared by the
agent's ``history_length``). The training loop reads these declarations and never branches on a
method's name, so that the CLI and presets select methods by the papers' names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch

from chunkrl.agents.base import Agent
from chunkrl.agents.diffusion.config import CPQLConfig, DiffusionQLConfig
from chunkrl.agents.diffusion.cpql import CPQLAgent
from chunkrl.agents.diffusion.diffusion_ql import DiffusionQLAgent
from chunkrl.agents.flow.best_of_n import BestOfNAgent
from chunkrl.agents.flow.config import FlowAgentConfig
from chunkrl.agents.flow.dqc import DQCAgent
from chunkrl.agents.flow.fql import FQLAgent
from chunkrl.agents.ppo.config import ChunkPPOConfig
from chunkrl.agents.ppo.ppo import ChunkBCAgent, ChunkPPOAgent
from chunkrl.agents.ppo.tokenizer import prepare_tokenizer
from chunkrl.agents.sac.config import SACAgentConfig
from chunkrl.agents.sac.sac import ChunkedSACAgent

if TYPE_CHECKING:  # the run config sits above this layer: for type hints only
    from chunkrl.config import TrainConfig

OFFLINE_TO_ONLINE = {
    "offline_steps": 1_000_000,
    "online_steps": 1_000_000,
    "replay": "shared",
    "warmup": "policy",
    "boundary": "mask",
    "eval_acting": "sampled",
}
"""Run defaults of the paper's offline-to-online methods: 1M offline steps, then 1M online steps; the
replay starts as the dataset, the pre-trained policy acts from the first online step, and chunks cut
by a trajectory's end leave the TD loss (the paper's ``mask``)."""
ONLINE_WITH_PRIOR_DATA = {**OFFLINE_TO_ONLINE, "offline_steps": 0, "replay": "symmetric", "warmup": "random"}
"""Run defaults of the RLPD family (the paper's ``main_online.py``): no offline phase, half-dataset /
half-online batches, uniform random actions until training starts."""
OFFLINE_SEMI_MARKOV = {**OFFLINE_TO_ONLINE, "online_steps": 0, "boundary": "truncate"}
"""Run defaults of the offline chunked diffusion methods: 1M gradient steps on the dataset (Diffusion-QL's
1000 epochs of 1000 steps), no online phase, and semi-Markov targets: every chunk is a TD sample,
one cut short bootstraps with γ^τ."""
DECOUPLED_OFFLINE = {**OFFLINE_TO_ONLINE, "online_steps": 0, "critic_horizon": 25}
"""Run defaults of DQC: offline, a critic horizon of 25 (the authors' ``backup_horizon``; the actor's chunk keeps
--horizon)."""
IMITATION = {**OFFLINE_TO_ONLINE, "offline_steps": 20_000, "online_steps": 0, "eval_acting": "deterministic"}
"""Run defaults of imitation pre-training (chunk-bc): gradient steps on the demonstrations, nothing online,
evaluated with the deterministic chunk (sampling every number of the Gaussian chunk independently made the
scripted transfer-cube policy fail: 1 of 20 episodes sampled, 16 of 20 deterministic, same checkpoint)."""
ON_POLICY = {**OFFLINE_TO_ONLINE, "offline_steps": 0, "online_steps": 500_000}
"""Run defaults of chunk-level PPO: no dataset phase, 500k environment steps of rollouts (the agent declares
the on-policy schedule: the loop runs rollouts and needs no dataset)."""


CPQL_TARGETS = {"target_update": "ema", "next_actor": "online"}
"""CPQL's target rules, as its authors' code: the next chunk from the actor itself, the target critics on the
EMA's schedule (0.995 every 5 updates from update 1000). Measured on puzzle-3x3 task 1 with η = 0.005 (10k
steps, 3 seeds): success 0.13 [0.00, 0.26] against 0.08 [0.02, 0.14] with Diffusion-QL's rules (Polyak, EMA
actor): within seed noise, the authors' rules kept (docs/results.md)."""


@dataclass(frozen=True)
class PerDomain:
    """A default that the paper tuned per OGBench domain, with the value used for other domains."""

    values: dict[str, Any]
    elsewhere: Any

    def for_domain(self, domain: str) -> Any:
        return self.values.get(domain, self.elsewhere)


# The paper's per-domain settings (arXiv 2507.07969, appendix D.3). Table 4, behaviour regularisation α;
# other domains get 100, the official code's default:
QC_FQL_ALPHA = PerDomain(
    {"scene": 300, "puzzle-3x3": 300, "cube-double": 300, "cube-triple": 100, "cube-quadruple": 100}, 100
)
FQL_ALPHA = PerDomain(
    {"scene": 300, "puzzle-3x3": 100, "cube-double": 300, "cube-triple": 300, "cube-quadruple": 300}, 100
)
FQL_N_ALPHA = PerDomain({}, 100)  # 100 on every domain of Table 4
# Table 5, candidates N of the expected-max operator: QC 64 on puzzle-3x3, 32 on scene and cube-*; BFN(-n) 4.
QC_SAMPLES = PerDomain({"puzzle-3x3": 64}, 32)
# Weight η of the normalised Q term. OGBench's manipulation domains come closest to the papers' robot
# manipulation tasks: Diffusion-QL's Franka Kitchen (play-style data, sparse task rewards: η 0.005,
# gradient norm 10 for kitchen-partial/mixed). CPQL's table has no Kitchen; its Adroit pen value (η 0.1) made
# the critic over-value the one-step policy's chunks on puzzle-3x3 (success 0.01 at 10k steps, 3 seeds), while
# the Kitchen value 0.005 learned (0.13 with the authors' target rules): measured, so CPQL takes 0.005 too,
# with its pen gradient norm 8. Every OGBench domain chunkrl runs is manipulation.
DIFFUSION_QL_ETA = PerDomain({}, 0.005)
CPQL_ETA = PerDomain({}, 0.005)


@dataclass(frozen=True)
class Method:
    """A named method: which agent, what it overrides, and a one-line description."""

    agent: type[Agent]
    description: str
    overrides: dict = field(default_factory=dict)  # agent-config values the method fixes
    horizon: int | None = None  # forced chunk length (FQL: 1); None keeps the configured one
    defaults: dict = field(default_factory=dict)  # agent-config fields the user left at None (value or PerDomain)
    section: str = "flow"  # the run-config section holding the agent's settings
    run_defaults: dict = field(default_factory=lambda: dict(OFFLINE_TO_ONLINE))  # run-config fields left at None
    schedule: Literal["off_policy", "on_policy"] = "off_policy"
    """off_policy: chunk transitions sampled from the dataset and a replay (offline phase, then online);
    on_policy: rollouts of chunk decisions from vectorized environments (no dataset, no replay)."""
    prepare_tokenizer: Callable | None = None
    """How the chunk tokenizer the agent is built with is made: ``prepare_tokenizer(config, action_dim, store,
    checkpoint, console, action_space)`` (fitted on the dataset, or read from a checkpoint; the agent saves
    it). None: the agent needs none."""
    stacks_seeds: bool = True
    """``--seeds`` can train it with stacked parameters (one Adam, no clipping, no EMA)."""
    data_parallel: bool = False
    """Under torchrun its updates average gradients over the ranks (``Agent.distribute``)."""
    critic_longer: bool = False
    """The agent trains with a critic horizon longer than the actor's chunk (DQC)."""
    reward_offset: float = 0.0
    """Added to every training reward (the dataset's and the online replay's; evaluations report the task's own):
    DQC's values are discounted success probabilities, so OGBench's sparse -1 / 0 becomes 0 / 1."""
    decoupled_horizons: bool = False
    """The agent trains with an actor chunk longer than the critic's horizon (the critic scores its first
    critic_horizon actions); others need the two equal."""
    compiles: bool = True
    """``--compile`` works for it: torch.compile captures its update and its action query."""


METHODS: dict[str, Method] = {
    "qc-fql": Method(
        FQLAgent,
        "Q-chunking with FQL: chunked critic and one-step flow policy",
        {"action_chunking": True},
        defaults={"alpha": QC_FQL_ALPHA},
        decoupled_horizons=True,
    ),
    "fql-n": Method(
        FQLAgent,
        "FQL with an h-step return and a single-action critic",
        {"action_chunking": False},
        defaults={"alpha": FQL_N_ALPHA},
    ),
    "fql": Method(
        FQLAgent,
        "Flow Q-learning, one action per step (h = 1)",
        {"action_chunking": False},
        horizon=1,
        defaults={"alpha": FQL_ALPHA},
    ),
    "qc": Method(
        BestOfNAgent,
        "Q-chunking, best of N flow chunks",
        {"action_chunking": True},
        defaults={"num_samples": QC_SAMPLES},
        decoupled_horizons=True,
    ),
    "bfn-n": Method(
        BestOfNAgent, "best of N single actions, h-step return", {"action_chunking": False}, defaults={"num_samples": 4}
    ),
    "bfn": Method(
        BestOfNAgent,
        "best of N single actions (h = 1)",
        {"action_chunking": False},
        horizon=1,
        defaults={"num_samples": 4},
    ),
    "dqc": Method(
        DQCAgent,
        "Decoupled Q-chunking: a chunk critic over critic_horizon actions, a partial-chunk critic distilled from "
        "it for the policy's shorter chunk, best of N flow chunks (offline; sparse rewards; with one horizon for "
        "both, the DQC paper's QC: no chunk critic to distil)",
        {"action_chunking": True},
        defaults={"num_samples": 32},
        run_defaults=DECOUPLED_OFFLINE,
        critic_longer=True,
        reward_offset=1.0,
        stacks_seeds=False,
    ),
    "qc-rlpd": Method(
        ChunkedSACAgent,
        "chunked SAC with prior data and a behaviour-cloning term",
        defaults={"bc_alpha": 0.01},
        section="sac",
        run_defaults=ONLINE_WITH_PRIOR_DATA,
        decoupled_horizons=True,
    ),
    "rlpd-ac": Method(
        ChunkedSACAgent,
        "chunked SAC with prior data (RLPD with action chunking)",
        defaults={"bc_alpha": 0.0},
        section="sac",
        run_defaults=ONLINE_WITH_PRIOR_DATA,
        decoupled_horizons=True,
    ),
    "rlpd": Method(
        ChunkedSACAgent,
        "SAC with prior data, one action per step (h = 1)",
        horizon=1,
        defaults={"bc_alpha": 0.0},
        section="sac",
        run_defaults=ONLINE_WITH_PRIOR_DATA,
    ),
    "diffusion-ql": Method(
        DiffusionQLAgent,
        "Diffusion-QL over action chunks: DDPM chunk policy, semi-Markov chunk critic (offline)",
        defaults={"eta": DIFFUSION_QL_ETA, "max_grad_norm": 10.0, "target_update": "polyak", "next_actor": "ema"},
        section="diffusion",
        run_defaults=OFFLINE_SEMI_MARKOV,
        stacks_seeds=False,  # two optimizers, clipping and an EMA: SeedStack's single stacked Adam cannot do them
    ),
    "cpql": Method(
        CPQLAgent,
        "CPQL over action chunks: one-step consistency chunk policy, semi-Markov chunk critic (offline)",
        defaults={"eta": CPQL_ETA, "max_grad_norm": 8.0, **CPQL_TARGETS},
        section="cpql",
        run_defaults=OFFLINE_SEMI_MARKOV,
        stacks_seeds=False,
    ),
    "chunk-bc": Method(
        ChunkBCAgent,
        "imitation of dataset chunks by a token (FAST-style) or Gaussian chunk policy, to initialise chunk-ppo",
        section="ppo",
        run_defaults=IMITATION,
        prepare_tokenizer=prepare_tokenizer,
        stacks_seeds=False,
        compiles=False,  # torch 2.13 dynamo fails on the tokenizer's numpy step inside the token sampler
    ),
    "chunk-ppo": Method(
        ChunkPPOAgent,
        "PPO where one decision is one chunk: token or Gaussian chunk policy, chunk-level GAE (on-policy)",
        section="ppo",
        run_defaults=ON_POLICY,
        schedule="on_policy",
        prepare_tokenizer=prepare_tokenizer,
        stacks_seeds=False,
        compiles=False,  # torch 2.13 dynamo fails on the tokenizer's numpy step inside the token sampler
        data_parallel=True,
    ),
}


AgentConfig = FlowAgentConfig | SACAgentConfig | DiffusionQLConfig | CPQLConfig | ChunkPPOConfig


def agent_config(config) -> AgentConfig:
    """The section of a run config (``TrainConfig``) that configures its agent."""
    return getattr(config, METHODS[config.agent].section)


__all__ = [
    "METHODS",
    "Agent",
    "AgentConfig",
    "BestOfNAgent",
    "ChunkBCAgent",
    "ChunkPPOAgent",
    "ChunkPPOConfig",
    "CPQLAgent",
    "CPQLConfig",
    "DiffusionQLAgent",
    "DiffusionQLConfig",
    "ChunkedSACAgent",
    "FQLAgent",
    "FlowAgentConfig",
    "Method",
    "PerDomain",
    "SACAgentConfig",
    "agent_config",
]


def build_agent(
    config: TrainConfig, observation_dim: int, action_dim: int, device: torch.device, tokenizer=None
) -> Agent:
    """The agent of ``config.agent`` (after ``resolve_method``) on ``device``; agents that declare
    ``prepare_tokenizer`` get ``tokenizer``."""
    method = METHODS[config.agent]
    extra = {"tokenizer": tokenizer} if method.prepare_tokenizer else {}
    agent = method.agent(
        observation_dim,
        action_dim,
        config.actor_chunk,
        agent_config(config),
        boundary=config.boundary,
        critic_horizon=config.critic_horizon,
        **extra,
    )
    agent.precision = config.precision
    agent.compile_queries = config.compile
    return agent.to(device)
