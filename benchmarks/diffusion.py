"""Diffusion-QL and CPQL over chunks: updates per second and action-query latency, per backbone.

Batch 256, h = 5, puzzle-3x3 dimensions, truncate (semi-Markov) targets, 3x256 MLP denoiser and critics
(the methods' defaults) or the temporal U-Net (``--unet-channels``, default chunkrl's 64/128/256). An
update of either method runs the denoiser for the EMA actor's target chunks (Diffusion-QL: T reverse
steps; CPQL: one), the behaviour-cloning loss, and the actor's chunks *with* gradients for the Q term;
an action query samples ``act_samples`` (50) candidates and scores them with the critics. Prints
absolute figures with the CPU model; nothing is compared with figures from another run. ``--compile``
measures each agent again as ``chunkrl train --compile`` runs it, right after the eager figures.

    python benchmarks/diffusion.py [--agents diffusion-ql cpql] [--backbones mlp unet] [--updates 30]
                                   [--unet-channels 64 128 256] [--compile] [--device auto] [--threads N]
"""

from __future__ import annotations

from harness import (  # the shared harness beside this script
    BATCH,
    benchmark_parser,
    compile_as_training,
    make_agent,
    prepare,
    query_ms,
    synthetic_store,
    update_flops,
    updates_per_second,
)

from chunkrl.data.chunks import ChunkSampler
from chunkrl.nets.unet1d import UNetConfig


def main() -> None:
    parser = benchmark_parser(__doc__, 30, "timed updates per method and backbone (U-Net: a third of them)")
    parser.add_argument("--agents", nargs="+", default=["diffusion-ql", "cpql"], choices=["diffusion-ql", "cpql"])
    parser.add_argument("--backbones", nargs="+", default=["mlp", "unet"], choices=["mlp", "unet"])
    parser.add_argument("--unet-channels", nargs="+", type=int, default=list(UNetConfig.channels))
    parser.add_argument("--compile", action="store_true", help="also measure each as chunkrl train --compile runs")
    args = parser.parse_args()
    device = prepare(args)
    store = synthetic_store()
    for method in args.agents:
        for backbone in args.backbones:
            unet = UNetConfig(channels=tuple(args.unet_channels))
            agent, spec = make_agent(method, (256, 256, 256), device, backbone=backbone, unet=unet)
            sampler = ChunkSampler(store, spec, seed=0)
            flops = update_flops(agent, sampler.sample(BATCH).to_torch(device))
            updates = max(3, args.updates // 3) if backbone == "unet" else args.updates
            rate = updates_per_second(agent, sampler, device, updates)
            latency = query_ms(agent, queries=200)
            parameters = sum(p.numel() for p in agent.actor.parameters())
            name = f"{method} {backbone}" + (f" {list(unet.channels)}" if backbone == "unet" else "")
            line = (
                f"{name}: denoiser {parameters / 1e6:.2f}M parameters, {rate:.2f} updates/s, "
                f"action query ({agent.config.act_samples} candidates) {latency:.1f} ms, "
                f"{flops / 1e9:.1f} GFLOP/update"
            )
            if args.compile:  # the same agent again, as --compile trains and acts
                update, compile_s = compile_as_training(agent, sampler, device)
                compiled_rate = updates_per_second(agent, sampler, device, updates, update)
                compiled_latency = query_ms(agent, queries=200)
                line += (
                    f"; --compile: {compiled_rate:.2f} updates/s ({compiled_rate / rate:.2f}x), action query "
                    f"{compiled_latency:.1f} ms ({latency / compiled_latency:.2f}x), compiled in {compile_s:.0f} s"
                )
            print(line, flush=True)


if __name__ == "__main__":
    main()
