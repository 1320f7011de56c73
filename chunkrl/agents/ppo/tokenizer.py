"""The chunk tokenizer of a token-policy run: the checkpoint's, fitted on the dataset's chunks, or from bounds."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from rich.console import Console

from chunkrl.data.trajectories import Trajectories
from chunkrl.errors import CheckpointError

if TYPE_CHECKING:  # the run config sits above this layer: for type hints only
    from chunkrl.config import TrainConfig


def prepare_tokenizer(
    config: TrainConfig,
    action_dim: int,
    store: Trajectories | None,
    source: Path | None,
    console: Console,
    action_space=None,
):
    """The chunk tokenizer of a token-policy run: the checkpoint's (resume, --init-from, eval); else fitted
    on the dataset's whole chunks (quantiles, BPE); else, for an on-policy run without a dataset, from
    the bounds of ``action_space``, without BPE (said on the console)."""
    chunk = config.actor_chunk or config.horizon  # the actor's chunk: what the tokenizer encodes
    from chunkrl.agents.ppo.ppo import TOKENIZER_FILE
    from chunkrl.data.chunks import ChunkSampler, ChunkSpec
    from chunkrl.nets.tokenizer import ChunkTokenizer, TokenizerError

    if source is not None:
        path = Path(source) / TOKENIZER_FILE
        if not path.exists():
            raise CheckpointError(f"{source} has no {TOKENIZER_FILE}: it was not written by chunk-bc or chunk-ppo")
        try:
            tokenizer = ChunkTokenizer.from_json(path.read_text())
        except (TokenizerError, OSError, UnicodeDecodeError) as error:
            raise CheckpointError(f"{path} cannot be used: {error}. The checkpoint's tokenizer was damaged") from None
        if tokenizer.action_dim != action_dim:
            raise CheckpointError(
                f"{path} tokenizes actions of {tokenizer.action_dim} numbers, and {config.env} has {action_dim}: the "
                "checkpoint was trained on another task; pass a checkpoint of this task (or the matching --env)"
            )
        if tokenizer.horizon != chunk:
            raise CheckpointError(
                f"{path} tokenizes chunks of {tokenizer.horizon} actions, this run's actor chunk is "
                f"{chunk}; "
                f"use --horizon {tokenizer.horizon}"
            )
        return tokenizer
    settings = config.ppo.tokenizer
    if store is not None:
        sampler = ChunkSampler(store, ChunkSpec(chunk, config.discount, "mask"), seed=config.seed)
        batch = sampler.sample(min(20_000, 4 * store.size))
        whole = batch.valid.all(axis=1)
        tokenizer = ChunkTokenizer.fit(batch.actions[whole], settings)
        console.print(
            f"tokenizer fitted on {int(whole.sum())} dataset chunks: {tokenizer.vocab_size} tokens, at most "
            f"{tokenizer.max_tokens} per chunk ({'BPE' if tokenizer.bpe else 'no BPE'})"
        )
        return tokenizer
    low, high = action_space.low.reshape(-1), action_space.high.reshape(-1)
    if not (np.isfinite(low).all() and np.isfinite(high).all()):
        raise ValueError("the action space is unbounded: fit the tokenizer on demonstrations (chunk-bc, --init-from)")
    console.print(
        f"tokenizer from the action bounds (no dataset, no BPE): {chunk * action_dim} tokens per chunk. "
        "Start from a chunk-bc checkpoint (--init-from) for the BPE tokenizer fitted on demonstrations."
    )
    return ChunkTokenizer.for_bounds(chunk, low, high, settings.scale)
