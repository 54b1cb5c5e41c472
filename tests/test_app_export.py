"""Export page: the downloads hold what the core exports; tree JSON round trip; a bad import changes nothing."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest

from tests.app_support import app_env, download, download_data, downloads, errors, texts  # noqa: F401
from treesynth_core import edits

EXPORT = "pages/4_Export.py"


@pytest.fixture
def reviewed(app_env):
    """A built tree with 2 samples per leaf; the 6 samples under topic A accepted; topic C pruned."""
    pid = app_env.built()
    assert app_env.run_job(pid, "generate", {"per_leaf": 2})["status"] == "complete"
    with app_env.store() as store:
        tree = store.tree(pid)
        kids = {k.value: k for k in tree.kids(tree.root.id)}
        under_a = [n.id for n in tree.subtree(kids["topic A"].id)]
        edits.set_sample_status(store, [r["id"] for r in store.samples(pid, node_ids=under_a)], "accepted")
        edits.prune(store, kids["topic C"].id)
    return pid, kids


def test_jsonl_accepted_only_by_default(app_env, reviewed, downloads):
    pid, _ = reviewed
    at = app_env.app(EXPORT, pid)
    assert not errors(at)
    lines = download_data(at, downloads, "export_download").decode().splitlines()
    assert len(lines) == 6 and all(json.loads(line)["status"] == "accepted" for line in lines)
    assert "6 sample(s)" in texts(at)
    assert download(at, downloads, "export_download")[0] == "math.jsonl"


def test_every_format_and_scope(app_env, reviewed, downloads):
    pid, kids = reviewed
    at = app_env.app(EXPORT, pid)
    at.radio(key="export_statuses").set_value("All, including rejected").run()
    assert "12 sample(s)" in texts(at)  # topic C is pruned: never exported
    at.selectbox(key="export_format").set_value("csv").run()
    frame = pd.read_csv(io.BytesIO(download_data(at, downloads, "export_download")), encoding="utf-8-sig")
    assert len(frame) == 12 and list(frame.columns)[:2] == ["question", "answer"]
    at.selectbox(key="export_format").set_value("parquet").run()
    assert len(pd.read_parquet(io.BytesIO(download_data(at, downloads, "export_download")))) == 12
    at.radio(key="export_scope").set_value("One subtree").run()
    at.selectbox(key="export_under").set_value(kids["topic B"].id).run()
    at.selectbox(key="export_format").set_value("chat").run()
    at.text_area(key="export_system").input("You are a patient maths tutor.").run()
    lines = [json.loads(x) for x in download_data(at, downloads, "export_download").decode().splitlines()]
    assert len(lines) == 6
    assert [m["role"] for m in lines[0]["messages"]] == ["system", "user", "assistant"]
    assert lines[0]["messages"][0]["content"] == "You are a patient maths tutor."


def test_nothing_to_export_is_said(app_env, downloads):
    pid = app_env.built()
    at = app_env.app(EXPORT, pid)
    assert any("Nothing to export" in i.value for i in at.info)
    assert at.get("download_button")[0].proto.disabled


def test_tree_json_round_trip_through_import(app_env, reviewed, downloads):
    pid, _ = reviewed
    at = app_env.app(EXPORT, pid)
    data = download_data(at, downloads, "export_tree")
    doc = json.loads(data)
    assert doc["format"] == "treesynth-tree" and len(doc["tree"]["children"]) == 3
    at.file_uploader(key="export_upload").set_value(("tree.json", data, "application/json"))
    at.text_input(key="export_import_name").input("math copy")
    at.run()
    at.button(key="export_import").click().run()
    assert not errors(at)
    new_pid = at.session_state["ts_project_id"]
    with app_env.store() as store:
        assert new_pid != pid and store.project(new_pid).name == "math copy"
        assert len(store.tree(new_pid)) == len(store.tree(pid))
        assert {n.status for n in store.tree(new_pid).nodes.values()} >= {"pruned"}


def test_a_bad_tree_file_changes_nothing(app_env):
    pid = app_env.built()
    at = app_env.app(EXPORT, pid)
    bad = json.dumps({"format": "treesynth-tree", "version": 1, "project": {"name": "x", "task": "a task",
                      "fields": [{"name": "q"}]}, "tree": {"children": [{"value": "a"}]}}).encode()
    at.file_uploader(key="export_upload").set_value(("bad.json", bad, "application/json"))
    at.run()
    at.button(key="export_import").click().run()
    problem = " ".join(errors(at))
    assert "has children but no dimension" in problem and "What to do" in problem
    with app_env.store() as store:
        assert [p["id"] for p in store.projects()] == [pid]
    assert at.session_state["ts_project_id"] == pid


def test_import_works_without_an_open_project(app_env):
    at = app_env.app(EXPORT)
    assert any("No project is open" in i.value for i in at.info)
    at.file_uploader(key="export_upload").set_value(("x.json", b"not json", "application/json"))
    at.run()
    at.button(key="export_import").click().run()
    assert any("not valid JSON" in e for e in errors(at))


def deep_tree_file(levels: int) -> bytes:
    """A tree document nested ``levels`` deep: {"dimension": "d", "children": [{"value": "v", ...}]}."""
    head = b'{"format": "treesynth-tree", "version": 1, "project": {"name": "x", "task": "a task", ' \
           b'"fields": [{"name": "q"}]}, "tree": '
    return head + b'{"dimension": "d", "children": [{"value": "v", ' * levels + b'"x": 1' + b"}]}" * levels + b"}"


HOSTILE = {
    "nested arrays, 10,000 deep": b"[" * 10_000 + b"]" * 10_000,
    "a tree nested 10,000 deep": deep_tree_file(10_000),
    "not UTF-8": b'{"format": "\xff\xfe\xfa\x80"}',
    "binary noise": bytes(range(256)) * 4,
    "over 20 MB": b" " * 21_000_000 + b"{}",
    "a JSON array": b"[1, 2, 3]",
    "a project that is a number": b'{"format": "treesynth-tree", "version": 1, "project": 5, "tree": {}}',
    "a huge number": b"1" * 100_000,
}


@pytest.mark.parametrize("what", list(HOSTILE))
def test_a_hostile_tree_file_is_one_error_and_changes_nothing(app_env, what):
    pid = app_env.project()
    at = app_env.app(EXPORT, pid)
    at.file_uploader(key="export_upload").set_value(("hostile.json", HOSTILE[what], "application/json"))
    at.run()
    at.button(key="export_import").click().run()
    assert not at.exception, what
    assert len(at.error) == 1, what
    message = at.error[0].value
    assert "Traceback" not in message and "What to do" in message and len(message) < 600, (what, message)
    with app_env.store() as store:
        assert [p["id"] for p in store.projects()] == [pid]
    assert at.session_state["ts_project_id"] == pid


@pytest.mark.parametrize("crash, said", [(RecursionError("maximum recursion depth exceeded"), "it is nested too deeply"),
                                         (MemoryError(), "it is too large"),
                                         (KeyError("tree"), "KeyError: 'tree'")])
def test_any_error_at_the_import_boundary_is_one_line(app_env, monkeypatch, crash, said):
    """Whatever the importer lets through (a bug, a limit it did not foresee) ends in one st.error."""
    from treesynth_core import treefile

    def explode(*args, **kwargs):
        raise crash

    monkeypatch.setattr(treefile, "import_tree", explode)
    at = app_env.app(EXPORT)
    at.file_uploader(key="export_upload").set_value(("x.json", b"{}", "application/json"))
    at.run()
    at.button(key="export_import").click().run()
    assert not at.exception and len(at.error) == 1
    assert at.error[0].value.startswith(f"Could not import this file: {said}")


# ----------------------------------------------------------------------------- prepared once, not per rerun


@pytest.fixture
def builds(monkeypatch):
    """Every export the page builds: (format, statuses, under) per call of export.write_export."""
    from treesynth_core import export

    calls = []
    real = export.write_export

    def spy(store, project_id, fmt, handle, **options):
        calls.append((fmt, options.get("statuses"), options.get("under")))
        return real(store, project_id, fmt, handle, **options)

    monkeypatch.setattr(export, "write_export", spy)
    return calls


def test_reruns_reuse_the_prepared_file_until_the_choice_or_the_project_changes(app_env, reviewed, downloads, builds,
                                                                                 monkeypatch):
    from treesynth_core.store import Store

    counted = []
    real_counts = Store.sample_counts
    monkeypatch.setattr(Store, "sample_counts", lambda self, pid: counted.append(pid) or real_counts(self, pid))
    pid, kids = reviewed
    at = app_env.app(EXPORT, pid)
    assert builds == [("jsonl", ["accepted"], None)]  # a small export is prepared at once
    assert counted == [pid]
    first = download_data(at, downloads, "export_download")
    at.text_input(key="export_import_name").input("something else").run()  # a rerun that changes nothing
    at.run()
    assert len(builds) == 1 and download_data(at, downloads, "export_download") == first
    at.selectbox(key="export_format").set_value("csv").run()
    at.text_input(key="export_import_name").input("again").run()
    assert [b[0] for b in builds] == ["jsonl", "csv"]
    assert counted == [pid]  # the counts are kept while the project does not change

    with app_env.store() as store:  # the project changes elsewhere (the Samples page): the file follows
        under_b = [n.id for n in store.tree(pid).subtree(kids["topic B"].id)]
        edits.set_sample_status(store, [r["id"] for r in store.samples(pid, node_ids=under_b)][:2], "accepted")
    at.run()
    assert len(builds) == 3 and "8 sample(s)" in texts(at) and counted == [pid, pid]
    frame = pd.read_csv(io.BytesIO(download_data(at, downloads, "export_download")), encoding="utf-8-sig")
    assert len(frame) == 8 and set(frame["status"]) == {"accepted"}
    at.run()
    assert len(builds) == 3


def test_a_big_export_is_built_only_when_asked(app_env, reviewed, downloads, builds, monkeypatch):
    from treesynth_core import export

    monkeypatch.setattr(export, "SMALL_EXPORT_ROWS", 5)  # a project of 18 samples counts as big here
    pid, _ = reviewed
    at = app_env.app(EXPORT, pid)
    assert not errors(at) and builds == []
    assert "18 samples in the project" in texts(at)
    assert all("export_download" not in b.proto.id for b in at.get("download_button"))  # only the tree's
    assert any("--format jsonl" in c.value and "--status accepted" in c.value for c in at.code)
    at.button(key="export_prepare").click().run()
    assert len(builds) == 1 and "6 sample(s) · " in texts(at)
    lines = download_data(at, downloads, "export_download").decode().splitlines()
    assert len(lines) == 6
    at.text_input(key="export_import_name").input("x").run()
    assert len(builds) == 1 and download_data(at, downloads, "export_download").decode().splitlines() == lines

    at.selectbox(key="export_format").set_value("parquet").run()  # another choice: asked again, not rebuilt
    assert len(builds) == 1 and at.button(key="export_prepare").label == "Prepare download"
    at.button(key="export_prepare").click().run()
    assert builds[-1][0] == "parquet"
    assert len(pd.read_parquet(io.BytesIO(download_data(at, downloads, "export_download")))) == 6


def test_the_preview_shows_the_file_as_written(app_env, reviewed, downloads):
    pid, _ = reviewed
    with app_env.store() as store:
        sample = store.samples(pid, statuses=["accepted"])[0]
        edits.edit_sample(store, sample["id"], {"question": "=1+1, \"quoted\"", "answer": "two\nlines"})
    at = app_env.app(EXPORT, pid)
    first = json.loads(at.code[0].value.splitlines()[0])
    assert first["question"] == "=1+1, \"quoted\"" and len(at.code[0].value.splitlines()) == 3
    at.selectbox(key="export_format").set_value("csv").run()
    frame = at.dataframe[0].value
    assert frame["question"].iloc[0] == "'=1+1, \"quoted\"" and frame["answer"].iloc[0] == "two\nlines"
    assert len(frame) == 3
    at.selectbox(key="export_format").set_value("parquet").run()
    assert at.dataframe[0].value["question"].iloc[0] == "=1+1, \"quoted\""


# ------------------------------------------------------- ShareGPT, Alpaca (issue 11; the Hub push: test_hub.py)


def test_sharegpt_and_alpaca_downloads_with_a_system_message(app_env, reviewed, downloads):
    pid, _ = reviewed
    at = app_env.app(EXPORT, pid)
    at.selectbox(key="export_format").set_value("sharegpt").run()
    at.text_area(key="export_system").input("Be brief.").run()
    name, data = download(at, downloads, "export_download")
    lines = [json.loads(x) for x in data.decode().splitlines()]
    assert name == "math.jsonl" and len(lines) == 6
    assert [t["from"] for t in lines[0]["conversations"]] == ["system", "human", "gpt"]
    at.selectbox(key="export_format").set_value("alpaca").run()
    rows = [json.loads(x) for x in download_data(at, downloads, "export_download").decode().splitlines()]
    assert len(rows) == 6 and all(list(r) == ["instruction", "input", "output", "system"] for r in rows)
    with app_env.store() as store:
        accepted = {s["data"]["question"] for s in store.samples(pid) if s["status"] == "accepted"}
    assert {r["instruction"] for r in rows} == accepted and not errors(at)
