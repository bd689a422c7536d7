"""Vowpal Wabbit models living in a child process, so VW parses and learns on another core.

The parent (the consumer) renders VW text and hands it to a proxy (`RemotePolicy`,
`RemoteOutcomeModel`: the methods of `VowpalPolicy` / `OutcomeModel` the learner uses). Learn
calls are buffered and shipped `batch_examples` at a time, one `send_bytes` per batch; the child
learns them in order while the parent renders the next ones. Every other call (`to_bytes`,
`predict`, `vw_arguments`, opening a model) first ships the buffer, then waits for the child's
answer, so `to_bytes` is the model after every learn sent before it (a consistent cut).

Failures are loud and never hang: a learn VW refuses (its message) breaks the worker, and the
next send or call raises `LearnerError`, as does every one after it; a child that died (killed,
out of memory) is noticed while waiting (liveness checked every `LIVENESS_S`) or when sending,
and named with its exit code. The child lives as long as its pipe: it ignores SIGINT and
SIGTERM (a Ctrl-C or a service manager signals the whole process group, and the parent must
still drain into a final checkpoint) and exits on the pipe's EOF, which the parent's `close`,
its exit (an atexit hook) or its death (the kernel closes the pipe) all cause.

Started with "spawn" (or "forkserver"), never "fork": the consumer runs Kafka client threads.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing
import pickle
import signal
import struct
from array import array
from collections.abc import Callable, Sequence
from itertools import accumulate
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any, Literal, Self

import numpy as np

from bandit.errors import LearnerError
from bandit.policies import OutcomeModel, VowpalPolicy

DEFAULT_BATCH_EXAMPLES = 512
LIVENESS_S = 0.2  # how often a waiting parent checks that the child still lives
CLOSE_TIMEOUT_S = 10.0  # a closing child learns what it already received, then finishes

Kind = Literal["policy", "outcome"]

_LEARN = b"L"  # a batch of examples
_CALL = b"C"  # a pickled (operation, model index, arguments) that waits for an answer
_HEADER = struct.Struct("<cI")  # kind, number of examples
_TEXT_EXCERPT = 300  # characters of a refused example quoted in the error


# ---- the wire format of a batch (pure) -----------------------------------------------------


def encode_batch(indices: Sequence[int], texts: Sequence[str]) -> bytes:
    """One message: header, model indices and text lengths (uint32 each), then the texts.

    Lengths are in characters, so the parent encodes all texts in one call and any character
    (a NUL, a newline) may appear in them; the child decodes once and slices.
    """
    return b"".join(
        (
            _HEADER.pack(_LEARN, len(texts)),
            array("I", indices).tobytes(),
            array("I", list(map(len, texts))).tobytes(),
            "".join(texts).encode("utf-8", "surrogatepass"),
        )
    )


def decode_batch(message: bytes) -> tuple[list[int], list[str]]:
    """The model indices and texts of `encode_batch`'s message, in order."""
    _, n = _HEADER.unpack_from(message)
    at = _HEADER.size
    indices, lengths = array("I"), array("I")
    width = n * indices.itemsize
    indices.frombytes(message[at : at + width])
    lengths.frombytes(message[at + width : at + 2 * width])
    text = message[at + 2 * width :].decode("utf-8", "surrogatepass")
    ends = list(accumulate(lengths))
    expected = ends[-1] if ends else 0
    if expected != len(text):
        raise LearnerError(f"a batch of {n} examples has {len(text)} characters, not {expected}")
    return indices.tolist(), [text[a:b] for a, b in zip([0, *ends][:-1], ends, strict=True)]


# ---- the child -------------------------------------------------------------------------------


