"""Vowpal Wabbit models behind small interfaces; the only `vowpalwabbit` import.

`VowpalPolicy` is a `cb_explore_adf` policy (multi-line examples -> exploration pmf);
`OutcomeModel` is a 3-class logistic model of P(helpful), P(not helpful), P(ignored).
Models are saved with VW's resume state (the default since VW 9), so a restored policy
continues learning exactly where the saved one stopped (tests prove it). The outcome model
continues approximately (VW's normalized updates under `--oaa` drift ~1e-3 after a restore).

VW reads and writes models only through paths: those files live in this process's scratch
directory (`bandit.scratch`) only while VW reads or writes them, so a killed process leaves
no model file behind, and the next one sweeps the directory it left.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import numpy as np
import pylibvw  # VW's C++ extension, shipped with the vowpalwabbit package
from vowpalwabbit import Workspace

from bandit.errors import LearnerError
from bandit.scratch import scratch_dir

# VW's extension, looked up once: on the learn path every attribute lookup shows
_parse = pylibvw.vw._parse
_learn_multi = pylibvw.vw.learn_multi
_finish_multi = pylibvw.vw._finish_example_multi_ex
_learn_one = pylibvw.vw.learn
_finish_one = pylibvw.vw._finish_example


def _temp_file(data: bytes, prefix: str) -> str:
    return str(scratch_dir().new_file(prefix, data))


class _VowpalModel:
    """One VW workspace: creation from arguments or saved bytes, saving, and release."""

    # Options VW does not store in a saved model; a restored model needs them again.
    RESTORE_FLAGS = ""

    def __init__(
        self,
        arguments: str,
        model: bytes | None = None,
        mask: bytes | None = None,
        runtime_flags: str = "",
    ):
        """A fresh model from `arguments`, or a saved `model` (its reductions, interactions and
        exploration come from the bytes; `runtime_flags`, e.g. a learning rate, are added)."""
        self.arguments = arguments
        self._files: list[str] = []
        args = arguments
        if model is not None:
            self._files.append(_temp_file(model, "nudge-model-"))
            # A saved model carries its reductions and exploration settings.
            args = f"--quiet -i {self._files[0]} {self.RESTORE_FLAGS} {runtime_flags}".strip()
        if mask is not None:
            self._files.append(_temp_file(mask, "nudge-mask-"))
            args += f" --feature_mask {self._files[-1]}"
        try:
            self._ws: Workspace | None = Workspace(args)
        except Exception as exc:  # VW raises bare RuntimeError/ValueError on bad flags
            self._cleanup()
            hint = (
                "; a saved model keeps its reductions (cb_type, bits, interactions): change them "
                "only with a new checkpoint directory"
                if model is not None
                else ""
            )
            raise LearnerError(f"Vowpal Wabbit refused arguments {args!r}: {exc}{hint}") from exc
        self._cleanup()  # VW has read the model and mask: the files are not needed again
        self.examples_learned = 0

    def _workspace(self) -> Workspace:
        if self._ws is None:
            raise LearnerError("model is finished; create a new one")
        return self._ws

    def to_bytes(self) -> bytes:
        """The model with its resume state, as VW writes it to a file."""
        path = scratch_dir().new_file("nudge-save-")
        try:
            self._workspace().save(str(path))
            return path.read_bytes()
        except RuntimeError as exc:  # VW's own error, e.g. the disk is full
            raise LearnerError(f"Vowpal Wabbit could not save the model to {path}: {exc}") from exc
        finally:
            path.unlink(missing_ok=True)
            path.with_name(f"{path.name}.writing").unlink(missing_ok=True)  # VW's own temp name

    def vw_arguments(self) -> str:
        """The arguments VW is running with (including those restored from a model)."""
        return str(self._workspace().get_arguments())

    def finish(self) -> None:
        """Release the workspace; safe to call twice."""
        if self._ws is not None:
            self._ws.finish()
            self._ws = None
        self._cleanup()

    def _cleanup(self) -> None:
        for path in self._files:
            Path(path).unlink(missing_ok=True)
        self._files.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.finish()


class VowpalPolicy(_VowpalModel):
    """A `cb_explore_adf` policy: `learn_text(text)` and `predict(lines) -> pmf`."""

    def learn(self, lines: Sequence[str]) -> None:
        """Learn one labelled multi-line example (shared line first)."""
        self.learn_text("\n".join(lines))

    def learn_text(self, text: str) -> None:
        """Learn one labelled multi-line example given as one text, its lines joined by `\\n`.

        What `Workspace.learn(lines)` does, straight through VW's extension: `Workspace.learn`
        wraps every line in a Python `Example` (~27 us for 6 lines, three times VW's own
        parsing and learning); a test proves the models come out byte-identical. Like
        `Workspace.parse`, it drops carriage returns and strips the text.
        """
        ws = self._ws
        if ws is None:
            raise LearnerError("model is finished; create a new one")
        examples = _parse(ws, text.replace("\r", "").strip())
        try:
            _learn_multi(ws, examples)
        finally:
            _finish_multi(ws, examples)
        self.examples_learned += 1

    def predict(self, lines: Sequence[str]) -> np.ndarray:
        """The exploration pmf over the example's actions, in their order."""
        return np.asarray(self.predict_list(lines), dtype=np.float64)

    def predict_list(self, lines: Sequence[str]) -> list[float]:
        """`predict` as a list, straight from VW's extension: the decision hot path.

        `Workspace.predict` builds a Python object per line (~20 us for 6 lines); parsing,
        predicting and finishing through `pylibvw` gives the same pmf (a test compares them).
        """
        ws = self._workspace()
        examples = pylibvw.vw._parse(ws, "\n".join(lines))
        try:
            pylibvw.vw.predict_multi(ws, examples)
            pmf = list(examples[0].get_action_scores())
        finally:
            pylibvw.vw._finish_example_multi_ex(ws, examples)
        if len(pmf) != len(lines) - 1:
            raise LearnerError(f"VW returned {len(pmf)} probabilities for {len(lines) - 1} actions")
        return pmf


