"""A Vowpal Wabbit `cb_explore_adf` policy behind a small interface; the only `vowpalwabbit` import.

Models are saved with VW's resume state (the default since VW 9), so a restored policy
continues learning exactly where the saved one stopped (tests prove it).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import numpy as np
from vowpalwabbit import Workspace

from bandit.errors import LearnerError


class VowpalPolicy:
    """One VW workspace: `learn(lines)` and `predict(lines) -> pmf` on multi-line examples."""

    def __init__(self, arguments: str, model: bytes | None = None) -> None:
        self.arguments = arguments
        self._model_path: str | None = None
        args = arguments
        if model is not None:
            fd, self._model_path = tempfile.mkstemp(prefix="nudge-model-", suffix=".vw")
            with os.fdopen(fd, "wb") as fh:
                fh.write(model)
            # A saved model carries its reductions; only runtime flags are passed again.
            args = f"--quiet -i {self._model_path}"
        try:
            self._ws: Workspace | None = Workspace(args)
        except Exception as exc:  # VW raises bare RuntimeError/ValueError on bad flags
            self._cleanup()
            raise LearnerError(f"Vowpal Wabbit refused arguments {args!r}: {exc}") from exc
        self.examples_learned = 0

    def _workspace(self) -> Workspace:
        if self._ws is None:
            raise LearnerError("policy is finished; create a new one")
        return self._ws

    def learn(self, lines: Sequence[str]) -> None:
        """Learn one labelled multi-line example (shared line first)."""
        self._workspace().learn(list(lines))
        self.examples_learned += 1

    def predict(self, lines: Sequence[str]) -> np.ndarray:
        """The exploration pmf over the example's actions, in their order."""
        pmf = self._workspace().predict(list(lines))
        result = np.asarray(pmf, dtype=np.float64)
        if result.shape != (len(lines) - 1,):
            raise LearnerError(
                f"VW returned {result.shape} probabilities for {len(lines) - 1} actions"
            )
        return result

    def to_bytes(self) -> bytes:
        """The model with its resume state, as VW writes it to a file."""
        fd, path = tempfile.mkstemp(prefix="nudge-save-", suffix=".vw")
        os.close(fd)
        try:
            self._workspace().save(path)
            return Path(path).read_bytes()
        finally:
            os.unlink(path)

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
        if self._model_path is not None:
            Path(self._model_path).unlink(missing_ok=True)
            self._model_path = None

    def __enter__(self) -> VowpalPolicy:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.finish()
