"""T2's sweep (after the store/cli/judge/importer splits): fault paths run as real `python -m treesynth_core`
subprocesses killed with SIGKILL against the fake server, two processes editing one tree, and the pages a
curator uses daily in headless Chromium. A bug found is pinned as a strict xfail naming what is wrong."""

from __future__ import annotations

import csv
import json
import re
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.test_cli import cli, cli_env, command, kill_when, leaf_counts, make_db, ok, read_only
from treesynth_core import edits
from treesynth_core.fakellm import FakeLLM
from treesynth_core.spec import ProjectSpec, Settings, parse_fields
from treesynth_core.store import Store


def new_db(path: Path) -> Path:
    with Store(path) as store:
        store.create_project(ProjectSpec(name="math", task="GSM8K-style grade-school math word problems",
                                         fields=parse_fields("question,answer"),
                                         settings=Settings(pivots=4, max_depth=2)))
    return path


def count(db: Path, sql: str = "select count(*) from samples"):
    with read_only(db) as conn:
        try:
            return conn.execute(sql).fetchone()[0]
        except sqlite3.OperationalError:  # the table does not exist yet
            return 0


# ----------------------------------------------------------------------------- run killed mid-generation


def test_run_killed_mid_generation_resumes_to_exact_quotas_without_duplicates(tmp_path):
    """`run` (build and generate pipelined) SIGKILLed once samples exist: the rerun finishes the tree and fills
    every leaf to exactly its quota, no sample twice, and the killed job reads interrupted, the rerun complete."""
    db = new_db(tmp_path / "run.db")
    args = ("run", "--db", db, "--per-leaf", "5", "--samples-per-call", "2", "--concurrency", "2")
    with FakeLLM(latency=0.3) as slow:
        env = cli_env(slow.base_url)
        kill_when(command(*args), env, tmp_path, lambda: count(db) > 3, "no sample appeared", timeout=60)
        kept = count(db)
        assert 3 < kept < 45
        slow.latency = 0.0
        ok(cli(*args, env=env, cwd=tmp_path, timeout=180))
    counts = leaf_counts(db)
    assert len(counts) == 9 and set(counts.values()) == {5}
    with read_only(db) as conn:
        total, distinct = conn.execute("select count(*), count(distinct norm_hash) from samples").fetchone()
        jobs = [tuple(r) for r in conn.execute("select kind, status from jobs order by id")]
    assert total == distinct == 45
    assert jobs == [("run", "interrupted"), ("run", "complete")]


# ----------------------------------------------------------------------------- import-data killed mid-way


def write_rows(path: Path, n: int, bad_every: int | None = None, bad_lines: tuple[int, ...] = ()) -> tuple[int, int]:
    """A CSV of ``n`` data rows (line 2 on): a bad row (no question) at each of ``bad_lines`` and every
    ``bad_every`` rows, a duplicate of row 0 two rows after each; returns (bad, duplicates)."""
    bad = dups = 0
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["question", "answer"])
        for i in range(n):
            line = i + 2
            if line in bad_lines or (bad_every and i % bad_every == 7):
                writer.writerow(["", "bad"])
                bad += 1
            elif bad_every and i % bad_every == 9:
                writer.writerow(["question 0", "dup"])
                dups += 1
            else:
                writer.writerow([f"question {i}", f"answer {i}"])
    return bad, dups


def test_import_data_killed_mid_way_resumes_with_no_row_twice(tmp_path):
    """import-data of a 20k-row CSV SIGKILLed after some chunks: the rerun resumes after the last committed line
    and the file's every valid row is in the project exactly once; a third run does nothing."""
    db = new_db(tmp_path / "imp.db")
    data = tmp_path / "big.csv"
    bad, dups = write_rows(data, 20_000, bad_every=1000)
    args = ("import-data", "--db", db, "--file", data)
    env = cli_env()
    kill_when(command(*args), env, tmp_path, lambda: count(db) >= 2000, "no chunk was committed", timeout=120)
    kept = count(db)
    assert 0 < kept < 20_000 - bad - dups
    result = cli(*args, env=env, cwd=tmp_path, timeout=300)
    assert result.returncode == 3, result.stderr  # partial: bad rows were skipped
    assert "(resumed after line" in result.stdout
    assert "Traceback" not in result.stderr
    expected = 20_000 - bad - dups
    with read_only(db) as conn:
        assert conn.execute("select count(*), count(distinct norm_hash) from samples").fetchone() == (expected,
                                                                                                      expected)
        record = conn.execute("select imported, duplicates, skipped, status from imports").fetchone()
    assert tuple(record) == (expected, dups, bad, "partial")
    again = cli(*args, env=env, cwd=tmp_path, timeout=120)
    assert "was imported before" in again.stdout
    assert count(db) == expected


