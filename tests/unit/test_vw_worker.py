"""Unit tests of the VW worker process: its models match in-process VW byte for byte, and its
failures (refused arguments or examples, a killed child) raise `LearnerError`, never hang."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import pytest

from bandit.config import LearnerConfig
from bandit.errors import LearnerError
from bandit.policies import OutcomeModel, VowpalPolicy
from bandit.vw_text import NamespaceLetters, example_lines, outcome_line
from bandit.vw_worker import (
    RemoteOutcomeModel,
    RemotePolicy,
    VowpalWorker,
    decode_batch,
    encode_batch,
)

ROOT = Path(__file__).resolve().parents[2]
LETTERS = NamespaceLetters({"learner": "l", "course": "c"}, "a")
ACTIONS = ("hint", "video", "none")
ARGS = LearnerConfig().vw_arguments()
OUTCOME_ARGS = LearnerConfig(outcome_model=True).outcome_model_arguments()
BATCH = 8  # small, so the examples below span several batches and a partial one


def examples(n: int, seed: int = 0) -> list[list[str]]:
    """`n` labelled multi-line examples with random contexts, choices and rewards."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        context: dict[str, dict[str, float | str]] = {
            "learner": {"level": round(float(rng.random()), 3), "lang": f"l{rng.integers(3)}"},
            "course": {"week": int(rng.integers(10))},
        }
        chosen = int(rng.integers(len(ACTIONS)))
        label = (chosen, -float(rng.integers(-1, 2)), 1 / len(ACTIONS))
        out.append(
            example_lines(context, ACTIONS, tuple({} for _ in ACTIONS), LETTERS, label=label)
        )
    return out


def outcome_lines(n: int, seed: int = 1) -> list[str]:
    rng = np.random.default_rng(seed)
    labels = ("helpful", "not_helpful", "ignored")
    return [
        outcome_line(
            {"learner": {"level": round(float(rng.random()), 3)}},
            ACTIONS[int(rng.integers(2))],
            {},
            LETTERS,
            label=labels[int(rng.integers(3))],
        )
        for _ in range(n)
    ]


def in_process_bytes(lines: list[list[str]], model: bytes | None = None) -> bytes:
    with VowpalPolicy(ARGS, model) as policy:
        for example in lines:
            policy.learn(example)
        return policy.to_bytes()


@pytest.fixture(scope="module")
def worker() -> Iterator[VowpalWorker]:
    """One child for the tests that leave it healthy (each opens models of its own)."""
    with VowpalWorker(batch_examples=BATCH) as shared:
        yield shared


def fresh_worker() -> VowpalWorker:
    return VowpalWorker(batch_examples=BATCH).start()


def test_a_batch_decodes_to_the_texts_it_encoded() -> None:
    texts = ["shared |l a:1\n|a id=x", "", "nul\x00inside", "ünïcode ✓", "\U0001f600 x"]
    indices = [0, 7, 0, 2**32 - 1, 3]
    assert decode_batch(encode_batch(indices, texts)) == (indices, texts)
    assert decode_batch(encode_batch([], [])) == ([], [])


def test_to_bytes_is_the_in_process_model_after_every_learn_sent_before_it(
    worker: VowpalWorker,
) -> None:
    lines = examples(45)  # 5 full batches and a partial one
    with RemotePolicy(worker, "cut", ARGS) as policy:
        for example in lines[:21]:
            policy.learn(example)
        assert policy.to_bytes() == in_process_bytes(lines[:21])
        for example in lines[21:]:
            policy.learn_text("\n".join(example))
        assert policy.to_bytes() == in_process_bytes(lines)
        assert policy.examples_learned == len(lines)


def test_a_policy_restored_in_the_worker_continues_like_one_restored_in_process(
    worker: VowpalWorker,
) -> None:
    first, then = examples(20, seed=2), examples(13, seed=3)
    saved = in_process_bytes(first)
    with RemotePolicy(worker, "restored", ARGS, saved) as policy:
        for example in then:
            policy.learn(example)
        assert policy.to_bytes() == in_process_bytes(then, saved)
        assert policy.examples_learned == len(then)  # counts this process only


def test_models_of_one_worker_learn_independently(worker: VowpalWorker) -> None:
    a_lines, b_lines, o_lines = examples(11, seed=4), examples(9, seed=5), outcome_lines(14)
    with (
        RemotePolicy(worker, "a", ARGS) as a,
        RemotePolicy(worker, "b", ARGS) as b,
        RemoteOutcomeModel(worker, "outcome", OUTCOME_ARGS) as outcomes,
        OutcomeModel(OUTCOME_ARGS) as local_outcomes,
    ):
        for i in range(14):  # interleaved, as the learner routes events
            if i < len(a_lines):
                a.learn(a_lines[i])
            if i < len(b_lines):
                b.learn(b_lines[i])
            outcomes.learn(o_lines[i])
            local_outcomes.learn(o_lines[i])
        assert a.to_bytes() == in_process_bytes(a_lines)
        assert b.to_bytes() == in_process_bytes(b_lines)
        assert outcomes.to_bytes() == local_outcomes.to_bytes()


