"""History, undo and redo (issue 8): every write path records one event in its own transaction, undo puts back
the exact rows (every column of every node and sample), redo applies them again; Replace as a diff keeps what a
proposal keeps; stored proposals; stranded samples; sample review columns."""

from __future__ import annotations

import json
import random

import pytest

from treesynth_core import edits, jobs
from treesynth_core.edits import Split
from treesynth_core.errors import TreeEditError
from treesynth_core.generate import generate
from treesynth_core.partition import build
from treesynth_core.samples import fingerprint
from treesynth_core.store import Store


def state(store: Store, project_id: int) -> tuple[list[dict], list[dict]]:
    """Every column of every node and sample of the project, as stored."""
    return (store.query("select * from nodes where project_id = ? order by id", [project_id]),
            store.query("select * from samples where project_id = ? order by id", [project_id]))


def add(store, project_id, leaf_id, *questions) -> list[int]:
    rows = [{"data": {"question": q, "answer": f"answer to {q}"},
             "norm_hash": fingerprint({"question": q}, ["question"])} for q in questions]
    before = {s["id"] for s in store.samples(project_id)}
    store.add_samples(project_id, leaf_id, rows, cap=None, call_id=None)
    return [s["id"] for s in store.samples(project_id) if s["id"] not in before]


@pytest.fixture
def grown(store, project):
    """root -topic-> algebra, geometry, statistics; algebra -difficulty-> easy, hard; samples on four leaves."""
    root = store.tree(project).root.id
    algebra, geometry, statistics = edits.set_split(store, root, "topic", ["algebra", "geometry", "statistics"])
    easy, hard = edits.set_split(store, algebra, "difficulty", ["easy", "hard"])
    samples = {leaf: add(store, project, leaf, *(f"{leaf} question {i}" for i in range(3)))
               for leaf in (easy, hard, geometry, statistics)}
    ids = dict(root=root, algebra=algebra, geometry=geometry, statistics=statistics, easy=easy, hard=hard)
    return ids, samples


def events(store, project):
    return edits.history(store, project, limit=1000)


# one entry per write path: (name, action); each must add exactly one event and undo back byte for byte
WRITES = {
    "rename_dimension": lambda s, n, x: edits.rename_dimension(s, n["algebra"], "level"),
    "add_value": lambda s, n, x: edits.add_value(s, n["algebra"], "medium"),
    "rename_value": lambda s, n, x: edits.rename_value(s, n["geometry"], "plane geometry"),
    "delete_subtree": lambda s, n, x: edits.delete_subtree(s, n["algebra"]),
    "clear_split": lambda s, n, x: edits.clear_split(s, n["algebra"]),
    "set_split": lambda s, n, x: edits.set_split(s, n["root"], "subject", ["arithmetic", "probability"]),
    "prune": lambda s, n, x: edits.prune(s, n["algebra"]),
    "restore": lambda s, n, x: edits.restore(s, n["algebra"]),
    "approve": lambda s, n, x: edits.approve(s, n["geometry"]),
    "approve_subtree": lambda s, n, x: edits.approve(s, n["root"], subtree=True),
    "lock": lambda s, n, x: edits.lock(s, n["easy"]),
    "set_quota": lambda s, n, x: edits.set_quota(s, n["easy"], 7),
    "apply_split": lambda s, n, x: edits.apply_split(s, n["geometry"], Split("shape", ["triangles", "circles"],
                                                                             pivots=[{"q": 1}], note="check"), "llm"),
    "mark_failed": lambda s, n, x: edits.mark_failed(s, n["statistics"], "the endpoint failed"),
    "replace_split": lambda s, n, x: edits.replace_with(s, n["root"], Split("topic", ["Algebra", "geometry problems",
                                                                                      "calculus"])),
    "sample_status": lambda s, n, x: edits.set_sample_status(s, x[n["easy"]] + x[n["hard"]], "rejected", "too easy"),
    "sample_note": lambda s, n, x: edits.set_sample_note(s, x[n["easy"]][0], "check the arithmetic"),
    "edit_sample": lambda s, n, x: edits.edit_sample(s, x[n["easy"]][0], {"question": "new q", "answer": "new a"}),
    "move_samples": lambda s, n, x: edits.move_samples(s, x[n["easy"]], n["hard"]),
    "move_stranded": lambda s, n, x: edits.move_stranded(s, n["algebra"], {x[n["easy"]][0]: n["hard"]}),
    "revert_sample": lambda s, n, x: edits.revert_sample(s, x[n["easy"]][0]),
    "resolve_note": lambda s, n, x: edits.resolve_note(s, n["algebra"]),
    "set_values": lambda s, n, x: edits.set_values(s, s.children(n["geometry"])[0].id, ["a", "b", "c"]),
    "restore_split": lambda s, n, x: edits.restore_split(s, n["root"], n["first_split"]),
    "import_samples": lambda s, n, x: edits.add_samples(s, s.node(n["root"]).project_id, n["statistics"], [
        {"data": {"question": "imported", "answer": "a"}, "norm_hash": "imported"}], cap=None, call_id=None,
        record="import"),
}
SETUP = {  # what a write needs first (its own events are not counted)
    "restore": lambda s, n, x: edits.prune(s, n["algebra"]),
    "move_stranded": lambda s, n, x: s.update_samples([x[n["easy"]][0]], node_id=n["algebra"]),
    "revert_sample": lambda s, n, x: edits.edit_sample(s, x[n["easy"]][0], {"question": "v2", "answer": "a2"}),
    "resolve_note": lambda s, n, x: s.update_node(n["algebra"], note="coverage incomplete"),
    "set_values": lambda s, n, x: edits.apply_split(s, n["geometry"], Split("shape", ["a", "b", "x", "y"] * 1,
                                                                            infinite=True)),
    "restore_split": lambda s, n, x: (n.update(first_split=events(s, s.node(n["root"]).project_id)[-1].id),
                                      edits.replace_with(s, n["root"], Split("topic", ["algebra", "calculus"]))),
}


