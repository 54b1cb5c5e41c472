import sqlite3

import pytest

from treesynth_core.errors import ConfigError, NotFoundError
from treesynth_core.migrations import migrations
from treesynth_core.store import Store

from .conftest import make_project


def test_migrations_are_named_applied_once_and_wal(tmp_path):
    path = tmp_path / "s.db"
    Store(path).close()
    with Store(path) as store:  # reopening applies nothing twice
        names = [m.name for m in migrations.applied(store.db)]
        assert names[0] == "m001_projects" and len(names) == len(set(names))
        assert store.db.execute("pragma journal_mode").fetchone()[0] == "wal"
        assert {"projects", "nodes", "samples", "calls", "jobs"} <= set(store.db.table_names())
        assert any(ix.columns == ["parent_id"] for ix in store.db["nodes"].indexes)


def test_project_round_trip_and_root(store):
    pid = make_project(store, pivots=5)
    spec = store.project(pid)
    assert spec.settings.pivots == 5 and spec.field_names == ["question", "answer"]
    assert spec.fields[-1].role == "output"
    tree = store.tree(pid)
    assert tree.root is not None and tree.root.depth == 0 and len(tree) == 1
    with pytest.raises(NotFoundError):
        store.project(999)


def test_add_samples_caps_quota_and_skips_duplicates(store, project):
    root = store.tree(project).root
    rows = [{"data": {"question": f"q{i}", "answer": "a"}, "norm_hash": f"h{i}"} for i in range(5)]
    rows.append({"data": {"question": "dup", "answer": "a"}, "norm_hash": "h0"})
    inserted, dups = store.add_samples(project, root.id, rows[:3] + rows[5:], cap=10, call_id=None)
    assert (inserted, dups) == (3, 1)
    inserted, dups = store.add_samples(project, root.id, rows[3:5], cap=4, call_id=None)
    assert inserted == 1 and store.live_count(root.id) == 4


def test_delete_project_removes_everything(store, project):
    other = make_project(store)
    store.delete_project(project)
    assert [p["id"] for p in store.projects()] == [other]
    assert store.query("select count(*) as n from nodes where project_id = ?", [project])[0]["n"] == 0


def test_delete_project_leaves_no_row_in_any_table_that_names_it(store, project):
    """Every table with a project_id column (batches, embeddings, ... as they are added) is emptied for the
    project: a deleted project's id may be reused by SQLite, and must not inherit anything."""
    filler = {int: 0, str: "", float: 0.0, bytes: b""}
    tables = [t for t in store.db.table_names() if "project_id" in store.db[t].columns_dict]
    assert {"nodes", "samples", "calls", "jobs", "batches", "batch_requests"} <= set(tables)
    for table in tables:
        row = {c: filler.get(kind, "") for c, kind in store.db[table].columns_dict.items()
               if c not in store.db[table].pks}
        store.db[table].insert({**row, "project_id": project})
    store.db.conn.commit()
    store.delete_project(project)
    left = {t: store.query(f"select count(*) as n from {t} where project_id = ?", [project])[0]["n"] for t in tables}
    assert not any(left.values()), left


def test_two_connections_share_the_file(tmp_path):
    path = tmp_path / "shared.db"
    with Store(path) as a, Store(path) as b:
        pid = make_project(a)
        assert b.project(pid).name == "math"
    assert sqlite3.connect(path).execute("select count(*) from projects").fetchone()[0] == 1


# ----------------------------------------------------------------------------- files the Store refuses


def file_state(path) -> tuple:
    """Everything on disk about a database path: its bytes and which side files exist."""
    from pathlib import Path

    path = Path(path)
    return (path.read_bytes() if path.is_file() else None,
            sorted(p.name for p in path.parent.iterdir() if p.name.startswith(path.name)))


def test_a_directory_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="is a directory"):
        Store(tmp_path)


def test_a_file_that_is_not_sqlite_is_refused_and_left_untouched(tmp_path):
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not a database\n" * 20)
    before = file_state(path)
    with pytest.raises(ConfigError, match="is not an SQLite database"):
        Store(path)
    assert file_state(path) == before


