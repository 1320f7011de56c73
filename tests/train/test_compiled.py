"""--compile: the whole update and the action query through torch.compile, trained and resumed like eager.

torch.compile's ``aot_eager`` backend stands in for inductor here: the same capture of the update's forward
and backward by dynamo and AOT autograd, run without generating code, so the test takes seconds rather than
the minute inductor needs to compile. ``benchmarks/compiled.py`` compares inductor's update with the eager one.
"""

import copy
import functools
import os
import signal

import numpy as np
import pytest
import torch

from chunkrl.agents.flow.config import FlowAgentConfig
from chunkrl.agents.registry import build_agent
from chunkrl.agents.stack import SeedStack
from chunkrl.config import resolve_method
from chunkrl.nets import compiled as compiled_module
from chunkrl.train import seeds as seeds_module
from chunkrl.train import trainer as trainer_module
from chunkrl.train.run import train
from chunkrl.train.trainer import TrainingInterrupted
from tests.conftest import tiny_config
from tests.train.test_seeds import final_weights, losses, seeds_config


@pytest.fixture
def aot_eager(monkeypatch):
    monkeypatch.setattr(compiled_module, "BACKEND", "aot_eager")
    monkeypatch.setattr(compiled_module, "_methods", {})
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def config(dataset, **changes):
    values = dict(
        agent="qc",  # best-of-N: the action query samples candidates and scores them, the update does too
        offline_steps=6,
        log_interval=1,
        checkpoint_interval=3,
        flow=FlowAgentConfig(actor_hidden_dims=(8,), critic_hidden_dims=(8,), flow_steps=2, num_samples=4),
    )
    return resolve_method(tiny_config(dataset, **{**values, **changes}))


def test_a_compiled_run_interrupted_and_resumed_matches_the_eager_run(aot_eager, tiny_puzzle_dataset, tmp_path):
    eager = tmp_path / "eager"
    train(config(tiny_puzzle_dataset), run_dir=eager)

    real_compiled, calls = trainer_module.compiled, {"compiled": 0, "updates": 0}

    def compiled_then_sigterm(function):
        calls["compiled"] += 1
        update = real_compiled(function)

        def counted(batch):
            calls["updates"] += 1
            if calls["updates"] == 4:
                os.kill(os.getpid(), signal.SIGTERM)  # arrives during step 4, as a real one would
            return update(batch)

        return counted

    trainer_module.compiled = compiled_then_sigterm
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    try:
        run = tmp_path / "compiled"
        with pytest.raises(TrainingInterrupted):
            train(config(tiny_puzzle_dataset, compile=True), run_dir=run)
        assert (run / "checkpoints" / "latest").read_text() == "step_000000004"
        assert train(None, resume=run)["status"] == "finished"
    finally:
        trainer_module.compiled = real_compiled
    assert calls == {"compiled": 2, "updates": 6}, "both segments train through the compiled update"
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > graphs, "torch.compile captured graphs"

    assert [s for s, _ in losses(run)] == [s for s, _ in losses(eager)] == list(range(1, 7))
    assert [v for _, v in losses(run)] == pytest.approx([v for _, v in losses(eager)], rel=1e-6)
    torch.testing.assert_close(final_weights(run), final_weights(eager))


def test_compiled_action_queries_sample_what_eager_ones_do_with_each_agents_own_weights(aot_eager):
    make = functools.partial(build_agent, config(None, compile=True), 7, 2, torch.device("cpu"))
    torch.manual_seed(0)
    agent = make()
    observations = np.random.default_rng(0).normal(size=(3, 7)).astype(np.float32)
    chunks, graphs = {}, torch._dynamo.utils.counters["stats"]["unique_graphs"]
    for compile_queries in (False, True):
        agent.compile_queries = compile_queries
        torch.manual_seed(1)
        chunks[compile_queries] = agent.act(observations)
    np.testing.assert_array_equal(chunks[True], chunks[False])
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > graphs, "the query went through torch.compile"

    other = copy.deepcopy(agent)  # one compiled function per class: the copy must act with its own weights
    with torch.no_grad():
        for parameter in other.parameters():
            parameter.add_(torch.randn_like(parameter))
    torch.manual_seed(1)
    other_chunks = other.act(observations)
    other.compile_queries = False
    torch.manual_seed(1)
    np.testing.assert_array_equal(other_chunks, other.act(observations))
    assert not np.array_equal(other_chunks, chunks[True])


def test_stacked_seeds_train_through_the_compiled_stacked_update_as_eager(
    aot_eager, tiny_puzzle_dataset, tmp_path, monkeypatch
):
    runs, compiled_functions = {}, []

    def recording(function):
        compiled_functions.append(function.__self__)
        return compiled_module.compiled(function)

    monkeypatch.setattr(seeds_module, "compiled", recording)
    for compile in (False, True):
        runs[compile] = tmp_path / f"compile_{compile}"
        train(seeds_config(tiny_puzzle_dataset, (0, 1), online_steps=0, compile=compile), run_dir=runs[compile])
    assert [type(owner) for owner in compiled_functions] == [SeedStack], "the stacked update is what compiles"
    for seed in (0, 1):
        compiled_run, eager_run = runs[True] / f"seed_{seed}", runs[False] / f"seed_{seed}"
        compiled_losses, eager_losses = losses(compiled_run), losses(eager_run)
        # pytest >= 9.2's approx takes no (step, loss) pairs: the steps and the losses compared each apart
        assert [step for step, _ in compiled_losses] == [step for step, _ in eager_losses]
        assert [loss for _, loss in compiled_losses] == pytest.approx([loss for _, loss in eager_losses], rel=1e-6)
        torch.testing.assert_close(final_weights(compiled_run), final_weights(eager_run))


def test_compile_is_refused_for_the_token_policies_it_cannot_capture(tiny_puzzle_dataset):
    with pytest.raises(ValueError, match="--compile does not work for chunk-ppo"):
        resolve_method(tiny_config(tiny_puzzle_dataset, agent="chunk-ppo", compile=True))
