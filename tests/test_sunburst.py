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
    assert widths[algebra.id] == 3 and all(w == 1 for nid, w in widths.items() if nid != algebra.id)
    assert tree.root.id not in trace.ids  # drawn from the level down: the centre is the zoomed node
    assert dict(zip(trace.ids, trace.parents))[algebra.id] == ""
    assert build_figure(tree, level="no-such-node").data[0].level is None


def test_path_texts_match_the_tree(store):
    from treesynth_core.sunburst import path_texts

    pid, tree = small_tree(store)
    assert path_texts(tree) == {nid: tree.path_text(nid) for nid in tree.nodes}


# ---------------------------------------------------------------------------- painted by quality (issue 9)
from types import SimpleNamespace  # noqa: E402

import pytest  # noqa: E402

from treesynth_core.sunburst import (  # noqa: E402
    DIVERSITY_SPAN, NO_DATA_COLOUR, OVERLAP_SPAN, QUALITY_SCALE, contrast, scale_colour, text_colour)


def metrics(n, mean_cosine, pairs=0):
    return SimpleNamespace(n=n, mean_cosine=mean_cosine, near_dup_pairs=pairs, near_dup_clusters=min(pairs, 1),
                           distinct_2=0.5)


def fake_report(tree):
    """A report-shaped object: algebra's leaves diverse, geometry's redundant, one leaf without enough data."""
    algebra, geometry = tree.kids(tree.root.id)
    a_easy, a_hard = tree.kids(algebra.id)
    g_easy, g_hard = tree.kids(geometry.id)
    by_leaf = {a_easy.id: metrics(5, 0.20), a_hard.id: metrics(5, 0.25), g_easy.id: metrics(5, 0.80, 4),
               g_hard.id: metrics(1, None)}
    by_node = {tree.root.id: metrics(16, 0.45), algebra.id: metrics(10, 0.22), geometry.id: metrics(6, 0.78)}

    def split(parent, a, b, cos):
        return SimpleNamespace(node_id=parent.id, dimension=parent.dimension, value_a=a.value, value_b=b.value,
                               child_a=a.id, child_b=b.id, centroid_cosine=cos,
                               separation=1.1 if cos > 0.5 else 0.6, cross_pairs=[(1, 2, 0.9)] * int(cos > 0.5))

    splits = [split(geometry, g_easy, g_hard, 0.93), split(tree.root, algebra, geometry, 0.41),
              split(algebra, a_easy, a_hard, 0.30)]
    return SimpleNamespace(by_leaf=by_leaf, by_node=by_node, splits=splits), (a_easy, a_hard, g_easy, g_hard)


def test_default_colouring_is_status_and_unknown_modes_are_refused(store):
    pid, tree = small_tree(store)
    report, _ = fake_report(tree)
    plain = build_figure(tree).data[0].marker.colors
    assert tuple(plain) == tuple(build_figure(tree, color_by="status", quality=report).data[0].marker.colors)
    assert len(build_figure(tree, quality=report).data) == 1  # no colour bar unless a quality mode is chosen
    with pytest.raises(ValueError):
        build_figure(tree, color_by="rainbow")


def test_diversity_mode_paints_mean_cosine_with_a_colour_bar(store):
    pid, tree = small_tree(store)
    report, (a_easy, a_hard, g_easy, g_hard) = fake_report(tree)
    fig = build_figure(tree, color_by="diversity", quality=report)
    sun, bar = fig.data
    colour = dict(zip(sun.ids, sun.marker.colors))
    assert colour != dict(zip(sun.ids, build_figure(tree).data[0].marker.colors))
    lo, hi = DIVERSITY_SPAN
    assert colour[a_easy.id] == scale_colour(0.20, lo, hi) and colour[g_easy.id] == scale_colour(0.80, lo, hi)
    assert colour[a_easy.id] != colour[g_easy.id]
    assert colour[g_hard.id] == NO_DATA_COLOUR  # one sample: no figure, neutral, never NaN
    assert bar.marker.showscale and (bar.marker.cmin, bar.marker.cmax) == (lo, hi)
    hover = dict(zip(sun.ids, sun.hovertext))
    assert "mean cosine: 0.800 over 5 sample(s)" in hover[g_easy.id] and "near-duplicate pairs: 4" in hover[g_easy.id]
    assert "mean cosine: not enough data over 1 sample(s)" in hover[g_hard.id]
    assert "nan" not in " ".join(sun.hovertext).lower()


