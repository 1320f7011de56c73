"""Where an update's time goes: operator calls per update and the share of time by kind of work.

Runs a few updates of each agent under ``torch.profiler`` (batch 256, h = 5, puzzle-3x3 dimensions, sampling
excluded) and prints, per update: the number of operator calls (operators called from Python, autograd or
compiled code, not those an operator calls inside itself; with ``--compile`` each call of inductor's
generated code for a graph counts once, the fused kernels inside it are not profiled one by one), and the
share of the profiled time (each event's own time, without its children) spent in matrix products, in the
optimizer step, in inductor's generated code, and in everything else (elementwise work, reductions, copies,
random draws, dispatch), with the ten most expensive entries.

    python benchmarks/profile_update.py [--agents qc-fql qc qc-rlpd] [--sizes 3x256] [--compile]
                                        [--precision fp32] [--updates 5] [--threads N] [--device auto]

It explains the speed figures of ``throughput.py`` and ``side_by_side.py``; it does not replace them (the
profiler's own cost inflates small operations).
"""

from __future__ import annotations

from collections import defaultdict

import torch
from harness import BATCH, benchmark_parser, make_agent, prepare, synthetic_store
from torch.profiler import ProfilerActivity, profile

from chunkrl.agents.registry import METHODS
from chunkrl.data.chunks import ChunkSampler
from chunkrl.nets.compiled import compiled
from chunkrl.nets.precision import PRECISIONS

PRODUCTS = ("mm", "addmm", "bmm", "baddbmm", "matmul", "linear", "mkldnn", "onednn", "_weight_int", "gemm")
OPTIMIZER = ("adam", "_foreach")
COMPILED = "## Call CompiledFxGraph"
"""inductor's generated code (its fused elementwise kernels) runs as one profiled event per graph call."""


def kind(name: str) -> str:
    lowered = name.lower()
    if name.startswith(COMPILED):
        return "generated kernels"
    if any(word in lowered for word in OPTIMIZER):
        return "optimizer"
    if any(lowered.removeprefix("aten::").startswith(word) or word in lowered for word in PRODUCTS):
        return "products"
    return "other"


def profile_updates(update, batches, device: torch.device) -> list:
    """The profiled CPU events of ``update`` over ``batches``."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for batch in batches:
            update(batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
    return [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CPU]


def is_operator(event) -> bool:
    """An operator called from Python, autograd or compiled code (not from inside another operator)."""
    operator = event.name.startswith(("aten::", COMPILED))
    parent = event.cpu_parent
    return operator and (parent is None or not parent.name.startswith("aten::"))


def main() -> None:
    parser = benchmark_parser(__doc__, 5, "profiled updates (after 3 untimed ones)")
    parser.add_argument("--agents", nargs="+", default=["qc-fql", "qc", "qc-rlpd"], choices=sorted(METHODS))
    parser.add_argument("--sizes", nargs="+", default=["3x256"], help="networks, LAYERSxWIDTH")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS)
    parser.add_argument("--compile", action="store_true", help="profile the update as chunkrl train --compile runs it")
    args = parser.parse_args()
    device = prepare(args)
    store = synthetic_store()
    for method in args.agents:
        for size in args.sizes:
            layers, width = size.split("x")
            agent, spec = make_agent(method, (int(width),) * int(layers), device, args.precision)
            update = compiled(agent.update) if args.compile else agent.update
            sampler = ChunkSampler(store, spec, seed=0)
            batches = [sampler.sample(BATCH).to_torch(device) for _ in range(args.updates + 3)]
            for batch in batches[:3]:  # warm-up (and compilation)
                update(batch)
            events = profile_updates(update, batches[3:], device)
            calls = sum(is_operator(e) for e in events)
            total = sum(e.self_cpu_time_total for e in events)
            by_kind, by_name = defaultdict(float), defaultdict(float)
            for event in events:
                by_kind[kind(event.name)] += event.self_cpu_time_total
                name = "inductor graph" if event.name.startswith(COMPILED) else event.name
                by_name[name] += event.self_cpu_time_total
            kinds = ("products", "optimizer", "generated kernels", "other")
            shares = ", ".join(f"{k} {by_kind[k] / total:.0%}" for k in kinds if k in by_kind)
            label = f"{method} {size} {args.precision}{' compiled' if args.compile else ''}"
            print(
                f"{label}: {calls / args.updates:.0f} operator calls per update, "
                f"{total / 1e3 / args.updates:.1f} ms of profiled time per update; {shares}"
            )
            top = sorted(by_name.items(), key=lambda item: -item[1])[:10]
            print("  " + "; ".join(f"{name} {time / total:.0%}" for name, time in top), flush=True)


if __name__ == "__main__":
    main()
