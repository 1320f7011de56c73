"""Learning benchmark: does QC-FQL learn, and how long does it take on this machine?

QC-FQL with 3x256 networks, 20,000 offline gradient steps on the shared 100-episode
puzzle-3x3 play dataset, task 1 with sparse reward, 50 evaluation episodes, several seeds.
Reference (official JAX code, same data and budget, this 2-core CPU): success 0.44, 0.06, 0.00 on
seeds 0, 1, 2 (mean 0.17), about 10 minutes per run.

    python benchmarks/learning.py [--seeds 0 1 2] [--offline-steps 20000] [--out runs/bench-learning]
                                  [--precision fp32|bf16-matmul|bf16] [--stacked]

--precision compares arithmetic (run it once per precision, same seeds). --stacked trains the seeds
together in one process (``--seeds`` of ``chunkrl train``) instead of one after the other; wall time is
then for all seeds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from chunkrl.agents.flow.config import FlowAgentConfig
from chunkrl.config import TrainConfig
from chunkrl.nets.precision import PRECISIONS
from chunkrl.train.run import train

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "ogbench" / "puzzle-3x3-play-v0.npz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--offline-steps", type=int, default=20_000)
    parser.add_argument("--dataset", type=Path, default=SHARED)
    parser.add_argument("--env", default="puzzle-3x3-play-singletask-task1-v0")
    parser.add_argument("--eval-episodes", type=int, default=50)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-learning"))
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS)
    parser.add_argument("--stacked", action="store_true", help="train the seeds together (stacked parameters)")
    args = parser.parse_args()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    results = []
    for seeds in [tuple(args.seeds)] if args.stacked else [(seed,) for seed in args.seeds]:
        seed = seeds[0]
        config = TrainConfig(
            seeds=seeds if args.stacked else (),
            precision=args.precision,
            agent="qc-fql",
            env=args.env,
            sparse=True,
            dataset_path=args.dataset,
            seed=seed,
            offline_steps=args.offline_steps,
            online_steps=0,
            eval_interval=0,
            eval_episodes=args.eval_episodes,
            log_interval=1000,
            checkpoint_interval=0,
            device=args.device,
            # alpha 100: the official code's default, with which its reference figure was measured
            flow=FlowAgentConfig(actor_hidden_dims=(256, 256, 256), critic_hidden_dims=(256, 256, 256), alpha=100.0),
        )
        started = time.time()
        name = f"{stamp}-{args.precision}-seed{'-'.join(map(str, seeds))}"
        summary = train(config, run_dir=args.out / name)
        wall = time.time() - started
        finals = summary["evaluations"]["offline_final"]
        for lane, success in (finals.get("per_seed") or {seed: finals["success"]}).items():
            results.append({"seed": lane, "success": success, "wall_seconds": wall})
            print(
                f"seed {lane}: success {success:.2f} ({args.eval_episodes} episodes), wall {wall / 60:.1f} min",
                flush=True,
            )
    successes = [r["success"] for r in results]
    spread = statistics.stdev(successes) if len(successes) > 1 else 0.0
    print(json.dumps(results))
    print(
        f"QC-FQL 3x256 {args.precision}{' stacked' if args.stacked else ''}, {args.offline_steps} offline steps, "
        f"{args.env} sparse: success "
        f"{statistics.mean(successes):.2f} ± {spread:.2f} (mean ± std over {len(successes)} seeds; "
        f"min {min(successes):.2f}, max {max(successes):.2f}); "
        f"wall {statistics.mean(r['wall_seconds'] for r in results) / 60:.1f} min per run"
    )


if __name__ == "__main__":
    main()
