"""Where a run computes and how it is seeded."""

from __future__ import annotations

import os
import platform
import random
from pathlib import Path

import numpy as np
import torch

SIMD_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile")
"""The CPU extensions that decide how fast matrix products run, named in ``cpu_description``."""


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but PyTorch sees no CUDA device; use --device cpu or auto")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def cpu_description() -> str:
    """The CPU model and which of the SIMD extensions that matter for matrix products it has."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())  # the first core's entry
    except OSError:  # not Linux: the model from platform, no flags
        pass
    model = fields.get("model name") or platform.processor() or "unknown CPU"
    family = f"family {fields['cpu family']} model {fields['model']}, " if "cpu family" in fields else ""
    present = [f for f in SIMD_FLAGS if f in fields.get("flags", "").split()]
    return f"{model} ({family}{os.cpu_count()} cores; SIMD: {' '.join(present) or 'unknown'})"


def machine_description(device: torch.device) -> str:
    """What a run's figures were measured on: the GPU, or the CPU with the torch threads it used."""
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_description()
    return f"{where}; torch {torch.__version__}, {torch.get_num_threads()} threads"
