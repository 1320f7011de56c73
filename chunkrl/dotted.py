"""Nested settings mappings as flat ``section.name`` keys, the way ``--set`` and the reports name a setting."""

from __future__ import annotations


def flatten(nested: dict, prefix: str = "") -> dict[str, object]:
    """``{"flow": {"alpha": 3, "dims": [256, 256]}}`` -> ``{"flow.alpha": 3, "flow.dims": (256, 256)}``: lists
    become tuples, so that every value can be a dictionary key or a set member (a run's settings group seeds)."""
    flat: dict[str, object] = {}
    for key, value in nested.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = tuple(value) if isinstance(value, list) else value
    return flat
