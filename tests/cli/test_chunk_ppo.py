"""Chunk PPO from the console script: the debug preset on ALOHA transfer-cube (state mode) and on an
OGBench task; scripted demonstrations -> chunk-bc -> chunk-ppo --init-from; SIGTERM then resume."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from tests.cli.test_end_to_end import chunkrl, refusal

pytestmark = pytest.mark.slow

PRESET = "configs/chunk-ppo-debug.yaml"
TINY = [
    "--ppo.width", "16", "--ppo.layers", "1", "--ppo.heads", "2", "--ppo.hidden-dims", "16",
    "--ppo.num-envs", "2", "--ppo.chunks-per-update", "4", "--ppo.minibatch-size", "2",
    "--eval-episodes", "1", "--max-episode-steps", "30", "--log-interval", "1", "--no-tensorboard",
]  # fmt: skip


def rows(path):
    lines = path.read_text().splitlines()
    return [dict(zip(lines[0].split(","), line.split(","), strict=True)) for line in lines[1:]]


@pytest.mark.parametrize("env", ["aloha-transfer-cube", "cube-single-play-singletask-task1-v0"])
def test_debug_preset_trains_on_aloha_and_ogbench(env, tmp_path):
    run = tmp_path / "run"
    chunkrl("train", "--config", PRESET, "--env", env, "--online-steps", 40, *TINY, "--run-dir", run)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["counters"]["online_step"] >= 40
    assert summary["counters"]["online_updates"] >= 2 and summary["counters"]["offline_step"] == 0
    logged = rows(run / "train.csv")[-1]
    for key in ("ppo/approx_kl", "ppo/clip_fraction", "ppo/explained_variance", "ppo/token_entropy",
                "ppo/ratio_max", "ppo/chunk_reward", "tokenizer/invalid_decodes"):  # fmt: skip
        assert np.isfinite(float(logged[key])) or key == "ppo/explained_variance"
    checkpoint = run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip()
    assert (checkpoint / "tokenizer.json").exists()
    assert float(rows(run / "eval.csv")[-1]["length"]) <= 30  # --max-episode-steps cut the episodes
    assert yaml.safe_load((run / "config.yaml").read_text())["ppo"]["epochs"] == 2  # from the preset


def test_scripted_demonstrations_then_imitation_then_ppo(tmp_path):
    data = tmp_path / "demos.npz"
    result = chunkrl("data", "generate", "aloha-transfer-cube-scripted", "--episodes", 1, "--out", data)
    assert "succeeded in 1 of" in result.stderr
    with np.load(data) as arrays:
        assert arrays["terminals"][-1] and arrays["rewards"][-1] == 4.0 and arrays["observations"].shape[1] == 35
    bc = tmp_path / "bc"
    chunkrl("train", "--config", "configs/chunk-bc.yaml", "--dataset-path", data, "--offline-steps", 6,
            "--batch-size", 8, *TINY, "--run-dir", bc)  # fmt: skip
    tokenizer = json.loads(next((bc / "checkpoints").glob("step_*/tokenizer.json")).read_text())
    assert tokenizer["bpe"] is not None
    assert json.loads(chunkrl("eval", bc, "--episodes", 1).stdout)["acting"] == "deterministic"  # as its run's
    assert json.loads(chunkrl("eval", bc, "--episodes", 1, "--sampled").stdout)["acting"] == "sampled"
    ppo = tmp_path / "ppo"
    result = chunkrl("train", "--config", PRESET, "--init-from", bc, "--online-steps", 20, *TINY, "--run-dir", ppo)
    assert "imitation (actor only)" in result.stderr and "fresh (not in the checkpoint): value_head." in result.stderr
    mismatch = refusal("train", "--config", PRESET, "--init-from", bc, *TINY, "--ppo.width", "32",
                       "--run-dir", tmp_path / "bad")  # fmt: skip
    assert "--allow-partial-init" in mismatch and not (tmp_path / "bad").exists()
    residual = refusal("train", "--config", PRESET, "--ppo.actor", "gaussian", "--ppo.residual-basis", 1,
                       *TINY, "--run-dir", tmp_path / "residual")  # fmt: skip
    assert "pass --init-from" in residual and not (tmp_path / "residual").exists()


def test_sigterm_then_resume_finishes_the_run(tmp_path):
    run = tmp_path / "run"
    env = "cube-single-play-singletask-task1-v0"
    command = [sys.executable, "-m", "chunkrl.cli", "train", "--config", PRESET, "--env", env, *TINY,
               "--online-steps", "100000", "--checkpoint-interval", "8", "--run-dir", str(run)]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (run / "checkpoints" / "latest").exists() and time.time() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr
    stopped = json.loads((run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip() / "state.json")
                         .read_text())["counters"]  # fmt: skip
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["online_steps"] = stopped["online_step"] + 16
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    chunkrl("train", "--resume", run)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished"
    assert summary["counters"]["online_step"] >= stopped["online_step"] + 16
    assert summary["counters"]["online_updates"] > stopped["online_updates"]


def test_torchrun_two_ranks_train_and_resume(tmp_path):
    run = tmp_path / "run"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m"]
    environment = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    args = ["chunkrl.cli", "train", "--config", PRESET, "--env", "cube-single-play-singletask-task1-v0", *TINY,
            "--online-steps", "40", "--run-dir", str(run)]  # fmt: skip
    result = subprocess.run([*launcher, *args], capture_output=True, text=True, timeout=300, env=environment)
    assert result.returncode == 0, result.stderr[-3000:]
    first = json.loads((run / "summary.json").read_text())["counters"]
    assert first["online_step"] >= 40  # the sum over both ranks' environments
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["online_steps"] = first["online_step"] + 40
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    resume = [*launcher, "chunkrl.cli", "train", "--resume", str(run)]
    result = subprocess.run(resume, capture_output=True, text=True, timeout=300, env=environment)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["counters"]["online_step"] >= first["online_step"] + 40
    assert len(list((run / "checkpoints").glob("step_*"))) == 2  # rank 0 alone wrote checkpoints
