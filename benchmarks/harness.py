"""What the benchmarks share: synthetic data, agents at a given size, timing, the CPU description, common flags.

Every benchmark script imports it from this folder (Python puts a script's folder first on its path); no
benchmark imports another."""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from chunkrl.agents.registry import METHODS, agent_config, build_agent
from chunkrl.config import TrainConfig, resolve_method
from chunkrl.data.chunks import ChunkSampler, ChunkSpec
from chunkrl.data.trajectories import StepArrays, Trajectories
from chunkrl.nets.compiled import compiled
from chunkrl.nets.precision import autocast, matmul_precision
from chunkrl.train.device import machine_description, resolve_device

OBSERVATION_DIM, ACTION_DIM, HORIZON, BATCH = 55, 5, 5, 256
"""puzzle-3x3's sizes, the paper's chunk length and batch."""


def synthetic_store(steps: int = 20_000, seed: int = 0) -> Trajectories:
    rng = np.random.default_rng(seed)
    ends = np.zeros(steps, bool)
    ends[999::1000] = True
    ends[-1] = True
    return Trajectories.from_arrays(
        StepArrays(
            observations=rng.normal(size=(steps, OBSERVATION_DIM)).astype(np.float32),
            actions=rng.uniform(-1, 1, size=(steps, ACTION_DIM)).astype(np.float32),
            rewards=-np.ones(steps, np.float32),
            terminals=rng.random(steps) < 0.01,
            ends=ends,
            next_observations=rng.normal(size=(steps, OBSERVATION_DIM)).astype(np.float32),
        )
    )


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def make_agent(
    method: str,
    dims: tuple[int, ...],
    device: torch.device,
    precision: str = "fp32",
    horizon: int = HORIZON,
    num_samples: int = 32,
    **changes,
):
    """The agent of ``method`` at puzzle-3x3 dimensions with ``dims`` networks, and its chunk spec.
    Best-of-N agents get ``num_samples`` (32, as the official runner; the puzzle default would be 64);
    ``changes``: other settings of the method's config section (e.g. ``backbone="unet"``)."""
    config = TrainConfig(agent=method, precision=precision, horizon=horizon)
    section = dataclasses.replace(agent_config(config), actor_hidden_dims=dims, critic_hidden_dims=dims, **changes)
    if hasattr(section, "num_samples"):
        section = dataclasses.replace(section, num_samples=num_samples)
    config = resolve_method(dataclasses.replace(config, **{METHODS[method].section: section}))
    return build_agent(config, OBSERVATION_DIM, ACTION_DIM, device), ChunkSpec(config.horizon, 0.99, config.boundary)


def update_flops(agent, batch) -> int:
    """Floating-point operations of one update's matrix products (forward and backward)."""
    with FlopCounterMode(display=False) as counter:
        agent.update(batch)
    return counter.get_total_flops()


def rate(step: Callable[[], object], calls: int, device: torch.device, warmup: int = 3) -> float:
    """Calls per second of ``step``, after ``warmup`` untimed calls (GPU work waited for)."""
    for _ in range(warmup):
        step()
    sync(device)
    started = time.perf_counter()
    for _ in range(calls):
        step()
    sync(device)
    return calls / (time.perf_counter() - started)


def updates_per_second(
    agent, sampler: ChunkSampler, device: torch.device, updates: int, update: Callable | None = None
) -> float:
    """Training updates per second, sampling included (it is part of every training step); ``update``: the
    function that updates ``agent`` (default ``agent.update``; e.g. its compiled form)."""
    update = update or agent.update
    return rate(lambda: update(sampler.sample(BATCH).to_torch(device)), updates, device)


def compile_as_training(agent, sampler: ChunkSampler, device: torch.device) -> tuple[Callable, float]:
    """``agent`` as ``chunkrl train --compile`` runs it: its update compiled (returned) and its action queries
    compiled; with the seconds that the first update and the first single-observation query took to compile."""
    update, agent.compile_queries = compiled(agent.update), True
    started = time.perf_counter()
    update(sampler.sample(BATCH).to_torch(device))
    agent.act(np.zeros(OBSERVATION_DIM, np.float32))
    return update, time.perf_counter() - started


def query_ms(agent, queries: int = 1000, seconds: float = 20.0) -> float:
    """Median latency (ms) of one action-chunk query for a single observation (or history), over
    ``queries`` queries or as many as fit in about ``seconds``."""
    history = agent.history_length
    observation = np.zeros((history, OBSERVATION_DIM) if history > 1 else OBSERVATION_DIM, np.float32)
    valid = np.ones(history, np.float32) if history > 1 else None
    for _ in range(max(20, queries // 20)):
        agent.act(observation, history_valid=valid)
    latencies = []
    deadline = time.perf_counter() + seconds
    while len(latencies) < queries and (len(latencies) < 10 or time.perf_counter() < deadline):
        started = time.perf_counter()
        agent.act(observation, history_valid=valid)
        latencies.append(time.perf_counter() - started)
    return statistics.median(latencies) * 1e3


def matmul_peak(device: torch.device, precision: str, rows: int = 4096, width: int = 512) -> float:
    """GFLOP/s of a large matrix product in ``precision`` on ``device``: the attainable peak."""
    x = torch.randn(rows, width, device=device)
    w = torch.randn(width, width, device=device)
    with matmul_precision(precision), autocast(precision, device):
        products = rate(lambda: x @ w, 20, device)
    return products * 2 * rows * width * width / 1e9


def benchmark_parser(description: str, updates: int, updates_help: str) -> argparse.ArgumentParser:
    """The options every benchmark takes: --device, --updates, --threads."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--updates", type=int, default=updates, help=updates_help)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    return parser


def prepare(args: argparse.Namespace) -> torch.device:
    """Apply --threads, resolve --device and print what the figures were measured on."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    print(f"{machine_description(device)}, batch {BATCH}, h {HORIZON}")
    return device
