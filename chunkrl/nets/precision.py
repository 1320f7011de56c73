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
