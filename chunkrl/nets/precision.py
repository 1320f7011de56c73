"""Numerical precision of the networks' arithmetic: ``fp32``, ``bf16-matmul`` or ``bf16``.

- ``fp32``: IEEE single precision everywhere (the default; what the paper's code computes).
- ``bf16-matmul``: parameters, activations, losses and optimizer state stay fp32; matrix products may
  use bfloat16 internally (PyTorch's ``float32_matmul_precision = "medium"``). What that means is the
  backend's choice: on x86 CPUs PyTorch routes fp32 products through oneDNN with its bf16 math mode
  (on an AVX-512 Zen 4 we measured it as accurate as MKL's fp32 and ~1.4x faster); on CUDA it
  allows bf16 tensor cores.
- ``bf16``: the forward passes run under autocast to bfloat16 (products in bf16 with fp32
  accumulation, activations between layers in bf16); parameters, gradients and Adam's state stay fp32.
  Fastest where the hardware has bf16 units (``avx512_bf16``/AMX, tensor cores); Q-values carry
  bf16's 8-bit mantissa, so compare learning curves before trusting it (``benchmarks/learning.py``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

Precision = Literal["fp32", "bf16-matmul", "bf16"]
PRECISIONS: tuple[str, ...] = ("fp32", "bf16-matmul", "bf16")


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")


@contextlib.contextmanager
def matmul_precision(precision: str) -> Iterator[None]:
    """Within the block, fp32 matrix products use the precision's internal mode (restored after)."""
    check_precision(precision)
    wanted = "medium" if precision == "bf16-matmul" else "highest"
    previous = torch.get_float32_matmul_precision()
    if previous == wanted:
        yield
        return
    torch.set_float32_matmul_precision(wanted)
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast to bfloat16 for ``bf16``; a no-op context for the other precisions."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


_generation = [0]  # bumped by every optimizer step in this process and every load_state_dict of an agent


def bump_weights_generation(*_) -> None:
    """Mark every cached copy of weights stale (``ActingWeights``): weights may have changed."""
    _generation[0] += 1


register_optimizer_step_post_hook(bump_weights_generation)


class ActingWeights:
    """bfloat16 copies of a module's product weights (``product_weights``), for ``bf16`` action queries.

    Under autocast every query would cast every weight again (at batch 1 the casts cost about as much as the
    products). The copies are made at the first query and again only after the weights may have changed: after
    any optimizer step in the process or a ``load_state_dict`` of a module that called ``bump_weights_generation``
    (agents register it). Weights changed in place any other way need ``bump_weights_generation()``.
    """

    def __init__(self) -> None:
        self.generation = -1
        self.pairs: list[tuple[torch.nn.Parameter, torch.Tensor]] = []  # (parameter, its bf16 copy)

    def of(self, module: torch.nn.Module) -> list[tuple[torch.nn.Parameter, torch.Tensor]]:
        """``module``'s product weights (``product_weights``), each with its bfloat16 copy."""
        if self.generation != _generation[0]:
            self.pairs = [(p, p.detach().to(torch.bfloat16)) for _, p in product_weights(module)]
            self.generation = _generation[0]
        return self.pairs

    @contextlib.contextmanager
    def swapped_in(self, module: torch.nn.Module) -> Iterator[None]:
        """Within the block ``module``'s product weights hold their bfloat16 copies (their fp32 values are put back
        on the way out, also after an error): for action queries under autocast, never for a backward pass."""
        pairs = self.of(module)
        originals = [parameter.data for parameter, _ in pairs]
        try:
            for parameter, copy in pairs:
                parameter.data = copy
            yield
        finally:
            for (parameter, _), original in zip(pairs, originals, strict=True):
                parameter.data = original


PRODUCT_LAYERS = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.MultiheadAttention)
"""Layers whose weight matrices go into matrix products, which autocast casts to bfloat16."""


def product_weights(module: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    """The weight matrices that autocast would cast to bfloat16 at every product: those of linear, convolution
    and attention layers and of any layer that declares ``product_weights`` (names of its parameters). Biases,
    norms, embeddings and log-stds stay fp32: autocast keeps their operations in fp32 (or casts a bias with its
    product), and a bfloat16 copy of them would change the results."""
    found = []
    for prefix, layer in module.named_modules():
        names = getattr(layer, "product_weights", None)
        if names is None and isinstance(layer, PRODUCT_LAYERS):
            names = [n for n, p in layer.named_parameters(recurse=False) if n.endswith("weight") and p.ndim >= 2]
        for name in names or ():
            found.append((f"{prefix}.{name}" if prefix else name, getattr(layer, name)))
    return found
