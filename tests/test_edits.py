"""Human edits of the tree: each keeps the partition valid, and automation respects locks and quotas."""

from __future__ import annotations

import pytest

from treesynth_core import edits
from treesynth_core.errors import TreeEditError
from treesynth_core.generate import generate, plan_generation
from treesynth_core.partition import build
from treesynth_core.samples import fingerprint


def split_root(store, project_id, values=("algebra", "geometry", "statistics"), dimension="topic") -> dict:
    root = store.tree(project_id).root
    return dict(zip(values, edits.set_split(store, root.id, dimension, list(values))))


def add(store, project_id, leaf_id, *questions) -> list[int]:
    rows = [{"data": {"question": q, "answer": f"answer to {q}"},
             "norm_hash": fingerprint({"question": q}, ["question"])}
            for q in questions]
    before = {s["id"] for s in store.samples(project_id)}
    store.add_samples(project_id, leaf_id, rows, cap=None, call_id=None)
    return [s["id"] for s in store.samples(project_id) if s["id"] not in before]


def kid_values(store, node_id) -> list[str]:
    node = store.node(node_id)
    return [k.value for k in store.tree(node.project_id).kids(node_id)]


def live(store, project_id) -> dict[str, int]:
    return {leaf: sum(n for s, n in by.items() if s != "rejected")
            for leaf, by in store.sample_counts(project_id).items()}


# ----------------------------------------------------------------------------- dimensions


@pytest.mark.parametrize("name", ["topic", "Topics", "  TOPIC  ", "the topic", "topic type"])
def test_rename_dimension_refuses_an_ancestors_dimension(store, project, name):
    leaves = split_root(store, project)
    edits.set_split(store, leaves["algebra"], "difficulty", ["easy", "hard"])
    with pytest.raises(TreeEditError, match="an ancestor already splits on 'topic'"):
        edits.rename_dimension(store, leaves["algebra"], name)
    assert store.node(leaves["algebra"]).dimension == "difficulty"


def test_rename_dimension_accepts_a_new_name_and_marks_it_human(store, project):
    leaves = split_root(store, project)
    edits.set_split(store, leaves["algebra"], "difficulty", ["easy", "hard"])
    edits.rename_dimension(store, leaves["algebra"], "  skill   level ")
    node = store.node(leaves["algebra"])
    assert (node.dimension, node.status, node.provenance) == ("skill level", "edited", "human")
    edits.rename_dimension(store, store.tree(project).root.id, "Subject")  # the root has no ancestors
    assert store.tree(project).root.dimension == "Subject"


def test_rename_dimension_refuses_an_empty_name(store, project):
    root = store.tree(project).root
    with pytest.raises(TreeEditError, match="empty"):
        edits.rename_dimension(store, root.id, "   ")


@pytest.mark.parametrize("name,reason", [("=HYPERLINK(\"http://x\")", "spreadsheet formula"),
                                         ("<b>level</b>", "HTML or markup"), ("topic and difficulty", "combines"),
                                         ("x" * 81, "longer than 80")])
def test_rename_dimension_follows_the_content_rules_of_values(store, project, name, reason):
    root = store.tree(project).root
    with pytest.raises(TreeEditError, match=reason):
        edits.rename_dimension(store, root.id, name)
    assert store.node(root.id).dimension is None


def test_rename_dimension_refuses_a_descendants_dimension(store, project):
    leaves = split_root(store, project)
    edits.set_split(store, leaves["algebra"], "difficulty", ["easy", "hard"])
    root = store.tree(project).root
    with pytest.raises(TreeEditError, match="a node below .* already splits on 'difficulty'"):
        edits.rename_dimension(store, root.id, "Difficulties")
    assert store.node(root.id).dimension == "topic"


# ----------------------------------------------------------------------------- values


def test_add_value_adds_a_human_child(store, project):
    leaves = split_root(store, project)
    root = store.tree(project).root
    child = edits.add_value(store, root.id, "  number   theory ")
    node = store.node(child)
    assert (node.value, node.parent_id, node.depth, node.provenance, node.status) == (
        "number theory", root.id, 1, "human", "edited")
    assert kid_values(store, root.id) == ["algebra", "geometry", "statistics", "number theory"]
    assert child not in leaves.values()


