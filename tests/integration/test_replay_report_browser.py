"""The replay HTML report in a real browser: headless Chromium (the system package that
`scripts/browser` installs) lays the report out at a laptop's width and a narrow window's, and
a script run in the page measures every element, table cell and plot label: nothing may be
wider than its box or the window, no name may wrap, no plot label may be cut, leave its plot
or panel, or overlap another. The script writes what it finds into the DOM, which
``--dump-dom`` hands back. A page built to overflow shows each kind of finding, so the check
can fail."""

from __future__ import annotations

import json
import re
from html import unescape
from pathlib import Path

import pytest

from replay.report import write_html
from replay.report_html import NARROW_WINDOW_PX
from tests.integration.test_status_page_browser import chromium, run_chromium
from tests.unit.replay_report_fixtures import MANY_POLICIES, replay_result

LAPTOP_PX = 1366
PHONE_PX = 500  # the narrowest window headless Chromium lays out (it widens narrower ones)

# Runs once the page is laid out (an inline script at the end of the body); findings are
# {kind, what} objects, each element reported once (the outermost one that is outside).
MEASURE = r"""
(() => {
  const found = [];
  const root = document.documentElement;
  const view = root.clientWidth;
  const short = (t) => (t || "").replace(/\s+/g, " ").trim().slice(0, 60);
  const name = (el) => `<${el.tagName.toLowerCase()}${el.className && typeof el.className ===
    "string" ? "." + el.className.replace(/ /g, ".") : ""}> "${short(el.textContent)}"`;
  const scroller = (el) => {
    for (let p = el.parentElement; p; p = p.parentElement) {
      const x = getComputedStyle(p).overflowX;
      if (x === "auto" || x === "scroll") return p;
    }
    return null;
  };
  if (root.scrollWidth > view)
    found.push({kind: "page", what: `${root.scrollWidth}px wide in a ${view}px window`});
  const outside = new Set();
  const stuck = new Set();
  for (const el of document.body.querySelectorAll("*")) {
    if (el.closest("svg") && el.tagName.toLowerCase() !== "svg") continue;
    const box = el.getBoundingClientRect();
    if (box.width === 0) continue;
    if (!scroller(el) && (box.right > view + 0.5 || box.left < -0.5)) {
      outside.add(el);
      if (!outside.has(el.parentElement))
        found.push({kind: "outside", what: `${name(el)} spans ${Math.round(box.left)}..` +
          `${Math.round(box.right)}px of ${view}px`});
    }
    const parent = el.parentElement;
    const edge = parent.getBoundingClientRect();
    const sticks = box.right > edge.right + 0.5 || box.left < edge.left - 0.5;
    if (sticks && getComputedStyle(parent).overflowX === "visible") {
      stuck.add(el);
      if (!stuck.has(parent))
        found.push({kind: "overflow", what: `${name(el)} sticks out of ${name(parent)} by ` +
          `${Math.round(Math.max(box.right - edge.right, edge.left - box.left))}px`});
    }
    if (el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1) {
      const x = getComputedStyle(el).overflowX;
      const kind = x === "auto" || x === "scroll" ? "scrolls" : x === "visible" ? "overflow" : "cut";
      found.push({kind, what: `${name(el)} holds ${el.scrollWidth}px in ${el.clientWidth}px`});
    }
  }
  for (const el of document.querySelectorAll("td, th, dt, .nw")) {
    const range = document.createRange();
    range.selectNodeContents(el);
    const tops = new Set([...range.getClientRects()].map((r) => Math.round(r.top)));
    if (tops.size > 1) found.push({kind: "wrapped", what: `${name(el)} on ${tops.size} lines`});
  }
  for (const svg of document.querySelectorAll("svg")) {
    const vb = svg.viewBox.baseVal;
    const texts = [...svg.querySelectorAll("text")];
    const boxes = texts.map((t) => t.getBBox());
    texts.forEach((t, i) => {
      const b = boxes[i];
      const label = short(t.textContent);
      if (t.textContent.includes("\u2026")) found.push({kind: "label-cut", what: label});
      if (b.x < vb.x - 0.5 || b.x + b.width > vb.x + vb.width + 0.5)
        found.push({kind: "label-outside", what: `"${label}" spans ${b.x.toFixed(0)}..` +
          `${(b.x + b.width).toFixed(0)} of a ${vb.width}-wide plot`});
      const frame = t.closest("g.panel")?.querySelector(":scope > rect.frame")?.getBBox();
      if (frame && (b.x < frame.x - 0.5 || b.x + b.width > frame.x + frame.width + 0.5))
        found.push({kind: "label-outside", what: `"${label}" leaves its panel`});
      for (let j = 0; j < i; j++) {
        const o = boxes[j];
        const w = Math.min(b.x + b.width, o.x + o.width) - Math.max(b.x, o.x);
        const h = Math.min(b.y + b.height, o.y + o.height) - Math.max(b.y, o.y);
        if (w > 1 && h > 1)
          found.push({kind: "overlap", what: `"${label}" and "${short(texts[j].textContent)}"`});
      }
    });
  }
  const out = document.createElement("div");
  out.id = "layout-findings";
  out.hidden = true;
  out.textContent = JSON.stringify(found);
  document.body.appendChild(out);
})();
"""