@pytest.mark.parametrize("name", list(WRITES))
def test_each_write_records_one_event_and_undo_redo_are_exact(store, project, grown, name):
    ids, samples = grown
    ids = dict(ids)
    if name in SETUP:
        SETUP[name](store, ids, samples)
    before, count = state(store, project), len(events(store, project))

    WRITES[name](store, ids, samples)

    after = state(store, project)
    assert after != before
    history = events(store, project)
    assert len(history) == count + 1
    newest = history[0]
    assert newest.summary and newest.actor in ("human", "llm") and not newest.undone
    assert newest.actor == ("llm" if name in ("apply_split", "mark_failed", "import_samples") else "human")

    undone = edits.undo(store, project)
    assert undone.id == newest.id and undone.undone
    assert state(store, project) == before  # every column of every node and sample

    redone = edits.redo(store, project)
    assert redone.id == newest.id and not redone.undone
    assert state(store, project) == after


def test_a_refused_edit_records_nothing_and_a_no_op_records_nothing(store, project, grown):
    ids, _ = grown
    count = len(events(store, project))
    with pytest.raises(TreeEditError):
        edits.add_value(store, ids["algebra"], "Easy")  # a sibling has it
    with pytest.raises(TreeEditError):
        edits.set_split(store, ids["algebra"], "topic", ["a", "b"])  # an ancestor's dimension
    assert edits.resolve_note(store, ids["algebra"]) is False
    assert len(events(store, project)) == count


def test_undo_after_delete_restores_the_subtree_and_its_samples_across_a_restart(tmp_path, project, store, grown):
    ids, samples = grown
    before = state(store, project)
    gone = edits.removal_counts(store, [ids["algebra"]])
    assert (gone.nodes, gone.samples) == (3, 6)
    edits.delete_subtree(store, ids["algebra"])
    assert "3 node(s) and 6 sample(s)" in events(store, project)[0].summary
    path = store.path
    store.close()
    with Store(path) as again:  # everything is in the file: a restart keeps the history
        edits.undo(again, project)
        assert state(again, project) == before


def test_a_new_change_after_undo_clears_the_redo_stack(store, project, grown):
    ids, _ = grown
    edits.rename_value(store, ids["geometry"], "shapes")
    edits.undo(store, project)
    edits.rename_value(store, ids["statistics"], "data")
    assert edits.redo(store, project) is None
    assert store.node(ids["geometry"]).value == "geometry"
    assert not any(e.undone for e in events(store, project))


