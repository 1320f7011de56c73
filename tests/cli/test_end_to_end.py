"""The command line on a real OGBench environment: train offline -> online, evaluate, plot, interrupt with SIGTERM,
resume; and the errors a user can run into. Commands run through the console script's ``main()`` in this process
(``chunkrl``), or as a process of their own where the process is under test (``console_script``, SIGTERM)."""

import contextlib
import io
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

pytestmark = pytest.mark.slow

ENV = "puzzle-3x3-play-singletask-task1-v0"
TINY = [
    "--flow.actor-hidden-dims",
    "32",
    "32",
    "--flow.critic-hidden-dims",
    "32",
    "32",
    "--flow.flow-steps",
    "3",
    "--batch-size",
    "32",
    "--eval-episodes",
    "1",
    "--max-episode-steps",
    "50",
    "--no-tensorboard",
]


def train_args(dataset, run_dir):
    """The start of a `chunkrl train` command on the tiny dataset, writing to ``run_dir``."""
    return ("train", "--env", ENV, "--dataset-path", dataset, "--run-dir", run_dir)


def console_script(*args):
    """``chunkrl ARGS`` as its own process, the way a user starts it; it must exit 0."""
    command = [sys.executable, "-m", "chunkrl.cli", *map(str, args)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def in_process(*args) -> subprocess.CompletedProcess:
    """``chunkrl ARGS`` run in this process by the console script's own ``main`` (its return value is the console
    script's exit code), with its standard output and error. The command's code without a process of its own: each
    start costs 3-5 s of imports on 2 cores, and the tests that are about the process (signals, torchrun, pipes)
    start one."""
    from chunkrl.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(arg) for arg in args])
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def chunkrl(*args) -> subprocess.CompletedProcess:
    """``in_process(ARGS)``, which must exit 0."""
    result = in_process(*args)
    if result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def refusal(*args) -> str:
    """The standard error of ``in_process(ARGS)``, which must refuse it with exit code 2: a mistake caught before
    training needs no process of its own."""
    result = in_process(*args)
    assert result.returncode == 2, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stderr


def test_train_offline_then_online_writes_a_complete_run(tiny_puzzle_dataset, tmp_path):
    run = tmp_path / "run"
    console_script(
        *train_args(tiny_puzzle_dataset, run),
        "--sparse",
        "--offline-steps",
        40,
        "--online-steps",
        60,
        "--start-training",
        20,
        "--eval-interval",
        0,
        "--log-interval",
        20,
        "--checkpoint-interval",
        0,
        "--tensorboard",
        *TINY[:-1],
    )
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished"
    counters = {"offline_step": 40, "online_step": 60, "online_updates": 41, "episodes": 1}  # episodes of 50 steps
    assert summary["counters"] == counters
    assert {"offline_final", "online_final"} <= set(summary["evaluations"])
    online_final = summary["evaluations"]["online_final"]
    assert (online_final["step"], online_final["phase"], online_final["episodes"]) == (100, "online", 1.0)
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["agent"] == "qc-fql" and config["sparse"] is True and config["flow"]["action_chunking"] is True
    train_rows = (run / "train.csv").read_text().splitlines()
    assert train_rows[0].startswith("step,phase,critic/loss")
    assert [r.split(",")[0] for r in train_rows[1:]] == ["20", "40", "60", "80", "100"]
    assert any(p.name.startswith("events") for p in (run / "tensorboard").iterdir())
    latest = (run / "checkpoints" / "latest").read_text()
    assert latest == "step_000000100"
    assert (run / "checkpoints" / latest / "model.safetensors").exists()
    assert (run / "checkpoints" / latest / "replay_online.npz").exists()

    evaluated = json.loads(chunkrl("eval", run, "--episodes", 1).stdout)
    assert evaluated["episodes"] == 1.0 and evaluated["agent"] == "qc-fql" and evaluated["acting"] == "sampled"
    deterministic = chunkrl("eval", run, "--episodes", 1, "--deterministic").stdout
    assert json.loads(deterministic)["acting"] == "deterministic"
    saved = (run / "config.yaml").read_text()
    assert "action_norm: none" in saved and "obs_norm: none" in saved  # OGBench: the official code's units

    chunkrl("plot", run)
    assert (run / "success.png").stat().st_size > 0

    # an online-only run that starts from this run's weights
    online = tmp_path / "online"
    chunkrl(
        *train_args(tiny_puzzle_dataset, online),
        "--sparse",
        "--init-from",
        run,
        "--offline-steps",
        0,
        "--online-steps",
        30,
        "--start-training",
        10,
        "--log-interval",
        10,
        "--eval-interval",
        0,
        *TINY,
    )
    rows = (online / "train.csv").read_text().splitlines()
    assert rows[0].startswith("step,phase,critic/loss")
    assert [r.split(",")[0] for r in rows[1:]] == ["10", "20", "30"]  # the first update is at step 10


