"""The sunburst figure: ids/parents keep duplicate labels apart, colours, hover, zoom level, escaping."""

from __future__ import annotations

from treesynth_core import edits
from treesynth_core.store import Store
from treesynth_core.sunburst import PRUNED_COLOUR, STATUS_COLOURS, build_figure, subtree_counts

from .conftest import make_project


def small_tree(store: Store):
    pid = make_project(store)
    root = store.tree(pid).root
    edits.set_split(store, root.id, "topic", ["algebra", "geometry"])
    tree = store.tree(pid)
    for kid in tree.kids(root.id):
        edits.set_split(store, kid.id, "difficulty", ["easy", "hard"])
    return pid, store.tree(pid)


def test_ids_and_parents_keep_duplicate_labels_apart(store):
    pid, tree = small_tree(store)
    trace = build_figure(tree).data[0]
    assert len(trace.ids) == 7 and len(set(trace.ids)) == 7
    assert list(trace.labels).count("easy") == 2
    by_id = dict(zip(trace.ids, trace.parents))
    assert all(by_id[n.id] == (n.parent_id or "") for n in tree.nodes.values())


def test_status_colours_and_pruned_subtrees(store):
    pid, tree = small_tree(store)
    algebra = next(k for k in tree.kids(tree.root.id) if k.value == "algebra")
    edits.approve(store, algebra.id)
    geometry = next(k for k in tree.kids(tree.root.id) if k.value == "geometry")
    edits.prune(store, geometry.id)
    tree = store.tree(pid)
    trace = build_figure(tree, color_by="status").data[0]
    colour = dict(zip(trace.ids, trace.marker.colors))
    assert colour[algebra.id] == STATUS_COLOURS["approved"]
    assert all(colour[n.id] == PRUNED_COLOUR for n in tree.subtree(geometry.id))
    assert colour[tree.kids(algebra.id)[0].id] == STATUS_COLOURS["edited"]


def test_sample_colours_follow_how_full_each_subtree_is(store):
    pid, tree = small_tree(store)
    leaf = tree.leaves()[0]
    rows = [{"data": {"question": f"q{i}", "answer": "a"}, "norm_hash": f"h{i}"} for i in range(10)]
    store.add_samples(pid, leaf.id, rows, cap=None, call_id=None)
    counts = store.sample_counts(pid)
    totals = subtree_counts(tree, counts, per_leaf=10)
    assert totals[leaf.id] == {"live": 10, "accepted": 0, "target": 10}
    assert totals[tree.root.id]["target"] == 40 and totals[tree.root.id]["live"] == 10
    trace = build_figure(tree, counts, color_by="samples", per_leaf=10).data[0]
    colour = dict(zip(trace.ids, trace.marker.colors))
    empty = tree.leaves()[-1]
    assert colour[leaf.id] != colour[empty.id]
    hover = dict(zip(trace.ids, trace.hovertext))
    assert "samples: 10 of 10 wanted" in hover[leaf.id] and "samples: 10 of 40 wanted" in hover[tree.root.id]


def test_hover_tells_path_criterion_values_and_failures(store):
    pid, tree = small_tree(store)
    algebra = next(k for k in tree.kids(tree.root.id) if k.value == "algebra")
    store.update_node(algebra.id, failure="criterion: no usable reply")
    tree = store.tree(pid)
    usage = {algebra.id: {"calls": 4, "failed": 3}}
    hover = dict(zip(*[build_figure(tree, usage=usage).data[0][k] for k in ("ids", "hovertext")]))
    text = hover[algebra.id]
    assert "topic=algebra" in text and "criterion: difficulty" in text and "values: 2" in text
    assert "LLM calls: 4, failed: 3" in text and "failure:" in text


def test_llm_text_is_escaped(store):
    pid = make_project(store)
    root = store.tree(pid).root
    store.update_node(root.id, dimension="topic")
    store.add_children(root, [{"value": "<b>bold</b> one"}, {"value": "<a href='x'>two</a>"}], provenance="llm")
    trace = build_figure(store.tree(pid)).data[0]
    assert "&lt;b&gt;bold&lt;/b&gt; one" in trace.labels
    assert not any("<a " in h or "<b>bold" in h for h in trace.hovertext)


def test_level_and_selection_outline(store):
    pid, tree = small_tree(store)
    algebra = next(k for k in tree.kids(tree.root.id) if k.value == "algebra")
    trace = build_figure(tree, level=algebra.id, selected=algebra.id, maxdepth=3).data[0]
    assert trace.level == algebra.id and trace.maxdepth == 3
    widths = dict(zip(trace.ids, trace.marker.line.width))
    assert widths[algebra.id] == 3 and widths[tree.root.id] == 1
    assert build_figure(tree, level="no-such-node").data[0].level is None


def test_path_texts_match_the_tree(store):
    from treesynth_core.sunburst import path_texts

    pid, tree = small_tree(store)
    assert path_texts(tree) == {nid: tree.path_text(nid) for nid in tree.nodes}