def test_undo_and_redo_with_nothing_to_do_return_none(store, project):
    assert not edits.can_undo(store, project) and not edits.can_redo(store, project)
    assert edits.undo(store, project) is None
    assert edits.redo(store, project) is None


def test_undo_refuses_rather_than_drop_samples_made_since(store, project, grown):
    ids, _ = grown
    (child, _) = edits.set_split(store, ids["geometry"], "shape", ["triangles", "circles"])
    add(store, project, child, "a triangle question")  # generation: not an event
    before = state(store, project)
    with pytest.raises(TreeEditError, match="changed since"):
        edits.undo(store, project)
    assert state(store, project) == before


def test_random_edits_then_undo_all_give_back_the_original(store, project, grown):
    """A seeded random walk of edits; undoing every one restores the tree and samples exactly, redoing every one
    gives the final state back."""
    ids, samples = grown
    rng = random.Random(8)
    original = state(store, project)
    start = len(events(store, project))
    done = 0
    for step in range(60):
        tree = store.tree(project)
        nodes = [n for n in tree.nodes.values() if n.parent_id is not None] or [tree.root]
        node = rng.choice(nodes)
        live = [s["id"] for s in store.samples(project)]
        was, logged = state(store, project), len(events(store, project))
        op = rng.choice(["rename", "add", "delete", "prune", "approve", "set_split", "replace", "status", "edit",
                         "quota", "note"])
        try:
            if op == "rename":
                edits.rename_value(store, node.id, f"value {step}")
            elif op == "add":
                parent = rng.choice([n for n in tree.nodes.values() if n.dimension] or [tree.root])
                edits.add_value(store, parent.id, f"added {step}")
            elif op == "delete":
                edits.delete_subtree(store, node.id)
            elif op == "prune":
                edits.prune(store, node.id)
            elif op == "approve":
                edits.approve(store, node.id, subtree=rng.random() < 0.5)
            elif op == "set_split":
                edits.set_split(store, node.id, f"dimension {step}", [f"left {step}", f"right {step}"])
            elif op == "replace":
                kids = tree.kids(tree.root.id)
                values = [k.value for k in kids if rng.random() < 0.7] + [f"new {step}"]
                edits.replace_with(store, tree.root.id, Split(tree.root.dimension or "topic", values))
            elif op == "status" and live:
                edits.set_sample_status(store, rng.sample(live, min(3, len(live))),
                                        rng.choice(["accepted", "rejected"]), "reason")
            elif op == "edit" and live:
                edits.edit_sample(store, rng.choice(live), {"question": f"edited {step}", "answer": "a"})
            elif op == "quota":
                edits.set_quota(store, node.id, rng.choice([None, 3, 9]))
            elif op == "note" and live:
                edits.set_sample_note(store, rng.choice(live), f"note {step}")
            else:
                continue
        except TreeEditError:
            assert state(store, project) == was and len(events(store, project)) == logged  # refused: untouched
            continue
        changed = state(store, project) != was
        assert len(events(store, project)) == logged + changed  # one event per change, none for a no-op
        done += changed
    assert done >= 20
    final = state(store, project)
    while len([e for e in events(store, project) if not e.undone]) > start:
        assert edits.undo(store, project) is not None
    assert state(store, project) == original
    while edits.redo(store, project) is not None:
        pass
    assert state(store, project) == final


# ----------------------------------------------------------------------------- Replace as a diff


def test_replace_with_an_identical_proposal_keeps_every_descendant_and_sample(store, project, grown):
    ids, _ = grown
    before = state(store, project)
    diff = edits.diff_split(store, ids["root"], "topic", ["Algebra", "geometry", "statistics"])
    assert [c.kind for c in diff.changes] == ["kept"] * 3 and diff.identical
    assert diff.changes[0].nodes_below == 2 and diff.changes[0].samples_below == 6  # easy, hard below algebra
    edits.replace_split(store, ids["root"], "topic", diff.changes)
    nodes, samples = state(store, project)
    assert [n["id"] for n in nodes] == [n["id"] for n in before[0]]
    assert samples == before[1]


