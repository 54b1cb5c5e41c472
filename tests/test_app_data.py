"""The Data page (issue 11) with AppTest: upload and map a file, route it as a background job, see the imbalance
(sunburst, table, "none of these" rows), balance, and the export link."""

from __future__ import annotations

import csv
import io

from tests.app_support import REPO, app_env, errors, texts  # noqa: F401

from treesynth_core.fakellm import ROUTE_NONE_MARKER

PAGE = "pages/6_Data.py"


def table(at, column: str):
    """The first table showing ``column`` (AppTest does not expose a dataframe's key)."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def lopsided_csv() -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["prompt", "reply", "source"])
    n = 0
    for a, b, count in [("A", "A", 30), ("B", "B", 6), ("C", "A", 2)]:
        for _ in range(count):
            n += 1
            writer.writerow([f"row {n}: topic {a} at difficulty {b}", f"answer {n}", "web"])
    writer.writerow([f"row {ROUTE_NONE_MARKER} about poetry", "x", "web"])
    writer.writerow(["", "a row without a prompt", "web"])
    return out.getvalue().encode()


def test_upload_map_route_see_imbalance_and_balance(app_env):
    pid = app_env.built()
    at = app_env.app(PAGE, pid)
    assert not errors(at)
    at.file_uploader(key="data_upload").upload("tickets.csv", lopsided_csv(), "text/csv").run()
    assert "columns: prompt, reply, source" in texts(at)
    assert at.button(key="data_import").disabled  # fields not mapped yet (no column has their names)
    at.selectbox(key=f"data_map_{pid}_question").set_value("prompt")
    at.selectbox(key=f"data_map_{pid}_answer").set_value("reply").run()
    at.button(key="data_import").click().run()
    job = app_env.last_job(pid)
    assert job["kind"] == "import" and job["status"] == "partial", job  # a bad row was skipped
    assert not list((REPO / "data" / "uploads").glob("*-tickets.csv"))  # the upload is removed when done
    at = app_env.app(PAGE, pid)
    shown = texts(at)
    assert "imported 39 row(s) from tickets.csv" in shown and "1 bad row(s) skipped" in shown
    assert "line 41: has no text for field 'question'" in table(at, "skipped row").iloc[0, 0]
    assert "39 row(s) wait at a split" in texts(at)
    at.button(key="data_route_start").click().run()
    job = app_env.last_job(pid)
    assert job["kind"] == "route" and job["status"] == "complete", job
    at = app_env.app(PAGE, pid)
    assert not errors(at)
    assert "38 reached a leaf" in texts(at)
    at.number_input(key=f"data_target_{pid}").set_value(5).run()
    leaves = table(at, "difference")
    assert sorted(leaves["imported"], reverse=True)[:3] == [30, 6, 2]
    assert (leaves["state"] == "over").sum() == 2 and (leaves["state"] == "under").sum() == 7
    assert at.get("plotly_chart")  # the sunburst, coloured by imported rows against the target
    none_button = next(b for b in at.button if b.key and b.key.startswith("data_none_"))
    assert "1 row(s)" in none_button.label
    none_button.click().run()
    rows = table(at, "answer")
    assert ROUTE_NONE_MARKER in rows.iloc[0]["question"] and rows.iloc[0]["answer"] == "none of these"
    assert "exclude 26 sample(s)" in texts(at)
    at.button(key="data_balance_start").click().run()
    job = app_env.last_job(pid)
    assert job["kind"] == "balance" and job["status"] == "complete", job
    with app_env.store() as store:
        live = {leaf.id: store.live_count(leaf.id) for leaf in store.tree(pid).leaves()}
    assert set(live.values()) == {5}
    at.run()  # the same session: the colouring it showed before balancing must not stick
    assert "(0 over, 0 under)" in texts(at)
    assert at.radio(key="data_colour_1").value == "all samples (after balancing)"
    at = app_env.app(PAGE, pid)
    at.number_input(key=f"data_target_{pid}").set_value(5).run()
    assert "Every leaf is at its target" in texts(at) and "(0 over, 0 under)" in texts(at)
    assert at.radio(key="data_colour_1").value == "all samples (after balancing)"  # balanced: every sample counts
    assert_colours_agree_with_the_table(app_env, at, pid, imported_only=False)
    at.radio(key="data_colour_1").set_value("imported rows").run()
    assert_colours_agree_with_the_table(app_env, at, pid, imported_only=True)
    assert (table(at, "difference")["state"] == "under").sum() > 0  # topped-up leaves lack imported rows
    assert "Export the balanced dataset" in [link.label for link in at.main.get("page_link")]


def assert_colours_agree_with_the_table(app_env, at, pid, *, imported_only):
    """Each leaf's colour value (count / target: below 1 blue, 1 at target, above 1 over) says what its row says."""
    from treesynth_core.balance import imbalance_paint, leaf_targets

    with app_env.store() as store:
        tree = store.tree(pid)
        targets = leaf_targets(tree, 5, None)
        paint = imbalance_paint(store, pid, targets, imported_only=imported_only)
        paths = {tree.path_text(leaf): leaf for leaf in targets}
    rows = table(at, "difference")
    assert len(rows) == len(targets)
    for leaf_path, state in zip(rows["leaf"], rows["state"]):
        value = paint.values[paths[leaf_path]]
        assert state == ("under" if value < 1 else "over" if value > 1 else "at target"), (leaf_path, value, state)


