"""Where an agent's random draws come from.

Every random number an agent uses in ``update`` or ``act`` (flow noise and times, candidate chunks,
Gaussian actions) goes through its ``noise`` source, in a fixed order. A plain run uses torch's global
generator (``GlobalNoise``, seeded and checkpointed by the loop). Several seeds trained in one process
(``agents/stack.py``) give each seed its own ``GeneratorNoise`` and replay its draws, seed by seed,
into the batched update through a ``NoiseTape``; so each seed's update is the one a separate agent
with the same generator would make, draw for draw.
"""

from __future__ import annotations

import torch


class GlobalNoise:
    """Draws from torch's global generator."""

    def normal(self, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        return torch.randn(shape, device=device)

    def uniform(self, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        return torch.rand(shape, device=device)


GLOBAL_NOISE = GlobalNoise()
"""The default source of agents and actors."""


class GeneratorNoise(GlobalNoise):
    """Draws from a generator of its own (one per seed), whose state the checkpoints keep."""

    def __init__(self, seed: int, device: torch.device | str = "cpu"):
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed)

    def normal(self, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        return torch.randn(shape, device=device, generator=self.generator)

    def uniform(self, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        return torch.rand(shape, device=device, generator=self.generator)

    def get_state(self) -> torch.Tensor:
        return self.generator.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)


class TapeMismatch(RuntimeError):
    """An update asked for other draws than the ones recorded for it."""


class RecordingNoise(GlobalNoise):
    """Draws like ``GlobalNoise`` and remembers what was asked for: ``[(kind, shape), ...]``."""

    def __init__(self):
        self.requests: list[tuple[str, tuple[int, ...]]] = []

    def normal(self, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        self.requests.append(("normal", tuple(shape)))
        return super().normal(shape, device)

    def uniform(self, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        self.requests.append(("uniform", tuple(shape)))
        return super().uniform(shape, device)


def draw_tape(
    requests: list[tuple[str, tuple[int, ...]]], sources: list[GeneratorNoise], device: torch.device
) -> list[torch.Tensor]:
    """Each request drawn from every source in turn, stacked: one [S, *shape] tensor per request.
    Source ``s`` makes exactly the draws, in the same order, that the same update makes without a tape."""
    per_source = [[getattr(s, kind)(shape, device) for kind, shape in requests] for s in sources]
    return [torch.stack(draws) for draws in zip(*per_source, strict=True)]


class NoiseTape(GlobalNoise):
    """Hands out pre-drawn tensors in order, checking that each request matches the recorded one."""

    def __init__(self, requests: list[tuple[str, tuple[int, ...]]], draws: list[torch.Tensor]):
        self.requests, self.draws, self.position = requests, draws, 0

    def _next(self, kind: str, shape: tuple[int, ...]) -> torch.Tensor:
        i = self.position
        if i >= len(self.requests) or self.requests[i] != (kind, tuple(shape)):
            raise TapeMismatch(f"draw {i}: asked for {kind} {tuple(shape)}, recorded {self.requests[i : i + 1]}")
        self.position += 1
        return self.draws[i]

    def normal(self, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        return self._next("normal", shape)

    def uniform(self, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        return self._next("uniform", shape)