@pytest.mark.parametrize("value,reason", [
    ("Algebra", "a sibling already has the value 'algebra'"),
    ("  GEOMETRY! ", "a sibling already has the value 'geometry'"),
    ("Other", "vague catch-all"),
    ("misc.", "vague catch-all"),
    ("everything else", "vague catch-all"),
    ("algebra and geometry", "combines several values"),
    ("algebra/geometry", "combines several values"),
    ("calculus & trigonometry", "combines several values"),
    ("   ", "empty"),
    ("x" * 121, "longer than 120 characters"),
])
def test_add_value_refuses_duplicates_catch_alls_and_combined_values(store, project, value, reason):
    split_root(store, project)
    root = store.tree(project).root
    with pytest.raises(TreeEditError, match=reason):
        edits.add_value(store, root.id, value)
    assert kid_values(store, root.id) == ["algebra", "geometry", "statistics"]


def test_add_value_needs_a_dimension(store, project):
    root = store.tree(project).root
    with pytest.raises(TreeEditError, match="no dimension"):
        edits.add_value(store, root.id, "algebra")
    assert kid_values(store, root.id) == []


def test_rename_value(store, project):
    leaves = split_root(store, project)
    edits.rename_value(store, leaves["algebra"], "Algebra")  # its own value in another case is fine
    edits.rename_value(store, leaves["geometry"], "plane geometry")
    assert kid_values(store, store.tree(project).root.id) == ["Algebra", "plane geometry", "statistics"]
    assert (store.node(leaves["geometry"]).status, store.node(leaves["geometry"]).provenance) == ("edited", "human")


@pytest.mark.parametrize("value,reason", [
    ("Statistics.", "a sibling already has the value 'statistics'"),
    ("Others", "vague catch-all"),
    ("algebra or statistics", "combines several values"),
])
def test_rename_value_refuses_duplicates_catch_alls_and_combined_values(store, project, value, reason):
    leaves = split_root(store, project)
    with pytest.raises(TreeEditError, match=reason):
        edits.rename_value(store, leaves["geometry"], value)
    assert store.node(leaves["geometry"]).value == "geometry"


def test_rename_value_refuses_the_root(store, project):
    with pytest.raises(TreeEditError, match="root has no value"):
        edits.rename_value(store, store.tree(project).root.id, "anything")


def test_set_values_of_an_open_ended_node(store, project):
    root = store.tree(project).root
    edits.rename_dimension(store, root.id, "city")
    (open_id,) = store.add_children(store.node(root.id), [{"infinite": True, "values": ["Lima", "Oslo"]}],
                                    provenance="llm")
    edits.set_values(store, open_id, ["Lagos", " lagos ", "Hanoi.", "", "Quito"])
    assert store.node(open_id).values == ["Lagos", "Hanoi", "Quito"]
    with pytest.raises(TreeEditError, match="at least two values"):
        edits.set_values(store, open_id, ["Lagos", "LAGOS"])
    with pytest.raises(TreeEditError, match="catch-all"):
        edits.set_values(store, open_id, ["Lagos", "other"])
    assert store.node(open_id).values == ["Lagos", "Hanoi", "Quito"]
    leaves = split_root(store, project, dimension="region", values=("north", "south"))
    with pytest.raises(TreeEditError, match="only an open-ended"):
        edits.set_values(store, leaves["north"], ["a", "b"])


# ----------------------------------------------------------------------------- structure


def test_delete_subtree_removes_descendants_and_their_samples(store, project):
    leaves = split_root(store, project)
    easy, hard = edits.set_split(store, leaves["algebra"], "difficulty", ["easy", "hard"])
    gone = add(store, project, easy, "e1", "e2") + add(store, project, hard, "h1")
    kept = add(store, project, leaves["geometry"], "g1")
    nodes_before = len(store.tree(project))

    assert edits.delete_subtree(store, leaves["algebra"]) == 3

    tree = store.tree(project)
    assert len(tree) == nodes_before - 3
    assert not {leaves["algebra"], easy, hard} & set(tree.nodes)
    assert [s["id"] for s in store.samples(project)] == kept
    assert not set(gone) & {r["id"] for r in store.query("select id from samples")}
    with pytest.raises(TreeEditError, match="root cannot be deleted"):
        edits.delete_subtree(store, tree.root.id)


