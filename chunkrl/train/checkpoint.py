"""Checkpoints: weights (safetensors), optimizer state, RNG states, counters and the resolved config.

Layout of one checkpoint directory::

    model.safetensors   agent weights (networks and target networks)
    optimizer.pt        optimizer state dicts
    rng.pt              torch / numpy random states
    state.json          step counters and the method name
    config.yaml         the run's resolved config
    replay_online.npz   online steps collected so far (online phase only)
    checksums.json      SHA-256 of each file above, to tell a corrupt file from a good one

Directories are written under a temporary name and renamed into place, so a crash never leaves a
half-written checkpoint under a real name. ``<run>/checkpoints/latest`` names the newest one. A
resume checks the files against their checksums and falls back, with a warning, to the newest
checkpoint that is whole; every read error names the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import shutil
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from chunkrl.agents.base import Agent
from chunkrl.agents.registry import METHODS, agent_config, build_agent
from chunkrl.config import TrainConfig, load_config, save_config
from chunkrl.data.normalize import FILE as NORMALIZATION_FILE
from chunkrl.data.normalize import Normalizer
from chunkrl.data.trajectories import DatasetError, StepArrays, Trajectories
from chunkrl.errors import CheckpointError
from chunkrl.files import write_atomically


@dataclass
class Counters:
    """Where a run is: gradient steps and environment steps of each phase."""

    offline_step: int = 0
    online_step: int = 0
    online_updates: int = 0
    episodes: int = 0

    @property
    def global_step(self) -> int:
        """x-axis of every curve: offline steps, then online environment steps."""
        return self.offline_step + self.online_step


CHECKSUMS = "checksums.json"


def file_digest(path: Path) -> str:
    """SHA-256 of a file, read in blocks (replay files can be hundreds of MB)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


MAX_FILE_BYTES = 64 << 30
"""The largest checkpoint file chunkrl reads (an online replay of millions of steps stays far below)."""


def file_inside(directory: Path, name: object, what: str) -> Path:
    """``directory / name`` where ``name`` is a plain file name (no folder, no ``..``, not absolute) of a
    regular file of bounded size that does not lead elsewhere through a link: a checkpoint or run file can
    name nothing outside its own directory, and no read can hang on a device or a FIFO."""
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise CheckpointError(
            f"{what} names {name!r}, which is not a file name inside {directory}; it was tampered with"
        )
    path = Path(directory) / name
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise CheckpointError(f"{path} is not a regular file (a link, device or folder); {what} cannot be trusted")
    if path.exists() and path.stat().st_size > MAX_FILE_BYTES:
        raise CheckpointError(f"{path} is larger than {MAX_FILE_BYTES >> 30} GiB; it is not a chunkrl checkpoint file")
    return path


def verify_checkpoint(checkpoint: Path) -> None:
    """Raise ``CheckpointError`` naming the first file that is missing or differs from its recorded
    checksum (checkpoints written before checksums were recorded are only checked for weights). Every name
    in ``checksums.json`` must be a regular file inside the checkpoint (see ``file_inside``)."""
    checkpoint = Path(checkpoint)
    if not (checkpoint / "model.safetensors").exists():
        raise CheckpointError(f"{checkpoint} is missing or incomplete (no model.safetensors)")
    file_inside(checkpoint, "model.safetensors", "the checkpoint")
    listing = checkpoint / CHECKSUMS
    if not listing.exists():
        return
    file_inside(checkpoint, CHECKSUMS, "the checkpoint")
    try:
        expected = json.loads(listing.read_text())
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{listing} cannot be read ({error})") from None
    if not isinstance(expected, dict) or not all(isinstance(v, str) for v in expected.values()):
        raise CheckpointError(f"{listing} is not a mapping of file names to checksums; it was tampered with")
    for name, digest in expected.items():
        path = file_inside(checkpoint, name, str(listing))
        if not path.exists():
            raise CheckpointError(f"{path} is missing")
        if file_digest(path) != digest:
            raise CheckpointError(
                f"{path} is corrupt: its content differs from the checksum recorded when it was written"
            )


def latest_good_checkpoint(run_dir: Path, warn) -> Path:
    """The run's newest checkpoint whose files are whole: ``latest`` first, then older ones, newest first.
    ``warn(text)`` is told about every checkpoint passed over."""
    root = Path(run_dir) / "checkpoints"
    candidates = []
    latest = root / "latest"
    problems = []
    if latest.exists():
        try:
            candidates.append(latest_target(root))
        except CheckpointError as error:
            problems.append(str(error))
    candidates += sorted((p for p in root.glob("step_*") if p.is_dir()), reverse=True)
    for candidate in dict.fromkeys(candidates):  # each once, in order
        try:
            verify_checkpoint(candidate)
            read_counters(candidate)
        except CheckpointError as error:
            problems.append(str(error))
            continue
        if problems:
            warn(f"passed over: {'; '.join(problems)}. Resuming from the older checkpoint {candidate}.")
        return candidate
    raise CheckpointError(f"no usable checkpoint in {root}: {'; '.join(problems) or 'none was written'}")