class OutcomeModel(_VowpalModel):
    """P(helpful), P(not helpful), P(ignored) of one shown message (VW `--oaa 3 --probabilities`)."""

    RESTORE_FLAGS = "--probabilities --loss_function logistic"

    def learn(self, line: str) -> None:
        """Learn one labelled single-line example (label 1, 2 or 3), through VW's extension as
        `VowpalPolicy.learn_text` does (the same model as `Workspace.learn(line)`)."""
        ws = self._workspace()
        examples = _parse(ws, line.replace("\r", "").strip())
        try:
            if len(examples) != 1:
                raise LearnerError(f"expected one example in {line!r}, VW read {len(examples)}")
            _learn_one(ws, examples[0])
        finally:
            for example in examples:
                _finish_one(ws, example)
        self.examples_learned += 1

    def predict(self, lines: Sequence[str]) -> np.ndarray:
        """An (n, 3) array of outcome probabilities, one row per unlabelled line."""
        return np.asarray(self.predict_list(lines), dtype=np.float64).reshape(len(lines), 3)

    def predict_list(self, lines: Sequence[str]) -> list[list[float]]:
        """`predict` as lists, straight from VW's extension (see `VowpalPolicy.predict_list`)."""
        ws = self._workspace()
        rows: list[list[float]] = []
        for line in lines:
            example = pylibvw.vw._parse(ws, line)[0]
            try:
                pylibvw.vw.predict(ws, example)
                rows.append(list(example.get_scalars()))
            finally:
                pylibvw.vw._finish_example(ws, example)
        if any(len(row) != 3 for row in rows):
            raise LearnerError(f"VW returned {[len(r) for r in rows]} outcome probabilities")
        return rows
