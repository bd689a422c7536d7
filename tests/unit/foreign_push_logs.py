"""The push-nudge study logged by another system: DSJSON with that system's namespace names,
no ``c._nudge``, no ``_id`` (ids in ``_tag``) and its own send-nothing id; shared by the
foreign-log and `--tune` tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from bandit.config import load_config
from bandit.simulation.push_study import PushStudy, push_config, push_events
from bandit.vw_text import NamespaceLetters
from replay.dsjson import write_dsjson
from replay.sources import load_events

ROOT = Path(__file__).resolve().parents[2]
FOREIGN_NAMES = {"learner": "Parent", "trigger": "Request"}  # the push study's namespaces
FOREIGN_NONE = "no message"  # the other system's id of the send-nothing action


def as_another_system(line: bytes) -> bytes:
    """One of our DSJSON lines as another system would log it: its own namespace names, no
    ``c._nudge``, no ``_id`` (the id in ``_tag``), no text marks, its own send-nothing id."""
    doc = orjson.loads(line)
    c = doc["c"]
    names = c.pop("_nudge")["namespaces"]  # our letter -> our namespace name
    context = {
        FOREIGN_NAMES[names[key]]: _plain(value) for key, value in c.items() if key != "_multi"
    }
    context["_multi"] = [
        {
            "_tag": FOREIGN_NONE if action["_id"] == "none" else action["_id"],
            "Message": {k: v for k, v in _plain(action["a"]).items() if k != "id"},
        }
        for action in c["_multi"]
    ]
    return orjson.dumps({**doc, "c": context})


def _plain(features: dict[str, Any]) -> dict[str, Any]:
    return {key.removesuffix("="): value for key, value in features.items()}


def write_push_logs(workdir: Path, pushes: int, seed: int) -> Path:
    """`workdir` with our config and the push study in our DSJSON (own.dsjson) and in another
    system's (foreign.dsjson)."""
    (workdir / "config.yaml").write_bytes((ROOT / "config.yaml").read_bytes())
    events = workdir / "pushes.jsonl"
    events.write_bytes(b"\n".join(push_events(PushStudy(seed), pushes, seed)) + b"\n")
    config = push_config(load_config(workdir / "config.yaml", environ={}))
    letters = NamespaceLetters(config.learner.namespaces, config.learner.action_namespace)
    write_dsjson(load_events(events, config), workdir / "own.dsjson", letters)
    own = (workdir / "own.dsjson").read_bytes().splitlines()
    (workdir / "foreign.dsjson").write_bytes(b"\n".join(map(as_another_system, own)) + b"\n")
    return workdir
