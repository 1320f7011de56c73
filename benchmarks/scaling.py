"""Scaling curves: updates/s against the chunk length h, the number N of best-of-N candidates, and the
dataset size (with a memory-mapped store), printed as tables and drawn as plots.

    python benchmarks/scaling.py [--curves horizon samples dataset] [--size 3x256] [--updates 20]
                                 [--horizons 1 2 5 10 15 20 25] [--samples 1 2 4 8 16 32 64]
                                 [--dataset-sizes 1e5 1e6 1e7 1e8] [--scratch DIR] [--out runs/bench-scaling]

- horizon: QC-FQL and QC (best of 32) updates/s and action-query latency for h = 1..25 (the policy and
  critic read h x A action values, the best-of-N target samples and scores whole chunks).
- samples: QC updates/s and action query for N = 1..64 at h = 5 (each update samples N x 256 chunks with
  10 flow steps and scores them).
- dataset: a synthetic store of 10^5 .. 10^8 steps (episodes of 1000 steps) memory-mapped from
  ``--scratch`` (about 490 bytes per step: 10^8 steps need ~49 GB of disk; the files are deleted
  afterwards), then the time to sample a batch (256 chunks, h = 5), QC-FQL updates/s with that sampling,
  and the process's resident memory: anonymous (its own allocations) and file-backed (mapped pages the
  OS may drop at any time).

Batch 256, puzzle-3x3 dimensions (observation 55, action 5), sampling included. The figures depend on the
machine: the CPU model is printed first. Run it alone (nothing else on the machine).
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path

import matplotlib
import numpy as np
import torch
from harness import (  # the shared harness beside this script
    ACTION_DIM,
    BATCH,
    OBSERVATION_DIM,
    benchmark_parser,
    make_agent,
    prepare,
    query_ms,
    synthetic_store,
    updates_per_second,
)

from chunkrl.data.chunks import ChunkSampler, ChunkSpec
from chunkrl.data.trajectories import StepArrays, Trajectories
from chunkrl.train.device import cpu_description

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402 - after choosing the file-only backend


def horizon_curve(args, device, store) -> dict:
    rows = {}
    for method in ("qc-fql", "qc"):
        for h in args.horizons:
            agent, _ = make_agent(method, args.dims, device, horizon=h)
            sampler = ChunkSampler(store, ChunkSpec(h, 0.99), seed=0)
            updates = max(3, args.updates // 5) if method == "qc" else args.updates
            rows[method, h] = (updates_per_second(agent, sampler, device, updates), query_ms(agent, queries=200))
            print(
                f"| {method} | h {h} | {rows[method, h][0]:.2f} updates/s | query {rows[method, h][1]:.2f} ms |",
                flush=True,
            )
    return rows


def samples_curve(args, device, store) -> dict:
    rows = {}
    sampler = ChunkSampler(store, ChunkSpec(5, 0.99), seed=0)
    for n in args.samples:
        agent, _ = make_agent("qc", args.dims, device, num_samples=n)
        rows[n] = (updates_per_second(agent, sampler, device, max(3, args.updates // 5)), query_ms(agent, queries=200))
        print(f"| qc | N {n} | {rows[n][0]:.2f} updates/s | query {rows[n][1]:.2f} ms |", flush=True)
    return rows


def memory_kib() -> dict[str, int]:
    """Resident memory of this process (Linux): anonymous and file-backed, in KiB."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("RssAnon", "RssFile"):
            fields[key] = int(value.split()[0])
    return fields


def mapped_store(directory: Path, steps: int, block: int = 1_000_000) -> Trajectories:
    """A synthetic memory-mapped store of ``steps`` steps, written block by block (RAM stays flat)."""
    store = Trajectories(OBSERVATION_DIM, ACTION_DIM, steps, directory)
    rng = np.random.default_rng(0)
    for start in range(0, steps, block):
        n = min(block, steps - start)
        ends = np.zeros(n, bool)
        ends[999::1000] = True
        ends[-1] = True
        store._write_block(
            StepArrays(
                observations=rng.standard_normal((n, OBSERVATION_DIM), np.float32),
                actions=rng.uniform(-1, 1, (n, ACTION_DIM)).astype(np.float32),
                rewards=-np.ones(n, np.float32),
                terminals=rng.random(n) < 0.01,
                ends=ends,
                next_observations=rng.standard_normal((n, OBSERVATION_DIM), np.float32),
            )
        )
    return store


