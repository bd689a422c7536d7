"""The status page in a real browser: headless Chromium (system package; `scripts/browser`
installs it) renders the page of a published snapshot carrying live estimates and pruning
evidence, and its DOM shows the policy, the three estimates with their numbers and the pruning
rows; its screenshot is a real rendering, not a blank page."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from bandit.config import Config
from bandit.events import Impression, OutcomeLabel
from bandit.join import JoinedEvent
from bandit.live_value import LiveValue
from bandit.pruning import ArmStatus, Evidence, PruningState
from bandit.snapshots import SnapshotStore
from bandit.state import LearnerState
from nudge.service.status_page import StatusView, pruning_rows, render_status_page

WINDOW = (1000, 1600)
BLANK_PAGE_PNG_BYTES = 20_000  # a white page of this size is about 8 KB


def chromium() -> str:
    """The browser `scripts/test` found (CHROMIUM_BIN), or one on the PATH; skip without."""
    found = os.environ.get("CHROMIUM_BIN") or shutil.which("chromium")
    if not found:
        pytest.skip("no chromium: run scripts/browser (scripts/test does) to install it")
    return found


def run_chromium(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip


def learned(actions: tuple[str, ...], chosen: str, reward: float, ts: float) -> JoinedEvent:
    impression = Impression(
        event_id=f"e{ts:.0f}", ts=ts, trigger="A/quiz-3/quiz-failed", learner_id="u",
        context={}, action_ids=actions, action_features=tuple({} for _ in actions),
        chosen_index=actions.index(chosen), probability=1.0 / len(actions), policy_version="v",
    )  # fmt: skip
    return JoinedEvent(impression, OutcomeLabel.IGNORED, None, reward, defaulted=False)


def published_view(directory: Path) -> StatusView:
    """A snapshot published with live estimates and pruning evidence, loaded back as the
    service would, and the status view of it."""
    actions = ("hint", "peer_norm", "none")
    rewards = {"hint": (1.0, 0.0, 0.0, 1.0), "peer_norm": (-1.0, 0.0, -1.0, 0.0), "none": (0.0,)}
    live = LiveValue()
    for i in range(600):
        chosen = actions[i % 3]
        live.add(learned(actions, chosen, rewards[chosen][i % len(rewards[chosen])], 1e9 + i))
    pruning = PruningState(
        statuses={
            "A/quiz-3/quiz-failed": {
                "peer_norm": ArmStatus(
                    "pruned", 1e9, Evidence("lift_vs_none", -0.75, -0.9, -0.6, 200)
                ),
                "hint": ArmStatus("active", 1e9, Evidence("lift_vs_none", 1.5, 1.2, 1.8, 200)),
            }
        }
    )
    catalogue: dict[str, Any] = {"actions": {a: {} for a in actions}, "triggers": {}}
    state = LearnerState(catalogue=catalogue, pruning=pruning.to_json())
    store = SnapshotStore(directory)
    store.publish(Config(), state, {}, 600, live_value=live.estimates())
    snapshot = store.load_latest()
    return StatusView(
        policy_version=snapshot.manifest.policy_id,
        policy_created_at=1e9 + 700,
        now=1e9 + 760,
        decisions_by_why={"exploit": 512, "explore": 64},
        spool_events=0,
        broker_ok=True,
        live_value=snapshot.manifest.live_value,
        pruning=pruning_rows(snapshot.manifest, snapshot.state.pruning),
    )


class TextById(HTMLParser):
    """The text inside each element that has an id, cells separated by spaces."""

    VOID = frozenset({"meta", "br", "circle", "line", "path", "rect", "img", "input"})

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str | None] = []
        self.text: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for open_id in filter(None, self.open):
            self.text[open_id] += " "
        element_id = dict(attrs).get("id") or None
        if element_id is not None:
            self.text[element_id] = ""
        if tag not in self.VOID:
            self.open.append(element_id)

    def handle_endtag(self, tag: str) -> None:
        if tag not in self.VOID and self.open:
            self.open.pop()

    def handle_data(self, data: str) -> None:
        for element_id in filter(None, self.open):
            self.text[element_id] += data


def shown(dom: str) -> dict[str, str]:
    parser = TextById()
    parser.feed(dom)
    return {k: re.sub(r"\s+", " ", v).strip() for k, v in parser.text.items()}


def test_headless_chromium_shows_the_policy_the_live_estimates_and_the_pruning_table(
    tmp_path: Path,
) -> None:
    browser = chromium()
    view = published_view(tmp_path / "snapshots")
    page = tmp_path / "status.html"
    page.write_text(render_status_page(view), encoding="utf-8")

    dom = run_chromium(browser, tmp_path / "profile", "--dump-dom", page.as_uri()).stdout
    screenshot = tmp_path / "status.png"
    run_chromium(
        browser, tmp_path / "profile", f"--screenshot={screenshot}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}", "--hide-scrollbars", page.as_uri(),
    )  # fmt: skip

    text = shown(dom)
    assert text["policy-version"] == "nudge-000001"
    assert text["policy-age"].startswith("1 min 0 s ago")
    # 600 uniform decisions, 200 each: hint earns 1, 0, 0, 1 (mean 0.5), peer_norm -1, 0, -1, 0
    # (-0.5), none 0; deployed: their mean 0; IPS = 3 x the mean of the chosen rewards / 3.
    assert text["estimate-deployed"].startswith("deployed policy +0.000 [")
    assert text["estimate-send_nothing"].startswith("send nothing +0.000 [+0.000, +0.000] 600")
    assert text["estimate-best_message"].startswith("best single message: hint +0.500 [")
    assert text["estimate-best_message"].endswith("600 ips")
    assert text["live-value-n"] == "600"
    assert "pruned 200 lift_vs_none -0.750 [-0.900, -0.600]" in text["pruning"]
    assert "hint active 200 lift_vs_none +1.500 [+1.200, +1.800]" in text["pruning"]
    assert dom.count("<circle") == 3  # the chart survived parsing: a point per estimate

    png = screenshot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", png[16:24]) == WINDOW
    assert len(png) > BLANK_PAGE_PNG_BYTES, len(png)