def test_resumed_import_keeps_the_bad_rows_of_the_killed_part(tmp_path):
    db = new_db(tmp_path / "imp.db")
    data = tmp_path / "big.csv"
    bad, dups = write_rows(data, 30_000, bad_lines=(3, 5))
    assert (bad, dups) == (2, 0)
    args = ("import-data", "--db", db, "--file", data)
    env = cli_env()
    kill_when(command(*args), env, tmp_path, lambda: count(db) >= 2000, "no chunk was committed", timeout=120)
    result = cli(*args, env=env, cwd=tmp_path, timeout=300)
    assert "Traceback" not in result.stderr
    after = int(re.search(r"resumed after line (\d+)", result.stdout)[1])
    assert after > 5  # both bad rows were in the killed run's part
    with read_only(db) as conn:
        status, skipped = conn.execute("select status, skipped from imports").fetchone()
    assert skipped == 2
    # The file had bad rows: the import is partial, as a run from start to end would have recorded it.
    assert status == "partial", status
    # The resumed run's line does not name a bad row it did not read while counting none: it counts the whole
    # file's bad rows, and says so, when it names one from the killed part.
    first = re.search(r"(\d+) bad row\(s\) skipped( in the whole file)? \(first: line (\d+)", result.stdout)
    assert first is None or int(first[3]) > after or (int(first[1]) == 2 and first[2]), result.stdout


# ----------------------------------------------------------------------------- two processes, one tree


