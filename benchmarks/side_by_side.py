"""Side-by-side throughput: chunkrl against the official Q-chunking JAX code, alternately, in one run.

Each round runs the official code's runner (``shared/bench/peer_qc/run.py``, in its own virtual
environment with its pinned JAX) and then ``benchmarks/throughput.py`` once per chosen precision, on
the same shapes (batch 256, h 5, puzzle-3x3 dimensions, sampling included, best of 32). Ratios are
taken within a round (chunkrl's figure over the official figure measured just before it), and the
table gives their range over the rounds: the machine's speed drifts, so only paired figures compare.
``--compile`` measures each precision (or the ones it names) also as ``chunkrl train --compile`` runs.
Nothing else may run on the machine meanwhile.

Set-up of the official side (once): see ``shared/bench/peer_qc/README.md`` (a venv in /tmp/peer-venv).

    python benchmarks/side_by_side.py [--agents qc-fql qc qc-rlpd] [--sizes 4x512 3x256] [--rounds 3]
                                      [--precision fp32 bf16] [--compile [fp32]] [--updates 60]
                                      [--peer-python /tmp/peer-venv/bin/python] [--peer-dir ../shared/bench/peer_qc]

Updates/s: higher is better, ratio = chunkrl / official. Action query (ms): lower is better, ratio =
official / chunkrl, so a ratio >= 1 means chunkrl is at least as fast in both columns.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from chunkrl.nets.precision import PRECISIONS
from chunkrl.train.device import cpu_description

HERE = Path(__file__).resolve().parent
LINE = re.compile(
    r"^(?:PEER )?(?P<method>[\w-]+) (?P<size>\d+x\d+): (?P<rate>[\d.]+) updates/s, action query (?P<ms>[\d.]+) ms"
)
PEER_METHODS = ("qc-fql", "fql-n", "qc", "qc-rlpd", "rlpd-ac", "rlpd")


def parse(output: str) -> dict[tuple[str, str], tuple[float, float]]:
    """``{(method, size): (updates/s, action ms)}`` from either program's output."""
    found = {}
    for line in output.splitlines():
        match = LINE.match(line.strip())
        if match:
            found[match["method"], match["size"]] = (float(match["rate"]), float(match["ms"]))
    return found


def run(command: list[str], cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed (exit {result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout


def spread(values: list[float], digits: int = 2) -> str:
    low, high = min(values), max(values)
    return (
        f"{low:.{digits}f}"
        if len(values) == 1 or f"{low:.{digits}f}" == f"{high:.{digits}f}"
        else f"{low:.{digits}f}–{high:.{digits}f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", nargs="+", default=["qc-fql", "qc", "qc-rlpd"], choices=PEER_METHODS)
    parser.add_argument("--sizes", nargs="+", default=["4x512", "3x256"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--updates", type=int, default=60, help="timed updates per measurement (QC: a tenth)")
    parser.add_argument("--precision", nargs="+", default=["fp32"], choices=PRECISIONS, help="chunkrl's precisions")
    parser.add_argument(
        "--compile",
        nargs="*",
        choices=PRECISIONS,
        help="also measure these precisions with --compile (no value: each of --precision)",
    )
    parser.add_argument("--peer-python", default=os.environ.get("CHUNKRL_PEER_PYTHON", "/tmp/peer-venv/bin/python"))
    parser.add_argument("--peer-dir", type=Path, default=HERE.parent.parent / "shared" / "bench" / "peer_qc")
    args = parser.parse_args()
    if not Path(args.peer_python).exists() or not (args.peer_dir / "run.py").exists():
        raise SystemExit(
            f"The official code's runner needs {args.peer_dir / 'run.py'} and its venv's python {args.peer_python}; "
            "set them with --peer-dir / --peer-python (set-up: shared/bench/peer_qc/README.md)."
        )
    print(cpu_description(), flush=True)
    common = ["--agents", *args.agents, "--sizes", *args.sizes, "--updates", str(args.updates)]
    peer_env = {**os.environ, "PYTHONPATH": str(args.peer_dir / "src"), "JAX_PLATFORMS": "cpu"}
    ours_env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))}
    compiled = args.precision if args.compile == [] else args.compile or []
    variants = {p: (p, []) for p in args.precision} | {f"{p} compiled": (p, ["--compile"]) for p in compiled}
    peer: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    ours: dict[tuple[str, str, str], list[tuple[float, float]]] = defaultdict(list)
    ratios: dict[tuple[str, str, str], list[tuple[float, float]]] = defaultdict(list)
    for round_ in range(1, args.rounds + 1):
        peer_round = parse(run([args.peer_python, "run.py", *common], args.peer_dir, peer_env))
        for key, value in peer_round.items():
            peer[key].append(value)
        print(
            f"round {round_}: official " + ", ".join(f"{m} {s} {v[0]:.2f}/s" for (m, s), v in peer_round.items()),
            flush=True,
        )
        for precision, (arithmetic, flags) in variants.items():  # precision: the label, e.g. "fp32 compiled"
            command = [sys.executable, str(HERE / "throughput.py"), *common, "--device", "cpu"]
            command += ["--precision", arithmetic, *flags]
            output = run(command, HERE.parent, ours_env)
            ours_round = parse(output)
            for line in output.splitlines():  # --compile: compile time and distance from eager
                if "compiled in" in line:
                    print(f"round {round_}: {line.split(': ', 1)[0]} {precision}: {line.split(', compiled in ')[1]}")
            for (method, size), (rate, ms) in ours_round.items():
                ours[method, size, precision].append((rate, ms))
                if (method, size) in peer_round:
                    peer_rate, peer_ms = peer_round[method, size]
                    ratios[method, size, precision].append((rate / peer_rate, peer_ms / ms))
            print(
                f"round {round_}: chunkrl {precision} "
                + ", ".join(f"{m} {s} {v[0]:.2f}/s" for (m, s), v in ours_round.items()),
                flush=True,
            )

    print(f"\n{args.rounds} rounds, ranges over rounds; ratios paired within a round")
    print("| measure | official (JAX) | chunkrl | precision | ratio (x official) |")
    print("|---|---|---|---|---|")
    for (method, size, precision), values in ours.items():
        official = peer[method, size]
        paired = ratios[method, size, precision]
        print(
            f"| {method} {size} updates/s | {spread([v[0] for v in official])} | {spread([v[0] for v in values])} "
            f"| {precision} | {spread([r[0] for r in paired])}x |"
        )
        print(
            f"| {method} {size} action query ms | {spread([v[1] for v in official], 3)} "
            f"| {spread([v[1] for v in values], 3)} | {precision} | {spread([r[1] for r in paired])}x |"
        )


if __name__ == "__main__":
    main()