# Every kind of trouble the check looks for, on purpose: a page wider than the window, a
# table wider than its box, a cell cut with an ellipsis, a name wrapped onto two lines, and a
# plot whose labels are cut, leave the plot or their panel, and overlap.
OVERFLOWING = """<!DOCTYPE html><html><head><meta charset="utf-8"/><style>
body{margin:0;width:400px}td{white-space:nowrap}
.cut{display:block;width:60px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.narrow{width:90px}</style></head><body>
<table><tr><td>always-send(personalized)</td><td>0.0931 [0.0740, 0.1123]</td>
<td>0.0931 [0.0740, 0.1123]</td><td>0.0931 [0.0740, 0.1123]</td></tr></table>
<div style="width:2000px">a very wide block</div>
<span class="cut">best-per-trigger</span>
<table class="narrow"><tr><th style="white-space:normal">always-send (personalized)</th></tr></table>
<svg xmlns="http://www.w3.org/2000/svg" width="200" height="60" viewBox="0 0 200 60">
<text x="10" y="20">always-send(persona…</text><text x="150" y="40">best-per-trigger</text>
<text x="20" y="22">uniform</text>
<g class="panel"><rect class="frame" x="0" y="40" width="100" height="20" fill="none"/>
<text x="60" y="55">personalized</text></g></svg>
</body></html>
"""


def layout_findings(html: str, directory: Path, width: int) -> list[dict[str, str]]:
    """What `MEASURE` finds in ``html`` laid out in a window ``width`` pixels wide."""
    page = directory / f"page-{width}.html"
    page.write_text(html.replace("</body>", f"<script>{MEASURE}</script></body>"), "utf-8")
    dom = run_chromium(
        chromium(), directory / "profile", "--hide-scrollbars", f"--window-size={width},900",
        "--dump-dom", page.as_uri(),
    ).stdout  # fmt: skip
    found = re.search(r'<div id="layout-findings" hidden="">(.*?)</div>', dom, re.S)
    assert found, f"the measuring script did not run; the page ends {dom[-300:]!r}"
    findings: list[dict[str, str]] = json.loads(unescape(found.group(1)))
    return findings


def _report(tmp_path: Path, policies: tuple[str, ...]) -> str:
    return write_html(replay_result(policies=policies), tmp_path / "report.html").read_text()


def test_the_check_finds_every_kind_of_overflow_on_a_page_built_to_overflow(
    tmp_path: Path,
) -> None:
    findings = layout_findings(OVERFLOWING, tmp_path, LAPTOP_PX)
    kinds = {f["kind"] for f in findings}
    assert kinds == {"page", "outside", "overflow", "cut", "wrapped", "label-cut", "label-outside",
                     "overlap"}  # fmt: skip
    assert {"what": '"personalized" leaves its panel', "kind": "label-outside"} in findings


@pytest.mark.parametrize("width", [LAPTOP_PX, NARROW_WINDOW_PX])
@pytest.mark.parametrize(
    "policies", [replay_result().policies, MANY_POLICIES], ids=["default", "many-long-names"]
)
def test_nothing_in_the_report_overflows_wraps_or_is_cut(
    tmp_path: Path, width: int, policies: tuple[str, ...]
) -> None:
    assert layout_findings(_report(tmp_path, policies), tmp_path, width) == []


def test_in_a_phone_wide_window_only_tables_scroll_inside_their_frames(tmp_path: Path) -> None:
    findings = layout_findings(_report(tmp_path, MANY_POLICIES), tmp_path, PHONE_PX)
    assert [f for f in findings if f["kind"] != "scrolls"] == []
    assert all(f["what"].startswith('<div.frame> "') for f in findings)