def test_overlap_mode_paints_each_node_by_its_worst_sibling(store):
    pid, tree = small_tree(store)
    report, (a_easy, a_hard, g_easy, g_hard) = fake_report(tree)
    sun = build_figure(tree, color_by="overlap", quality=report).data[0]
    colour = dict(zip(sun.ids, sun.marker.colors))
    assert colour[g_easy.id] == colour[g_hard.id] == scale_colour(0.93, *OVERLAP_SPAN)
    assert colour[a_easy.id] == scale_colour(0.30, *OVERLAP_SPAN) != colour[g_easy.id]
    assert colour[tree.root.id] == NO_DATA_COLOUR  # the root has no siblings
    hover = dict(zip(sun.ids, sun.hovertext))
    assert "centroid cosine 0.930 with hard" in hover[g_easy.id] and "separation: 1.10" in hover[g_easy.id]
    geometry = tree.nodes[g_easy.id].parent_id
    assert "its split on difficulty: worst pair easy / hard, centroid cosine 0.930" in hover[geometry]


def test_quality_modes_without_a_report_are_neutral(store):
    pid, tree = small_tree(store)
    fig = build_figure(tree, color_by="overlap")
    assert len(fig.data) == 1 and set(fig.data[0].marker.colors) == {NO_DATA_COLOUR}
    assert "compute one on the Quality page" in fig.data[0].hovertext[0]


def test_quality_hover_escapes_llm_values(store):
    pid = make_project(store)
    root = store.tree(pid).root
    store.update_node(root.id, dimension="topic")
    store.add_children(root, [{"value": "<b>one</b>"}, {"value": "two"}], provenance="llm")
    tree = store.tree(pid)
    a, b = tree.kids(root.id)
    report = SimpleNamespace(by_leaf={}, by_node={}, splits=[SimpleNamespace(
        node_id=root.id, dimension="<i>topic</i>", value_a=a.value, value_b=b.value, child_a=a.id, child_b=b.id,
        centroid_cosine=0.5, separation=None, cross_pairs=[])])
    hovers = " ".join(build_figure(tree, color_by="overlap", quality=report).data[0].hovertext)
    assert "<b>one" not in hovers and "&lt;b&gt;one" in hovers and "<i>topic" not in hovers


def test_a_repetitive_dataset_is_painted_repetitive_on_the_fixed_scale(store):
    """Every node near 0.87 mean cosine (templated data): all red, none painted "diverse" for being the least
    repetitive of its own nodes; the colour bar shows the fixed span and what its ends mean."""
    pid, tree = small_tree(store)
    figures = [0.85, 0.86, 0.87, 0.88, 0.89, 0.87, 0.86]
    report = SimpleNamespace(by_leaf={}, by_node={n: metrics(5, v) for n, v in zip(tree.nodes, figures)}, splits=[])
    sun, bar = build_figure(tree, color_by="diversity", quality=report).data
    red_half = {scale_colour(v, *DIVERSITY_SPAN) for v in figures}
    assert set(sun.marker.colors) == red_half
    rgb = [[int(x) for x in c[c.index("(") + 1 : -1].split(",")] for c in red_half]
    assert all(r > 200 and g < 145 and b < 90 for r, g, b in rgb)  # between orange (#fc8d59) and red (#d73027)
    assert all(scale_colour(v, *DIVERSITY_SPAN) == scale_colour(v, 0.2, 0.9) for v in figures)
    assert (bar.marker.cmin, bar.marker.cmax) == DIVERSITY_SPAN == (0.2, 0.9)
    assert list(bar.marker.colorbar.ticktext) == ["≤ 0.20 diverse", "0.55", "≥ 0.90 repetitive"]
    assert "fixed scale" in bar.marker.colorbar.title.text
    assert scale_colour(0.1, *DIVERSITY_SPAN) == scale_colour(0.2, *DIVERSITY_SPAN)  # beyond the span: its end
    overlap = build_figure(tree, color_by="overlap", quality=fake_report(tree)[0]).data[1]
    assert (overlap.marker.cmin, overlap.marker.cmax) == OVERLAP_SPAN
    assert list(overlap.marker.colorbar.ticktext) == ["≤ 0.50 separated", "0.75", "1.00 overlapping"]