def test_diff_marks_kept_renamed_added_removed_with_counts(store, project, grown):
    ids, _ = grown
    diff = edits.diff_split(store, ids["root"], "subject", ["algebra", "geometry problems", "calculus"])
    kinds = {(c.kind, c.old, c.new) for c in diff.changes}
    assert kinds == {("kept", "algebra", "algebra"), ("renamed", "geometry", "geometry problems"),
                     ("added", None, "calculus"), ("removed", "statistics", None)}
    removed = next(c for c in diff.changes if c.kind == "removed")
    assert (removed.child_id, removed.nodes_below, removed.samples_below) == (ids["statistics"], 0, 3)
    assert (diff.removal().nodes, diff.removal().samples) == (1, 3)  # the removed leaf itself
    whole = edits.diff_split(store, ids["root"], "subject", ["geometry", "statistics"])  # algebra goes, 2 below it
    gone = next(c for c in whole.changes if c.kind == "removed")
    assert (gone.old, gone.nodes_below, gone.samples_below) == ("algebra", 2, 6)
    assert (whole.removal().nodes, whole.removal().samples) == (3, 6)
    assert whole.removal().nodes == edits.removal_counts(store, [ids["algebra"]]).nodes  # as delete's confirmation
    assert edits.diff_split(store, ids["root"], "t", ["geometery", "x y z"]).changes[0].kind == "renamed"  # a typo


def test_replace_applies_per_value_choices(store, project, grown):
    ids, samples = grown
    diff = edits.diff_split(store, ids["root"], "subject", ["algebra", "geometry problems", "calculus"])
    for c in diff.changes:
        if c.kind in ("renamed", "removed"):
            c.apply = False  # keep the old name, keep statistics
    kids = edits.replace_split(store, ids["root"], "subject", diff.changes)
    tree = store.tree(project)
    assert [tree.nodes[k].value for k in kids] == ["algebra", "geometry", "statistics", "calculus"]
    assert tree.root.dimension == "subject"
    assert len(store.samples(project)) == 12 and ids["easy"] in tree.nodes
    for c in diff.changes:
        c.apply = True
    diff = edits.diff_split(store, ids["root"], "subject", ["algebra", "geometry problems"])
    edits.replace_split(store, ids["root"], "subject", diff.changes)
    tree = store.tree(project)
    assert [k.value for k in tree.kids(ids["root"])] == ["algebra", "geometry problems"]
    assert tree.nodes[ids["geometry"]].value == "geometry problems"  # renamed in place, samples kept
    assert {s["node_id"] for s in store.samples(project)} == {ids["easy"], ids["hard"], ids["geometry"]}


def test_replace_refuses_a_dimension_a_kept_node_below_uses(store, project, grown):
    ids, _ = grown
    diff = edits.diff_split(store, ids["root"], "difficulty", ["algebra", "geometry"])
    before = state(store, project)
    with pytest.raises(TreeEditError, match="already splits on 'difficulty'"):
        edits.replace_split(store, ids["root"], "difficulty", diff.changes)
    assert state(store, project) == before


def test_restore_split_brings_back_an_earlier_split_keeping_kept_children(store, project, grown):
    ids, _ = grown
    first = next(e for e in events(store, project) if e.action == "set_split" and e.node_id == ids["root"])
    edits.replace_with(store, ids["root"], Split("topic", ["algebra", "calculus"]))
    assert ids["geometry"] not in store.tree(project).nodes
    edits.restore_split(store, ids["root"], first.id)
    tree = store.tree(project)
    assert sorted(k.value for k in tree.kids(ids["root"])) == ["algebra", "geometry", "statistics"]
    assert ids["easy"] in tree.nodes  # algebra was kept throughout, with its subtree
    with pytest.raises(TreeEditError, match="did not set a split of this node"):
        edits.restore_split(store, ids["algebra"], first.id)


