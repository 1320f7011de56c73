"""The shared cadence of logging, evaluation and checkpoints (one step at a time, or a rollout at a time)."""

from chunkrl.train.trainer import Cadence


def test_one_step_at_a_time_work_is_due_at_every_multiple_of_its_interval():
    cadence = Cadence({"log": 3, "eval": 0})
    assert [s for s in range(1, 10) if cadence.due("log", s)] == [3, 6, 9]
    assert not any(cadence.due("eval", s) for s in range(1, 10))  # interval 0: never


def test_in_jumps_work_is_due_at_the_first_step_past_each_multiple():
    cadence = Cadence({"checkpoint": 10})
    assert [s for s in (7, 13, 21, 29, 30, 55) if cadence.due("checkpoint", s)] == [13, 21, 30, 55]


def test_a_resumed_run_does_not_repeat_the_work_of_the_step_it_resumed_at():
    cadence = Cadence({"log": 5}, step=10)
    assert [s for s in range(10, 21) if cadence.due("log", s)] == [15, 20]
