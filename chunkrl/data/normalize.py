"""Data in its own units at the edges, [-1, 1] actions inside.

Every agent except the token policies emits actions in [-1, 1] (tanh, clip or clamp). Real robot data
is in radians, metres or gripper openings, so a run computes per-dimension statistics of its training
data once, maps the dataset's actions (and, where asked, observations) into the agents' units, wraps its
environments so that they take normalised actions and give normalised observations, and saves the
statistics with every checkpoint (``normalization.json``) so that ``Policy`` and ``chunkrl eval`` map
back to the dataset's units.

Action modes (``--action-norm``):

- ``none``: actions are used as they are (they must already lie in [-1, 1]).
- ``min_max``: the data's per-dimension minimum and maximum map to -1 and 1 (LeRobot's ``MIN_MAX``;
  every demonstrated action stays reachable).
- ``quantile``: the 1st and 99th percentiles map to -1 and 1, values beyond them are clipped (pi0's
  quantile normalisation: robust to a few wild actions).
- ``bounds``: the environment's action bounds map to -1 and 1 (the whole action space is reachable).
- ``auto`` (default): ``bounds`` when the environment has finite bounds other than [-1, 1], else ``none``
  when the data already lies in [-1, 1] (OGBench: runs stay identical to the official code), else
  ``min_max``.

Observation modes (``--obs-norm``): ``none``, ``mean_std`` (LeRobot's default for states: zero mean,
unit standard deviation), or ``auto``: ``none`` on OGBench tasks (the paper's setting), ``mean_std`` for
every other dataset.

A dimension that never changes (range or standard deviation 0) normalises to 0 and maps back to its
constant value: no division by zero, no NaN.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from chunkrl.data.trajectories import DatasetError, Trajectories

FILE = "normalization.json"
"""Where a run directory and every checkpoint keep the statistics."""
UNIT_TOLERANCE = 1e-6
"""How far past ±1 data may lie and still count as 'already in [-1, 1]' (float rounding)."""
QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}
"""The quantiles LeRobot's ``compute_stats`` records (``lerobot/datasets/compute_stats.py``); quantile
normalisation reads q01 and q99."""


def feature_stats(values: np.ndarray) -> dict[str, list]:
    """Per-dimension statistics of ``values`` [N, D] with LeRobot's keys (``meta/stats.json``): mean, std,
    min, max, the quantiles q01 .. q99 and the count of rows."""
    values = np.asarray(values, np.float64)
    if values.ndim != 2 or len(values) == 0:
        raise DatasetError(f"statistics need a non-empty [rows, dims] array, got shape {values.shape}")
    quantiles = np.quantile(values, list(QUANTILES.values()), axis=0)
    return {
        "mean": values.mean(0).tolist(),
        "std": values.std(0).tolist(),
        "min": values.min(0).tolist(),
        "max": values.max(0).tolist(),
        **{key: row.tolist() for key, row in zip(QUANTILES, quantiles, strict=True)},
        "count": [int(len(values))],
    }


def reach(actions: np.ndarray | None) -> float:
    """The largest magnitude among ``actions`` (0 for none)."""
    return 0.0 if actions is None else float(np.abs(actions).max(initial=0.0))


def finite_bounds(low, high) -> bool:
    return low is not None and bool(np.isfinite(low).all() and np.isfinite(high).all())


def unit_bounds(low, high) -> bool:
    """Whether the action bounds are [-1, 1] in every dimension."""
    return bool(np.allclose(low, -1.0) and np.allclose(high, 1.0))


@dataclass(frozen=True)
class Normalizer:
    """An affine map per dimension between the data's units and the agents' units.

    ``normalized = (raw - center) / scale`` (scale 0: normalised 0) and ``raw = center + normalized * scale``,
    for actions (``action_*``) and observations (``observation_*``). ``action_mode`` / ``observation_mode``
    name the resolved modes."""

    action_mode: str
    observation_mode: str
    action_center: np.ndarray
    action_scale: np.ndarray
    observation_center: np.ndarray
    observation_scale: np.ndarray

    @classmethod
    def identity(cls, observation_dim: int, action_dim: int) -> Normalizer:
        """No normalisation (modes ``none``)."""
        zeros, ones = np.zeros, np.ones
        return cls("none", "none", zeros(action_dim), ones(action_dim), zeros(observation_dim), ones(observation_dim))

    @property
    def is_identity(self) -> bool:
        return self.action_mode == "none" and self.observation_mode == "none"

    # ------------------------------------------------------------------ maps
    def denormalize_actions(self, actions: np.ndarray) -> np.ndarray:
        return (self.action_center + np.asarray(actions, np.float64) * self.action_scale).astype(np.float32)

    def normalize_observations(self, observations: np.ndarray) -> np.ndarray:
        return _forward(observations, self.observation_center, self.observation_scale)

    def apply_to(self, store: Trajectories) -> int:
        """Normalise a store's filled steps in place, actions clipped to [-1, 1] (beyond quantiles; for min_max and
        bounds only float rounding); returns how many action numbers lay outside and were clipped."""
        n = store.size
        clipped = 0
        if self.action_mode != "none":
            raw = store.actions[:n]
            mapped = _forward(raw, self.action_center, self.action_scale)
            clipped = int((np.abs(mapped) > 1.0 + UNIT_TOLERANCE).sum())
            store.actions[:n] = np.clip(mapped, -1.0, 1.0)
        if self.observation_mode != "none":
            store.observations[:n] = self.normalize_observations(store.observations[:n])
            store.next_observations[:n] = self.normalize_observations(store.next_observations[:n])
        return clipped

    # ------------------------------------------------------------------ files
    def to_json(self) -> str:
        return json.dumps(
            {
                "format": 1,
                "action_mode": self.action_mode,
                "observation_mode": self.observation_mode,
                "action": {"center": self.action_center.tolist(), "scale": self.action_scale.tolist()},
                "observation": {"center": self.observation_center.tolist(), "scale": self.observation_scale.tolist()},
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str, source: str = FILE) -> Normalizer:
        """Read ``to_json``'s output; anything else is a ``DatasetError`` naming ``source``."""
        try:
            data = json.loads(text)
            arrays = [
                np.asarray(data[part][key], np.float64)
                for part in ("action", "observation")
                for key in ("center", "scale")
            ]
            modes = str(data["action_mode"]), str(data["observation_mode"])
        except (ValueError, KeyError, TypeError) as error:
            raise DatasetError(f"{source} is not a chunkrl normalisation file ({error!r}); it may be corrupt") from None
        if any(a.ndim != 1 or not np.isfinite(a).all() for a in arrays) or arrays[0].shape != arrays[1].shape:
            raise DatasetError(f"{source} holds malformed or non-finite statistics; it may be corrupt")
        return cls(*modes, *arrays)


