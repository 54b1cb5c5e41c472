"""The real-browser walk of bring-your-own-data (issue 11): upload a lopsided file, route it, see the imbalance,
balance, and reach the export, in headless Chromium against the fake server. Screenshots in
``test-artifacts/browser/data_*.png``. Run it alone with ``pytest tests/test_browser_data.py -m browser``."""

from __future__ import annotations

import csv
import re
import sqlite3

import pytest

from tests.browser_support import main_text, new_project, run_jobs, screenshot, set_number, settle, studio, wait_text
from treesynth_core.fakellm import ROUTE_NONE_MARKER, FakeLLM

SECRET = "sk-fake-browser-secret-654321"
LOPSIDED = [("A", "A", 40), ("A", "B", 12), ("B", "C", 5), ("C", "A", 3)]
TARGET = 8


def write_file(path) -> int:
    n = 0
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["question", "answer", "channel"])
        for a, b, count in LOPSIDED:
            for _ in range(count):
                n += 1
                writer.writerow([f"ticket {n}: a topic {a} problem at difficulty {b}", f"reply {n}", "email"])
        writer.writerow([f"ticket {ROUTE_NONE_MARKER}: a poem", "no", "email"])
        writer.writerow(["", "a row without its question", "email"])
    return n + 1  # the valid rows: the marked one too


@pytest.mark.browser
def test_upload_route_see_the_imbalance_balance_and_export(tmp_path):
    db = tmp_path / "studio.db"
    data = tmp_path / "tickets.csv"
    rows = write_file(data)
    with FakeLLM(latency=0.02) as fake:
        pid = new_project(db, "support", task="Customer support questions with answers")
        run_jobs(db, pid, fake)
        with studio(db, tmp_path / "streamlit.log", SECRET, fake.base_url) as app:
            page = app.page()
            with app.failure_shown(page, "data_failure"):
                walk(page, app.url, pid, data, rows)
    with sqlite3.connect(db) as conn:
        live = conn.execute("select node_id, count(*) from samples where status in ('generated', 'accepted') "
                            "group by node_id").fetchall()
        leaves = {n for n, _ in live}
        kids = {r[0] for r in conn.execute("select distinct parent_id from nodes where parent_id is not null")}
        assert sorted(c for n, c in live if n not in kids) == [TARGET] * 9  # every leaf at its target
        excluded = conn.execute("select count(*) from samples where status = 'excluded'").fetchone()[0]
        assert excluded == (40 - TARGET) + (12 - TARGET)
        assert leaves


def walk(page, url: str, pid: int, data, rows: int) -> None:
    page.goto(f"{url}/Data?project={pid}")
    wait_text(page, "1. Import a dataset")
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(data))
    wait_text(page, "columns: question, answer, channel")
    page.get_by_role("button", name="Import", exact=True).click()
    wait_text(page, f"imported {rows} row(s) from tickets.csv")
    assert "line " in main_text(page) and "has no text for field 'question'" in main_text(page)
    assert SECRET not in page.content()
    screenshot(page, "data_01_imported")

    page.get_by_role("button", name=re.compile(r"^Route \d+ row\(s\)$")).click()
    wait_text(page, re.compile(r"routed \d+ row\(s\): \d+ reached a leaf"), timeout=60_000)
    set_number(page, "Target per leaf", TARGET)
    text = main_text(page)
    assert "(2 over, 7 under)" in text or "2 over" in text, text[-2000:]
    page.get_by_role("button", name=re.compile(r"1 row\(s\)$")).click()
    wait_text(page, "The rows at (root) (first 200)")
    screenshot(page, "data_02_imbalance")

    page.get_by_role("button", name="Balance", exact=True).click()
    wait_text(page, re.compile(r"excluded \d+ sample\(s\), restored 0, generated \d+ of \d+"), timeout=60_000)
    settle(page)
    assert "(0 over, 0 under)" in main_text(page)
    screenshot(page, "data_03_balanced")

    page.get_by_text("Export the balanced dataset").click()
    settle(page)
    assert "/Export" in page.url
    screenshot(page, "data_04_export")
