"""Throughput benchmark: updates per second and action-chunk query latency of any agent.

Batch 256, h = 5, puzzle-3x3 dimensions (observation 55, action 5), at the paper's network size
(4x512) and a small one (3x256). Prints absolute figures with the CPU model and its SIMD flags: a
ratio against a figure measured on another machine or day means nothing, so this script prints none
(compare with another implementation only when both run alternately in one session).

    python benchmarks/throughput.py [--agents qc-fql qc qc-rlpd] [--sizes 4x512 3x256] [--precision fp32]
                                    [--compile] [--device auto] [--updates 60] [--threads N] [--num-samples 32]

QC (best of N = 32 chunks, as the official runner; ``--num-samples`` sets N, e.g. 4 for the chunking grid's BFN-n
and BFN) is measured with fewer updates: each one samples N x 256 candidates with 10 flow steps for its target.
The RLPD family runs its 10-member critic ensemble.

Each line also gives the update's matrix-product work (counted by torch.utils.flop_counter on one
update) and the rate it achieved, as a fraction of the attainable peak: the best rate of a large
(4096 x 512 x 512) matrix product on this machine, measured at the start (fp32, and bf16 inputs).
To compare with the official JAX code, run ``benchmarks/side_by_side.py``, which runs both alternately.
"""

from __future__ import annotations

import torch
from harness import (
    BATCH,
    benchmark_parser,
    compile_as_training,
    make_agent,
    matmul_peak,
    prepare,
    query_ms,
    synthetic_store,
    update_flops,
    updates_per_second,
)

from chunkrl.agents.registry import METHODS
from chunkrl.data.chunks import ChunkSampler
from chunkrl.data.trajectories import Trajectories
from chunkrl.nets.compiled import compiled
from chunkrl.nets.precision import PRECISIONS

BEST_OF_N = {"qc", "bfn", "bfn-n"}
"""Agents that sample ``--num-samples`` candidates per next state in every update (timed over a tenth as many)."""


def measure(
    method: str,
    dims: tuple[int, ...],
    device: torch.device,
    updates: int,
    store: Trajectories,
    precision: str = "fp32",
    compile: bool = False,
    num_samples: int = 32,
) -> dict:
    agent, spec = make_agent(method, dims, device, precision, num_samples=num_samples)
    sampler = ChunkSampler(store, spec, seed=0)
    flops = update_flops(agent, sampler.sample(BATCH).to_torch(device))
    update, compile_s = compile_as_training(agent, sampler, device) if compile else (agent.update, 0.0)
    rate = updates_per_second(agent, sampler, device, updates, update)
    return {"updates_per_s": rate, "act_ms": query_ms(agent), "gflop_per_update": flops / 1e9, "compile_s": compile_s}


def compiled_drift(method: str, dims: tuple[int, ...], device: torch.device, store: Trajectories, precision: str):
    """Largest weight difference between two copies of one agent after 5 updates on the same batches with the
    same random draws, one eager and one compiled (inductor rounds and fuses differently, so not zero)."""
    agents = []
    for _ in range(2):
        torch.manual_seed(0)
        agent, spec = make_agent(method, dims, device, precision)
        agents.append(agent)
    sampler = ChunkSampler(store, spec, seed=0)
    batches = [sampler.sample(BATCH).to_torch(device) for _ in range(5)]
    for update in (agents[0].update, compiled(agents[1].update)):
        torch.manual_seed(1)
        for batch in batches:
            update(batch)
    eager, other = (dict(a.named_parameters()) for a in agents)
    return max((eager[name] - other[name]).abs().max().item() for name in eager)


def main() -> None:
    parser = benchmark_parser(__doc__, 60, "timed updates (QC: a tenth of them)")
    parser.add_argument("--agents", nargs="+", default=["qc-fql", "qc", "qc-rlpd"], choices=sorted(METHODS))
    parser.add_argument("--sizes", nargs="+", default=["4x512", "3x256"], help="networks, LAYERSxWIDTH")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS)
    parser.add_argument("--compile", action="store_true", help="as chunkrl train --compile (compile time printed)")
    parser.add_argument("--num-samples", type=int, default=32, help="best-of-N candidates (QC, BFN-n, BFN)")
    args = parser.parse_args()
    device = prepare(args)
    peak = max(matmul_peak(device, p) for p in ("fp32", args.precision))
    print(f"attainable peak ({args.precision} run; best large product, fp32 or {args.precision}): {peak:.0f} GFLOP/s")
    if BEST_OF_N.intersection(args.agents):
        print(f"best-of-N agents sample {args.num_samples} candidates per next state")
    store = synthetic_store()
    for method in args.agents:
        for size in args.sizes:
            layers, width = size.split("x")
            updates = max(3, args.updates // 10) if method in BEST_OF_N else args.updates
            dims = (int(width),) * int(layers)
            result = measure(method, dims, device, updates, store, args.precision, args.compile, args.num_samples)
            achieved = result["gflop_per_update"] * result["updates_per_s"]
            line = (
                f"{method} {size}: {result['updates_per_s']:.2f} updates/s, action query {result['act_ms']:.3f} ms, "
                f"{result['gflop_per_update']:.2f} GFLOP/update, {achieved:.0f} GFLOP/s = {achieved / peak:.0%} of peak"
            )
            if args.compile:
                drift = compiled_drift(method, dims, device, store, args.precision)
                line += (
                    f", compiled in {result['compile_s']:.0f} s (first update and query), "
                    f"weights {drift:.1e} from eager after 5 updates"
                )
            print(line, flush=True)


if __name__ == "__main__":
    main()