def test_sigterm_writes_a_checkpoint_and_resume_continues_the_same_run(tiny_puzzle_dataset, tmp_path):
    run = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "chunkrl.cli",
        "train",
        "--env",
        ENV,
        "--dataset-path",
        str(tiny_puzzle_dataset),
        "--run-dir",
        str(run),
        "--offline-steps",
        "1000000",
        "--online-steps",
        "0",
        "--log-interval",
        "5",
        "--eval-interval",
        "0",
        "--checkpoint-interval",
        "0",
        *TINY,
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (run / "train.csv").exists() or len((run / "train.csv").read_text().splitlines()) < 3:
        assert time.time() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr
    assert "chunkrl train --resume" in stderr
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    stopped_at = summary["counters"]["offline_step"]
    assert (run / "checkpoints" / "latest").read_text() == f"step_{stopped_at:09d}"

    # shorten the run (the documented way to change a run's settings) and resume it
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["offline_steps"] = stopped_at + 10
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    chunkrl("train", "--resume", run)
    resumed = json.loads((run / "summary.json").read_text())
    assert resumed["status"] == "finished"
    assert resumed["counters"]["offline_step"] == stopped_at + 10
    steps = [int(r.split(",")[0]) for r in (run / "train.csv").read_text().splitlines()[1:]]
    assert steps == sorted(set(steps)), "the resumed curve continues without duplicated steps"
    assert steps[-1] == stopped_at + 10  # a phase's last step is always logged
    assert all(step % 5 == 0 for step in steps[:-1])  # the others every log_interval (5) steps


def test_existing_run_directory_is_never_overwritten(tiny_puzzle_dataset, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    error = refusal(*train_args(tiny_puzzle_dataset, run), "--offline-steps", 1, "--online-steps", 0, *TINY)
    assert "already exists" in error and "--resume" in error
    assert (run / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--env", "puzzle-3x3-play-singletask-task1-v9"], "Did you mean"),
        (["--agent", "qc-fq"], "Did you mean: qc-fql"),
        (["--dataset-path", "/nonexistent/puzzle.npz"], "chunkrl data generate"),
        (["--dataset-dir", "/nonexistent"], "chunkrl data generate"),
    ],
)
def test_bad_names_and_missing_files_give_one_clear_error(tmp_path, args, message):
    error = refusal("train", "--run-dir", tmp_path / "run", "--offline-steps", 1, "--online-steps", 0, *args, *TINY)
    assert message in error and "Traceback" not in error


def test_missing_cached_dataset_without_generation_says_how_to_generate(tmp_path):
    cache = ["--dataset-episodes", 3, "--cache-dir", tmp_path / "cache"]
    error = refusal("train", "--run-dir", tmp_path / "run", "--no-generate-missing", *cache, *TINY)
    assert "chunkrl data generate puzzle-3x3-play-v0 --episodes 3" in error


def test_resuming_a_run_with_a_changed_network_explains_the_mismatch(tiny_puzzle_dataset, tmp_path):
    run = tmp_path / "run"
    chunkrl(
        *train_args(tiny_puzzle_dataset, run),
        "--offline-steps",
        2,
        "--online-steps",
        0,
        "--eval-episodes",
        1,
        *TINY,
    )
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["offline_steps"] = 4
    config["flow"]["critic_hidden_dims"] = [16, 16]
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    assert "another configuration" in refusal("train", "--resume", run)


def test_data_generate_command_writes_cached_files(tmp_path, monkeypatch):
    monkeypatch.setenv("CHUNKRL_CACHE", str(tmp_path))
    out = tmp_path / "scene.npz"
    chunkrl("data", "generate", "scene-play-v0", "--episodes", 1, "--workers", 1, "--out", out)
    assert out.exists() and Path(str(out).replace(".npz", "-val.npz")).exists()
    written = out.read_bytes()
    assert "--overwrite" in refusal("data", "generate", "scene-play-v0", "--episodes", 1, "--out", out)
    assert out.read_bytes() == written


def test_a_run_that_fails_before_training_leaves_no_directory(tmp_path):
    run = tmp_path / "run"
    refusal("train", "--run-dir", run, "--dataset-path", tmp_path / "missing.npz", *TINY)
    assert not run.exists()