class _Host:
    """The child's models by index, and the first learn VW refused (after which it learns no
    more: what the parent sent after it assumed it was learned)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.models: dict[int, tuple[str, VowpalPolicy | OutcomeModel]] = {}
        self.learners: dict[int, Callable[[str], None]] = {}
        self.failed: str | None = None

    def handle(self, message: bytes) -> None:
        if message[:1] == _LEARN:
            self.learn(message)
        else:
            self.call(message)

    def learn(self, message: bytes) -> None:
        if self.failed is not None:
            return
        index, text = -1, ""
        try:
            indices, texts = decode_batch(message)
            for index, text in zip(indices, texts, strict=True):
                self.learners[index](text)
        except Exception as exc:  # VW raises bare RuntimeError on a malformed example
            name = self.models[index][0] if index in self.models else "?"
            self.failed = (
                f"Vowpal Wabbit refused an example of model {name!r} in the worker: {exc} "
                f"(example: {text[:_TEXT_EXCERPT]!r}); the examples after it were not learned"
            )
            self.conn.send(("failed", self.failed))

    def call(self, message: bytes) -> None:
        if self.failed is not None:
            self.conn.send(("failed", self.failed))
            return
        try:
            # The parent's own pipe: as trusted as multiprocessing's own pickles.
            operation, index, args = pickle.loads(message[1:])  # noqa: S301
            answer = getattr(self, f"op_{operation}")(index, *args)
        except LearnerError as exc:
            self.conn.send(("error", str(exc)))
        except Exception as exc:  # VW's own errors: RuntimeError, ValueError
            self.conn.send(("error", f"Vowpal Wabbit failed in the worker: {exc}"))
        else:
            self.conn.send(("ok", answer))

    def op_open(
        self,
        index: int,
        kind: Kind,
        name: str,
        arguments: str,
        model: bytes | None,
        mask: bytes | None,
        runtime_flags: str,
    ) -> None:
        hosted: VowpalPolicy | OutcomeModel
        if kind == "policy":
            hosted = VowpalPolicy(arguments, model, mask, runtime_flags)
            self.learners[index] = hosted.learn_text
        else:
            hosted = OutcomeModel(arguments, model, mask, runtime_flags)
            self.learners[index] = hosted.learn
        self.models[index] = (name, hosted)

    def op_ping(self, index: int) -> None:
        del index

    def op_predict(self, index: int, lines: list[str]) -> list[float] | list[list[float]]:
        return self.models[index][1].predict_list(lines)

    def op_to_bytes(self, index: int) -> bytes:
        return self.models[index][1].to_bytes()

    def op_vw_arguments(self, index: int) -> str:
        return self.models[index][1].vw_arguments()

    def op_finish(self, index: int) -> None:
        self.learners.pop(index, None)
        _, hosted = self.models.pop(index)
        hosted.finish()

    def finish_all(self) -> None:
        for _, hosted in self.models.values():
            hosted.finish()
        self.models.clear()


def serve(conn: Connection) -> None:
    """The child's main loop: handle the parent's messages in order until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    host = _Host(conn)
    try:
        while True:
            try:
                message = conn.recv_bytes()
            except (EOFError, OSError):
                return
            host.handle(message)
    finally:
        host.finish_all()
        conn.close()


# ---- the parent ------------------------------------------------------------------------------