def test_another_programs_sqlite_file_is_refused_and_left_untouched(tmp_path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("create table contacts (name text)")
        conn.execute("insert into contacts values ('Ada')")
    conn.close()
    before = file_state(path)
    with pytest.raises(ConfigError, match="an SQLite database of another program"):
        Store(path)
    assert file_state(path) == before


def test_a_database_from_a_newer_treesynth_is_refused_with_the_migration_it_needs(tmp_path):
    path = tmp_path / "future.db"
    with Store(path) as store:
        make_project(store)
        store.db["_sqlite_migrations"].insert({"migration_set": "treesynth", "name": "m042_from_the_future",
                                               "applied_at": "2030-01-01"})
    before = file_state(path)
    with pytest.raises(ConfigError) as info:
        Store(path)
    assert info.value.message == "this database was written by a newer TreeSynth (migration m042_from_the_future)"
    assert "upgrade" in info.value.hint
    assert file_state(path) == before


def test_an_empty_file_becomes_a_database(tmp_path):
    path = tmp_path / "empty.db"
    path.touch()
    with Store(path) as store:
        assert store.projects() == []


def test_a_folder_that_cannot_be_created_is_refused(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="cannot create the folder"):
        Store(blocker / "sub" / "x.db")


def test_call_log_newest_first_and_failed_only(store, project):
    for i, error in enumerate([None, "timed out", None]):
        store.log_call(project_id=project, node_id=None, purpose="samples", attempt=1, prompt_tokens=10 + i,
                       completion_tokens=5, duration_s=0.5, error=error)
    assert [c["prompt_tokens"] for c in store.call_log(project)] == [12, 11, 10]
    assert [c["error"] for c in store.call_log(project, failed_only=True)] == ["timed out"]
    assert len(store.call_log(project, limit=2)) == 2


def test_sample_edits_go_through_named_methods(store, project):
    root = store.tree(project).root
    store.add_samples(project, root.id, [{"data": {"question": "q", "answer": "a"}, "norm_hash": "h1"},
                                         {"data": {"question": "r", "answer": "b"}, "norm_hash": "h2"}],
                      cap=None, call_id=None)
    first, second = (s["id"] for s in store.samples(project))
    assert store.sample_project_id(first) == project and store.sample_project_id(999) is None
    assert store.sample_with_hash(project, "h2") == second
    assert store.sample_with_hash(project, "h2", except_id=second) is None
    store.set_sample_status([first], "accepted")
    store.update_sample_data(second, {"question": "s", "answer": "c"}, "h3")
    rows = store.samples(project)
    assert rows[0]["status"] == "accepted" and rows[1]["data"] == {"question": "s", "answer": "c"}


def test_job_rows_through_named_methods(store, project):
    first = store.insert_job({"project_id": project, "kind": "build", "params": "{}", "status": "running"})
    second = store.insert_job({"project_id": project, "kind": "generate", "params": "{}", "status": "running"})
    store.update_job(first, status="complete", message="expanded 1 node(s), 0 failed")
    assert store.job_row(first)["status"] == "complete" and store.job_row(999) is None
    assert store.job_ids(project) == [second, first]
    assert store.job_ids(project, running_only=True) == [second]
    assert store.job_ids(project, limit=1) == [second]


def test_only_the_store_and_its_migrations_speak_sql():
    """The rule behind the Store's named methods: no other core module, page or shared UI module runs a query
    or touches a table directly."""
    import re
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    sql = re.compile(r"\.query\(|\.db\[|\.execute\(|\.executemany\(|\.conn\b")
    allowed = {"store.py", "migrations.py"}
    files = [p for p in (repo / "treesynth_core").glob("*.py")
             if p.name not in allowed and not p.name.startswith("store_")]  # the Store's concept modules
    files += [repo / "app.py", repo / "treesynth_ui.py", *(repo / "pages").glob("*.py")]
    offending = [f"{p.relative_to(repo)}:{i}: {line.strip()}" for p in files
                 for i, line in enumerate(p.read_text().splitlines(), 1) if sql.search(line)]
    assert not offending, "\n".join(offending)