def test_prune_and_restore(fake, store, project, llm):
    leaves = split_root(store, project)
    easy, hard = edits.set_split(store, leaves["algebra"], "difficulty", ["easy", "hard"])

    assert edits.prune(store, leaves["algebra"]) == 3
    tree = store.tree(project)
    assert {tree.nodes[i].status for i in (leaves["algebra"], easy, hard)} == {"pruned"}
    assert {n.id for n in tree.leaves()} == {leaves["geometry"], leaves["statistics"]}
    generate(store, project, llm, per_leaf=2)
    assert live(store, project) == {leaves["geometry"]: 2, leaves["statistics"]: 2}  # pruned leaves get nothing

    assert edits.restore(store, leaves["algebra"]) == 3
    tree = store.tree(project)
    assert {tree.nodes[i].status for i in (leaves["algebra"], easy, hard)} == {"edited"}
    assert {n.id for n in tree.leaves()} == {easy, hard, leaves["geometry"], leaves["statistics"]}
    with pytest.raises(TreeEditError, match="root cannot be pruned"):
        edits.prune(store, tree.root.id)


def test_approve_subtree_approves_every_live_node_but_not_pruned_ones(fake, store, project, llm):
    build(store, project, llm, depth=2)
    tree = store.tree(project)
    first, second, third = tree.kids(tree.root.id)
    edits.prune(store, first.id)
    edits.rename_value(store, second.id, "hand named")
    store.update_node(tree.kids(third.id)[0].id, status="failed")

    touched = edits.approve(store, tree.root.id, subtree=True)

    after = store.tree(project)
    pruned = {n.id for n in tree.subtree(first.id)}
    assert touched == len(after) - len(pruned)
    for node in after.nodes.values():
        expected = "pruned" if node.id in pruned else "approved"
        assert node.status == expected, after.path_text(node.id)
    assert after.nodes[second.id].provenance == "human"  # approval keeps who made the node


def test_approve_one_node(store, project):
    leaves = split_root(store, project)
    assert edits.approve(store, leaves["algebra"]) == 1
    assert [n.status for n in store.tree(project).kids(store.tree(project).root.id)] == [
        "approved", "edited", "edited"]


def test_a_locked_leaf_is_not_expanded_by_build(fake, store, project, llm):
    build(store, project, llm, depth=1)
    tree = store.tree(project)
    locked, *others = tree.kids(tree.root.id)
    edits.lock(store, locked.id)
    assert store.node(locked.id).locked

    report = build(store, project, llm, depth=2)

    tree = store.tree(project)
    assert tree.kids(locked.id) == [] and tree.nodes[locked.id].dimension is None
    assert report.skipped_locked == [locked.id]
    assert all(tree.kids(o.id) for o in others)
    assert sorted(report.expanded) == sorted(o.id for o in others)

    edits.lock(store, locked.id, False)
    report = build(store, project, llm, depth=2)
    assert report.expanded == [locked.id] and store.tree(project).kids(locked.id)


def test_set_split_on_root_replaces_the_children_and_their_samples(fake, store, project, llm):
    build(store, project, llm, depth=2)
    generate(store, project, llm, per_leaf=1)
    root = store.tree(project).root
    assert root.dimension and store.samples(project)

    ids = edits.set_split(store, root.id, "  subject ", ["algebra", "Algebra.", "geometry", " ", "statistics"])

    tree = store.tree(project)
    assert tree.root.dimension == "subject"
    assert [k.id for k in tree.kids(root.id)] == ids
    assert [k.value for k in tree.kids(root.id)] == ["algebra", "geometry", "statistics"]
    assert {k.provenance for k in tree.kids(root.id)} == {"human"}
    assert len(tree) == 4 and store.samples(project) == []


