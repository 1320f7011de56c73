"""Reading the scripted ALOHA demonstrations (written by ``chunkrl.envs.scripted.aloha``)."""

from __future__ import annotations

import dataclasses
import zipfile
from pathlib import Path

import numpy as np

from chunkrl.data.trajectories import DatasetError, StepArrays, Trajectories


def load_scripted(path: Path, extra_capacity: int = 0, state_parts: tuple[str, ...] = ()):
    """A scripted ALOHA dataset (written by ``generate_scripted``, full states) as a trajectory store, its
    observations cut to ``state_parts`` (default all: qpos, qvel, objects) as the environment's are."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(
            f"{path} does not exist. Generate it with "
            f"`chunkrl data generate aloha-transfer-cube-scripted --out {path}` (or aloha-insertion-scripted)."
        )
    try:
        with np.load(path) as data:
            steps = StepArrays(
                **{k: data[k] for k in ("observations", "actions", "rewards", "terminals", "ends", "next_observations")}
            )
    except (KeyError, zipfile.BadZipFile, EOFError, OSError, ValueError) as error:
        raise DatasetError(
            f"{path} is not a scripted ALOHA dataset or is corrupt ({type(error).__name__}: {error}); generate it "
            "again with `chunkrl data generate aloha-<task>-scripted`."
        ) from None
    if state_parts:
        from chunkrl.envs.aloha import state_columns

        columns = state_columns(tuple(state_parts), steps.observations.shape[1])
        steps = dataclasses.replace(
            steps, observations=steps.observations[:, columns], next_observations=steps.next_observations[:, columns]
        )
    return Trajectories.from_arrays(steps, capacity=len(steps.rewards) + extra_capacity)
