"""Many seeds per process: updates/s per seed with S seeds stacked (``--seeds``), against S separate
agents updated one after the other in the same process, measured alternately in this run.

Batch 256, h 5, puzzle-3x3 dimensions, sampling included (each seed samples its own batch).

    python benchmarks/seeds.py [--agents qc-fql qc-rlpd] [--stacks 1 4 8] [--sizes 3x256] [--updates 20]
                               [--precision fp32] [--device auto] [--threads N]
"""

from __future__ import annotations

import torch
from harness import (
    BATCH,
    benchmark_parser,
    make_agent,
    prepare,
    rate,
    synthetic_store,
)  # the shared harness beside this script

from chunkrl.agents.stack import SeedStack
from chunkrl.data.chunks import ChunkSampler
from chunkrl.nets.noise import GeneratorNoise
from chunkrl.nets.precision import PRECISIONS


def measure(method: str, dims: tuple[int, ...], seeds: int, args, device: torch.device, store) -> tuple[float, float]:
    """(stacked, separate) updates/s per seed for ``seeds`` copies of ``method``."""
    agents = []
    for seed in range(seeds):
        torch.manual_seed(seed)
        agent, spec = make_agent(method, dims, device, args.precision)
        agent.noise = GeneratorNoise(seed, device)
        agents.append(agent)
    samplers = [ChunkSampler(store, spec, seed=seed) for seed in range(seeds)]

    def separate():
        for agent, sampler in zip(agents, samplers, strict=True):
            agent.update(sampler.sample(BATCH).to_torch(device))

    separate_rate = rate(separate, args.updates, device)
    stack = SeedStack(agents)
    stacked_rate = rate(
        lambda: stack.update([s.sample(BATCH).to_torch(device) for s in samplers]), args.updates, device
    )
    return stacked_rate, separate_rate


def main() -> None:
    parser = benchmark_parser(__doc__, 20, "timed updates per measurement")
    parser.add_argument("--agents", nargs="+", default=["qc-fql", "qc-rlpd"])
    parser.add_argument("--stacks", nargs="+", type=int, default=[1, 4, 8])
    parser.add_argument("--sizes", nargs="+", default=["3x256"])
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS)
    args = parser.parse_args()
    device = prepare(args)
    store = synthetic_store()
    print("| method | size | seeds | stacked: updates/s per seed | separate: updates/s per seed | stacked / separate |")
    print("|---|---|---|---|---|---|")
    for method in args.agents:
        for size in args.sizes:
            layers, width = size.split("x")
            for seeds in args.stacks:
                stacked, separate = measure(method, (int(width),) * int(layers), seeds, args, device, store)
                print(
                    f"| {method} | {size} | {seeds} | {stacked:.2f} | {separate:.2f} | {stacked / separate:.2f}x |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
