"""A new user's review in headless Chromium (H8): the places where the walk Home -> seeds -> Tree -> Samples found
the app losing what was typed or contradicting itself (each was a strict xfail until fixed: a refused seed example
kept, the Samples page's counts agreeing after a rejection, the sample's status and provenance named). Screenshots in
``test-artifacts/browser/newuser_*.png``. Run it alone with ``pytest tests/test_browser_newuser.py -m browser``."""

from __future__ import annotations

import re

import pytest

from tests.browser_support import main_text, new_project, run_jobs, screenshot, settle, studio
from treesynth_core.fakellm import FakeLLM

SECRET = "sk-fake-newuser-secret-97531"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """A project built to depth 2 with 4 samples per leaf on the fake, and the app serving it."""
    tmp = tmp_path_factory.mktemp("newuser")
    db = tmp / "studio.db"
    with FakeLLM(latency=0.01) as fake:
        pid = new_project(db, "newuser math", fields="question: the problem, answer: the worked solution",
                          per_leaf=4)
        run_jobs(db, pid, fake, per_leaf=4)
        with studio(db, tmp / "streamlit.log", SECRET, fake.base_url) as served:
            yield {"studio": served, "pid": pid}


def open_page(app, path: str):
    page = app["studio"].page(f"{path}?project={app['pid']}")
    settle(page)
    return page


@pytest.mark.browser
def test_a_refused_seed_example_keeps_what_was_typed(app):
    page = open_page(app, "")
    try:
        page.get_by_text(re.compile(r"^Seed examples \(\d+\)$")).click()
        settle(page)
        question = "Anna has 12 pencils and gives away 5. How many are left?"
        page.get_by_label(re.compile("^question")).fill(question)
        page.get_by_role("button", name="Add the example").click()
        settle(page)
        assert "has no text for field 'answer'" in main_text(page)  # refused, in one line with what to do
        screenshot(page, "newuser_seed_refused")
        assert page.get_by_label(re.compile("^question")).input_value() == question
    finally:
        page.context.close()


@pytest.mark.browser
def test_counts_on_the_samples_page_agree_after_a_rejection(app):
    page = open_page(app, "Samples")
    try:
        page.get_by_role("heading", name="Review samples").click()
        page.keyboard.press("n")
        settle(page)
        page.keyboard.press("x")  # rejected: it leaves the default filter (generated, accepted)
        page.get_by_text(re.compile(r"^Sample #\d+ rejected")).first.wait_for(state="visible")
        settle(page)
        text = main_text(page)
        screenshot(page, "newuser_samples_after_reject")
        shown_count = int(re.search(r"Sample #\d+ · .* of ([\d,]+) shown", text).group(1).replace(",", ""))
        match_count = int(re.search(r"([\d,]+) sample\(s\) match", text).group(1).replace(",", ""))
        bulk_count = int(re.search(r"act on all ([\d,]+) sample\(s\) shown", text).group(1).replace(",", ""))
        assert shown_count == 35  # 36 made, one rejected
        assert (match_count, bulk_count) == (shown_count, shown_count), "'N sample(s) match' and the bulk count"
    finally:
        page.context.close()


@pytest.mark.browser
def test_the_sample_under_review_names_status_and_provenance(app):
    page = open_page(app, "Samples")
    try:
        page.get_by_role("heading", name="Review samples").click()
        page.keyboard.press("n")
        settle(page)
        title = re.search(r"Sample #\d+ · .* shown", main_text(page)).group(0)
        assert "generated · generated" not in title, title
        assert " · status generated · made by the LLM · " in title, title
    finally:
        page.context.close()


# --- T1 new-user walk (session 14): Home -> create -> Tree (build, approve, prune) -> Generate -> Samples -> Export
# on the fake server. What misled the walk is pinned here as a strict xfail.


def _select_node(page, path_text: str) -> None:
    """Select a node on the Tree page with "Find a node by its path", as a user would (typing part of its path)."""
    box = page.locator('[data-testid="stSelectbox"]', has_text="Find a node by its path")
    box.locator("input").click()
    page.keyboard.type(path_text)
    page.get_by_role("option", name=path_text, exact=True).click()
    settle(page)


@pytest.mark.browser
def test_restore_under_a_pruned_node_does_not_claim_success_for_nothing(app):
    page = open_page(app, "Tree")
    topic, child = "topic=topic C", "topic=topic C > difficulty=difficulty A"
    try:
        _select_node(page, topic)
        page.get_by_role("button", name="Prune subtree").click()
        settle(page)
        page.get_by_role("button", name=re.compile(r"^Prune \d+ node\(s\)$")).click()
        page.get_by_text(re.compile(r"^Pruned \d+ node\(s\)")).first.wait_for(state="visible")
        settle(page)
        live_before = re.search(r"(\d+) live leaves", main_text(page)).group(1)
        _select_node(page, child)
        restore = page.get_by_role("button", name="Restore subtree")
        if restore.count() == 0 or not restore.is_enabled():
            return  # not offered under a pruned node: nothing misleading to click
        restore.click()
        settle(page)
        text = main_text(page)
        screenshot(page, "newuser_restore_under_pruned")
        claimed = re.search(r"Restored \d+ node\(s\)", text)
        live_after = re.search(r"(\d+) live leaves", text).group(1)
        assert not (claimed and live_after == live_before), (
            f"{claimed.group(0)} but still {live_after} live leaves; the page says: "
            + ("'an ancestor is pruned'" if "an ancestor is pruned" in text else "(no note)"))
    finally:
        try:  # put the tree back for any test after this one: restore the pruned subtree itself
            _select_node(page, topic)
            if page.get_by_role("button", name="Restore subtree").is_enabled():
                page.get_by_role("button", name="Restore subtree").click()
                settle(page)
        finally:
            page.context.close()