@pytest.mark.parametrize("values,reason", [(["algebra"], "at least two"), (["algebra", "ALGEBRA"], "at least two"),
                                           (["algebra", "misc"], "catch-all"),
                                           (["algebra", "geometry + trigonometry"], "combines")])
def test_set_split_refuses_bad_values_and_keeps_the_old_split(store, project, values, reason):
    leaves = split_root(store, project)
    with pytest.raises(TreeEditError, match=reason):
        edits.set_split(store, store.tree(project).root.id, "subject", values)
    assert kid_values(store, store.tree(project).root.id) == list(leaves)
    assert store.tree(project).root.dimension == "topic"


def test_set_split_refused_for_an_ancestors_dimension_rolls_back(store, project):
    leaves = split_root(store, project)
    edits.set_split(store, leaves["algebra"], "difficulty", ["easy", "hard"])
    with pytest.raises(TreeEditError, match="ancestor already splits"):
        edits.set_split(store, leaves["algebra"], "Topics", ["linear", "quadratic"])
    assert store.node(leaves["algebra"]).dimension == "difficulty"
    assert kid_values(store, leaves["algebra"]) == ["easy", "hard"]


def test_clear_split_removes_children_and_the_dimension(store, project):
    leaves = split_root(store, project)
    edits.set_split(store, leaves["algebra"], "difficulty", ["easy", "hard"])
    root = store.tree(project).root
    assert edits.clear_split(store, root.id) == 5
    tree = store.tree(project)
    assert len(tree) == 1 and tree.root.dimension is None


# ----------------------------------------------------------------------------- quotas and samples


def test_set_quota_changes_what_generate_makes_for_that_leaf(fake, store, project, llm):
    leaves = split_root(store, project)
    edits.set_quota(store, leaves["algebra"], 1)
    edits.set_quota(store, leaves["geometry"], 5)

    plan = plan_generation(store, project, per_leaf=3)
    assert {lp.node_id: lp.quota for lp in plan.leaves} == {leaves["algebra"]: 1, leaves["geometry"]: 5,
                                                          leaves["statistics"]: 3}
    generate(store, project, llm, per_leaf=3)
    assert live(store, project) == {leaves["algebra"]: 1, leaves["geometry"]: 5, leaves["statistics"]: 3}

    edits.set_quota(store, leaves["algebra"], None)  # back to the uniform quota
    generate(store, project, llm, per_leaf=3)
    assert live(store, project)[leaves["algebra"]] == 3


def test_a_zero_quota_generates_nothing_for_that_leaf(fake, store, project, llm):
    leaves = split_root(store, project)
    edits.set_quota(store, leaves["algebra"], 0)
    assert plan_generation(store, project, per_leaf=2).missing == 4
    generate(store, project, llm, per_leaf=2)
    assert live(store, project) == {leaves["geometry"]: 2, leaves["statistics"]: 2}


def test_a_negative_quota_is_refused(store, project):
    leaves = split_root(store, project)
    with pytest.raises(TreeEditError, match="negative"):
        edits.set_quota(store, leaves["algebra"], -1)
    assert store.node(leaves["algebra"]).quota is None


def test_sample_status_and_rejected_samples_are_replaced(fake, store, project, llm):
    leaves = split_root(store, project, values=("algebra", "geometry"))
    generate(store, project, llm, per_leaf=3)
    algebra = [s["id"] for s in store.samples(project, node_ids=[leaves["algebra"]])]
    assert len(algebra) == 3

    assert edits.set_sample_status(store, algebra[:1], "accepted") == 1
    assert edits.set_sample_status(store, algebra[1:], "rejected") == 2
    assert [s["status"] for s in store.samples(project, node_ids=[leaves["algebra"]])] == [
        "accepted", "rejected", "rejected"]
    with pytest.raises(TreeEditError, match="unknown sample status 'great'"):
        edits.set_sample_status(store, algebra, "great")

    generate(store, project, llm, per_leaf=3)  # rejected samples do not count towards the quota
    statuses = [s["status"] for s in store.samples(project, node_ids=[leaves["algebra"]])]
    assert sorted(statuses) == ["accepted", "generated", "generated", "rejected", "rejected"]
    assert live(store, project) == {leaves["algebra"]: 3, leaves["geometry"]: 3}