def test_without_a_tree_the_page_points_to_the_tree_page(app_env):
    pid = app_env.project()
    at = app_env.app(PAGE, pid)
    assert not errors(at)
    assert "build it from the data here (level by level), or on the Tree page first" in texts(at)


def test_build_the_tree_from_the_data_level_by_level(app_env, tmp_path):
    """Import, build level 1 (the root's pivots are imported rows: no pivots call), route, build level 2 from the
    rows routed to each child; unticking the box saves the setting and the LLM writes the pivots."""
    from tests.test_import import write_csv
    from treesynth_core.importer import import_file
    from treesynth_core.partition import IMPORTED_MARK

    pid = app_env.project(pivots=3)
    rows = [[f"row {i}: topic {'ABC'[i % 3]} at difficulty {'ABC'[i // 3 % 3]}", f"answer {i}"] for i in range(30)]
    with app_env.store() as store:
        import_file(store, pid, write_csv(tmp_path / "d.csv", ["question", "answer"], rows))
    at = app_env.app(PAGE, pid)
    assert not errors(at)
    assert at.checkbox(key=f"data_pivots_from_data_{pid}").value is True
    assert "1 node(s) to split at level 0; 1 of them hold imported rows" in texts(at)
    at.button(key="data_build_level").click().run()
    job = app_env.last_job(pid)
    assert job["kind"] == "build" and job["status"] == "complete", job
    with app_env.store() as store:
        root = store.tree(pid).root
        assert len(root.pivots) == 3 and all(IMPORTED_MARK in p for p in root.pivots)
        assert store.query("select count(*) as n from calls where purpose = 'pivots'")[0]["n"] == 0
    at = app_env.app(PAGE, pid)
    assert "3 node(s) to split at level 1; 0 of them hold imported rows (route the rows first" in texts(at)
    at.button(key="data_route_start").click().run()
    assert app_env.last_job(pid)["status"] == "complete"
    at = app_env.app(PAGE, pid)
    assert "3 node(s) to split at level 1; 3 of them hold imported rows" in texts(at)
    at.checkbox(key=f"data_pivots_from_data_{pid}").uncheck().run()
    at.button(key="data_build_level").click().run()
    assert app_env.last_job(pid)["status"] == "complete"
    with app_env.store() as store:
        assert store.project(pid).settings.pivots_from_data is False
        tree = store.tree(pid)
        kids = tree.kids(tree.root.id)
        assert all(k.dimension and k.pivots and not any(IMPORTED_MARK in p for p in k.pivots) for k in kids)
        assert store.query("select count(*) as n from calls where purpose = 'pivots'")[0]["n"] == 3


def test_a_bad_upload_is_one_clear_error(app_env):
    pid = app_env.built()
    at = app_env.app(PAGE, pid)
    at.file_uploader(key="data_upload").upload("latin.csv", "question,answer\ncafé,x\n".encode("latin-1"),
                                               "text/csv").run()
    # refused at the preview, as the import would refuse it, naming the user's file: no mapping, no job
    assert [e for e in errors(at) if "not UTF-8 text" in e and "latin.csv" in e], errors(at)
    assert "data_import" not in [b.key for b in at.button]
    with app_env.store() as store:
        assert store.sample_total(pid) == 0 and app_env.last_job(pid)["kind"] == "build"  # no import job


def test_a_failed_import_job_names_the_users_file_not_its_saved_copy(app_env):
    pid = app_env.built()
    at = app_env.app(PAGE, pid)
    at.file_uploader(key="data_upload").upload("only header.csv", b"question,answer\n", "text/csv").run()
    at.button(key="data_import").click().run()
    job = app_env.last_job(pid)
    assert job["status"] == "failed" and "only header.csv has no rows" in job["message"], job
    at = app_env.app(PAGE, pid)
    assert any("only header.csv" in e for e in errors(at)) and not any("-only" in e for e in errors(at))
    with app_env.store() as store:
        assert store.imports(pid) == []  # a refused file leaves no import record


def test_the_export_page_leaves_excluded_rows_out_unless_chosen(app_env):
    """After balancing, "All, including rejected" takes every row but the excluded ones; "Excluded by balancing
    only" takes exactly them (the page's count is the file's)."""
    pid = app_env.built()
    assert app_env.run_job(pid, "generate", {"per_leaf": 2})["status"] == "complete"
    with app_env.store() as store:
        ids = [s["id"] for s in store.samples(pid)]
        with store.atomic():  # what balancing leaves (tests/test_balance.py covers how)
            store.update_samples(ids[:5], status="excluded", provenance="imported")
            store.update_samples(ids[5:7], status="rejected")
    at = app_env.app("pages/4_Export.py", pid)
    assert not errors(at)
    at.radio(key="export_statuses").set_value("All, including rejected").run()
    assert f"{len(ids) - 5} sample(s)" in texts(at)
    at.radio(key="export_statuses").set_value("Excluded by balancing only").run()
    assert "5 sample(s)" in texts(at) and not errors(at)
