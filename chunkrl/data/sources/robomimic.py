"""robomimic low-dimensional hdf5 files (``h5py``) as chunkrl trajectories.

A file holds ``data/demo_N`` groups with ``actions`` [T, A], ``rewards`` [T], ``dones`` [T] and
``obs/<key>`` arrays; the observation is the concatenation of the chosen low-dimensional keys (default:
every ``obs`` key with one vector per step, in sorted order). As the Q-chunking paper uses robomimic,
rewards are shifted by -1 (0 on success, -1 otherwise) and ``dones`` (success) are terminals; every
demonstration ends its trajectory. Next observations come from ``next_obs`` where the file has it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from chunkrl.data.trajectories import DatasetError, StepArrays, Trajectories

SUFFIXES = (".hdf5", ".h5")


def is_robomimic_file(path: Path) -> bool:
    return Path(path).suffix in SUFFIXES


def low_dim_keys(demo) -> list[str]:
    """The ``obs`` keys with one vector (or scalar) per step: images are left out."""
    return sorted(k for k, v in demo["obs"].items() if v.ndim <= 2)


def read_robomimic(path: Path, keys: tuple[str, ...] = (), extra_capacity: int = 0) -> Trajectories:
    """A robomimic low-dim file as a trajectory store (see the module docstring); every demo is checked and a
    malformed one is named with what is wrong."""
    try:
        import h5py
    except ImportError:
        raise DatasetError('robomimic files need h5py: pip install -e ".[robomimic]"') from None
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path} does not exist")
    try:
        file = h5py.File(path, "r")
    except OSError as error:
        raise DatasetError(f"{path} cannot be opened as an hdf5 file ({error})") from None
    with file:
        if "data" not in file or not len(file["data"]):
            raise DatasetError(f"{path} has no data/demo_* groups: it is not a robomimic dataset")
        names = sorted(file["data"], key=_demo_number)
        first = _group(file["data"][names[0]], "obs", f"{path}: data/{names[0]}")
        keys = tuple(keys) or tuple(sorted(k for k, v in first.items() if v.ndim <= 2))
        if not keys:
            raise DatasetError(
                f"{path}: data/{names[0]}/obs has no low-dimensional keys (only images: {sorted(first)}); chunkrl's "
                "agents read state vectors"
            )
        demos = [_read_demo(file["data"][name], keys, f"{path}: data/{name}") for name in names]
    sizes = {demo.actions.shape[1] for demo in demos}
    if len(sizes) > 1 or len({demo.observations.shape[1] for demo in demos}) > 1:
        raise DatasetError(f"{path}: the demos' action or observation sizes differ (actions: {sorted(sizes)})")
    steps = StepArrays(*(np.concatenate([getattr(d, f) for d in demos]) for f in StepArrays.__dataclass_fields__))
    return Trajectories.from_arrays(steps, capacity=len(steps.rewards) + extra_capacity)


def _demo_number(name: str) -> int:
    try:
        return int(name.split("_")[-1])
    except ValueError:
        raise DatasetError(f"data/{name} is not a demo_<n> group of a robomimic file") from None


def _group(demo, name: str, where: str):
    import h5py

    if name not in demo or not isinstance(demo[name], h5py.Group):
        raise DatasetError(f"{where} has no '{name}' group (it has {sorted(demo)})")
    return demo[name]


def _array(demo, name: str, where: str, rows: int | None) -> np.ndarray:
    """A numeric dataset of the demo with ``rows`` rows (one per step)."""
    if name not in demo:
        raise DatasetError(f"{where} has no '{name}' (it has {sorted(demo)})")
    values = np.asarray(demo[name])
    if not (np.issubdtype(values.dtype, np.number) or values.dtype == bool):
        raise DatasetError(f"{where}/{name} holds {values.dtype} values, not numbers")
    if rows is not None and (values.ndim == 0 or len(values) != rows):
        found = "a scalar" if values.ndim == 0 else f"{len(values)} rows"
        raise DatasetError(f"{where}/{name} has {found} for {rows} actions; every step needs one row")
    return values


def _read_demo(demo, keys: tuple[str, ...], where: str) -> StepArrays:
    actions = _array(demo, "actions", where, None)
    if actions.ndim != 2 or len(actions) == 0:
        raise DatasetError(f"{where}/actions has shape {actions.shape}; a demo needs [steps >= 1, action size]")
    length = len(actions)
    observations = _observations(_group(demo, "obs", where), keys, f"{where}/obs", length)
    if "next_obs" in demo:
        next_observations = _observations(_group(demo, "next_obs", where), keys, f"{where}/next_obs", length)
    else:
        next_observations = np.concatenate([observations[1:], observations[-1:]])
    ends = np.zeros(length, dtype=bool)
    ends[-1] = True
    return StepArrays(
        observations,
        actions.astype(np.float32),
        _array(demo, "rewards", where, length).astype(np.float32).reshape(-1) - 1.0,
        _array(demo, "dones", where, length).astype(bool).reshape(-1),
        ends,
        next_observations,
    )


def _observations(group, keys: tuple[str, ...], where: str, length: int) -> np.ndarray:
    missing = [k for k in keys if k not in group]
    if missing:
        raise DatasetError(f"{where} has no keys {missing} (it has {sorted(group)})")
    return np.concatenate([_array(group, k, where, length).reshape(length, -1) for k in keys], 1).astype(np.float32)