def test_edit_sample(store, project):
    leaves = split_root(store, project)
    [sample_id] = add(store, project, leaves["algebra"], "What is 2+2?")
    edits.edit_sample(store, sample_id, {"question": "What is 3+3?", "answer": "6 — six"})
    [sample] = store.samples(project)
    assert sample["data"] == {"question": "What is 3+3?", "answer": "6 — six"}
    for bad in ({"question": "q", "answer": "  "}, {"question": "q", "answer": 6}):
        with pytest.raises(TreeEditError, match="every field"):
            edits.edit_sample(store, sample_id, bad)
    assert store.samples(project)[0]["data"] == {"question": "What is 3+3?", "answer": "6 — six"}


@pytest.mark.parametrize("data", [{"question": "only a question"},
                                  {"question": "q", "answer": "a", "colour": "red"}], ids=["missing", "unknown"])
def test_edit_sample_refuses_missing_or_unknown_fields(store, project, data):
    leaves = split_root(store, project)
    [sample_id] = add(store, project, leaves["algebra"], "What is 2+2?")
    with pytest.raises(TreeEditError, match="exactly the fields question, answer"):
        edits.edit_sample(store, sample_id, data)
    assert store.samples(project)[0]["data"]["question"] == "What is 2+2?"


def test_edit_sample_keeps_duplicates_out(store, project):
    leaves = split_root(store, project)
    first, second = add(store, project, leaves["algebra"], "What is 2+2?", "What is 3+3?")
    with pytest.raises(TreeEditError, match=f"duplicate of sample {first}"):
        edits.edit_sample(store, second, {"question": "what is 2 + 2", "answer": "ANSWER TO WHAT IS 2+2?"})
    edits.edit_sample(store, second, {"question": "What is 4+4?", "answer": "8"})
    # the fingerprint follows the edit: the new text is now the one a generated duplicate would clash with
    assert add(store, project, leaves["geometry"], "What is 3+3?")  # the old text is free again
    rows = [{"data": {"question": "what is 4+4", "answer": "8."},
             "norm_hash": fingerprint({"question": "what is 4+4"}, ["question"])}]
    assert store.add_samples(project, leaves["geometry"], rows, cap=None, call_id=None) == (0, 1)


def test_a_pruned_node_cannot_be_approved_back_into_a_leaf(fake, store, project, llm):
    build(store, project, llm, depth=2)
    tree = store.tree(project)
    first = tree.kids(tree.root.id)[0]
    edits.prune(store, first.id)
    leaves_before = len(store.tree(project).leaves())
    for subtree in (False, True):
        with pytest.raises(TreeEditError, match="restore"):
            edits.approve(store, first.id, subtree=subtree)
    assert len(store.tree(project).leaves()) == leaves_before


def test_a_quota_above_the_per_leaf_limit_is_refused(store, project):
    leaves = split_root(store, project)
    with pytest.raises(TreeEditError, match="a quota is at most 10000"):
        edits.set_quota(store, leaves["algebra"], 10_001)
    edits.set_quota(store, leaves["algebra"], 10_000)
    assert store.node(leaves["algebra"]).quota == 10_000


def test_an_edit_longer_than_the_field_cap_is_refused_not_truncated(store, project):
    leaves = split_root(store, project)
    [sample_id] = add(store, project, leaves["algebra"], "What is 2+2?")
    cap = store.project(project).settings.max_field_chars
    with pytest.raises(TreeEditError, match=f"field 'answer' has {cap + 1:,} characters; the project allows {cap:,}"):
        edits.edit_sample(store, sample_id, {"question": "What is 2+2?", "answer": "4" * (cap + 1)})
    assert store.samples(project)[0]["data"]["question"] == "What is 2+2?"
    edits.edit_sample(store, sample_id, {"question": "What is 2+2?", "answer": "4" * cap})
    assert len(store.samples(project)[0]["data"]["answer"]) == cap