def latest_target(root: Path) -> Path:
    """The checkpoint ``root/latest`` names: a ``step_<n>`` folder of the same run, nothing else."""
    latest = file_inside(root, "latest", "the run")
    if latest.stat().st_size > 256:
        raise CheckpointError(f"{latest} is not a checkpoint name (too long); it was tampered with")
    name = latest.read_text().strip()
    if not re.fullmatch(r"step_\d+", name):
        raise CheckpointError(f"{latest} names {name!r}, not a step_<n> checkpoint of this run; it was tampered with")
    return root / name


def resolve_checkpoint(path: Path) -> Path:
    """A checkpoint directory from a checkpoint or run directory (the run's latest checkpoint)."""
    path = Path(path)
    if (path / "model.safetensors").exists():
        return path
    latest = path / "checkpoints" / "latest"
    if latest.exists():
        candidate = latest_target(path / "checkpoints")
        if (candidate / "model.safetensors").exists():
            return candidate
    raise CheckpointError(
        f"{path} is neither a checkpoint directory (with model.safetensors) nor a run directory with "
        "checkpoints/latest. Pass a run directory written by `chunkrl train` or one of its checkpoints."
    )


def save_checkpoint(
    run_dir: Path,
    agent: torch.nn.Module,
    optimizers: dict[str, torch.optim.Optimizer],
    counters: Counters,
    config: TrainConfig,
    rng_states: dict,
    online_steps: StepArrays | None,
    keep: int = 2,
    extra_files: dict[str, str] | None = None,
) -> Path:
    """Write a checkpoint atomically and point ``latest`` at it; keep the ``keep`` newest (at least 1)."""
    if keep < 1:
        raise ValueError(f"keep_checkpoints must be >= 1 (got {keep}): the newest checkpoint is never deleted")
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    name = f"step_{counters.global_step:09d}"
    partial = root / f".{name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        _write_files(partial, agent, optimizers, counters, config, rng_states, online_steps, extra_files)
    except (OSError, SafetensorError, RuntimeError) as error:  # a full disk: safetensors and torch.save have their own
        shutil.rmtree(partial, ignore_errors=True)
        kept = (
            f"the previous checkpoint ({(root / 'latest').read_text().strip()}) is kept"
            if (root / "latest").exists()
            else "no earlier checkpoint exists"
        )
        raise OSError(
            getattr(error, "errno", None),
            f"could not write the checkpoint {root / name} ({error}); {kept}. Free disk space, then resume",
        ) from None
    final = root / name
    if final.exists():
        shutil.rmtree(final)
    os.replace(partial, final)
    write_atomically(root / "latest", name)
    _prune(root, keep)
    return final


def _write_files(partial: Path, agent, optimizers, counters, config, rng_states, online_steps, extra_files) -> None:
    """Every file of a checkpoint into the folder ``partial``, checksums last."""
    partial.mkdir()
    tensors = {k: v.detach().cpu().contiguous() for k, v in agent.state_dict().items()}
    save_file(tensors, partial / "model.safetensors")
    torch.save({k: opt.state_dict() for k, opt in optimizers.items()}, partial / "optimizer.pt")
    torch.save(rng_states, partial / "rng.pt")
    state = {"counters": asdict(counters), "agent": config.agent}
    for size in ("observation_dim", "action_dim"):  # what a deployed Policy needs to rebuild the agent
        if hasattr(agent, size):
            state[size] = int(getattr(agent, size))
    (partial / "state.json").write_text(json.dumps(state, indent=2))
    save_config(config, partial / "config.yaml")
    for file_name, text in (extra_files or {}).items():  # e.g. the tokenizer of a token policy
        (partial / file_name).write_text(text)
    if online_steps is not None and len(online_steps.rewards):
        _save_online_steps(partial / "replay_online.npz", online_steps)
    digests = {p.name: file_digest(p) for p in sorted(partial.iterdir())}
    (partial / CHECKSUMS).write_text(json.dumps(digests, indent=2))