@pytest.mark.parametrize("mode", ["status", "samples", "diversity", "overlap"])
def test_labels_contrast_with_their_sector(store, mode):
    """Each label is black or white, whichever contrasts more with its fill: at least 4.5:1 (WCAG AA), on the
    dark ends of the quality scale too (plotly's own choice put white on the approved green, 3.4:1)."""
    pid, tree = small_tree(store)
    algebra = tree.kids(tree.root.id)[0]
    edits.approve(store, algebra.id)
    tree = store.tree(pid)
    report, _ = fake_report(tree)
    sun = build_figure(tree, color_by=mode, quality=report).data[0]
    fills, texts = list(sun.marker.colors), list(sun.insidetextfont.color)
    assert len(texts) == len(fills) and list(sun.hoverlabel.font.color) == texts
    assert all(contrast(fill, text) >= 4.5 for fill, text in zip(fills, texts)), list(zip(fills, texts))
    for fill in [QUALITY_SCALE[0][1], QUALITY_SCALE[-1][1], *(scale_colour(t / 20, 0, 1) for t in range(21))]:
        assert contrast(fill, text_colour(fill)) >= 4.5
    assert text_colour("#4575b4") == "#ffffff" and text_colour("#ffffbf") == "#000000"
    assert contrast("#000000", "#ffffff") == pytest.approx(21.0)


def test_overlap_hover_counts_every_cross_pair_not_the_kept_ones(store):
    pid, tree = small_tree(store)
    algebra, geometry = tree.kids(tree.root.id)
    split = SimpleNamespace(node_id=tree.root.id, dimension="topic", value_a=algebra.value, value_b=geometry.value,
                            child_a=algebra.id, child_b=geometry.id, centroid_cosine=0.9, separation=1.0,
                            cross_pairs=[(1, 2, 0.95)] * 50, cross_pair_count=1234)  # 50 kept of 1,234
    report = SimpleNamespace(by_leaf={}, by_node={}, splits=[split])
    sun = build_figure(tree, color_by="overlap", quality=report).data[0]
    hover = dict(zip(sun.ids, sun.hovertext))
    assert "cross-sibling near-duplicate pairs with it: 1,234" in hover[algebra.id]


# ---------------------------------------------------------------------------- level of detail (issue 8)
from treesynth_core.sunburst import (  # noqa: E402
    FOLD_COLOUR, MIN_DEGREES, fold_id, folded_parent, leaf_sizes, view)
from treesynth_core.tree import Node, Tree  # noqa: E402


def wide_tree(branching: list[int], skew: bool = False) -> Tree:
    """A tree built in memory: ``branching[d]`` children per node at depth d; with ``skew`` the first child of
    the root holds almost every leaf (its siblings end up narrow)."""
    nodes = [Node(id="r", project_id=1, parent_id=None, depth=0, dimension="d0")]
    level = ["r"]
    for depth, b in enumerate(branching):
        nxt = []
        for parent in level:
            for i in range(b):
                nid = f"{parent}.{i}"
                nodes.append(Node(id=nid, project_id=1, parent_id=parent, depth=depth + 1, value=f"v{i}",
                                  position=i, dimension=f"d{depth + 1}" if depth + 1 < len(branching) else None))
                if not skew or depth > 0 or i == 0:
                    nxt.append(nid)
        level = nxt
    return Tree(nodes)


def test_a_20000_node_tree_draws_a_bounded_readable_figure():
    tree = wide_tree([27, 27, 27])
    assert len(tree) == 1 + 27 + 27 ** 2 + 27 ** 3
    fig = build_figure(tree, maxdepth=6)
    trace = fig.data[0]
    assert len(trace.ids) < 1200 and len(fig.to_json()) < 1_000_000
    by_id = dict(zip(trace.ids, trace.values))
    # every drawn sector is at least MIN_DEGREES wide (the haze of hairline sectors is gone)
    whole = by_id["r"]
    assert all(360 * v / whole >= MIN_DEGREES for v in trace.values)
    # the second ring's 729 nodes are each under 1 degree: folded, one "+27 more" sector per first-ring node
    folds = [i for i in trace.ids if folded_parent(i)]
    assert len(folds) == 27 and len(trace.ids) == 1 + 27 + 27
    labels = dict(zip(trace.ids, trace.labels))
    assert all(labels[f] == "+27 more" for f in folds)
    # values add up: a parent's value equals its drawn children plus its fold (branchvalues total)
    parents = dict(zip(trace.ids, trace.parents))
    for pid in set(parents.values()) - {""}:
        assert sum(v for i, v in by_id.items() if parents[i] == pid) == by_id[pid]


