"""Agents by method name.

Each method name maps to an agent class, the section of the run config that configures it, and the
settings that define the method, so that the CLI and presets select methods by the paper's names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from chunkrl.agents.base import Agent
from chunkrl.agents.best_of_n import BestOfNAgent
from chunkrl.agents.configs import FlowAgentConfig, SACAgentConfig
from chunkrl.agents.fql import FQLAgent
from chunkrl.agents.sac import ChunkedSACAgent


@dataclass(frozen=True)
class Method:
    """A named method: which agent, what it overrides, and a one-line description."""

    agent: type[Agent]
    description: str
    overrides: dict = field(default_factory=dict)  # agent-config values the method fixes
    horizon: int | None = None  # forced chunk length (FQL: 1); None keeps the configured one
    defaults: dict = field(default_factory=dict)  # values for agent-config fields the user left at None
    family: Literal["flow", "sac"] = "flow"  # the run-config section holding the agent's settings
    online_with_prior_data: bool = False  # RLPD: no offline phase, half-offline/half-online batches


METHODS: dict[str, Method] = {
    "qc-fql": Method(
        FQLAgent, "Q-chunking with FQL: chunked critic and one-step flow policy", {"action_chunking": True}
    ),
    "fql-n": Method(FQLAgent, "FQL with an h-step return and a single-action critic", {"action_chunking": False}),
    "fql": Method(FQLAgent, "Flow Q-learning, one action per step (h = 1)", {"action_chunking": False}, horizon=1),
    "qc": Method(
        BestOfNAgent, "Q-chunking, best of N flow chunks", {"action_chunking": True}, defaults={"num_samples": 32}
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
    "qc-rlpd": Method(
        ChunkedSACAgent,
        "chunked SAC with prior data and a behaviour-cloning term",
        defaults={"bc_alpha": 0.01},
        family="sac",
        online_with_prior_data=True,
    ),
    "rlpd-ac": Method(
        ChunkedSACAgent,
        "chunked SAC with prior data (RLPD with action chunking)",
        defaults={"bc_alpha": 0.0},
        family="sac",
        online_with_prior_data=True,
    ),
    "rlpd": Method(
        ChunkedSACAgent,
        "SAC with prior data, one action per step (h = 1)",
        horizon=1,
        defaults={"bc_alpha": 0.0},
        family="sac",
        online_with_prior_data=True,
    ),
}


def agent_config(config) -> FlowAgentConfig | SACAgentConfig:
    """The section of a run config (``TrainConfig``) that configures its agent."""
    return getattr(config, METHODS[config.agent].family)


__all__ = [
    "METHODS",
    "Agent",
    "BestOfNAgent",
    "ChunkedSACAgent",
    "FQLAgent",
    "FlowAgentConfig",
    "Method",
    "SACAgentConfig",
    "agent_config",
]