# ----------------------------------------------------------------------------- review notes and dimension names


def flag(store, node_id, note="coverage incomplete: 2 proposed value(s) dropped"):
    store.update_node(node_id, note=note)


def test_approving_a_node_clears_its_note(store, project):
    leaves = split_root(store, project)
    flag(store, leaves["algebra"])
    edits.approve(store, leaves["algebra"])
    assert store.node(leaves["algebra"]).note is None


def test_approving_a_subtree_clears_only_the_approved_nodes_note(store, project):
    leaves = split_root(store, project)
    root = store.tree(project).root
    flag(store, root.id)
    flag(store, leaves["geometry"], "coverage incomplete: the coverage call failed")
    edits.approve(store, root.id)  # approved already: approving the subtree must still clear the root's note
    flag(store, root.id)
    edits.approve(store, root.id, subtree=True)
    tree = store.tree(project)
    assert tree.root.note is None
    assert tree.nodes[leaves["geometry"]].note == "coverage incomplete: the coverage call failed"  # not reviewed


def test_replacing_or_clearing_a_split_clears_its_note(store, project):
    leaves = split_root(store, project)
    edits.set_split(store, leaves["algebra"], "difficulty", ["easy", "hard"])
    flag(store, leaves["algebra"])
    edits.set_split(store, leaves["algebra"], "skill", ["recall", "reasoning"])
    assert store.node(leaves["algebra"]).note is None
    flag(store, leaves["algebra"])
    edits.clear_split(store, leaves["algebra"])
    assert store.node(leaves["algebra"]).note is None


def test_resolve_note_marks_a_node_reviewed_and_changes_nothing_else(store, project):
    leaves = split_root(store, project)
    root = store.tree(project).root
    flag(store, root.id)
    before = store.node(root.id)
    assert edits.resolve_note(store, root.id) is True
    after = store.node(root.id)
    assert after.note is None
    assert (after.status, after.provenance, after.dimension) == (before.status, before.provenance, before.dimension)
    assert kid_values(store, root.id) == list(leaves)
    assert edits.resolve_note(store, root.id) is False  # nothing to clear


def test_a_failed_edit_keeps_the_note(store, project):
    leaves = split_root(store, project)
    flag(store, leaves["algebra"])
    with pytest.raises(TreeEditError, match="catch-all"):
        edits.set_split(store, leaves["algebra"], "difficulty", ["easy", "misc"])
    assert store.node(leaves["algebra"]).note.startswith("coverage incomplete")


@pytest.mark.parametrize("name,reason", [("=HYPERLINK(\"http://x\")", "spreadsheet formula"),
                                         ("<script>x</script>", "HTML or markup"), ("misc", "catch-all"),
                                         ("topic and difficulty", "combines"), ("   ", "empty")])
def test_set_split_refuses_a_bad_dimension_name_and_keeps_the_old_split(store, project, name, reason):
    leaves = split_root(store, project)
    root = store.tree(project).root
    with pytest.raises(TreeEditError, match=reason):
        edits.set_split(store, root.id, name, ["easy", "hard"])
    assert store.node(root.id).dimension == "topic" and kid_values(store, root.id) == list(leaves)


@pytest.mark.parametrize("dimension,values,reason", [
    ("=cmd()", ["a", "b"], "spreadsheet formula"), ("<b>topic</b>", ["a", "b"], "HTML or markup"),
    ("topic", ["algebra", "other"], "catch-all"), ("topic", ["algebra", "=SUM(A1)"], "spreadsheet formula")])
def test_a_root_split_follows_the_content_rules(dimension, values, reason):
    from pydantic import ValidationError

    from treesynth_core.spec import RootSplit

    with pytest.raises(ValidationError, match=reason):
        RootSplit(dimension=dimension, values=values)
    assert RootSplit(dimension=" subject ", values=["algebra", "geometry"]).dimension == " subject "
