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
    try:
        import h5py
    except ImportError:
        raise DatasetError('robomimic files need h5py: pip install -e ".[robomimic]"') from None
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path} does not exist")
    with h5py.File(path, "r") as file:
        if "data" not in file or not len(file["data"]):
            raise DatasetError(f"{path} has no data/demo_* groups: it is not a robomimic dataset")
        names = sorted(file["data"], key=lambda name: int(name.split("_")[-1]))
        keys = tuple(keys) or tuple(low_dim_keys(file["data"][names[0]]))
        parts = {k: [] for k in StepArrays.__dataclass_fields__}
        for name in names:
            demo = file["data"][name]
            missing = [k for k in keys if k not in demo["obs"]]
            if missing:
                raise DatasetError(f"{path}: {name} has no obs keys {missing} (it has {sorted(demo['obs'])})")

            def flat(group, demo=demo):
                return np.concatenate([np.asarray(demo[group][k]).reshape(len(demo["actions"]), -1) for k in keys], 1)

            observations = flat("obs")
            if "next_obs" in demo:
                next_observations = flat("next_obs")
            else:
                next_observations = np.concatenate([observations[1:], observations[-1:]])
            length = len(observations)
            dones = np.asarray(demo["dones"], dtype=bool).reshape(-1)
            ends = np.zeros(length, dtype=bool)
            ends[-1] = True
            parts["observations"].append(observations.astype(np.float32))
            parts["actions"].append(np.asarray(demo["actions"], np.float32))
            parts["rewards"].append(np.asarray(demo["rewards"], np.float32).reshape(-1) - 1.0)
            parts["terminals"].append(dones)
            parts["ends"].append(ends)
            parts["next_observations"].append(next_observations.astype(np.float32))
    steps = StepArrays(**{k: np.concatenate(v) for k, v in parts.items()})
    return Trajectories.from_arrays(steps, capacity=len(steps.rewards) + extra_capacity)
