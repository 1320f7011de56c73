"""Agents by method name.

Each method name maps to an agent class and the settings that define the method, so that the CLI
and presets select methods by the names used in the paper.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from chunkrl.agents.base import Agent
from chunkrl.agents.best_of_n import BestOfNAgent
from chunkrl.agents.configs import FlowAgentConfig
from chunkrl.agents.fql import FQLAgent


@dataclass(frozen=True)
class Method:
    """A named method: which agent, what it overrides, and a one-line description."""

    agent: type[Agent]
    description: str
    overrides: dict = field(default_factory=dict)
    horizon: int | None = None  # forced chunk length (FQL: 1); None keeps the configured one
    defaults: dict = field(default_factory=dict)  # values for config fields the user left at None


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
}

__all__ = ["METHODS", "Agent", "BestOfNAgent", "FQLAgent", "FlowAgentConfig", "Method"]
