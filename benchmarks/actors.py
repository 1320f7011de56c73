"""Actor benchmark: the MLP chunk actor vs the ACT-style transformer actor of the SAC family.

Prints, at default sizes (MLP 4x512; ACT width 256, 4 decoder layers, 4 heads, feed-forward 1024),
puzzle-3x3 dimensions (observation 55, action 5) and h = 5:
- actor parameter count;
- single-observation inference latency (median ms of one action-chunk query);
- QC-RLPD training updates per second (batch 256, critic ensemble of 10 x 4x512), sampling included.
The ACT actor is also measured with a 3-observation history.

    python benchmarks/actors.py [--device auto] [--updates 30] [--threads N]
"""

from __future__ import annotations

import torch
from harness import (  # the shared harness beside this script
    benchmark_parser,
    prepare,
    query_ms,
    synthetic_store,
    updates_per_second,
)

from chunkrl.agents.sac.config import SACAgentConfig
from chunkrl.agents.sac.sac import ChunkedSACAgent
from chunkrl.data.chunks import ChunkSampler, ChunkSpec
from chunkrl.nets.act import ACTActorConfig

OBSERVATION_DIM, ACTION_DIM, HORIZON, BATCH = 55, 5, 5, 256


def main() -> None:
    args = benchmark_parser(__doc__, 30, "timed training updates per actor").parse_args()
    device = prepare(args)
    variants = {
        "mlp 4x512": SACAgentConfig(bc_alpha=0.01),
        "act (single observation)": SACAgentConfig(actor="act", bc_alpha=0.01),
        "act (3-observation history)": SACAgentConfig(actor="act", act=ACTActorConfig(obs_history=3), bc_alpha=0.01),
    }
    for name, config in variants.items():
        torch.manual_seed(0)
        agent = ChunkedSACAgent(OBSERVATION_DIM, ACTION_DIM, HORIZON, config).to(device)
        parameters = sum(p.numel() for p in agent.actor.parameters())
        latency = query_ms(agent, queries=300)
        sampler = ChunkSampler(synthetic_store(), ChunkSpec(HORIZON, 0.99), seed=0, history=agent.history_length)
        rate = updates_per_second(agent, sampler, device, args.updates)
        print(
            f"{name}: {parameters / 1e6:.2f}M actor parameters, action query {latency:.3f} ms, "
            f"QC-RLPD training {rate:.2f} updates/s",
            flush=True,
        )


if __name__ == "__main__":
    main()
