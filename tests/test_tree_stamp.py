"""Store.tree_stamp: the Tree page keeps its view of the tree while the stamp stays; every kind of write
changes it."""

from __future__ import annotations

from treesynth_core import edits
from treesynth_core.samples import fingerprint

from .conftest import make_project


def sample_rows(tag: str, n: int) -> list[dict]:
    return [{"data": {"question": f"{tag} q{i}", "answer": "a"}, "drawn": [],
             "norm_hash": fingerprint({"question": f"{tag} q{i}", "answer": "a"}, ["question"])} for i in range(n)]


def test_every_write_changes_the_stamp_and_reads_do_not(store):
    pid = make_project(store)
    other = make_project(store)
    root = store.tree(pid).root
    seen = [store.tree_stamp(pid)]

    def changed() -> None:
        stamp = store.tree_stamp(pid)
        assert stamp not in seen, "a write left the stamp as it was"
        seen.append(stamp)

    edits.set_split(store, root.id, "topic", ["algebra", "geometry"])
    changed()
    algebra, geometry = store.tree(pid).kids(root.id)
    edits.add_samples(store, pid, algebra.id, sample_rows("a", 3), cap=None, call_id=None)
    changed()
    ids = [s["id"] for s in store.samples(pid)]
    edits.set_sample_status(store, ids[:1], "accepted")
    changed()
    edits.edit_sample(store, ids[1], {"question": "a new question", "answer": "a"})
    changed()
    edits.rename_value(store, geometry.id, "shapes")
    changed()
    edits.delete_subtree(store, algebra.id)
    changed()
    edits.undo(store, pid)
    changed()
    edits.set_quota(store, geometry.id, 4)
    changed()
    edits.prune(store, geometry.id)
    changed()
    edits.restore(store, geometry.id)
    changed()
    edits.approve(store, root.id, subtree=True)
    changed()
    edits.redo(store, pid) or edits.undo(store, pid)
    changed()
    before = store.tree_stamp(pid)
    store.tree(pid), store.sample_counts(pid), store.samples(pid)  # reads
    edits.set_split(store, store.tree(other).root.id, "colour", ["red", "blue"])  # another project
    assert store.tree_stamp(pid) == before