@pytest.mark.parametrize("agent", ["qc-fql", "fql-n", "fql", "qc", "bfn-n", "bfn"])
def test_every_method_trains_offline_and_online_from_the_cli(tiny_puzzle_dataset, tmp_path, agent):
    run = tmp_path / agent
    chunkrl(
        *train_args(tiny_puzzle_dataset, run),
        "--agent",
        agent,
        "--sparse",
        "--offline-steps",
        10,
        "--online-steps",
        12,
        "--start-training",
        6,
        "--log-interval",
        5,
        "--eval-interval",
        0,
        *TINY,
    )
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["agent"] == agent
    assert summary["counters"]["online_updates"] == 7


SAC_TINY = ["--sac.actor-hidden-dims", "32", "32", "--sac.critic-hidden-dims", "32", "32"]


@pytest.mark.parametrize("agent", ["qc-rlpd", "rlpd-ac", "rlpd"])
def test_rlpd_family_learns_online_with_prior_data_evaluates_and_resumes(tiny_puzzle_dataset, tmp_path, agent):
    run = tmp_path / agent
    common = ["--sparse", "--online-steps", 12, "--start-training", 6, "--log-interval", 5, "--eval-interval", 0]
    chunkrl(*train_args(tiny_puzzle_dataset, run), "--agent", agent, *common, *TINY, *SAC_TINY)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["agent"] == agent
    assert summary["counters"] == {"offline_step": 0, "online_step": 12, "online_updates": 7, "episodes": 0}
    assert set(summary["evaluations"]) == {"latest", "online_final"}  # no offline phase
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["replay"] == "symmetric" and config["sac"]["num_critics"] == 10
    header = (run / "train.csv").read_text().splitlines()[0].split(",")
    assert {"actor/log_prob", "actor/temperature", "actor/target_entropy", "chunk/effective_length"} <= set(header)
    checkpoint = run / "checkpoints" / (run / "checkpoints" / "latest").read_text()
    with np.load(checkpoint / "replay_online.npz") as replay:
        assert len(replay["rewards"]) == 12  # only the online steps: the dataset stays where it was

    if agent == "qc-rlpd":  # `chunkrl eval` acts the same way for all three (rlpd-ac's: the ACT test below)
        assert json.loads(chunkrl("eval", run, "--episodes", 1).stdout)["agent"] == agent

    config["online_steps"] = 16
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    chunkrl("train", "--resume", run)
    resumed = json.loads((run / "summary.json").read_text())
    assert resumed["counters"]["online_step"] == 16 and resumed["counters"]["online_updates"] == 11
    with np.load(run / "checkpoints" / "step_000000016" / "replay_online.npz") as replay:
        assert len(replay["rewards"]) == 16


ACT_TINY = ["--actor", "act", "--sac.act.width", 16, "--sac.act.heads", 2, "--sac.act.feedforward", 32]


@pytest.mark.parametrize(
    ("agent", "extra"),
    [
        ("rlpd-ac", []),
        (  # BC pre-training offline, then RL online with a decaying BC weight, on a 3-observation history
            "qc-rlpd",
            ["--sac.act.obs-history", 3, "--offline-steps", 6, "--sac.bc-pretrain-steps", 6]
            + ["--bc-weight-schedule", "linear", "--sac.bc-alpha", 1.0, "--sac.bc-decay-steps", 10],
        ),
    ],
)
def test_the_act_actor_trains_from_the_cli(tiny_puzzle_dataset, tmp_path, agent, extra):
    run = tmp_path / agent
    common = ["--online-steps", 10, "--start-training", 5, "--log-interval", 1, "--eval-interval", 0]
    chunkrl(*train_args(tiny_puzzle_dataset, run), "--agent", agent, *common, *extra, *ACT_TINY, *TINY, *SAC_TINY)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished"
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["sac"]["actor"] == "act"
    with (run / "train.csv").open() as rows:
        header, *values = [line.strip().split(",") for line in rows]
    column = {name: [float(v[header.index(name)]) for v in values] for name in ("actor/bc_weight", "step")}
    if agent == "qc-rlpd":  # weight 1 while pre-training (6 offline updates), then 1 -> 0 over 10 updates
        assert column["actor/bc_weight"][:6] == [1.0] * 6
        assert column["actor/bc_weight"][6:] == pytest.approx([1.0 - 0.1 * k for k in range(len(values) - 6)])
    evaluated = json.loads(chunkrl("eval", run, "--episodes", 1).stdout)
    assert evaluated["agent"] == agent