class VowpalWorker:
    """A child process hosting VW models: learns are batched, every other call waits for it.

    Not thread-safe: one thread (the consumer's loop) uses a worker and its proxies.
    """

    def __init__(
        self,
        batch_examples: int = DEFAULT_BATCH_EXAMPLES,
        start_method: Literal["spawn", "forkserver"] = "spawn",
    ) -> None:
        if batch_examples < 1:
            raise LearnerError(f"batch_examples must be at least 1, got {batch_examples}")
        self.batch_examples = batch_examples
        self.start_method = start_method
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None
        self._pid: int | None = None
        self._closed = False
        self._broken: str | None = None
        self._indices: list[int] = []
        self._texts: list[str] = []
        self._next_index = 0
        self._names: dict[str, int] = {}

    # ---- life ----

    def start(self) -> Self:
        """Start the child (returns at once; the first call waits for it to be ready)."""
        if self._process is not None or self._closed:
            raise LearnerError("a VowpalWorker starts once")
        ctx = (
            multiprocessing.get_context("spawn")
            if self.start_method == "spawn"
            else multiprocessing.get_context("forkserver")
        )
        parent, child = ctx.Pipe(duplex=True)
        process = ctx.Process(target=serve, args=(child,), name="nudge-vw-worker", daemon=True)
        process.start()
        child.close()  # only the child holds its end: its death is our EOF
        self._process, self._conn, self._pid = process, parent, process.pid
        # Registered after multiprocessing's own exit hook, so it runs first: the child sees
        # EOF and exits before multiprocessing joins it.
        atexit.register(self.close)
        return self

    @property
    def pid(self) -> int | None:
        """The child's process id (None before `start`; kept after `close`)."""
        return self._pid

    def close(self) -> None:
        """Close the pipe (the child learns what it received, finishes, exits) and reap the
        child; kill it if it does not exit in `CLOSE_TIMEOUT_S`. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._indices.clear()
        self._texts.clear()
        atexit.unregister(self.close)
        if self._conn is not None:
            self._conn.close()
        if self._process is not None:
            self._process.join(CLOSE_TIMEOUT_S)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()
            self._process.close()

    def __enter__(self) -> Self:
        return self.start() if self._process is None else self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ---- what the proxies use ----

    def open_model(
        self,
        kind: Kind,
        name: str,
        arguments: str,
        model: bytes | None,
        mask: bytes | None,
        runtime_flags: str,
    ) -> int:
        """Build a model in the child (waits: VW's refusal raises here, as in process); its
        index for `learn` and `call`."""
        if name in self._names:
            raise LearnerError(f"the VW worker already hosts a model named {name!r}")
        index = self._next_index
        self._next_index += 1
        self.call("open", index, kind, name, arguments, model, mask, runtime_flags)
        self._names[name] = index
        return index

    def forget(self, name: str) -> None:
        """The model `name` was finished: the name may be opened again."""
        self._names.pop(name, None)

    def learn(self, index: int, text: str) -> None:
        """Buffer one example of model `index`; ship the buffer once it is full."""
        self._indices.append(index)
        self._texts.append(text)
        if len(self._texts) >= self.batch_examples:
            self.flush()

    def flush(self) -> None:
        """Ship the buffered examples as one message (after raising a failure the child
        reported)."""
        conn = self._live()
        if conn.poll():  # only a failure arrives unasked
            self._receive(conn)
        if not self._texts:
            return
        message = encode_batch(self._indices, self._texts)
        self._indices.clear()
        self._texts.clear()
        self._send(conn, message)

    def call(self, operation: str, index: int, *args: Any) -> Any:
        """Ship the buffer, run `operation` on model `index` in the child and return its
        answer; raises `LearnerError` with the child's error, or if it died."""
        self.flush()
        conn = self._live()
        self._send(conn, _CALL + pickle.dumps((operation, index, args), pickle.HIGHEST_PROTOCOL))
        process = self._process
        while not conn.poll(LIVENESS_S):
            if process is None or not process.is_alive():
                raise self._died()
        return self._receive(conn)

    def ping(self) -> None:
        """A round trip: returns once the child has handled everything sent before."""
        self.call("ping", -1)

    # ---- internals ----

    def _live(self) -> Connection:
        if self._broken is not None:
            raise LearnerError(self._broken)
        if self._closed:
            raise LearnerError("the VW worker is closed")
        if self._conn is None:
            raise LearnerError("the VW worker is not started: call start() first")
        return self._conn

    def _send(self, conn: Connection, message: bytes) -> None:
        try:
            conn.send_bytes(message)
        except OSError as exc:  # BrokenPipeError, ConnectionResetError: the child is gone
            raise self._died() from exc

    def _receive(self, conn: Connection) -> Any:
        try:
            status, value = conn.recv()
        except (EOFError, OSError) as exc:
            raise self._died() from exc
        if status == "ok":
            return value
        if status == "failed":
            self._broken = value
        raise LearnerError(value)

    def _died(self) -> LearnerError:
        """The error of a dead child, naming its exit code; the worker stays broken."""
        code = None
        if self._process is not None:
            self._process.join(LIVENESS_S * 5)
            code = self._process.exitcode
        how = f"exit code {code}"
        if code is not None and -code in signal.valid_signals():
            how += f" ({signal.Signals(-code).name})"
        self._broken = (
            f"the VW worker process (pid {self.pid}) died with {how}; its models lost what "
            "they learned since they were last saved"
        )
        return LearnerError(self._broken)


class _RemoteModel:
    """A model hosted by a `VowpalWorker`, with `_VowpalModel`'s methods and attributes."""

    KIND: Kind = "policy"

    def __init__(
        self,
        worker: VowpalWorker,
        name: str,
        arguments: str,
        model: bytes | None = None,
        mask: bytes | None = None,
        runtime_flags: str = "",
    ) -> None:
        """The model `name` built in the worker from `_VowpalModel`'s arguments (waits for
        it: VW's refusal raises `LearnerError` here)."""
        self.worker = worker
        self.name = name
        self.arguments = arguments
        self._index: int | None = worker.open_model(
            self.KIND, name, arguments, model, mask, runtime_flags
        )
        self.examples_learned = 0

    def _learn(self, text: str) -> None:
        if self._index is None:
            raise LearnerError("model is finished; create a new one")
        self.worker.learn(self._index, text)
        self.examples_learned += 1

    def _call(self, operation: str, *args: Any) -> Any:
        if self._index is None:
            raise LearnerError("model is finished; create a new one")
        return self.worker.call(operation, self._index, *args)

    def to_bytes(self) -> bytes:
        """The model after every learn sent before this call, with its resume state."""
        data: bytes = self._call("to_bytes")
        return data

    def vw_arguments(self) -> str:
        """The arguments VW is running with (including those restored from a model)."""
        return str(self._call("vw_arguments"))

    def finish(self) -> None:
        """Release the model in the worker; safe to call twice, and never raises (a broken or
        closed worker has released it already)."""
        if self._index is None:
            return
        index, self._index = self._index, None
        self.worker.forget(self.name)
        with contextlib.suppress(LearnerError):
            self.worker.call("finish", index)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.finish()


class RemotePolicy(_RemoteModel):
    """`VowpalPolicy` in a `VowpalWorker`: learns are shipped in batches, predicts wait."""

    KIND: Kind = "policy"

    def learn_text(self, text: str) -> None:
        """Learn one labelled multi-line example given as one string (lines joined by "\\n")."""
        self._learn(text)

    def learn(self, lines: Sequence[str]) -> None:
        """Learn one labelled multi-line example (shared line first)."""
        self._learn("\n".join(lines))

    def predict(self, lines: Sequence[str]) -> np.ndarray:
        """The exploration pmf over the example's actions, in their order (a round trip)."""
        return np.asarray(self.predict_list(lines), dtype=np.float64)

    def predict_list(self, lines: Sequence[str]) -> list[float]:
        """`predict` as a list."""
        pmf: list[float] = self._call("predict", list(lines))
        return pmf


class RemoteOutcomeModel(_RemoteModel):
    """`OutcomeModel` in a `VowpalWorker`: learns are shipped in batches, predicts wait."""

    KIND: Kind = "outcome"

    def learn(self, line: str) -> None:
        """Learn one labelled single-line example (label 1, 2 or 3)."""
        self._learn(line)

    def predict(self, lines: Sequence[str]) -> np.ndarray:
        """An (n, 3) array of outcome probabilities, one row per unlabelled line."""
        return np.asarray(self.predict_list(lines), dtype=np.float64).reshape(len(lines), 3)

    def predict_list(self, lines: Sequence[str]) -> list[list[float]]:
        """`predict` as lists."""
        rows: list[list[float]] = self._call("predict", list(lines))
        return rows