def test_renames_and_quotas_made_while_a_build_runs_in_another_process_are_kept(tmp_path):
    """A `build --depth 3` subprocess expands the tree while this process renames the level-1 values and the
    dimensions of split nodes, and `edit --quota` subprocesses set leaf quotas: every edit that was accepted is
    in the tree afterwards, and the build completes."""
    with FakeLLM() as quick:
        db = make_db(tmp_path / "c.db", quick, depth=1)
    with Store(db) as store:
        pid = store.only_project_id()
        tree = store.tree(pid)
        kids = [n for n in tree.nodes.values() if n.parent_id == tree.root.id]
    assert len(kids) == 3
    done: dict[tuple[str, str], object] = {}  # the last value each edit set
    renames = 0
    with FakeLLM(latency=0.25) as slow:
        env = cli_env(slow.base_url)
        proc = subprocess.Popen(command("build", "--db", db, "--depth", "3", "--concurrency", "2"), env=env,
                                cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(1.0)
            for i in range(6):
                with Store(db) as store:
                    tree = store.tree(pid)
                    kid = kids[i % 3]
                    edits.rename_value(store, kid.id, f"renamed {i} {kid.value}")
                    done[("value", kid.id)] = f"renamed {i} {kid.value}"
                    renames += 1
                    split = [n for n in tree.nodes.values() if n.dimension and n.id != tree.root.id][:2]
                    for node in split:
                        edits.rename_dimension(store, node.id, f"dim {i} {node.id[:4]}")
                        done[("dimension", node.id)] = f"dim {i} {node.id[:4]}"
                    leaf = tree.leaves()[i]
                result = cli("edit", "--db", db, "--node", leaf.id, "--quota", str(10 + i), env=env, cwd=tmp_path)
                if result.returncode == 0:
                    done[("quota", leaf.id)] = 10 + i
                else:  # refused in one line: the leaf got children meanwhile
                    assert "Traceback" not in result.stderr and "has children" in result.stderr, result.stderr
                time.sleep(0.4)
            out, err = proc.communicate(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0, err
    assert "0 failed" in out
    with Store(db) as store:
        tree = store.tree(pid)
        lost = [(what, node, want, getattr(tree.nodes[node], what)) for (what, node), want in done.items()
                if getattr(tree.nodes[node], what) != want]
        assert len(tree.leaves()) == 27
    assert renames == 6 and any(what == "quota" for what, _ in done)
    assert not lost, lost


# ----------------------------------------------------------------------------- the daily pages in Chromium


def write_upload(path: Path) -> None:
    """30 rows spread over the fake's topic x difficulty leaves, then a duplicate of the first and a bad row."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["question", "answer"])
        for i in range(30):
            writer.writerow([f"a topic {'ABC'[i % 3]} problem {i} at difficulty {'ABC'[(i // 3) % 3]}", f"ans {i}"])
        writer.writerow(["a topic A problem 0 at difficulty A", "the same question again"])  # line 32
        writer.writerow(["", "a row without its question"])  # line 33


@pytest.mark.browser
def test_daily_pages_data_samples_and_push_panel_in_chromium(tmp_path, monkeypatch):
    """Data: upload (a bad row, a duplicate), route as a job, balance to a target; Samples: a text filter, keyboard
    review, an edit and its revert; Export: the push panel without HF_TOKEN. Every count shown agrees with the
    database, and no key reaches the page or the log."""
    from tests.browser_support import built_project, main_text, screenshot, set_number, settle, studio, wait_text

    monkeypatch.delenv("HF_TOKEN", raising=False)
    secret = "sk-t2-sweep-secret-424242"
    db, data = tmp_path / "studio.db", tmp_path / "rows.csv"
    write_upload(data)
    with FakeLLM(latency=0.02) as fake:
        pid = built_project(db, fake)  # 3 x 3 leaves, 2 samples each
        with studio(db, tmp_path / "streamlit.log", secret, fake.base_url) as app:
            page = app.page()
            with app.failure_shown(page, "t2_daily_failure"):
                page.goto(f"{app.url}/Data?project={pid}")
                wait_text(page, "1. Import a dataset")
                page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(data))
                wait_text(page, "columns: question, answer")
                page.get_by_role("button", name="Import", exact=True).click()
                wait_text(page, re.compile(r"imported \d+ row"))
                text = main_text(page)
                assert ("imported 30 row(s) from rows.csv; 1 duplicate(s) skipped; 1 bad row(s) skipped "
                        "(first: line 33: has no text for field 'question')") in text, text
                assert "rows.csv: 30 imported, 1 duplicates, 1 bad (partial)" in text
                page.get_by_role("button", name="Route 30 row(s)", exact=True).click()
                wait_text(page, re.compile(r"routed 30 row\(s\): 30 reached a leaf"), timeout=60_000)
                set_number(page, "Target per leaf", 4)
                assert "(9 over, 0 under)" in main_text(page)
                page.get_by_role("button", name="Balance", exact=True).click()
                wait_text(page, re.compile(r"excluded \d+ sample\(s\)"), timeout=60_000)
                settle(page)
                assert "excluded 12 sample(s)" in main_text(page)
                assert "(0 over, 0 under)" in main_text(page)
                screenshot(page, "t2_data_balanced")

                page.goto(f"{app.url}/Samples?project={pid}")
                settle(page)
                page.get_by_role("textbox", name="Text contains").fill("reached-nowhere")
                page.keyboard.press("Enter")
                wait_text(page, re.compile(r"^0 sample\(s\) match"))  # waits for the rerun the filter started
                with read_only(db) as conn:  # an imported row balancing kept (which ones it excludes is a draw)
                    kept = conn.execute("select data from samples where provenance = 'imported' and status = "
                                        "'generated' order by id").fetchall()
                question = json.loads(kept[0][0])["question"]
                word = question  # the whole question: the filter trims its text, and "problem 1" is in "problem 12"
                page.get_by_role("textbox", name="Text contains").fill(word)
                page.keyboard.press("Enter")
                wait_text(page, re.compile(r"^1 sample\(s\) match"))
                page.locator("h1").first.click()  # the page, not a box, has the focus: keys go to the shortcuts
                page.keyboard.press("n")
                wait_text(page, re.compile(r"Sample #\d+ · status generated"))
                sid = int(re.search(r"Sample #(\d+) · status", main_text(page))[1])
                page.keyboard.press("e")
                settle(page)
                page.get_by_role("textbox", name="question").fill(f"edited by T2: {question}")
                page.get_by_role("button", name="Save edit").click()
                wait_text(page, f"Sample #{sid} saved; its original is kept.")
                with read_only(db) as conn:
                    edited = conn.execute("select data, edited from samples where id = ?", [sid]).fetchone()
                assert "edited by T2" in edited[0] and edited[1]
                page.get_by_text("Edited by you").click()
                settle(page)
                page.get_by_role("button", name="Revert to the original").click()
                wait_text(page, f"Sample #{sid} is back to its original text.")
                page.locator("h1").first.click()
                page.keyboard.press("a")
                settle(page)
                deadline = time.monotonic() + 15  # the key's rerun writes the status: wait for it, bounded
                while True:
                    with read_only(db) as conn:
                        back = conn.execute("select data, edited, status from samples where id = ?", [sid]).fetchone()
                    if back[2] == "accepted" or time.monotonic() > deadline:
                        break
                    time.sleep(0.1)
                assert word in back[0] and "T2" not in back[0] and not back[1] and back[2] == "accepted"
                screenshot(page, "t2_samples_reverted")

                page.goto(f"{app.url}/Export?project={pid}")
                settle(page)
                page.get_by_text("Push to the Hugging Face Hub").click()
                settle(page)
                page.get_by_role("textbox", name="Repository id").fill("me/ds")
                page.keyboard.press("Enter")
                wait_text(page, "HF_TOKEN is not set")
                assert page.get_by_role("button", name="Push to the Hub").is_disabled()
                screenshot(page, "t2_push_no_token")
                assert secret not in page.content()
    with read_only(db) as conn:
        live = dict(conn.execute("select node_id, count(*) from samples where status in ('generated', 'accepted') "
                                 "group by node_id").fetchall())
        excluded = conn.execute("select count(*) from samples where status = 'excluded'").fetchone()[0]
    assert sorted(live.values()) == [4] * 9 and excluded == 12


@pytest.mark.browser
def test_batch_panel_select_names_the_state_the_table_shows(tmp_path):
    """Generate page, Batch files: create the request file, download it, submit it to the fake's Batch API and
    import its results; the samples land (every leaf at its quota) and the page names one state for the file."""
    from tests.browser_support import built_project, main_text, screenshot, settle, studio, wait_text

    db = tmp_path / "studio.db"
    with FakeLLM(latency=0.02) as fake:
        pid = built_project(db, fake)  # 9 leaves, 2 samples each, quota 10
        with studio(db, tmp_path / "streamlit.log", "sk-t2-batch-secret-777", fake.base_url) as app:
            page = app.page()
            with app.failure_shown(page, "t2_batch_failure"):
                page.goto(f"{app.url}/Generate?project={pid}")
                settle(page)
                page.get_by_text(re.compile(r"^Batch files")).click()
                settle(page)
                page.get_by_role("button", name="Create request files for this selection").click()
                wait_text(page, "round 1: 9 request line(s) asking for 72 sample(s)")
                with page.expect_download() as download:
                    page.get_by_role("button", name="Download the request file").click()
                saved = tmp_path / download.value.suggested_filename
                download.value.save_as(saved)
                assert len(saved.read_text().splitlines()) == 9
                page.get_by_role("button", name="Submit 1 to the Batch API").click()
                wait_text(page, re.compile(r"batch 1 \(round 1, part 1, 9 lines\): submitted as batch_"))
                done = re.compile(r"Import complete: 9 result line\(s\): 9 used.*72 new sample")
                for _ in range(20):  # the fake's batch runs in the background: ask until it has ended
                    page.get_by_role("button", name="Check and import results").click()
                    settle(page)
                    if done.search(main_text(page)):
                        break
                    time.sleep(0.5)
                wait_text(page, done)
                settle(page)
                screenshot(page, "t2_batch_imported")
                with read_only(db) as conn:
                    per_leaf = [r[0] for r in conn.execute("select count(*) from samples group by node_id")]
                    state = conn.execute("select state from batches").fetchone()[0]
                assert per_leaf == [10] * 9 and state == "imported"
                assert "Nothing missing" in main_text(page)
                select = page.locator('[data-testid="stSelectbox"]', has_text="Batch file").locator("input").input_value()
                assert "(imported)" in select, select


def test_a_prune_made_while_generate_runs_stops_generation_there(tmp_path):
    with FakeLLM() as quick:
        db = make_db(tmp_path / "p.db", quick, depth=2)
    with Store(db) as store:
        tree = store.tree(store.only_project_id())
        topic = next(n for n in tree.nodes.values() if n.parent_id == tree.root.id)
        under = [leaf.id for leaf in tree.leaves(under=topic.id)]

    def in_pruned() -> int:
        marks = ",".join("?" * len(under))
        with read_only(db) as conn:
            return conn.execute(f"select count(*) from samples where node_id in ({marks})", under).fetchone()[0]

    with FakeLLM(latency=0.4) as slow:
        env = cli_env(slow.base_url)
        proc = subprocess.Popen(command("generate", "--db", db, "--per-leaf", "8", "--samples-per-call", "1",
                                        "--concurrency", "2"), env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 30
            while count(db) < 3:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
            ok(cli("edit", "--db", db, "--node", topic.id, "prune", env=env, cwd=tmp_path))
            before = in_pruned()
            out, err = proc.communicate(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert before < 3 * 8, "the pruned leaves were full before the prune"
    assert "Traceback" not in err
    # Calls already in flight when the prune committed may still land (a few); no new call is made there.
    assert in_pruned() - before <= 4, (before, in_pruned(), out[-300:])
