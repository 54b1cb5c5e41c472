"""The real-browser walk: a curator goes from an empty project to a downloaded JSONL file in headless Chromium.

The app runs as ``streamlit run app.py`` against the fake OpenAI-compatible server started here; Chromium is
Debian's (``make chromium``). Each page step leaves a full-page screenshot in ``test-artifacts/browser/``.
Run it alone with ``pytest tests/test_browser.py -m browser``.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time

import pytest

from tests.browser_support import (
    ARTIFACTS, CHROMIUM_FLAGS, WAIT_MS, action_counts, action_log, clean_artifacts, click_sector, count_actions, go,
    main_text, pick, require_chromium, require_playwright, screenshot, set_number, settle, streamlit_app, tail,
    type_into_grid_cell, wait_text,
)
from treesynth_core.fakellm import FakeLLM

SECRET = "sk-fake-browser-secret-123456"
FIELDS = ["question", "answer"]  # Home's default fields of one sample
# The fake model splits every node into three values: topic A/B/C, then difficulty A/B/C below each.
RENAMED_DIMENSION = "level"  # topic B's criterion, renamed in the criterion text box
RENAMED_VALUE = "two-step problems"  # topic B > difficulty A, renamed in the values table
PRUNED = "topic C"
PER_LEAF = 2
LIVE_LEAVES = 6  # 3 x 3 leaves minus the 3 below the pruned topic C
EXPECTED = LIVE_LEAVES * PER_LEAF


class Walk:
    """The browser page plus what the test checks at every step (screenshots, no secret in the page)."""

    def __init__(self, page):
        self.page = page
        self.step = 0
        self.shots: list[str] = []
        self.timings: list[tuple[str, float]] = []
        self.actions: list[tuple[str, int]] = []  # the user's actions (clicks, keys, text entries) per step
        self.counted = 0
        self.started = self.last = time.monotonic()

    def done(self, name: str) -> None:
        """End of a page step: the key never reaches the browser; a full-page screenshot is kept."""
        settle(self.page)
        content = self.page.content()
        assert SECRET not in content, f"the full API key is in the page at step {name}"
        self.step += 1
        self.shots.append(screenshot(self.page, f"{self.step:02d}_{name}").name)
        now = time.monotonic()
        self.timings.append((name, now - self.last))
        self.last = now
        total = action_counts(self.page)["total"]
        self.actions.append((name, total - self.counted))
        self.counted = total

    def report(self) -> str:
        steps = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in self.timings)
        return f"browser walk: {time.monotonic() - self.started:.1f}s ({steps})\n{self.actions_text()}"

    def actions_text(self) -> str:
        """The user's actions from the empty studio to the downloaded file: clicks, other keys (Enter...) and
        text entries (one per field typed into), in total and per step."""
        c = action_counts(self.page)
        steps = ", ".join(f"{name} {n}" for name, n in self.actions)
        return (f"curator journey: {c['total']} actions = {c['clicks']} clicks + {c['keys']} key presses + "
                f"{c['texts']} text entries of {c['chars']} characters ({steps})")


@pytest.mark.browser
def test_curator_walks_from_an_empty_project_to_a_jsonl_file(tmp_path):
    sync_api = require_playwright()
    chromium = require_chromium()
    clean_artifacts()
    db = tmp_path / "studio.db"
    log = tmp_path / "streamlit.log"
    with FakeLLM(latency=0.02) as fake:
        env = {"OPENAI_BASE_URL": fake.base_url, "OPENAI_API_KEY": SECRET, "TREESYNTH_MODEL": "fake-model",
               "TREESYNTH_DB": str(db), "TREESYNTH_TIMEOUT": "10"}
        with streamlit_app(env, log) as url, sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
            try:
                context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
                count_actions(context)  # the user's clicks and key presses, counted in the page
                page = context.new_page()
                page.set_default_timeout(WAIT_MS)
                walk = Walk(page)
                try:
                    exported = curate(walk, url, tmp_path)
                except Exception:
                    try:
                        screenshot(page, "failure")
                    finally:
                        print(f"{walk.report()}\n--- streamlit log (tail) ---\n{tail(log)}")
                    raise
                print(walk.report())
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                (ARTIFACTS / "clicks.txt").write_text("\n".join([walk.actions_text(), *action_log(page)]) + "\n",
                                                     encoding="utf-8")
            finally:
                browser.close()
        assert SECRET not in log.read_text(errors="replace"), "the full API key is in the server log"

    check_export(exported)
    check_store(db)


def curate(walk: Walk, url: str, tmp_path) -> list[dict]:
    page = walk.page

    # Home: an empty studio; create a project with the default fields, then open it.
    page.goto(url)
    page.wait_for_selector('[data-testid="stApp"]')
    wait_text(page, "No project yet")
    walk.done("home_empty")
    page.get_by_label("Name", exact=True).fill("browser math")
    page.get_by_label("Task: what is one data sample?").fill("Grade-school math word problems with worked solutions")
    page.get_by_role("button", name="Create project").click()
    wait_text(page, re.compile(r"Created and opened project #\d+ browser math"))
    assert "Open project: browser math" in main_text(page)  # creating opens it: no "Open" click needed
    walk.done("home_project")

    # Tree: let the LLM propose a depth-2 tree; the page polls the background job until it is done.
    go(page, "Tree: build & review")
    assert re.search(r"/Tree\?project=\d+$", page.url), page.url
    page.get_by_role("button", name="Propose the tree").wait_for()
    set_number(page, "Depth", 2)
    page.get_by_role("button", name="Propose the tree").click()
    wait_text(page, re.compile(r"Last build job #\d+: complete"))
    assert "13 nodes, 9 live leaves, depth 2" in main_text(page)
    walk.done("tree_built")

    # Select topic B with a click on its ring in the chart, rename its criterion (text box) and one of its values
    # (values table).
    click_sector(page, "topic B")
    wait_text(page, "status proposed · by llm · depth 1")
    page.get_by_label("Criterion (the dimension that splits this node)").fill(RENAMED_DIMENSION)
    page.get_by_role("button", name="Rename", exact=True).click()
    wait_text(page, f"Criterion renamed to {RENAMED_DIMENSION}.")
    values = page.locator('[data-testid="stForm"]', has=page.get_by_role("button", name="Save value changes"))
    assert f"Values of {RENAMED_DIMENSION}" in main_text(page)
    grid = values.locator('[data-testid="stDataFrame"]')
    assert grid.locator('[data-testid="glide-cell-1-0"]').inner_text() == "difficulty A"
    type_into_grid_cell(page, grid, row=0, x=70, text=RENAMED_VALUE)  # x: past the row markers, in "value"
    page.get_by_role("button", name="Save value changes").click()  # closes the cell editor, then submits
    wait_text(page, f"Values: renamed to {RENAMED_VALUE}.")
    assert values.locator('[data-testid="glide-cell-1-0"]').inner_text() == RENAMED_VALUE
    walk.done("tree_edited")

    # Prune topic C's subtree (picked with the path box: the chart shows topic B's children now).
    pick(page, "Find a node by its path", f"topic={PRUNED}")
    wait_text(page, f"topic = {PRUNED}")
    page.get_by_role("button", name="Prune subtree").click()
    page.get_by_role("button", name="Prune 4 node(s)").click()  # the count is stated before anything is pruned
    wait_text(page, "Pruned 4 node(s).")
    assert page.get_by_role("button", name="Restore subtree").is_visible()
    walk.done("tree_pruned")

    # Generate: a small quota for the whole tree, run in the background until done.
    go(page, "Generate samples")
    wait_text(page, "What to generate")
    set_number(page, "Samples per leaf", PER_LEAF)
    start = page.get_by_role("button", name=f"Generate {EXPECTED} sample(s)")
    start.wait_for()
    start.click()
    wait_text(page, re.compile(r"Last generate job #\d+: complete"), timeout=2 * WAIT_MS)
    assert page.get_by_role("button", name="Nothing missing: every selected leaf has its quota").is_visible()
    walk.done("generate_done")

    # Samples: accept everything the default filter shows (to review + accepted).
    go(page, "Review samples")
    wait_text(page, f"{EXPECTED} sample(s) match")
    page.get_by_text(f"Bulk review: act on all {EXPECTED} sample(s) shown").click()
    page.get_by_role("button", name=f"Accept all {EXPECTED} shown").click()
    wait_text(page, f"{EXPECTED} sample(s) now accepted.")
    walk.done("samples_accepted")

    # Export: JSON Lines of the accepted samples, captured as a real download.
    go(page, "Export & import")
    wait_text(page, re.compile(rf"{EXPECTED} sample\(s\) · [\d,]+ bytes"))
    assert page.locator('[data-testid="stSelectbox"]', has_text="Format").locator("input").input_value() == "JSON Lines"
    assert page.get_by_role("radio", name="Accepted only").is_checked()
    with page.expect_download(timeout=WAIT_MS) as info:
        page.get_by_role("button", name="Download JSON Lines").click()
    download = info.value
    assert download.failure() is None, download.failure()
    assert download.suggested_filename == "browser-math.jsonl"
    target = tmp_path / download.suggested_filename
    download.save_as(target)
    walk.done("export")
    assert len(walk.shots) == 8
    return [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines() if line.strip()]


def check_export(rows: list[dict]) -> None:
    assert len(rows) == EXPECTED
    for row in rows:
        assert set(FIELDS) | {"path", "leaf_id"} <= set(row), row
        assert all(isinstance(row[f], str) and row[f] for f in FIELDS), row
        assert row["status"] == "accepted"
        assert isinstance(row["path"], list) and len(row["path"]) == 2, row["path"]
    pairs = [(p["dimension"], p["value"]) for row in rows for p in row["path"]]
    assert (RENAMED_DIMENSION, RENAMED_VALUE) in pairs
    assert all(value != PRUNED for _, value in pairs), "a pruned subtree was exported"
    assert ("topic", "topic A") in pairs and ("topic", "topic B") in pairs


def check_store(db) -> None:
    with sqlite3.connect(db) as conn:
        one = lambda sql, *args: conn.execute(sql, args).fetchone()[0]  # noqa: E731
        assert one("select count(*) from samples") == EXPECTED
        assert one("select count(*) from samples where status = 'accepted'") > 0
        assert one("select count(*) from nodes where status = 'pruned'") == 4
        assert one("select count(*) from nodes where status = 'pruned' and value = ?", PRUNED) == 1
        assert one("select count(*) from nodes where value = ? and status = 'edited'", RENAMED_VALUE) == 1
        assert one("select count(*) from nodes where dimension = ?", RENAMED_DIMENSION) == 1
    for path in (db, db.with_name(db.name + "-wal")):
        if path.exists():
            assert SECRET.encode() not in path.read_bytes(), f"the full API key is stored in {path.name}"
