"""Several seeds of one agent, trained in one process with stacked parameters (``--seeds``).

Each seed is a *lane*: an ordinary agent, built with its own seed, whose parameters and buffers are
views into stacked tensors ``[S, ...]``. One update for all lanes evaluates the agent's own
``losses`` under ``torch.func.vmap`` over the stacked parameters, each lane's batch and each lane's
random draws, then takes one fused Adam step over the stacked parameters and one Polyak update.
Adam and Polyak act element by element, so the stacked step is, lane by lane, the step a separate
agent would take; the random draws come from each lane's own generator in the order a separate
agent would make them (``nets/noise.py``). So lane ``s`` follows the learning curve of a separate
run of seed ``s`` with a ``GeneratorNoise`` (tested update for update), with one kernel per layer for
all seeds instead of S.

The lanes stay usable on their own: acting, evaluation and checkpoints read their (view) weights;
``export_optimizer`` / ``import_optimizer`` move a lane's slice of the stacked Adam state into and out of
the lane's own optimizer, so a lane's checkpoint is the one a single run writes.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from chunkrl.agents.base import ActorCriticAgent, make_adam
from chunkrl.data.chunks import ChunkBatch
from chunkrl.nets.ensemble import polyak_update
from chunkrl.nets.noise import GLOBAL_NOISE, GeneratorNoise, NoiseTape, RecordingNoise, TapeMismatch, draw_tape
from chunkrl.nets.precision import autocast, matmul_precision


def unstackable_message(name: str) -> str:
    """Why ``--seeds`` refuses agent ``name`` and what to do instead (one text for every place that checks)."""
    return (
        f"--seeds trains seeds with stacked parameters, which {name} does not support yet (several optimizers, "
        "gradient clipping or an EMA copy); train its seeds as separate runs (--seed S)"
    )


class _Losses(nn.Module):
    """``forward(batch)`` = the agent's ``total_loss`` (``functional_call`` calls a module's forward)."""

    def __init__(self, agent: ActorCriticAgent):
        super().__init__()
        self.agent = agent

    def forward(self, batch: ChunkBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.agent.total_loss(batch)


class SeedStack:
    """S lanes (agents of one class and config, one per seed) updated together.

    Args:
        lanes: the agents, already built (and restored, when resuming) with their own seeds; each
            gets a ``GeneratorNoise`` from ``noise_seeds`` unless it already has one.
        noise_seeds: the seed of each lane's random-draw generator.
    """

    def __init__(self, lanes: list[ActorCriticAgent], noise_seeds: list[int] | None = None):
        if not lanes:
            raise ValueError("a seed stack needs at least one agent")
        first = lanes[0]
        for lane in lanes[1:]:
            if type(lane) is not type(first) or lane.config != first.config:
                raise ValueError("every lane of a seed stack must be the same agent class with the same config")
        if not first.stackable:
            raise ValueError(unstackable_message(type(first).__name__))
        if first.has_dropout:
            raise ValueError(
                "--seeds trains seeds with stacked parameters, which needs networks without dropout "
                "(set the ACT actor's dropout to 0, or train the seeds as separate runs)"
            )
        self.lanes = lanes
        self.device = first.device
        self.template = copy.deepcopy(first)  # the module functional_call runs; its own weights are unused
        for lane, seed in zip(lanes, noise_seeds or [None] * len(lanes), strict=True):
            if not isinstance(lane.noise, GeneratorNoise):
                if seed is None:
                    raise ValueError("give noise_seeds for lanes without a GeneratorNoise")
                lane.noise = GeneratorNoise(seed, self.device)
        self.losses = _Losses(self.template)
        self.params = self._stack(lambda m: m.named_parameters(), parameters=True)
        self.buffers = self._stack(lambda m: m.named_buffers(), parameters=False)
        trainable = [p for p in self.params.values() if p.requires_grad]
        self.optimizer = make_adam(trainable, first.optimizer.param_groups[0]["lr"])
        self.target_pairs = [
            (self.params[f"agent.target_critic.{name}"], self.params[f"agent.critic.{name}"])
            for name, _ in first.critic.named_parameters()
        ]
        self.requests: list[tuple[str, tuple[int, ...]]] | None = None
        self._vmapped = torch.func.vmap(self._lane_losses, randomness="error")

    def _stack(self, named, parameters: bool) -> dict[str, torch.Tensor]:
        """Stack each named tensor over the lanes; point every lane's tensor at its slice."""
        stacked = {}
        per_lane = [dict(named(lane)) for lane in self.lanes]
        for name, tensor in named(self.template):
            joined = torch.stack([tensors[name].detach() for tensors in per_lane])
            if parameters:
                joined = nn.Parameter(joined, requires_grad=tensor.requires_grad)
            for s, tensors in enumerate(per_lane):
                tensors[name].data = joined.data[s]
            stacked[f"agent.{name}"] = joined
        return stacked

    @property
    def precision(self) -> str:
        return self.lanes[0].precision

    # ------------------------------------------------------------------ the update
    def _lane_losses(self, params, buffers, fields, draws):
        self.template.noise = NoiseTape(self.requests, draws)
        try:
            return torch.func.functional_call(self.losses, {**params, **buffers}, (ChunkBatch(**fields),))
        finally:  # the tape holds this call's (batched) draws: none may outlive it
            self.template.noise = GLOBAL_NOISE

    def _record(self, batch: dict[str, torch.Tensor]) -> None:
        """Which draws one update makes (kinds and shapes): lane 0's losses, once, without gradients."""
        self.template.noise = recording = RecordingNoise()
        lane0 = {name: tensor[0] for name, tensor in {**self.params, **self.buffers}.items()}
        with torch.no_grad():
            torch.func.functional_call(self.losses, lane0, (ChunkBatch(**{k: v[0] for k, v in batch.items()}),))
        self.requests = recording.requests

    def update(self, batches: list[ChunkBatch]) -> list[dict[str, torch.Tensor]]:
        """One gradient step of every lane on its own batch; returns each lane's metrics."""
        if len(batches) != len(self.lanes):
            raise ValueError(f"{len(self.lanes)} lanes need {len(self.lanes)} batches, got {len(batches)}")
        fields = {
            name: torch.stack([getattr(b, name) for b in batches])
            for name in vars(batches[0])
            if getattr(batches[0], name) is not None
        }
        with matmul_precision(self.precision):
            if self.requests is None:
                self._record(fields)
            draws = draw_tape(self.requests, [lane.noise for lane in self.lanes], self.device)
            try:
                with autocast(self.precision, self.device):
                    total, metrics = self._vmapped(self.params, self.buffers, fields, draws)
            except TapeMismatch as error:
                raise RuntimeError(
                    f"{type(self.lanes[0]).__name__} made other random draws than in its first update ({error}); "
                    "a stacked update needs the same draws (kinds and shapes) every time"
                ) from error
            self.optimizer.zero_grad(set_to_none=True)
            total.sum().backward()
            self.optimizer.step()
        targets, sources = zip(*self.target_pairs, strict=True)
        polyak_update(targets, sources, self.lanes[0].target_tau)
        for lane in self.lanes:
            lane.after_update()
        return [{k: v[s].detach().float() for k, v in metrics.items()} for s in range(len(self.lanes))]

    # ------------------------------------------------------------------ optimizer state per lane
    def _lane_params(self, s: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(lane ``s``'s parameter, its stacked parameter) in optimizer order."""
        lane = self.lanes[s].optimizer.param_groups[0]["params"]
        return list(zip(lane, self.optimizer.param_groups[0]["params"], strict=True))

    def export_optimizer(self, s: int) -> None:
        """Copy lane ``s``'s slice of the stacked Adam state into the lane's own optimizer (to save it)."""
        for lane_param, stacked_param in self._lane_params(s):
            state = self.optimizer.state.get(stacked_param)
            if state:
                self.lanes[s].optimizer.state[lane_param] = {
                    k: v.clone() if k == "step" else v[s].clone() for k, v in state.items()
                }

    def import_optimizer(self) -> None:
        """Stack the lanes' own optimizer states (restored from their checkpoints) into the stacked Adam."""
        pairs = [self._lane_params(s) for s in range(len(self.lanes))]
        for i, stacked_param in enumerate(self.optimizer.param_groups[0]["params"]):
            states = [lane.optimizer.state.get(p[i][0]) for lane, p in zip(self.lanes, pairs, strict=True)]
            if not any(states):
                continue
            if not all(states) or len({float(state["step"]) for state in states}) != 1:
                raise RuntimeError("the seeds' optimizer states are at different steps; resume them as separate runs")
            self.optimizer.state[stacked_param] = {
                k: states[0][k].clone() if k == "step" else torch.stack([state[k] for state in states])
                for k in states[0]
            }