def test_proposals_are_stored_listed_applied_and_dismissed(store, project, grown):
    ids, _ = grown
    a = edits.save_proposal(store, ids["root"], Split("topic", ["algebra", "geometry", "probability"],
                                                      pivots=[{"question": "q"}], labels=["algebra"]))
    b = edits.save_proposal(store, ids["root"], Split("level", ["school", "university"]))
    listed = edits.proposals(store, ids["root"])
    assert [p.id for p in listed] == [b, a] and listed[1].split.pivots == [{"question": "q"}]
    assert listed[1].split.labels == ["algebra"]
    edits.dismiss_proposal(store, b)
    edits.replace_with(store, ids["root"], edits.proposal(store, a).split, proposal_id=a)
    assert edits.proposals(store, ids["root"]) == []
    assert [p.state for p in edits.proposals(store, ids["root"], include_done=True)] == ["dismissed", "applied"]
    assert ids["easy"] in store.tree(project).nodes


def test_a_propose_job_stores_a_proposal_that_survives_a_reopen(fake, store, project):
    build(store, project, _llm(fake, store, project), depth=1)
    root = store.tree(project).root
    nodes_before = state(store, project)[0]
    job_id = jobs.start_job(store.path, project, "propose", {"node_id": root.id}, fake.endpoint(max_retries=1,
                                                                                                 timeout=5))
    jobs.wait(store.path, job_id, timeout=60)
    job = jobs.get_job(store, job_id)
    assert job["status"] == "complete", job["message"]
    assert state(store, project)[0] == nodes_before  # the tree is not changed by a proposal
    with Store(store.path) as again:
        (stored,) = edits.proposals(again, root.id)
        assert stored.job_id == job_id and stored.split.dimension and len(stored.split.values) >= 2
        assert stored.split.pivots


def _llm(fake, store, project):
    from treesynth_core.llm import LLM
    return LLM(fake.endpoint(max_retries=1, timeout=5), store, project)


def test_a_build_records_one_llm_event_per_split(fake, store, project, llm):
    report = build(store, project, llm, depth=2)
    history = events(store, project)
    splits = [e for e in history if e.action == "apply_split"]
    assert len(splits) == len(report.expanded) and {e.actor for e in splits} == {"llm"}
    assert {e.node_id for e in splits} == set(report.expanded)
    root = store.tree(project).root
    newest_root = next(e for e in splits if e.node_id == root.id)
    assert json.loads(newest_root.after["nodes"][root.id]["pivots"])  # the evidence goes with the event
    assert newest_root.after["split"]["labels"]  # and the criterion's label of each pivot


# ----------------------------------------------------------------------------- stranded samples, review


def test_expanding_a_leaf_with_samples_flags_them_and_move_samples_puts_them_on_a_child(store, project, grown):
    ids, samples = grown
    kids = edits.apply_split(store, ids["geometry"], Split("shape", ["triangles", "circles"]), actor="llm")
    assert edits.stranded(store, project) == {ids["geometry"]: 3}
    assert "3 sample(s) left on it" in events(store, project)[0].summary
    assert edits.move_stranded(store, ids["geometry"], {samples[ids["geometry"]][0]: kids[0]}) == 1
    assert edits.move_samples(store, samples[ids["geometry"]][1:], kids[1]) == 2
    assert edits.stranded(store, project) == {}
    assert store.live_count(kids[0]) == 1 and store.live_count(kids[1]) == 2
    with pytest.raises(TreeEditError, match="has children"):
        edits.move_samples(store, samples[ids["easy"]], ids["algebra"])


def test_editing_a_sample_keeps_its_original_and_revert_puts_it_back(store, project, grown):
    ids, samples = grown
    sid = samples[ids["easy"]][0]
    first = store.samples(project, node_ids=[ids["easy"]])[0]
    edits.edit_sample(store, sid, {"question": "v2", "answer": "a2"})
    edits.edit_sample(store, sid, {"question": "v3", "answer": "a3"})
    row = store.samples(project, node_ids=[ids["easy"]])[0]
    assert row["edited"] == 1 and edits.original_data(store, sid) == first["data"]
    assert edits.revert_sample(store, sid) is True
    row = store.samples(project, node_ids=[ids["easy"]])[0]
    assert (row["data"], row["edited"], row["original"], row["norm_hash"]) == (first["data"], 0, None,
                                                                               first["norm_hash"])
    assert edits.revert_sample(store, sid) is False


