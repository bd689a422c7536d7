"""Offline replay: logged decisions in, counterfactual estimates of candidate policies out.

Builds on the core (`bandit`) only; the command line feeds it records read from Kafka.

From Python: ``from replay import evaluate`` (see `replay.api`); the names below are imported
on first use, so importing one submodule (e.g. `replay.estimators`) loads nothing else.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from replay.api import evaluate, load_logs
    from replay.evaluation import Gain
    from replay.logged import LoggedData
    from replay.policy_specs import (
        PolicySpec,
        PolicySpecError,
        build_policies,
        default_policy_specs,
        parse_policy_spec,
    )
    from replay.results import ReplayResult

_EXPORTS = {
    "evaluate": "replay.api",
    "load_logs": "replay.api",
    "Gain": "replay.evaluation",
    "LoggedData": "replay.logged",
    "PolicySpec": "replay.policy_specs",
    "PolicySpecError": "replay.policy_specs",
    "build_policies": "replay.policy_specs",
    "default_policy_specs": "replay.policy_specs",
    "parse_policy_spec": "replay.policy_specs",
    "ReplayResult": "replay.results",
}
__all__ = [
    "Gain",
    "LoggedData",
    "PolicySpec",
    "PolicySpecError",
    "ReplayResult",
    "build_policies",
    "default_policy_specs",
    "evaluate",
    "load_logs",
    "parse_policy_spec",
]


def __getattr__(name: str) -> Any:
    """The exported name from its module, imported now (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'replay' has no attribute {name!r}")
    return getattr(import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