def _save_online_steps(path: Path, steps: StepArrays) -> None:
    ends = steps.ends.copy()
    ends[-1] = True  # a resumed run starts a new episode: the open one is cut like a time limit
    np.savez(
        path,
        observations=steps.observations,
        actions=steps.actions,
        rewards=steps.rewards,
        terminals=steps.terminals,
        ends=ends,
        next_observations=steps.next_observations,
    )


def load_online_steps(checkpoint: Path) -> Trajectories | None:
    """The online steps stored with a checkpoint, or None."""
    path = Path(checkpoint) / "replay_online.npz"
    if not path.exists():
        return None
    try:
        with np.load(path) as data:
            return Trajectories.from_arrays(StepArrays(**{k: data[k] for k in data.files}))
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, TypeError) as error:
        raise CheckpointError(f"{path} cannot be read ({type(error).__name__}: {error})") from None


def _read_weights(checkpoint: Path, device: torch.device) -> dict[str, torch.Tensor]:
    try:
        return load_file(checkpoint / "model.safetensors", device=str(device))
    except (OSError, SafetensorError) as error:
        raise CheckpointError(f"{checkpoint / 'model.safetensors'} cannot be read ({error})") from None


def load_weights(agent: torch.nn.Module, checkpoint: Path) -> None:
    """Load agent weights, explaining any mismatch with the agent's configuration."""
    checkpoint = Path(checkpoint)
    tensors = _read_weights(checkpoint, agent.device)
    expected = agent.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    mismatched = [k for k in expected if k in tensors and tensors[k].shape != expected[k].shape]
    if missing or unexpected or mismatched:
        details = []
        if mismatched:
            k = mismatched[0]
            details.append(
                f"{len(mismatched)} tensors differ in shape (e.g. {k}: checkpoint "
                f"{tuple(tensors[k].shape)} vs agent {tuple(expected[k].shape)})"
            )
        if missing:
            details.append(f"{len(missing)} tensors are missing (e.g. {missing[0]})")
        if unexpected:
            details.append(f"{len(unexpected)} tensors are unexpected (e.g. {unexpected[0]})")
        saved = _saved_config_summary(checkpoint)
        raise CheckpointError(
            f"The checkpoint {checkpoint} was written by another configuration{saved}: "
            + "; ".join(details)
            + ". Use the same agent, horizon and network sizes as the run that wrote it (see its config.yaml)."
        )
    agent.load_state_dict(tensors)


def load_initial_weights(agent: torch.nn.Module, checkpoint: Path, allow_partial: bool, console) -> None:
    """Start a new run from a checkpoint's weights (``--init-from``).

    An agent may declare ``fresh_on_init`` prefixes (chunk-ppo: ``value_head.``): a checkpoint without
    any tensor under such a prefix is an imitation checkpoint, and those networks start fresh (said on
    the console). Every other tensor must be present with the agent's shape; any mismatch stops the run
    with the list, unless ``allow_partial``: then what matches is loaded and everything skipped is printed.
    """
    checkpoint = Path(checkpoint)
    tensors = _read_weights(checkpoint, agent.device)
    expected = agent.state_dict()
    fresh_prefixes = tuple(agent.fresh_on_init)
    fresh = [p for p in fresh_prefixes if not any(k.startswith(p) for k in tensors)]
    missing = sorted(k for k in expected if k not in tensors and not k.startswith(tuple(fresh)))
    unexpected = sorted(set(tensors) - set(expected))
    mismatched = sorted(k for k in expected if k in tensors and tensors[k].shape != expected[k].shape)
    kind = "imitation (actor only)" if fresh else "full"
    problems = [f"{k}: checkpoint {tuple(tensors[k].shape)} vs agent {tuple(expected[k].shape)}" for k in mismatched]
    problems += [f"{k}: missing from the checkpoint" for k in missing]
    problems += [f"{k}: not in this agent" for k in unexpected]
    if problems and not allow_partial:
        shown = "; ".join(problems[:8]) + (f"; and {len(problems) - 8} more" if len(problems) > 8 else "")
        raise CheckpointError(
            f"--init-from {checkpoint} ({kind} checkpoint{_saved_config_summary(checkpoint)}) does not fit this "
            f"agent: {shown}. Use the network settings of the run that wrote it, or pass --allow-partial-init to "
            "load only the tensors that match (the rest start fresh)."
        )
    loaded = {k: v for k, v in tensors.items() if k in expected and v.shape == expected[k].shape}
    agent.load_state_dict({**expected, **loaded})
    console.print(f"initialised from {checkpoint}: {kind} checkpoint, {len(loaded)} of {len(expected)} tensors loaded")
    for prefix in fresh:
        console.print(f"  fresh (not in the checkpoint): {prefix}*")
    for problem in problems:
        console.print(f"  [yellow]skipped[/] {problem}")