def test_reject_reason_and_note_are_stored(store, project, grown):
    ids, samples = grown
    sid = samples[ids["hard"]][0]
    edits.set_sample_status(store, [sid], "rejected", reason="  off   topic ")
    edits.set_sample_note(store, sid, "ask for a harder one")
    row = next(s for s in store.samples(project) if s["id"] == sid)
    assert (row["status"], row["reason"], row["note"]) == ("rejected", "off topic", "ask for a harder one")
    edits.set_sample_status(store, [sid], "accepted", reason="ignored")
    row = next(s for s in store.samples(project) if s["id"] == sid)
    assert (row["status"], row["reason"]) == ("accepted", None)


def test_approving_an_edited_node_keeps_its_human_mark(store, project, grown):
    ids, _ = grown
    edits.rename_value(store, ids["geometry"], "shapes")
    edits.approve(store, ids["geometry"])
    node = store.node(ids["geometry"])
    assert (node.status, node.provenance) == ("approved", "human")


def test_generated_samples_are_not_events_but_stranded_samples_are_left_out_of_quotas(fake, store, project, llm):
    build(store, project, llm, depth=1)
    count = len(events(store, project))
    generate(store, project, llm, per_leaf=2)
    assert len(events(store, project)) == count


# ----------------------------------------------------------------------------- the CLI


