import sqlite3

import pytest

from treesynth_core.errors import NotFoundError
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


def test_two_connections_share_the_file(tmp_path):
    path = tmp_path / "shared.db"
    with Store(path) as a, Store(path) as b:
        pid = make_project(a)
        assert b.project(pid).name == "math"
    assert sqlite3.connect(path).execute("select count(*) from projects").fetchone()[0] == 1