def _forward(values: np.ndarray, center: np.ndarray, scale: np.ndarray) -> np.ndarray:
    safe = np.where(scale > 0, scale, 1.0)
    normalized = np.where(scale > 0, (np.asarray(values, np.float64) - center) / safe, 0.0)
    return normalized.astype(np.float32)


def resolve_action_mode(mode: str, actions: np.ndarray | None, low=None, high=None) -> str:
    """The action mode ``auto`` stands for (see the module docstring); other modes are returned as they are
    after checking that they can be used."""
    bounded = finite_bounds(low, high)
    if mode == "bounds" and not bounded:
        raise DatasetError(
            "--action-norm bounds needs an environment with finite action bounds; this run has none. "
            "Use --action-norm min_max or quantile (from the data)."
        )
    if mode in ("min_max", "quantile") and actions is None:
        raise DatasetError(f"--action-norm {mode} computes statistics from a dataset, and this run has none")
    if mode != "auto":
        return mode
    if bounded and not unit_bounds(low, high):
        return "bounds"
    if reach(actions) <= 1.0 + UNIT_TOLERANCE:
        return "none"
    return "min_max"


def fit_normalizer(
    action_mode: str,
    observation_mode: str,
    store: Trajectories | None,
    observation_dim: int,
    action_dim: int,
    action_low: np.ndarray | None = None,
    action_high: np.ndarray | None = None,
    ogbench: bool = False,
) -> Normalizer:
    """The normaliser of a run: modes resolved (``auto``), statistics from ``store``'s steps (the dataset,
    before any online step) and the environment's action bounds."""
    actions = None if store is None else store.actions[: store.size]
    observations = None if store is None else store.observations[: store.size]
    resolved = resolve_action_mode(action_mode, actions, action_low, action_high)
    center, scale = np.zeros(action_dim), np.ones(action_dim)
    if resolved == "bounds":
        low, high = np.asarray(action_low, np.float64), np.asarray(action_high, np.float64)
        center, scale = (high + low) / 2, (high - low) / 2
    elif resolved in ("min_max", "quantile"):
        stats = feature_stats(actions)
        low, high = (stats["min"], stats["max"]) if resolved == "min_max" else (stats["q01"], stats["q99"])
        low, high = np.asarray(low), np.asarray(high)
        center, scale = (high + low) / 2, (high - low) / 2
    obs_mode = observation_mode
    if obs_mode == "auto":
        obs_mode = "none" if ogbench or observations is None else "mean_std"
    obs_center, obs_scale = np.zeros(observation_dim), np.ones(observation_dim)
    if obs_mode == "mean_std":
        if observations is None:
            raise DatasetError("--obs-norm mean_std computes statistics from a dataset, and this run has none")
        stats = feature_stats(observations)
        obs_center, obs_scale = np.asarray(stats["mean"]), np.asarray(stats["std"])
        obs_scale = np.where(obs_scale > 1e-8, obs_scale, 0.0)
    return Normalizer(resolved, obs_mode, center, scale, obs_center, obs_scale)
