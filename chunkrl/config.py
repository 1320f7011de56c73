"""Run configuration: typed dataclasses, loaded from YAML/JSON, overridden on the command line, and
saved (resolved) with every run."""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal

import pydantic
import yaml

from chunkrl.agents.diffusion.config import CPQLConfig, DiffusionQLConfig
from chunkrl.agents.flow.config import FlowAgentConfig
from chunkrl.agents.ppo.config import ChunkPPOConfig
from chunkrl.agents.registry import METHODS, PerDomain, agent_config
from chunkrl.agents.sac.config import SACAgentConfig
from chunkrl.envs.ogbench import close_matches_hint
from chunkrl.envs.registry import env_domain
from chunkrl.files import write_atomically


@dataclass
class TrainConfig:
    """Everything a training run needs. Defaults follow the paper (arXiv 2507.07969)."""

    agent: str = "qc-fql"
    """Method name: qc-fql, fql-n, fql, qc, bfn-n, bfn, qc-rlpd, rlpd-ac, rlpd, diffusion-ql, cpql, dqc, chunk-bc or
    chunk-ppo (docs/methods/)."""
    env: str = "puzzle-3x3-play-singletask-task1-v0"
    """OGBench single-task environment (its dataset is the matching play/noisy dataset), an ALOHA task:
    aloha-transfer-cube (dataset: the scripted demonstrations) or aloha-insertion (pip install -e ".[aloha]"),
    or none: offline training on --dataset-path (LeRobot or robomimic) without an environment or evaluation."""
    obs_mode: Literal["state", "pixels"] = "state"
    """ALOHA observations: state (joint positions and velocities, object pose; never renders) or pixels (camera
    images, for users with an image encoder; chunkrl's agents read state)."""
    max_episode_steps: int | None = None
    """Cut every episode (training and evaluation) at this many steps. None: the task's own limit (ALOHA 400,
    OGBench the task's)."""
    sparse: bool = False
    """The paper's sparse reward (-1 unless the task is fully solved), offline and online alike."""
    hold_success: bool = False
    """ALOHA: the step that succeeds also pays the top stage's reward (4) for every step left to the time limit,
    as if the task were held solved. The episode ends at success (gym-aloha's rule), so without it a quick success
    earns less than a failure that holds the cube for 400 steps (transfer-cube, chunk-ppo from imitation: failures
    returned 79 +- 24, up to 146, successes 96 +- 10): a signal too weak for RL to prefer success."""
    dataset_path: Path | None = None
    """An OGBench npz file (official or generated), a LeRobot v3 folder, or a robomimic low-dim hdf5 file.
    Default: the generated dataset in the cache."""
    state_keys: tuple[str, ...] = ()
    """LeRobot: extra observation features appended to observation.state; robomimic: the obs keys to
    concatenate (default: every low-dimensional key, sorted); ALOHA: the parts of the state, of qpos, qvel and
    objects (default all three; ``qpos objects`` reads no velocities, as ACT's policies)."""
    reward_from: Literal["dataset", "success", "constant"] = "dataset"
    """LeRobot rewards: dataset (next.reward; an error if missing), success (1 on next.success frames, else 0)
    or constant (-1 on every frame)."""
    action_norm: Literal["auto", "none", "min_max", "quantile", "bounds"] = "auto"
    """How actions are mapped into the agents' [-1, 1]: none, min_max (the data's range), quantile (its 1st-99th
    percentiles, beyond clipped), bounds (the environment's action bounds), or auto: bounds when the environment's
    bounds are finite and not [-1, 1], none when the data already lies in [-1, 1] (OGBench), else min_max. The
    statistics are saved with every checkpoint and inverted when acting. Token policies (chunk-bc, chunk-ppo)
    normalise chunks in their tokenizer instead: none for them."""
    obs_norm: Literal["auto", "none", "mean_std"] = "auto"
    """Observation normalisation: none, mean_std (the data's per-dimension mean and std, LeRobot's default for
    states), or auto: none on OGBench tasks (the paper's setting) and for runs without a dataset, else
    mean_std."""
    dataset_dir: Path | None = None
    """A directory of official OGBench files (<dataset>.npz), e.g. ~/.ogbench/data."""
    dataset_episodes: int | None = None
    """Size (training episodes) of the generated dataset used when no path or directory is given.
    None: the largest copy already generated in the cache, else OGBench's official size (generated)."""
    generate_missing: bool = True
    """Generate the cached dataset with OGBench's oracles on first use if it is missing."""
    generate_workers: int = 2
    """Worker processes for that generation."""
    cache_dir: Path | None = None
    """Dataset cache (default: $CHUNKRL_CACHE or ~/.cache/chunkrl)."""
    horizon: int = 5
    """Chunk length h: the default of the three named lengths below (all equal to it unless set)."""
    critic_horizon: int | None = None
    """The critic's horizon: how many actions the critic scores and how many steps the TD backup jumps
    (reward over them, bootstrap with γ^τ). None: the method's default (dqc: 25), else --horizon. Longer than the
    actor's chunk for dqc only."""
    actor_chunk: int | None = None
    """The actor's chunk: how many actions the policy emits per query (and a token policy's tokenizer
    encodes). None: --horizon. Longer than the critic's horizon (e.g. 8 against 3) for qc-fql, qc, qc-rlpd and
    rlpd-ac: the critic scores the chunk's first critic_horizon actions."""
    discount: float = 0.99
    """Per-step discount γ."""
    boundary: Literal["mask", "truncate"] | None = None
    """How chunks cut by a trajectory's end are treated: mask (the paper's: padded chunks leave the TD loss) or
    truncate (semi-Markov: they bootstrap with γ^τ and the chunk critic reads the validity mask). None: the
    method's (truncate for diffusion-ql and cpql, mask for the others)."""
    batch_size: int = 256
    """Chunk transitions per gradient step."""
    offline_steps: int | None = None
    """Gradient steps on the dataset before online fine-tuning (0 skips the phase). None: the method's
    default, 1M for the flow and diffusion agents and 0 for the RLPD family (online learning with prior data)."""
    online_steps: int | None = None
    """Environment steps of online fine-tuning (0 skips the phase). None: the method's default, 1M, except
    0 for the offline methods diffusion-ql and cpql."""
    replay: Literal["shared", "symmetric"] | None = None
    """Where online steps go. shared: appended to the dataset, batches uniform over both (the paper's
    offline-to-online setting). symmetric: a separate online replay, every batch half dataset, half online
    (RLPD). None: the method's default (flow agents shared, RLPD family symmetric)."""
    utd_ratio: int = 1
    """Gradient steps per online environment step."""
    start_training: int = 5000
    """Online steps collected before online updates start."""
    warmup: Literal["random", "policy"] | None = None
    """How the online steps before start_training are acted: random (uniform actions within the action
    bounds, one per step, as the paper's RLPD code) or policy (the agent's chunks, as the paper's
    offline-to-online code, whose policy was pre-trained). None: the method's default (RLPD family random,
    flow agents policy)."""
    execute_horizon: int | None = None
    """Actions of each chunk executed open loop before re-planning (at most the actor's chunk). None: the
    method's, the whole chunk except for a SAC first-action critic with the standard objective, which re-plans
    every step (1)."""
    temporal_ensemble: float | None = None
    """ACT's temporal ensembling when acting (online collection, evaluation, Policy): query a chunk at every step
    and run the weighted mean of what every running chunk predicts for this step, weights exp(-m * i) from the
    oldest prediction (i = 0) to the newest; the value is m (ACT: 0.01). None: off (chunks run open loop for
    execute_horizon steps). Not for chunk-ppo, whose decision is one whole chunk."""
    eval_interval: int = 100_000
    """Steps between evaluations (0: only at the end of each phase)."""
    eval_episodes: int = 50
    """Episodes per evaluation."""
    eval_acting: Literal["sampled", "deterministic"] | None = None
    """How evaluations act: sampled chunks (as ``Policy`` acts by default) or the agent's deterministic chunk (the
    mean, the greedy tokens). None: the method's default, deterministic for imitation (chunk-bc, as ACT is
    evaluated), sampled for every other method."""
    log_interval: int = 5000
    """Steps between metric logs."""
    checkpoint_interval: int = 100_000
    """Steps between checkpoints (one is always written at the end and on interruption)."""
    keep_checkpoints: int = 2
    """How many of the newest checkpoints to keep."""
    seed: int = 0
    """Seed of networks, sampling and environments."""
    seeds: tuple[int, ...] = ()
    """Train these seeds together in one process with stacked parameters (e.g. --seeds 0 1 2 3), each with its
    own data stream, random draws, environments, logs and checkpoints in RUN_DIR/seed_<n>. Empty: one run of
    seed."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where to train: auto picks CUDA when available."""
    precision: Literal["fp32", "bf16-matmul", "bf16"] = "fp32"
    """Arithmetic of updates and action queries. fp32: IEEE single precision. bf16-matmul: fp32 tensors, matrix
    products may use bfloat16 internally (on x86 CPUs: oneDNN instead of MKL). bf16: forward passes autocast to
    bfloat16, parameters and optimizer state fp32. docs/operations.md and docs/results.md measure speed and learning."""
    compile: bool = False
    """torch.compile the whole update (losses, backward, optimizer step, target update) and the action query
    (inductor: fused elementwise kernels). The first update and query compile, tens of seconds on a CPU;
    random draws and checkpoints stay as without it; with --seeds, the stacked update. Not for chunk-bc or
    chunk-ppo yet. docs/operations.md explains it, docs/results.md measures the gain."""
    tensorboard: bool = True
    """Write TensorBoard event files."""
    wandb: bool = False
    """Also log to Weights & Biases (pip install chunkrl[wandb])."""
    init_from: Path | None = None
    """Start from the agent weights of this checkpoint (a checkpoint directory or run directory). chunk-ppo also
    takes a chunk-bc (imitation) checkpoint: its actor and tokenizer, with a fresh value head."""
    allow_partial_init: bool = False
    """With --init-from: load the tensors whose names and shapes match, print exactly what was skipped, and
    start the rest fresh (default: any mismatch stops the run)."""
    flow: FlowAgentConfig = field(default_factory=FlowAgentConfig)
    """Settings of the flow agents (qc-fql, fql-n, fql, qc, bfn-n, bfn)."""
    sac: SACAgentConfig = field(default_factory=SACAgentConfig)
    """Settings of the chunked SAC family (qc-rlpd, rlpd-ac, rlpd)."""
    diffusion: DiffusionQLConfig = field(default_factory=DiffusionQLConfig)
    """Settings of Diffusion-QL over chunks (diffusion-ql)."""
    cpql: CPQLConfig = field(default_factory=CPQLConfig)
    """Settings of CPQL over chunks (cpql)."""
    ppo: ChunkPPOConfig = field(default_factory=ChunkPPOConfig)
    """Settings of chunk-level PPO and its imitation pre-training (chunk-ppo, chunk-bc)."""


