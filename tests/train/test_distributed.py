"""Data-parallel chunk PPO on PyTorch's engine: 2 ranks on CPU (gloo) end with identical weights."""

import os
import subprocess
import sys
from pathlib import Path


def test_two_ranks_hold_identical_weights_after_an_update():
    script = Path(__file__).with_name("ddp_update.py")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone", str(script)]
    # faulthandler: should a rank abort (SIGABRT) at exit, its Python stacks land in the assertion's message
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=240, env=environment)
    assert result.returncode == 0, result.stderr[:2500] + "\n[...]\n" + result.stderr[-2500:]  # the stacks lead
    assert "same_start=True same_after=True moved=True" in result.stdout, result.stdout + result.stderr[-2000:]
    # the ranks measured different KLs on their own data; the rule reads their mean, so they keep one actor rate
    assert "same_rate=True kls_differ=True mean=1.5" in result.stdout, result.stdout


def test_settle_returns_once_the_other_holders_let_go_and_says_when_they_never_do():
    import threading
    import time

    import pytest
    import torch

    from chunkrl.train.distributed import settle

    tensor = torch.ones(3)
    held = [tensor.view(3)]  # another reference to the tensor, as a worker thread's after a collective
    release = threading.Timer(0.2, held.clear)
    start = time.monotonic()
    release.start()
    settle(tensor)
    assert time.monotonic() - start >= 0.15 and tensor._use_count() == 1
    kept = tensor.view(3)
    with pytest.raises(RuntimeError, match="still held by 1 other reference"):
        settle(tensor, timeout=0.05)
    del kept
    settle(tensor, timeout=0.05)  # alone again: returns at once
