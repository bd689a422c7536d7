"""Small checks of command-line values: argparse `type=` functions for counts, seeds, seconds
and fractions, and the rule for where an output file may go. Each names what it expects; the
parser prints the flag (`nudge: argument --events: ...`)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import NoReturn

from bandit.errors import UsageError


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def positive_int(text: str) -> int:
    """A count that must be at least 1 (`--events`, `--decisions`, `--repeat`)."""
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """A count that may be 0 (`--reactions`)."""
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text!r}")
    return value


def port(text: str) -> int:
    """A TCP port, 0 to 65535 (0: any free port)."""
    value = _integer(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port from 0 to 65535, got {text!r}")
    return value


def seed(text: str) -> int:
    """A random seed: a whole number, 0 or more (numpy refuses negative seeds)."""
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"a seed is 0 or more, got {text!r}")
    return value


def seconds(text: str) -> float:
    """A duration in seconds: finite, 0 or more (`--until-idle`, `--wait`)."""
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"seconds must be 0 or more, got {text!r}")
    return value


def fraction(text: str) -> float:
    """A share in [0, 1) (`--invalid-fraction`)."""
    value = _number(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text!r}")
    return value


def check_output(flag: str, path: Path | None) -> None:
    """Refuse, before any work, an output file `nudge` could not write where it was asked to:
    a directory, or one under a missing directory whose own parent is missing too (a typo in
    a path is not silently made into directories; one missing last directory is created)."""
    if path is None:
        return
    if path.is_dir():
        raise UsageError(f"{flag} {path}: is a directory, not a file")
    folder = path.parent
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{flag} {path}: {folder} is not a directory")
    if not folder.exists() and not folder.parent.is_dir():
        raise UsageError(
            f"{flag} {path}: no directory {folder.parent} (nudge creates at most the file's own "
            "directory); create it first"
        )


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr, like every other `nudge` error
    (`nudge: argument --events: must be at least 1, got '0' (nudge simulate --help)`), exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"nudge: {message} (see `{self.prog} --help`)\n")
