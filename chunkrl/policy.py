"""Deployment without the training stack: load a trained agent and act step by step.

    from chunkrl import Policy

    policy = Policy.from_pretrained("runs/.../my-run", device="cpu")
    policy.reset()                                   # at the start of every episode
    while True:
        action = policy.select_action(observation)  # one action; re-plans every execute_horizon steps
        observation, ... = robot.step(action)

``from_pretrained`` reads only the checkpoint's ``config.yaml``, ``state.json``, ``model.safetensors``,
``normalization.json`` and (token policies) ``tokenizer.json``: no pickle, no optimizer, no dataset, no
environment. An observation is a flat array in the dataset's units, or a LeRobot-style dict whose
``observation.state`` (followed by the run's ``state_keys``) is concatenated; actions come back in the
dataset's units (the run's normalisation is inverted).

By default the policy samples its chunks exactly as the run's evaluations did (``deterministic=False``),
so the success rate a run reports is the deployed policy's; ``deterministic=True`` asks the agent for its
deterministic chunk instead (the mean for the SAC family, greedy decoding for token policies, the
best-valued candidate for best-of-N and the diffusion methods).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from chunkrl.config import check_values, load_config, resolve_method
from chunkrl.envs.chunk_queue import ChunkQueue


class Policy:
    """A trained chunk policy with its action queue (and observation history, for agents that read one)."""

    def __init__(self, agent, config, execute_horizon: int | None = None, deterministic: bool = False, normalizer=None):
        from chunkrl.data.normalize import Normalizer

        self.agent, self.config, self.deterministic = agent, config, deterministic
        self.normalizer = normalizer or Normalizer.identity(agent.observation_dim, agent.action_dim)
        ensemble = config.temporal_ensemble  # ACT's temporal ensembling: a query every step
        self.execute_horizon = (
            1 if ensemble is not None else execute_horizon or config.execute_horizon or agent.actor_chunk
        )
        self.queue = ChunkQueue(agent.action_dim, self.execute_horizon, agent.history_length, ensemble)

    @classmethod
    def from_pretrained(
        cls, path: str | Path, device: str = "auto", execute_horizon: int | None = None, deterministic: bool = False
    ) -> Policy:
        """The policy of a checkpoint directory or of a run directory's latest checkpoint."""
        from chunkrl.train import checkpoint as ckpt
        from chunkrl.train.checkpoint import agent_from_checkpoint, checkpoint_normalizer
        from chunkrl.train.device import resolve_device

        checkpoint = ckpt.resolve_checkpoint(Path(path))
        ckpt.verify_checkpoint(checkpoint)
        config = resolve_method(load_config(checkpoint / "config.yaml"))  # also refuses an unknown agent name
        check_values(config)
        sizes = ckpt.read_sizes(checkpoint)
        if sizes is not None:
            observation_dim, action_dim = sizes
        else:  # written before checkpoints recorded the sizes: ask the environment
            from chunkrl.envs.registry import make_env, space_dims

            observation_dim, action_dim = space_dims(make_env(config.env, config.sparse, state_keys=config.state_keys))
        agent = agent_from_checkpoint(checkpoint, config, observation_dim, action_dim, resolve_device(device))
        normalizer = checkpoint_normalizer(checkpoint, observation_dim, action_dim)
        return cls(agent, config, execute_horizon, deterministic, normalizer)

    def reset(self) -> None:
        """Forget the queued actions and the observation history (call at every episode's start)."""
        self.queue.reset()

    def _flat(self, observation) -> np.ndarray:
        """The observation as a checked flat float32 vector: the right size, and finite (a NaN or inf reading
        from a sensor must stop the robot's policy, not become a NaN action)."""
        if isinstance(observation, dict):
            keys = ("observation.state", *self.config.state_keys)
            missing = [k for k in keys if k not in observation]
            if missing:
                raise KeyError(f"the observation dict lacks {missing}; this policy reads {list(keys)}")
            observation = np.concatenate([self._array(observation[k]).reshape(-1) for k in keys])
        observation = self._array(observation).reshape(-1)
        if observation.shape[0] != self.agent.observation_dim:
            raise ValueError(
                f"observation of {observation.shape[0]} numbers; "
                f"this policy was trained on {self.agent.observation_dim}"
            )
        if not np.isfinite(observation).all():
            bad = np.flatnonzero(~np.isfinite(observation)).tolist()
            raise ValueError(f"the observation has NaN or infinite values at positions {bad[:10]}; no action taken")
        return observation

    @staticmethod
    def _array(value) -> np.ndarray:
        try:
            return np.asarray(value, np.float32)
        except (TypeError, ValueError) as error:
            raise ValueError(f"the observation is not an array of numbers ({type(value).__name__}: {error})") from None

    def predict_chunk(self, observation) -> np.ndarray:
        """The chunk [k, A] for this observation in the dataset's units: k actions (the agent's chunk; one for
        single-action agents such as fql or rlpd). Records the observation in the history; the queue of
        actions is untouched."""
        self.queue.observe(self.normalizer.normalize_observations(self._flat(observation)))
        return self.queue.query(self._chunk)

    def select_action(self, observation) -> np.ndarray:
        """One action [A]: the next of the queued chunk, planning a new chunk when the queue is empty. Every
        observation is checked, also while a chunk runs: a bad reading is an error at every step."""
        self.queue.observe(self.normalizer.normalize_observations(self._flat(observation)))
        return self.queue.action(self._chunk)

    def _chunk(self, observation: np.ndarray, history_valid: np.ndarray | None = None) -> np.ndarray:
        """The agent's chunk for a normalised observation (or history), in the dataset's units."""
        chunk = self.agent.act(observation, deterministic=self.deterministic, history_valid=history_valid)
        chunk = chunk.reshape(-1, self.agent.action_dim)
        if self.agent.unit_actions:  # the agents' range, so that the data's units are never left
            chunk = np.clip(chunk, -1.0, 1.0)
        return self.normalizer.denormalize_actions(chunk)
