"""What a learner has learned, as bytes and JSON: the unit checkpoints save and snapshots export.

Plain data with no Vowpal Wabbit in it, so stores and decision services can move it around
without loading the learner.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class LearnerState:
    """Everything learned, as bytes and JSON: what checkpoints save and snapshots export."""

    models: dict[str, bytes] = field(default_factory=dict)  # policy scope -> VW model
    outcome_model: bytes | None = None
    catalogue: dict[str, Any] = field(default_factory=dict)
    reactions: dict[str, int] = field(default_factory=dict)
    masks: dict[str, bytes] = field(default_factory=dict)  # scope -> VW --feature_mask model
    arguments: dict[str, str] = field(default_factory=dict)  # scope -> VW arguments used
    arms: dict[str, Any] = field(default_factory=dict)  # ArmStats JSON: evidence per message
    pruning: dict[str, Any] = field(default_factory=dict)  # PruningState JSON
