"""A token policy's tokenizer preparation (``chunkrl/agents/ppo/tokenizer.py``)."""

import numpy as np
import pytest
from rich.console import Console

from chunkrl.agents.ppo.tokenizer import prepare_tokenizer
from chunkrl.config import TrainConfig
from chunkrl.errors import CheckpointError
from chunkrl.nets.tokenizer import ChunkTokenizer


def test_a_token_checkpoint_of_another_task_is_called_that_not_a_horizon_problem(tmp_path):
    tokenizer = ChunkTokenizer.for_bounds(5, -np.ones(5), np.ones(5))  # chunks of 5 actions of 5 numbers
    (tmp_path / "tokenizer.json").write_text(tokenizer.to_json())
    config = TrainConfig(agent="chunk-ppo", env="aloha-transfer-cube", horizon=5)
    with pytest.raises(CheckpointError, match="actions of 5 numbers, and aloha-transfer-cube has 14"):
        prepare_tokenizer(config, 14, None, tmp_path, Console(quiet=True))
    with pytest.raises(CheckpointError, match="use --horizon 5"):
        prepare_tokenizer(TrainConfig(agent="chunk-ppo", horizon=4), 5, None, tmp_path, Console(quiet=True))
