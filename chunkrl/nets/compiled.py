"""``--compile``: the whole update and the action query, compiled with ``torch.compile``.

The update (losses, backward, optimizer step, target update) becomes one captured program whose
elementwise work inductor fuses into generated C++ (CPU) or Triton (GPU) kernels; matrix products
stay with the vendor library. The first update and the first action query of each input shape pay
the compilation (tens of seconds on a CPU; inductor caches the generated code on disk, so a later
run of the same networks compiles faster); ``docs/results.md`` measures what it gains.

Random draws stay torch's own (``fallback_random``): a compiled update draws the same numbers from
the same generator as the eager one, so seeds, checkpoints and resumed runs mean the same thing, and
the compiled update agrees with the eager one to float rounding (tested).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch

BACKEND = "inductor"
"""torch.compile's backend. Tests swap in ``aot_eager`` (the same capture of forward and backward,
run without code generation) to check the plumbing in seconds."""

F = TypeVar("F", bound=Callable)


def compiled(function: F) -> F:
    """``function`` compiled with ``BACKEND``; random draws as in eager mode."""
    import torch._inductor.config as inductor_config

    inductor_config.fallback_random = True  # the eager generator's numbers, not inductor's own
    return torch.compile(function, backend=BACKEND)


_methods: dict[tuple[type, str], Callable] = {}


def compiled_method(cls: type, name: str) -> Callable:
    """``cls.name`` compiled (once per class; call it with the instance first). Compiling the class's function
    rather than an instance's bound method keeps no reference to the instance, and a copied module never calls
    its original's compiled method."""
    key = (cls, name)
    if key not in _methods:
        _methods[key] = compiled(getattr(cls, name))
    return _methods[key]