def test_narrow_siblings_fold_and_a_zoom_shows_them():
    tree = wide_tree([30, 40], skew=True)  # r.0 holds 40 leaves; r.1 .. r.29 one leaf each
    sizes = leaf_sizes(tree)
    assert sizes["r"] == 40 + 29 and sizes["r.0"] == 40
    shown = view(tree, "r", maxdepth=3, sizes=sizes)
    drawn = {n.id for n in shown.nodes}
    # each narrow sibling is 360/69 = 5.2 degrees: wide enough; under r.0 40 leaves of 5.2 degrees each are drawn
    assert "r.1" in drawn and "r.0.39" in drawn
    shown = view(tree, "r", maxdepth=3, min_degrees=6.0, sizes=sizes)
    assert shown.folds == {"r": [f"r.{i}" for i in range(1, 30)], "r.0": [f"r.0.{i}" for i in range(40)]}
    trace = build_figure(tree, level="r", maxdepth=3, min_degrees=6.0).data[0]
    colour = dict(zip(trace.ids, trace.marker.colors))
    assert colour[fold_id("r")] == FOLD_COLOUR and "+29 more" in trace.labels
    hover = dict(zip(trace.ids, trace.hovertext))[fold_id("r")]
    assert "+29 more values of d0" in hover and "click to list them" in hover
    zoomed = view(tree, "r.0", maxdepth=3, min_degrees=6.0)  # zoomed in, its 40 leaves are 9 degrees each
    assert not zoomed.folds and len(zoomed.nodes) == 41
    assert folded_parent("r") is None and folded_parent(fold_id("r.0")) == "r.0"


def test_failures_mode_colours_by_failed_nodes_and_calls(store):
    from treesynth_core.sunburst import FAILURE_NONE, failure_counts

    pid, tree = small_tree(store)
    algebra, geometry = tree.kids(tree.root.id)
    leaf = tree.kids(algebra.id)[0]
    store.update_node(leaf.id, status="failed", failure="criterion: no usable reply")
    tree = store.tree(pid)
    usage = {geometry.id: {"calls": 5, "failed": 3}}
    counts = failure_counts(tree, usage)
    assert counts[leaf.id] == 1 and counts[algebra.id] == 1 and counts[geometry.id] == 3 and counts[tree.root.id] == 4
    assert tree.kids(geometry.id)[0].id not in counts  # nothing failed there
    trace = build_figure(tree, usage=usage, color_by="failures").data[0]
    colour = dict(zip(trace.ids, trace.marker.colors))
    assert colour[tree.kids(geometry.id)[0].id] == FAILURE_NONE
    assert colour[geometry.id] != FAILURE_NONE and colour[geometry.id] != colour[algebra.id]
    assert all(contrast(c, t) >= 4.5 for c, t in zip(trace.marker.colors, trace.insidetextfont.color))


def test_hover_carries_the_evidence_in_short(store):
    from treesynth_core.spec import Settings

    pid, tree = small_tree(store)
    store.update_node(tree.root.id, pivots=[{"question": "How many apples are left?", "answer": "3"}],
                      note="accepted after 3 tries although: 1 pivot unlabelled")
    tree = store.tree(pid)
    usage = {tree.root.id: {"calls": 3, "failed": 0, "prompt_tokens": 1000, "completion_tokens": 500}}
    settings = Settings(price_input_per_m=1.0, price_output_per_m=2.0)
    hover = dict(zip(*[build_figure(tree, usage=usage, settings=settings).data[0][k] for k in ("ids", "hovertext")]))
    text = hover[tree.root.id]
    assert "1,500 tokens · $0.0020" in text and "pivots: 1 · e.g. How many apples are left?" in text
    assert "needs review:</b> accepted after 3 tries" in text