def test_cli_history_undo_redo_and_edit_quota(store, project, grown, capsys):
    from treesynth_core import cli

    ids, _ = grown
    db = store.path
    assert cli.main(["edit", "--db", db, "--node", ids["easy"], "--quota", "40"]) == 0
    assert store.node(ids["easy"]).quota == 40
    assert cli.main(["edit", "--db", db, "--node", ids["easy"], "--quota", "none", "lock"]) == 0
    node = store.node(ids["easy"])
    assert (node.quota, node.locked) == (None, True)
    assert capsys.readouterr().out.splitlines()[-1] == f"locked {node.label!r}"  # not "lock: None"
    n_events = len(events(store, project))
    for inner in (ids["root"], ids["algebra"]):  # quotas are per leaf: refused on a node with children
        assert cli.main(["edit", "--db", db, "--node", inner, "--quota", "5"]) == 2
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and "quotas are per leaf" in err[0], err
        assert store.node(inner).quota is None
    assert len(events(store, project)) == n_events
    assert cli.main(["edit", "--db", db, "--node", ids["easy"], "--quota", "-1"]) == 2
    assert cli.main(["edit", "--db", db, "--node", ids["easy"]]) == 2
    assert "an action" in capsys.readouterr().err

    assert cli.main(["history", "--db", db, "--limit", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3 and "locked" in out[0] and "quota" in out[2]
    assert cli.main(["history", "--db", db, "--node", ids["easy"]]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3  # the two quota changes and the lock

    before = state(store, project)
    assert cli.main(["undo", "--db", db]) == 0 and "undone: #" in capsys.readouterr().out
    assert store.node(ids["easy"]).locked is False
    assert cli.main(["redo", "--db", db]) == 0 and "redone: #" in capsys.readouterr().out
    assert state(store, project) == before
    assert cli.main(["redo", "--db", db]) == 0 and capsys.readouterr().out.strip() == "nothing to redo"

    (child, _) = edits.set_split(store, ids["geometry"], "shape", ["triangles", "circles"])
    add(store, project, child, "made since")
    assert cli.main(["undo", "--db", db]) == 2
    assert "changed since" in capsys.readouterr().err


def test_diff_lists_the_pivots_behind_each_value(store, project, grown):
    ids, _ = grown
    pivots = [{"question": "solve x"}, {"question": "a circle"}, {"question": "2x = 4"}]
    diff = edits.diff_split(store, ids["root"], "topic", ["algebra", "circles"], pivots=pivots,
                            labels=["Algebra", "circles", "algebra"])
    by_new = {c.new: c.pivots for c in diff.changes if c.new}
    assert by_new == {"algebra": [pivots[0], pivots[2]], "circles": [pivots[1]]}


def test_a_propose_job_that_fails_stores_nothing_and_says_so(fake, store, project):
    root = store.tree(project).root
    import dataclasses

    endpoint = dataclasses.replace(fake.endpoint(max_retries=0, timeout=2), base_url="http://127.0.0.1:9/v1")  # refused
    job_id = jobs.start_job(store.path, project, "propose", {"node_id": root.id}, endpoint)
    jobs.wait(store.path, job_id, timeout=60)
    job = jobs.get_job(store, job_id)
    assert job["status"] == "failed" and "re-proposing" in job["message"]
    assert edits.proposals(store, root.id) == []


def test_stranded_samples_can_be_routed_by_the_llm(fake, store, project, llm):
    from treesynth_core.routing import route

    build(store, project, llm, depth=1)
    generate(store, project, llm, per_leaf=3)
    leaf = store.tree(project).leaves()[0]
    total = len(store.samples(project))
    edits.apply_split(store, leaf.id, Split("level", ["basic", "advanced"]), actor="human")
    assert edits.stranded(store, project) == {leaf.id: 3}
    params = edits.stranded_route_params(store, leaf.id)
    report = route(store, project, llm, **params)
    assert report.outcome.value in ("complete", "partial")
    left = edits.stranded(store, project).get(leaf.id, 0)
    assert left < 3  # routed to the children (the rest are recorded "none of these", not lost)
    newest = events(store, project)[0]
    assert (newest.action, newest.actor, newest.undoable) == ("route", "llm", False)  # the LLM did it
    assert len(store.samples(project)) == total  # nothing dropped


def test_concurrent_writers_from_two_connections_lose_no_edit_and_undo_in_order(store, project, grown):
    import threading

    ids, samples = grown
    other = Store(store.path)
    leaves = [ids["easy"], ids["hard"], ids["geometry"], ids["statistics"]]
    errors = []

    def work(s, offset):
        try:
            for i in range(10):
                edits.set_quota(s, leaves[(i + offset) % 4], i + offset)
                edits.set_sample_note(s, samples[leaves[i % 4]][offset % 3], f"note {offset} {i}")
        except Exception as exc:  # pragma: no cover - the assertion below shows it
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s, k)) for s, k in ((store, 0), (other, 1))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    before = len(events(store, project))
    assert len([e for e in events(store, project) if e.action in ("set_quota", "sample_note")]) == 40
    for _ in range(40):
        edits.undo(other if _ % 2 else store, project)
    assert len(events(store, project)) == before
    assert all(store.node(leaf).quota is None for leaf in leaves)
    assert all(s["note"] is None for s in store.samples(project))
    other.close()


def test_replace_between_fixed_and_open_ended_splits(store, project, grown):
    ids, _ = grown
    before = state(store, project)
    open_split = Split("topic", ["algebra", "geometry", "calculus", "logic"], infinite=True)
    diff = edits.diff_split(store, ids["root"], open_split.dimension, open_split.values, True)
    assert sorted(c.kind for c in diff.changes) == ["added", "removed", "removed", "removed"]
    diff.changes[1].apply = False  # keep one fixed value beside the open-ended child: refused, nothing changed
    with pytest.raises(TreeEditError, match="open-ended split has one child"):
        edits.replace_split(store, ids["root"], "topic", diff.changes)
    assert state(store, project) == before
    edits.replace_with(store, ids["root"], open_split)
    (child,) = store.children(ids["root"])
    assert child.infinite and child.values == open_split.values
    again = edits.diff_split(store, ids["root"], "topic", ["algebra", "probability"], True)
    assert [c.kind for c in again.changes] == ["kept"]  # the open-ended child stays, its values change
    edits.replace_split(store, ids["root"], "topic", again.changes)
    assert store.children(ids["root"])[0].id == child.id and store.children(ids["root"])[0].values == [
        "algebra", "probability"]


def test_a_build_that_splits_a_leaf_with_samples_says_so(fake, store, project, llm):
    build(store, project, llm, depth=1)
    generate(store, project, llm, per_leaf=2)
    leaf = store.tree(project).leaves()[0]
    report = build(store, project, llm, depth=2, under=leaf.id)
    assert report.stranded == {leaf.id: 2}
    assert "2 sample(s) left on 1 node(s) it split (stranded" in report.summary()
    assert "2 sample(s) left on 1 node(s)" in report.summary(for_cli=False)


def test_a_build_killed_mid_run_keeps_tree_and_history_in_step(tmp_path):
    """kill -9 during a build: every stored split has its event (same transaction), the rerun resumes, and undoing
    every event gives back the empty root."""
    from tests.test_cli import cli, cli_env, command, kill_when, make_db, ok, read_only
    from treesynth_core.fakellm import FakeLLM

    db = make_db(tmp_path / "kill.db")

    def splits() -> int:
        with read_only(db) as conn:
            return conn.execute("select count(*) from nodes where dimension is not null").fetchone()[0]

    def logged() -> int:
        with read_only(db) as conn:
            return conn.execute("select count(*) from events where action = 'apply_split'").fetchone()[0]

    args = ("build", "--db", db, "--depth", "3", "--concurrency", "2")
    with FakeLLM(latency=0.15) as slow:
        env = cli_env(slow.base_url)
        kill_when(command(*args), env, tmp_path, lambda: splits() >= 2, "no split appeared", timeout=60)
        assert splits() == logged() >= 2
        slow.latency = 0.0
        ok(cli(*args, env=env, cwd=tmp_path, timeout=120))
    assert splits() == logged() > 2
    with Store(db) as store:
        project = store.only_project_id()
        root_only = [r for r in state(store, project)[0] if r["parent_id"] is None]
        while edits.undo(store, project) is not None:
            pass
        nodes, samples = state(store, project)
        assert [n["id"] for n in nodes] == [root_only[0]["id"]] and nodes[0]["dimension"] is None and not samples


def test_samples_for_a_leaf_deleted_meanwhile_are_refused_not_orphaned(store, project, grown):
    from treesynth_core.errors import NotFoundError

    ids, _ = grown
    edits.delete_subtree(store, ids["geometry"])
    row = {"data": {"question": "late", "answer": "a"}, "norm_hash": "late"}
    with pytest.raises(NotFoundError, match="deleted while its samples were being made"):
        edits.add_samples(store, project, ids["geometry"], [row], cap=None, call_id=None)
    assert not [s for s in store.samples(project) if s["node_id"] == ids["geometry"]]


def test_undo_stops_at_a_tree_import_and_says_why(store, project):
    import json

    from treesynth_core.treefile import export_tree, import_tree

    root = store.tree(project).root.id
    edits.set_split(store, root, "topic", ["algebra", "geometry"])
    copy = import_tree(store, json.dumps(export_tree(store, project)))
    (event,) = events(store, copy)
    assert (event.action, event.undoable) == ("import_tree", False) and "3 node(s)" in event.summary
    before = state(store, copy)
    with pytest.raises(TreeEditError, match="cannot be undone: imported a tree of 3 node"):
        edits.undo(store, copy)
    assert state(store, copy) == before
    assert not edits.can_undo(store, copy) and not edits.can_redo(store, copy)
    assert "imported a tree" in edits.undo_barrier(store, copy)
    kid = store.children(store.tree(copy).root.id)[0].id
    edits.rename_value(store, kid, "shapes")
    assert edits.can_undo(store, copy) and not edits.can_redo(store, copy) and edits.undo_barrier(store, copy) is None
    assert edits.undo(store, copy).action == "rename_value"
    assert not edits.can_undo(store, copy) and edits.can_redo(store, copy)
    # the newest event is now an undone edit: undo still names the import it stops at, and changes nothing
    with pytest.raises(TreeEditError, match="cannot be undone: imported a tree of 3 node"):
        edits.undo(store, copy)
    assert state(store, copy) == before
    assert edits.redo(store, copy).action == "rename_value" and not edits.can_redo(store, copy)


def test_restoring_an_llm_split_brings_back_its_pivots(fake, store, project, llm):
    build(store, project, llm, depth=1)
    root = store.tree(project).root
    first = next(e for e in events(store, project) if e.action == "apply_split" and e.node_id == root.id)
    values = [k.value for k in store.children(root.id)]
    edits.replace_with(store, root.id, Split("level", ["school", "university"]))
    assert store.node(root.id).pivots == []  # a split typed by hand has no pivots: the old ones motivated the old one
    edits.restore_split(store, root.id, first.id)
    node = store.node(root.id)
    assert node.dimension == root.dimension and node.pivots == root.pivots and root.pivots
    assert [k.value for k in store.children(root.id)] == values