def chunk_policy_tiny(section: str) -> list:
    """Tiny networks for diffusion-ql / cpql (``section``: diffusion or cpql)."""
    return [
        f"--{section}.actor-hidden-dims", 16, f"--{section}.critic-hidden-dims", 16,
        f"--{section}.unet.channels", 8, 16, f"--{section}.unet.groups", 4, f"--{section}.unet.step-dim", 8,
        f"--{section}.act-samples", 4, "--batch-size", 16, "--eval-episodes", 1, "--max-episode-steps", 50,
        "--no-tensorboard",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("agent", "section", "backbone"),
    [("diffusion-ql", "diffusion", "mlp"), ("diffusion-ql", "diffusion", "unet"), ("cpql", "cpql", "mlp"),
     ("cpql", "cpql", "unet")],
)  # fmt: skip
def test_chunk_diffusion_policies_train_offline_then_evaluate_or_resume(
    tiny_puzzle_dataset, tmp_path, agent, section, backbone
):
    """Each method and backbone trains; each method's U-Net run is then evaluated by `chunkrl eval` and its MLP run
    resumed (one console-script process fewer per run: the suite's time is 2-core minutes)."""
    run = tmp_path / f"{agent}-{backbone}"
    steps = ["--offline-steps", 6, "--log-interval", 3, "--eval-interval", 0, "--checkpoint-interval", 3]
    chunkrl(*train_args(tiny_puzzle_dataset, run), "--agent", agent, f"--{section}.backbone", backbone,
            *steps, *chunk_policy_tiny(section))  # fmt: skip
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["agent"] == agent
    assert summary["counters"] == {"offline_step": 6, "online_step": 0, "online_updates": 0, "episodes": 0}
    assert set(summary["evaluations"]) == {"latest", "offline_final"}  # an offline method: no online phase
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["boundary"] == "truncate" and config["online_steps"] == 0  # the method's run defaults
    assert config[section]["backbone"] == backbone and config[section]["eta"] is not None
    header = (run / "train.csv").read_text().splitlines()[0].split(",")
    assert {"actor/bc_loss", "actor/q_loss", "actor/grad_norm", "critic/grad_norm"} <= set(header)

    if backbone == "unet":  # `chunkrl eval` loads the weights and acts; the same code for either backbone
        evaluated = json.loads(chunkrl("eval", run, "--episodes", 1).stdout)
        assert evaluated["agent"] == agent and 0.0 <= evaluated["success"] <= 1.0
        return

    config["offline_steps"] = 9  # the resume (the same code for either backbone): on the MLP runs
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    chunkrl("train", "--resume", run)
    resumed = json.loads((run / "summary.json").read_text())
    assert resumed["counters"]["offline_step"] == 9
    from safetensors.torch import load_file

    weights = load_file(run / "checkpoints" / "step_000000009" / "model.safetensors")
    assert weights["ema_actor.updates"].item() == 9  # the EMA's schedule went on from the checkpoint


def test_the_seed_000_preset_trains_evaluates_resumes_and_deploys_its_8_action_chunk(tiny_puzzle_dataset, tmp_path):
    """configs/seed000-qc-rlpd.yaml (actor chunk 8, critic horizon 3, history 5) with tiny networks and budget."""
    run = tmp_path / "seed000"
    tiny = [*ACT_TINY, *SAC_TINY, "--online-steps", 8, "--start-training", 4, "--eval-interval", 0]
    tiny += ["--eval-episodes", 1, "--max-episode-steps", 50, "--log-interval", 2, "--batch-size", 8]
    tiny += ["--no-tensorboard"]
    preset = Path(__file__).resolve().parents[2] / "configs" / "seed000-qc-rlpd.yaml"
    chunkrl("train", "--config", preset, "--dataset-path", tiny_puzzle_dataset, "--run-dir", run, *tiny)
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert (config["critic_horizon"], config["actor_chunk"], config["execute_horizon"]) == (3, 8, 3)
    assert config["sac"]["act"]["obs_history"] == 5 and "flow" not in config
    config["online_steps"] = 12
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    chunkrl("train", "--resume", run)
    assert json.loads((run / "summary.json").read_text())["counters"]["online_step"] == 12
    assert json.loads(chunkrl("eval", run, "--episodes", 1).stdout)["agent"] == "qc-rlpd"
    from chunkrl.policy import Policy

    policy = Policy.from_pretrained(run, device="cpu")
    observation = np.zeros(policy.agent.observation_dim, np.float32)
    assert policy.predict_chunk(observation).shape == (8, policy.agent.action_dim)  # the policy's chunk
    assert policy.execute_horizon == 3 and policy.agent.critic_horizon == 3