def to_dict(config) -> dict:
    """A plain, YAML/JSON-ready dictionary (paths as strings, tuples as lists)."""

    def convert(value):
        if dataclasses.is_dataclass(value):
            return {f.name: convert(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, tuple | list):
            return [convert(v) for v in value]
        return value

    return convert(config)


def from_dict(cls, data: dict, source: str = "config"):
    """Build dataclass ``cls`` from a dictionary, checking every key and every value's type.

    Unknown keys are rejected with the valid ones listed; each value is validated against its field's
    type (pydantic), accepting what is unambiguous (``3e-4`` or ``"3e-4"`` for a float, an integral
    ``1e5`` or ``"1e5"`` for an int, ``"false"`` for a bool) and rejecting the rest with the key, the
    value and the expected type.
    """
    if not isinstance(data, dict):
        raise ValueError(f"{source}: expected a mapping of option names to values, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{source}: unknown option(s) {unknown}; valid options of {cls.__name__}: {sorted(names)}")
    return cls(**{name: _coerce(hints[name], value, f"{source}.{name}") for name, value in data.items()})


def _coerce(hint, value, where: str):
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a mapping of {hint.__name__} options, got {value!r}")
        return from_dict(hint, value, where)
    if _accepts(hint, int) and not _accepts(hint, float) and isinstance(value, str | float):
        value = _integral(value, where)
    if _accepts(hint, int) and not _accepts(hint, bool) and isinstance(value, bool):
        raise ValueError(f"{where}: {value!r} is not a valid {_describe(hint)}")
    try:
        return _adapter(hint).validate_python(value)
    except pydantic.ValidationError as error:
        reason = error.errors()[0]["msg"]
        raise ValueError(f"{where}: {value!r} is not a valid {_describe(hint)} ({reason})") from None


def _integral(value, where: str):
    """``1e5`` (YAML 1.1 reads it as a string) or ``100000.0`` as an int; anything else unchanged."""
    try:
        number = float(value)
    except ValueError:
        return value  # not a number at all: the type check names the problem
    if not number.is_integer():
        raise ValueError(f"{where}: {value!r} is not a whole number")
    return int(number)


def _accepts(hint, kind) -> bool:
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    return kind in options


def _describe(hint) -> str:
    return str(hint).replace("typing.", "").replace("pathlib.", "").replace("<class '", "").replace("'>", "")


@functools.cache
def _adapter(hint) -> pydantic.TypeAdapter:
    return pydantic.TypeAdapter(hint)


def check_values(config: TrainConfig) -> None:
    """Reject values that could only fail later (or silently misbehave), all of them in one message,
    before any run directory, dataset or network is created. Method-dependent options left at None are
    checked once ``resolve_method`` has filled them in."""
    c, problems = config, []

    def need(ok: bool, text: str) -> None:
        if not ok:
            problems.append(text)

    need(c.horizon >= 1, f"horizon must be >= 1 (got {c.horizon})")
    need(0.0 <= c.discount <= 1.0, f"discount must be in [0, 1] (got {c.discount})")
    need(c.batch_size >= 1, f"batch_size must be >= 1 (got {c.batch_size})")
    for name in ("start_training", "eval_interval", "checkpoint_interval"):
        need(getattr(c, name) >= 0, f"{name} must be >= 0 (got {getattr(c, name)})")
    for name in ("offline_steps", "online_steps"):  # None: the method's default
        value = getattr(c, name)
        need(value is None or value >= 0, f"{name} must be >= 0 (got {value})")
    for name in ("utd_ratio", "eval_episodes", "log_interval", "keep_checkpoints", "generate_workers"):
        need(getattr(c, name) >= 1, f"{name} must be >= 1 (got {getattr(c, name)})")
    need(
        c.max_episode_steps is None or c.max_episode_steps >= 1,
        f"max_episode_steps must be >= 1 (got {c.max_episode_steps})",
    )
    need(
        c.dataset_episodes is None or c.dataset_episodes >= 1,
        f"dataset_episodes must be >= 1 (got {c.dataset_episodes})",
    )
    for name in ("critic_horizon", "actor_chunk"):  # None: --horizon
        value = getattr(c, name)
        need(value is None or value >= 1, f"{name} must be >= 1 (got {value})")
    chunk = c.actor_chunk or c.horizon
    need(
        c.execute_horizon is None or 1 <= c.execute_horizon <= chunk,
        f"execute_horizon must be between 1 and the actor's chunk {chunk} (got {c.execute_horizon})",
    )
    need(len(set(c.seeds)) == len(c.seeds), f"seeds must not repeat (got {list(c.seeds)})")
    need(
        c.temporal_ensemble is None or (c.temporal_ensemble >= 0 and c.execute_horizon in (None, 1)),
        "temporal_ensemble queries every step: it needs a weight >= 0 and no execute_horizon above 1 "
        f"(got {c.temporal_ensemble}, execute_horizon {c.execute_horizon})",
    )
    need(
        c.env != "none" or (c.dataset_path is not None and not c.online_steps),
        "--env none trains offline on --dataset-path only: pass --dataset-path and --online-steps 0",
    )
    for section in fields(c):  # every agent section checks its own values
        value = getattr(c, section.name)
        if hasattr(value, "problems"):
            problems.extend(value.problems(section.name))
    if problems:
        raise ValueError("invalid configuration: " + "; ".join(problems) + ". Nothing was created.")


def load_config(path: Path) -> TrainConfig:
    """Read a TrainConfig from YAML or JSON; an empty, truncated or malformed file is an error."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"config {path} is a directory; pass a YAML or JSON file")
    if not path.exists():
        raise FileNotFoundError(f"config file {path} does not exist")
    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise ValueError(
            f"config {path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {error}"
        ) from None
    if data is None:
        raise ValueError(f"config {path} is empty; it must map option names to values (see configs/quick.yaml)")
    return from_dict(TrainConfig, data, str(path))


def run_dict(config: TrainConfig) -> dict:
    """The run's config as a plain dictionary holding only its own family's section (a qc-fql run saves
    ``flow``, not ``sac``, ``diffusion``, ...): the other sections do not configure anything it does, and a
    reader should not have to wonder. An unknown agent name keeps every section (the error comes later)."""
    data = to_dict(config)
    if config.agent in METHODS:
        chosen = METHODS[config.agent].section
        for other in {m.section for m in METHODS.values()} - {chosen}:
            data.pop(other, None)
    return data


def save_config(config: TrainConfig, path: Path) -> None:
    """Write the resolved config as YAML, with its family's section only (atomically: a crash leaves the old
    file or the new one). Loading fills the other sections with their defaults."""
    write_atomically(Path(path), yaml.safe_dump(run_dict(config), sort_keys=False))


def resolve_horizons(config: TrainConfig, method) -> dict[str, int]:
    """The three named lengths: a method that fixes the chunk (FQL, BFN, RLPD: one action) fixes all of them;
    else each left at None takes the method's default (DQC: a critic horizon of 25), else --horizon. An agent
    that declares neither ``decoupled_horizons`` (an actor chunk longer than the critic's horizon) nor
    ``critic_longer`` (the reverse) needs the two equal."""
    if method.horizon is not None:
        fixed = method.horizon
        given = {
            n: getattr(config, n) for n in ("critic_horizon", "actor_chunk") if getattr(config, n) not in (None, fixed)
        }
        if given:
            raise ValueError(f"{config.agent} acts and backs up one action at a time; it takes no {given}")
        return {"horizon": fixed, "critic_horizon": fixed, "actor_chunk": fixed}
    critic = config.critic_horizon or method.run_defaults.get("critic_horizon") or config.horizon
    actor = config.actor_chunk or method.run_defaults.get("actor_chunk") or config.horizon
    if actor > critic and not method.decoupled_horizons:
        longer_actor = ", ".join(n for n, m in METHODS.items() if m.decoupled_horizons)
        raise ValueError(
            f"{config.agent} scores the chunk its actor emits: its critic's horizon must equal the actor's chunk "
            f"(got critic_horizon {critic}, actor_chunk {actor}); set one --horizon, or use an agent that takes "
            f"them apart ({longer_actor})"
        )
    if critic > actor and not method.critic_longer:
        longer_critic = ", ".join(n for n, m in METHODS.items() if m.critic_longer)
        raise ValueError(
            f"critic_horizon {critic} > actor_chunk {actor}: {config.agent} cannot train a critic longer than the "
            f"actor's chunk; use critic_horizon <= actor_chunk, or an agent that can ({longer_critic})"
        )
    return {"critic_horizon": critic, "actor_chunk": actor}


def resolve_method(config: TrainConfig) -> TrainConfig:
    """Apply the method's defining settings (e.g. FQL is h = 1 without chunking) and its defaults for
    options left at None: the paper's per-domain values (QC-FQL's alpha, QC's N) for the task's domain,
    and run defaults (e.g. the RLPD family: no offline phase, symmetric replay, random warm-up; the offline
    diffusion methods: no online phase, truncate boundaries)."""
    if config.agent not in METHODS:
        raise ValueError(
            f"Unknown agent '{config.agent}'.{close_matches_hint(config.agent, tuple(METHODS))} "
            f"Available: {', '.join(METHODS)}."
        )
    method = METHODS[config.agent]
    domain = env_domain(config.env)
    section = agent_config(config)
    unset = {
        k: v.for_domain(domain) if isinstance(v, PerDomain) else v
        for k, v in method.defaults.items()
        if getattr(section, k) is None
    }
    settings = dataclasses.replace(section, **method.overrides, **unset)
    if config.temporal_ensemble is not None and method.schedule == "on_policy":
        raise ValueError(f"{config.agent} decides one whole chunk at a time: temporal ensembling does not apply")
    if config.compile and not method.compiles:
        raise ValueError(
            f"--compile does not work for {config.agent} yet (torch.compile fails inside its token sampler); "
            "train it without --compile"
        )
    if method.reward_offset and not config.sparse:
        raise ValueError(
            f"{config.agent}'s values are discounted success probabilities: it trains on the sparse reward (-1 until "
            "the task is solved, 0 then); add --sparse"
        )
    resolved = {method.section: settings, **resolve_horizons(config, method)}
    if config.execute_horizon is None:  # e.g. a first-action critic re-plans every step
        resolved["execute_horizon"] = settings.execute_horizon_default()
    resolved.update({k: v for k, v in method.run_defaults.items() if getattr(config, k) is None and k not in resolved})
    return dataclasses.replace(config, **resolved)
