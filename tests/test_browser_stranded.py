"""Stranded samples on the Tree page in a real browser (issue 8, part 7): expanding a leaf that holds samples asks
first; left flagged, the node shows them with Route / Move all / Leave flagged; routing with the LLM empties it.
Screenshots in ``test-artifacts/browser/stranded_*.png``. Run alone with
``pytest tests/test_browser_stranded.py -m browser``.
"""

from __future__ import annotations

import re

import pytest

from tests.browser_support import WAIT_MS, built_project, main_text, node_id, pick, screenshot, studio, wait_text
from treesynth_core import edits
from treesynth_core.fakellm import FakeLLM
from treesynth_core.store import Store

SECRET = "sk-fake-browser-stranded-secret-123456"
LEAF = "topic=topic A > difficulty=difficulty A"


@pytest.mark.browser
def test_expanding_a_leaf_with_samples_asks_then_the_node_routes_them(tmp_path):
    db = tmp_path / "tree.db"
    with FakeLLM(latency=0.02) as fake:
        pid = built_project(db, fake)  # two samples on every leaf
        with Store(db) as store:
            tree = store.tree(pid)
            leaf = next(k.id for k in tree.kids(node_id(db, pid, "topic A")) if k.value == "difficulty A")
        with studio(db, tmp_path / "streamlit.log", SECRET, fake.base_url) as app:
            page = app.page(f"Tree?project={pid}")
            with app.failure_shown(page, "stranded_failure"):
                wait_text(page, "Outline")
                pick(page, "Find a node by its path", LEAF)
                page.get_by_role("button", name="Expand this node").click()
                wait_text(page, "This leaf holds 2 sample(s). After the split they would sit on an inner node")
                screenshot(page, "stranded_1_asked")
                page.get_by_role("button", name="Leave them flagged").click()
                wait_text(page, "2 stranded sample(s)", timeout=2 * WAIT_MS)  # the build ended: the node says so
                assert "1 node(s) hold stranded samples" in main_text(page)
                page.get_by_text(re.compile(r"^Routing plan: 2 sample\(s\)")).wait_for()
                screenshot(page, "stranded_2_flagged")
                page.get_by_role("button", name="Route with the LLM").click()
                wait_text(page, re.compile(r"Last route job #\d+: complete"), timeout=2 * WAIT_MS)
                assert "stranded sample(s)" not in main_text(page)
                screenshot(page, "stranded_3_routed")
                assert SECRET not in page.content()
    with Store(db) as store:
        assert not edits.stranded(store, pid)
        assert sum(len(store.sample_ids_on(k.id)) for k in store.tree(pid).kids(leaf)) == 2