def _saved_config_summary(checkpoint: Path) -> str:
    try:
        saved = load_config(checkpoint / "config.yaml")
        section = agent_config(saved)
    except (OSError, ValueError, KeyError):  # no readable config, or an agent this version does not know
        return ""
    summary = getattr(section, "summary", None)  # every agent config can describe itself
    networks = f", {summary()}" if callable(summary) else ""
    return f" (agent {saved.agent}, horizon {saved.horizon}, env {saved.env}{networks})"


def read_counters(checkpoint: Path) -> Counters:
    """The step counters saved with a checkpoint."""
    path = Path(checkpoint) / "state.json"
    if not path.exists():
        raise CheckpointError(f"checkpoint {checkpoint} is incomplete: {path} is missing")
    try:
        return Counters(**json.loads(path.read_text())["counters"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"{path} cannot be read ({type(error).__name__}: {error})") from None


MAX_SIZE = 1_000_000
"""The largest observation or action size a checkpoint may state (a larger one is a damaged file, not a model)."""


def read_sizes(checkpoint: Path) -> tuple[int, int] | None:
    """(observation size, action size) recorded in ``state.json``; None for checkpoints written before
    they were recorded. Sizes that are not whole numbers in [1, 10^6] are a ``CheckpointError``."""
    path = Path(checkpoint) / "state.json"
    try:
        state = json.loads(file_inside(Path(checkpoint), "state.json", "the checkpoint").read_text())
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{path} cannot be read ({error})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} is not a chunkrl state file (a JSON object)")
    if "observation_dim" not in state:
        return None
    sizes = state.get("observation_dim"), state.get("action_dim")
    if not all(type(size) is int and 1 <= size <= MAX_SIZE for size in sizes):
        raise CheckpointError(f"{path} states sizes {sizes}, not whole numbers from 1 to {MAX_SIZE}; it is damaged")
    return sizes


def load_training_state(checkpoint: Path, optimizers: dict[str, torch.optim.Optimizer]) -> dict:
    """Restore optimizer states; return the RNG states."""
    checkpoint = Path(checkpoint)
    states, rng = (_load_plain(checkpoint / name) for name in ("optimizer.pt", "rng.pt"))
    for name, optimizer in optimizers.items():
        optimizer.load_state_dict(states[name])
    return rng


def _load_plain(path: Path):
    """``torch.load`` of tensors, numbers and containers only; anything else is refused, never run."""
    if not path.exists():
        raise CheckpointError(f"checkpoint {path.parent} is incomplete: {path} is missing")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"{path} holds objects other than tensors and numbers; chunkrl refuses to unpickle them. It was not "
            "written by chunkrl (or was altered): resume from another checkpoint or start a new run."
        ) from None
    except (OSError, RuntimeError, EOFError, ValueError) as error:
        raise CheckpointError(f"{path} cannot be read ({type(error).__name__}: {error})") from None


def _prune(root: Path, keep: int) -> None:
    checkpoints = sorted(p for p in root.glob("step_*") if p.is_dir())
    for old in checkpoints[: max(0, len(checkpoints) - keep)]:
        shutil.rmtree(old)


def agent_from_checkpoint(
    checkpoint: Path, config: TrainConfig, observation_dim: int, action_dim: int, device: torch.device
) -> Agent:
    """The agent a checkpoint holds (with its tokenizer, if the method needs one), weights loaded from
    ``model.safetensors``, in evaluation mode."""
    tokenizer, prepare = None, METHODS[config.agent].prepare_tokenizer
    if prepare is not None:
        tokenizer = prepare(config, action_dim, None, checkpoint, Console(stderr=True, quiet=True))
    agent = build_agent(config, observation_dim, action_dim, device, tokenizer)
    load_weights(agent, checkpoint)
    return agent.eval()


def checkpoint_normalizer(checkpoint: Path, observation_dim: int, action_dim: int) -> Normalizer:
    """The statistics a checkpoint saved (``normalization.json``); none (identity) for checkpoints written
    before runs normalised their data, which all trained in the data's own units."""
    path = Path(checkpoint) / NORMALIZATION_FILE
    if not path.exists():
        return Normalizer.identity(observation_dim, action_dim)
    normalizer = Normalizer.from_json(path.read_text(), str(path))
    sizes = (len(normalizer.observation_center), len(normalizer.action_center))
    if sizes != (observation_dim, action_dim):
        raise DatasetError(
            f"{path} normalises observations of {sizes[0]} and actions of {sizes[1]} numbers, this run has "
            f"{observation_dim} and {action_dim}: the checkpoint belongs to another task"
        )
    return normalizer
