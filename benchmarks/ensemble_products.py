"""The critic ensemble's hidden-layer product, written three ways, against a plain product of the same work.

A hidden layer of an E-member critic multiplies [E, B, d] activations by [E, d, d] weights. chunkrl does it
with one batched product (``baddbmm``, ``nets/ensemble.py``). The alternatives: one plain product per member
(a Python loop of ``addmm``), and one plain product against a block-diagonal [E d, E d] weight (E times the
arithmetic, but the vendor library's plain rate). The reference is one plain product of the same arithmetic
(E B rows through one weight), the rate the batched product would reach if batching cost nothing. Forward
and backward, batch 256; QC-FQL's E = 2 and the RLPD family's E = 10 at the paper's widths.

    python benchmarks/ensemble_products.py [--members 2 10] [--widths 256 512] [--threads N] [--device auto]

Prints microseconds per forward + backward (median of torch.utils.benchmark's blocked runs) and each way's
rate as a fraction of the plain product's.
"""

from __future__ import annotations

import torch
from harness import BATCH, benchmark_parser, prepare
from torch.utils import benchmark


def ways(members: int, width: int, device: torch.device) -> dict:
    x = torch.randn(members, BATCH, width, device=device, requires_grad=True)
    weight = torch.randn(members, width, width, device=device, requires_grad=True)
    bias = torch.randn(members, 1, width, device=device, requires_grad=True)

    def batched():
        torch.baddbmm(bias, x, weight).sum().backward()

    def per_member():
        torch.stack([torch.addmm(bias[e], x[e], weight[e]) for e in range(members)]).sum().backward()

    def block_diagonal():
        rows = x.transpose(0, 1).reshape(BATCH, members * width)
        (rows @ torch.block_diag(*weight.unbind(0))).sum().backward()

    def plain():  # the same arithmetic as one product: E * B rows through one weight
        torch.addmm(bias[0], x.reshape(members * BATCH, width), weight[0]).sum().backward()

    return {
        "baddbmm (chunkrl)": batched,
        "addmm per member": per_member,
        "block-diagonal": block_diagonal,
        "plain": plain,
    }


def main() -> None:
    parser = benchmark_parser(__doc__, 0, "not used: each product runs for about a second")
    parser.add_argument("--members", nargs="+", type=int, default=[2, 10])
    parser.add_argument("--widths", nargs="+", type=int, default=[256, 512])
    args = parser.parse_args()
    device = prepare(args)
    for members in args.members:
        for width in args.widths:
            times = {}
            for name, step in ways(members, width, device).items():
                timer = benchmark.Timer("step()", globals={"step": step})
                times[name] = timer.blocked_autorange(min_run_time=1.0).median * 1e6
            shown = ", ".join(f"{name} {us:.0f} us ({times['plain'] / us:.2f})" for name, us in times.items())
            print(f"E {members}, width {width}: {shown}", flush=True)


if __name__ == "__main__":
    main()