def dataset_curve(args, device) -> dict:
    rows = {}
    agent, spec = make_agent("qc-fql", args.dims, device)
    for size in args.dataset_sizes:
        scratch = Path(tempfile.mkdtemp(dir=args.scratch))
        try:
            started = time.perf_counter()
            store = mapped_store(scratch / "store", size)
            built = time.perf_counter() - started
            sampler = ChunkSampler(store, spec, seed=0)
            for _ in range(50):
                sampler.sample(BATCH)
            times = []
            for _ in range(300):
                t = time.perf_counter()
                sampler.sample(BATCH)
                times.append(time.perf_counter() - t)
            rate = updates_per_second(agent, sampler, device, args.updates)
            memory = memory_kib()
            rows[size] = (
                statistics.median(times) * 1e3,
                rate,
                memory.get("RssAnon", 0) / 1024,
                memory.get("RssFile", 0) / 1024,
            )
            print(
                f"| {size:.0e} steps | sample {rows[size][0]:.2f} ms | {rate:.2f} updates/s "
                f"| RSS anon {rows[size][2]:.0f} MiB, file {rows[size][3]:.0f} MiB | built in {built:.0f} s |",
                flush=True,
            )
            del store, sampler
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return rows


def figure(panels: list[tuple[str, dict[str, tuple[list, list]], dict]], title: str, path: Path) -> None:
    """One row of panels; each is (y label, {line label: (xs, ys)}, axis settings)."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4))
    for ax, (ylabel, lines, settings) in zip(axes, panels, strict=True):
        for label, (xs, ys) in lines.items():
            ax.plot(xs, ys, "o-", label=label or None)
        ax.set(ylabel=ylabel, **settings)
        if any(lines):
            ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def plot(curves: dict, out: Path, title: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    if "horizon" in curves:
        rows = curves["horizon"]
        hs = {m: sorted(h for method, h in rows if method == m) for m in ("qc-fql", "qc")}
        lines = [{m: (hs[m], [rows[m, h][i] for h in hs[m]]) for m in hs} for i in (0, 1)]
        axis = dict(xlabel="chunk length h", yscale="log")
        figure(
            [("updates/s", lines[0], axis), ("action query (ms)", lines[1], axis)], title, out / "scaling_horizon.png"
        )
    if "samples" in curves:
        ns = sorted(curves["samples"])
        axis = dict(xlabel="best-of-N candidates N", xscale="log", yscale="log")
        panels = [
            (name, {"": (ns, [curves["samples"][n][i] for n in ns])}, axis)
            for i, name in enumerate(("QC updates/s", "QC action query (ms)"))
        ]
        figure(panels, title, out / "scaling_samples.png")
    if "dataset" in curves:
        sizes = sorted(curves["dataset"])
        column = lambda i: (sizes, [curves["dataset"][size][i] for size in sizes])  # noqa: E731
        axis = dict(xlabel="dataset steps", xscale="log")
        panels = [
            ("sample a batch (ms)", {"": column(0)}, axis),
            ("QC-FQL updates/s", {"": column(1)}, axis),
            ("resident memory (MiB)", {"anonymous": column(2), "file-backed (mapped, reclaimable)": column(3)}, axis),
        ]
        figure(panels, title, out / "scaling_dataset.png")


def main() -> None:
    parser = benchmark_parser(__doc__, 20, "timed updates per point (QC: a fifth)")
    parser.add_argument("--curves", nargs="+", default=["horizon", "samples", "dataset"])
    parser.add_argument("--size", default="3x256", help="networks, LAYERSxWIDTH")
    parser.add_argument("--horizons", nargs="+", type=int, default=[1, 2, 5, 10, 15, 20, 25])
    parser.add_argument("--samples", nargs="+", type=int, default=[1, 2, 4, 8, 16, 32, 64])
    parser.add_argument(
        "--dataset-sizes", nargs="+", type=lambda s: int(float(s)), default=[10**5, 10**6, 10**7, 10**8]
    )
    parser.add_argument("--scratch", type=Path, default=None, help="where the memory-mapped stores are written")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-scaling"))
    args = parser.parse_args()
    layers, width = args.size.split("x")
    args.dims = (int(width),) * int(layers)
    device = prepare(args)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_description()
    title = f"chunkrl {args.size}, batch {BATCH}; {where}"
    curves = {}
    store = synthetic_store()
    if "horizon" in args.curves:
        curves["horizon"] = horizon_curve(args, device, store)
    if "samples" in args.curves:
        curves["samples"] = samples_curve(args, device, store)
    if "dataset" in args.curves:
        curves["dataset"] = dataset_curve(args, device)
    plot(curves, args.out, title)
    print(f"plots in {args.out}/scaling_*.png")


if __name__ == "__main__":
    main()