def test_predict_answers_what_the_in_process_model_answers(worker: VowpalWorker) -> None:
    lines = examples(30, seed=6)
    question = [line.split(" ", 1)[1] if line[0].isdigit() else line for line in lines[0]]
    o_lines = outcome_lines(10)
    with (
        RemotePolicy(worker, "predict", ARGS) as remote,
        VowpalPolicy(ARGS) as local,
        RemoteOutcomeModel(worker, "predict-outcome", OUTCOME_ARGS) as remote_outcomes,
        OutcomeModel(OUTCOME_ARGS) as local_outcomes,
    ):
        for example in lines:
            remote.learn(example)
            local.learn(example)
        for line in o_lines:
            remote_outcomes.learn(line)
            local_outcomes.learn(line)
        pmf = remote.predict(question)
        assert pmf.shape == (len(ACTIONS),)
        np.testing.assert_array_equal(pmf, local.predict(question))
        unlabelled = [line.split(" ", 1)[1] for line in o_lines[:3]]
        np.testing.assert_array_equal(
            remote_outcomes.predict(unlabelled), local_outcomes.predict(unlabelled)
        )
        assert remote.vw_arguments() == local.vw_arguments()


def test_refused_arguments_raise_learner_error_and_the_worker_stays_usable(
    worker: VowpalWorker,
) -> None:
    with pytest.raises(LearnerError, match="refused arguments"):
        RemotePolicy(worker, "bad", "--cb_explore_adf --no_such_option")
    with pytest.raises(LearnerError, match="Bad model format"):
        RemotePolicy(worker, "bad", ARGS, b"this is not a VW model")
    with RemotePolicy(worker, "bad", ARGS) as policy:  # the name is free again
        policy.learn(examples(1)[0])
        assert policy.to_bytes() == in_process_bytes(examples(1))


def test_a_name_is_hosted_once(worker: VowpalWorker) -> None:
    with RemotePolicy(worker, "twice", ARGS), pytest.raises(LearnerError, match="twice"):
        RemotePolicy(worker, "twice", ARGS)


def test_a_refused_example_raises_at_the_next_call_and_breaks_the_worker() -> None:
    with fresh_worker() as worker:
        policy = RemotePolicy(worker, "global", ARGS)
        policy.learn(["shared |l a:1", "0:1:0.5:9:9 |a id=x"])  # malformed cost
        with pytest.raises(LearnerError, match="malformed cost specification"):
            policy.to_bytes()
        policy.learn_text("shared |l a:1\n0:1:0.5 |a id=x")
        with pytest.raises(LearnerError, match="malformed cost specification"):
            worker.flush()  # every call after it, too
        policy.finish()  # never raises: the learner's close runs in a `finally`


def test_a_refused_example_raises_at_the_next_send() -> None:
    with fresh_worker() as worker:
        policy = RemotePolicy(worker, "global", ARGS)
        worker.ping()
        policy.learn(["shared |l a:1", "0:1:0.5 |a id=x", "0:1:0.5 |a id=y"])  # two costs
        worker.flush()
        deadline = time.monotonic() + 10
        with pytest.raises(LearnerError, match="only one line can have a cost"):
            while time.monotonic() < deadline:  # until the child has reported it
                policy.learn(examples(1)[0])
                worker.flush()
                time.sleep(0.01)


@pytest.mark.parametrize("start_method", ["spawn", "forkserver"])
def test_a_killed_child_raises_learner_error_naming_its_exit_code(
    start_method: Literal["spawn", "forkserver"],
) -> None:
    with VowpalWorker(batch_examples=BATCH, start_method=start_method) as worker:
        policy = RemotePolicy(worker, "global", ARGS)
        assert worker.pid is not None
        os.kill(worker.pid, signal.SIGKILL)
        with pytest.raises(LearnerError, match="SIGKILL"):
            policy.to_bytes()
        policy.learn(examples(1)[0])
        with pytest.raises(LearnerError, match="SIGKILL"):
            worker.flush()
        policy.finish()


def test_the_child_outlives_sigterm_so_the_parent_can_drain() -> None:
    """A service manager signals the whole process group; the parent still checkpoints."""
    with fresh_worker() as worker:
        policy = RemotePolicy(worker, "global", ARGS)
        lines = examples(10)
        for example in lines:
            policy.learn(example)
        assert worker.pid is not None
        os.kill(worker.pid, signal.SIGTERM)
        os.kill(worker.pid, signal.SIGINT)
        assert policy.to_bytes() == in_process_bytes(lines)


def test_close_is_idempotent_and_leaves_no_process() -> None:
    worker = fresh_worker()
    policy = RemotePolicy(worker, "global", ARGS)
    policy.learn(examples(1)[0])
    pid = worker.pid
    assert pid is not None
    worker.close()
    worker.close()
    with pytest.raises(ProcessLookupError):  # exited and reaped
        os.kill(pid, 0)
    with pytest.raises(LearnerError, match="closed"):
        policy.to_bytes()
    policy.finish()
    policy.finish()


def test_the_child_exits_when_its_parent_is_killed() -> None:
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from bandit.vw_worker import VowpalWorker\n"
            "w = VowpalWorker().start(); w.ping(); print(w.pid, flush=True)\n"
            "import time; time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(child):
        time.sleep(0.02)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    """True while `pid` runs (not a zombie: the child's parent is gone, init reaps it)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False
