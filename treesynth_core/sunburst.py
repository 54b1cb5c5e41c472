"""The sunburst figure of a project's tree (plotly only; no Streamlit).

Sectors are keyed by node id (``ids``/``parents``), so two nodes with the same label never merge. Sector
size counts leaves (the tree's shape); colour shows the node's review status (the default), its samples, or,
given a quality report (:mod:`treesynth_core.quality`), its diversity or its overlap with its siblings, on a
fixed scale with a colour bar (the same cosine is the same colour in every dataset). Each label is black or
white, whichever contrasts more with its sector (at least 4.5:1). Every text that came from an LLM or a user is
HTML-escaped before plotly sees it.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

import plotly.graph_objects as go
from plotly.colors import sample_colorscale

from .tree import Node, Tree

STATUS_COLOURS = {
    "root": "#e9ecef",
    "proposed": "#9fb3c8",  # grey-blue: waiting for review
    "approved": "#2f9e44",  # green
    "edited": "#4263eb",  # blue: a human changed it
    "pruned": "#dee2e6",  # pale grey: excluded
    "failed": "#e03131",  # red
}
SAMPLE_SCALE = "YlGn"
PRUNED_COLOUR = STATUS_COLOURS["pruned"]
LABEL_CHARS = 32
COLOR_MODES = ("status", "samples", "diversity", "overlap")
QUALITY_MODES = ("diversity", "overlap")
# Good (diverse, separated) is blue, bad (redundant, overlapping) is red: readable by red-green colour-blind
# eyes. Each label gets black or white text, whichever contrasts more (text_colour).
QUALITY_SCALE = [[0.0, "#4575b4"], [0.25, "#91bfdb"], [0.5, "#ffffbf"], [0.75, "#fc8d59"], [1.0, "#d73027"]]
NO_DATA_COLOUR = "#f1f3f5"  # a node the report has no figure for (no samples, or too few)
# Fixed colour spans, so a repetitive dataset is never painted "diverse" because it is the least repetitive of its
# own nodes. Mean pairwise cosine (all-MiniLM-L6-v2): varied samples of one task sit near 0.2-0.5, templated ones
# near 0.9. Sibling centroid cosine: values that separate their samples sit near 0.2-0.4, siblings holding the same
# kind of sample near 0.97-1. Figures beyond a span take its end colour.
DIVERSITY_SPAN = (0.2, 0.9)
OVERLAP_SPAN = (0.5, 1.0)
TEXT_DARK, TEXT_LIGHT = "#000000", "#ffffff"


def _short(text: str, limit: int = LABEL_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _esc(text) -> str:
    return html.escape(str(text), quote=False)


def subtree_counts(tree: Tree, counts: dict[str, dict[str, int]], per_leaf: int = 10) -> dict[str, dict[str, int]]:
    """Per node, over its whole subtree: live (not rejected) and accepted samples, and the target
    (the sum of the quotas of its live leaves)."""
    pruned = _pruned_flags(tree)
    totals = {nid: {"live": 0, "accepted": 0, "target": 0} for nid in tree.nodes}
    for node in sorted(tree.nodes.values(), key=lambda n: -n.depth):
        own = counts.get(node.id, {})
        totals[node.id]["live"] += sum(n for status, n in own.items() if status != "rejected")
        totals[node.id]["accepted"] += own.get("accepted", 0)
        if not pruned[node.id] and node.parent_id and not tree.kids(node.id, include_pruned=False):
            totals[node.id]["target"] += node.quota if node.quota is not None else per_leaf
        if node.parent_id in totals:
            for key in ("live", "accepted", "target"):
                totals[node.parent_id][key] += totals[node.id][key]
    return totals


def _pruned_flags(tree: Tree) -> dict[str, bool]:
    flags: dict[str, bool] = {}
    for node in sorted(tree.nodes.values(), key=lambda n: n.depth):
        flags[node.id] = node.status == "pruned" or flags.get(node.parent_id or "", False)
    return flags


def path_texts(tree: Tree) -> dict[str, str]:
    """``tree.path_text`` of every node in one top-down pass (the same text, without a walk per node)."""
    out: dict[str, str] = {}
    for node in sorted(tree.nodes.values(), key=lambda n: n.depth):
        parent = tree.nodes.get(node.parent_id) if node.parent_id else None
        if parent is None:
            out[node.id] = "(root)"
            continue
        pair = f"{parent.dimension or ''}={node.label}"
        out[node.id] = pair if parent.parent_id is None else f"{out[parent.id]} > {pair}"
    return out


def _hover(tree: Tree, node: Node, path: str, totals: dict, use: dict, pruned: bool) -> str:
    kids = tree.kids(node.id)
    lines = [f"<b>{_esc(_short(path, 160))}</b>"]
    lines.append(f"criterion: {_esc(node.dimension) if node.dimension else '(none yet)'}")
    if node.infinite:
        lines.append(f"open-ended: {len(node.values)} values drawn at random")
    else:
        lines.append(f"values: {len(kids)}")
    status = "pruned (inherited)" if pruned and node.status != "pruned" else node.status
    lines.append(f"status: {status}{' · locked' if node.locked else ''} · by {node.provenance}")
    lines.append(f"samples: {totals['live']} of {totals['target']} wanted ({totals['accepted']} accepted)")
    failed = use.get("failed", 0)
    lines.append(f"LLM calls: {use.get('calls', 0)}, failed: {failed}")
    if node.failure:
        lines.append(f"<b>failure:</b> {_esc(_short(node.failure, 120))}")
    return "<br>".join(lines)


# ------------------------------------------------------------------------------------ quality colours


@dataclass(frozen=True)
class Paint:
    """What a quality colour mode shows: a figure per node (lower = better), the hover lines that explain it,
    the colour bar's title, its fixed span and what its two ends mean."""

    values: dict[str, float]
    notes: dict[str, list[str]] = field(default_factory=dict)
    title: str = ""
    span: tuple[float, float] = (0.0, 1.0)
    ends: tuple[str, str] = ("better", "worse")


def _fmt(x: float | None, digits: int = 3) -> str:
    return "not enough data" if x is None else f"{x:.{digits}f}"


def diversity_paint(report) -> Paint:
    """Per node, the paper-style mean pairwise cosine of the samples below it (lower = more diverse), from a
    quality report's ``by_leaf`` and ``by_node``; a node with fewer than two samples has no figure."""
    metrics = {**dict(getattr(report, "by_node", {}) or {}), **dict(getattr(report, "by_leaf", {}) or {})}
    values, notes = {}, {}
    for node_id, m in metrics.items():
        lines = [f"mean cosine: {_fmt(m.mean_cosine)} over {m.n} sample(s) (paper-style; lower = more diverse)"]
        if m.near_dup_pairs is not None:
            lines.append(f"near-duplicate pairs: {m.near_dup_pairs} in {m.near_dup_clusters or 0} cluster(s)")
        if m.distinct_2 is not None:
            lines.append(f"distinct-2: {m.distinct_2:.3f} (higher = more varied wording)")
        notes[node_id] = lines
        if m.mean_cosine is not None:
            values[node_id] = float(m.mean_cosine)
    return Paint(values, notes, "mean cosine<br>(fixed scale)", DIVERSITY_SPAN, ("diverse", "repetitive"))


def overlap_paint(report, tree: Tree) -> Paint:
    """Per node, its worst sibling overlap: the highest centroid cosine between its samples and a sibling's
    (lower = the split's values separate better), from a quality report's ``splits``. The parent's hover names
    its split's worst pair."""
    values: dict[str, float] = {}
    notes: dict[str, list[str]] = {}
    worst_of_split: dict[str, object] = {}
    for split in getattr(report, "splits", None) or []:
        cosine = float(split.centroid_cosine)
        for me, other, other_value in ((split.child_a, split.child_b, split.value_b),
                                       (split.child_b, split.child_a, split.value_a)):
            if me not in values or cosine > values[me]:
                values[me] = cosine
                lines = [f"worst sibling overlap: centroid cosine {cosine:.3f} with "
                         f"{_esc(_short(str(other_value), 60))} (lower = better separated)"]
                if split.separation is not None:
                    lines.append(f"separation: {split.separation:.2f} (near 1 or above: the values do not separate "
                                 "the samples)")
                lines.append(f"cross-sibling near-duplicate pairs with it: {_pair_count(split):,}")
                notes[me] = lines
        best = worst_of_split.get(split.node_id)
        if best is None or cosine > best.centroid_cosine:
            worst_of_split[split.node_id] = split
    for node_id, split in worst_of_split.items():
        notes.setdefault(node_id, []).append(
            f"its split on {_esc(split.dimension)}: worst pair {_esc(_short(str(split.value_a), 40))} / "
            f"{_esc(_short(str(split.value_b), 40))}, centroid cosine {split.centroid_cosine:.3f}")
    values = {k: v for k, v in values.items() if k in tree.nodes}
    return Paint(values, notes, "worst sibling<br>centroid cosine<br>(fixed scale)", OVERLAP_SPAN,
                 ("separated", "overlapping"))


def _pair_count(split) -> int:
    """All the split's cross-sibling near-duplicate pairs (the report keeps only the most similar of them)."""
    return max(int(getattr(split, "cross_pair_count", 0) or 0), len(split.cross_pairs or []))


def quality_paint(report, tree: Tree, color_by: str) -> Paint:
    if report is None:
        return Paint({}, {}, "")
    return diversity_paint(report) if color_by == "diversity" else overlap_paint(report, tree)


def scale_colour(value: float, lo: float, hi: float) -> str:
    """The scale's colour of ``value`` on the span ``lo``..``hi`` (clipped to its ends)."""
    t = 0.0 if hi <= lo else min(max((value - lo) / (hi - lo), 0.0), 1.0)
    return sample_colorscale(QUALITY_SCALE, [t])[0]


def _rgb(colour: str) -> tuple[int, int, int]:
    """``#rrggbb`` or ``rgb(r, g, b)`` as three 0-255 integers."""
    colour = colour.strip()
    if colour.startswith("#"):
        return tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))
    r, g, b = (round(float(x)) for x in colour[colour.index("(") + 1 : colour.index(")")].split(",")[:3])
    return r, g, b


def luminance(colour: str) -> float:
    """WCAG 2 relative luminance of a colour (0 black .. 1 white)."""
    def channel(c: int) -> float:
        c = c / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in _rgb(colour))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    """WCAG 2 contrast ratio of two colours (1 .. 21; body text wants at least 4.5)."""
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def text_colour(fill: str) -> str:
    """Black or white, whichever contrasts more with ``fill``: at least 4.58:1 on any fill."""
    return TEXT_DARK if contrast(fill, TEXT_DARK) >= contrast(fill, TEXT_LIGHT) else TEXT_LIGHT


def _colour_bar(paint: Paint) -> dict:
    """An invisible scatter trace whose only job is the colour bar (a sunburst with explicit colours has none):
    the fixed span, its ends labelled with what they mean and that figures beyond them take their colour."""
    lo, hi = paint.span
    good, bad = paint.ends
    ticks = dict(tickvals=[lo, (lo + hi) / 2, hi],
                 ticktext=[f"≤ {lo:.2f} {good}", f"{(lo + hi) / 2:.2f}", f"{'≥ ' if hi < 1 else ''}{hi:.2f} {bad}"])
    return dict(type="scatter", x=[None], y=[None], mode="markers", hoverinfo="skip", showlegend=False,
                marker=dict(colorscale=QUALITY_SCALE, cmin=lo, cmax=hi, color=[lo], showscale=True,
                            colorbar=dict(title=dict(text=paint.title, side="top"), thickness=14, len=0.75,
                                          **ticks)))


def build_figure(tree: Tree, counts: dict[str, dict[str, int]] | None = None,
                 usage: dict[str, dict] | None = None, *, color_by: str = "status", level: str | None = None,
                 selected: str | None = None, maxdepth: int = 4, per_leaf: int = 10,
                 height: int = 620, quality=None) -> go.Figure:
    """A sunburst of ``tree``. ``color_by`` is "status" (the default), "samples" (how full each subtree is
    against its leaves' quotas), "diversity" (each node's paper-style mean cosine) or "overlap" (each node's
    worst sibling centroid cosine); the last two read ``quality``, a :class:`treesynth_core.quality.QualityReport`
    (without one every sector is neutral grey), and add a colour bar with a fixed span (``DIVERSITY_SPAN``,
    ``OVERLAP_SPAN``). Labels are black or white by contrast with their sector. ``level`` zooms to a node;
    ``selected`` gets a dark outline; ``maxdepth`` rings are drawn from the current level."""
    if color_by not in COLOR_MODES:
        raise ValueError(f"color_by must be one of {', '.join(COLOR_MODES)}, not {color_by!r}")
    counts = counts or {}
    usage = usage or {}
    paint = quality_paint(quality, tree, color_by) if color_by in QUALITY_MODES else None
    lo, hi = paint.span if paint else (0.0, 1.0)
    totals = subtree_counts(tree, counts, per_leaf)
    pruned = _pruned_flags(tree)
    paths = path_texts(tree)
    nodes = sorted(tree.nodes.values(), key=lambda n: (n.depth, n.position, n.id))
    palette = sample_colorscale(SAMPLE_SCALE, [0.05 + 0.9 * i / 20 for i in range(21)])
    ids, parents, labels, hovers, colours, widths, lines = [], [], [], [], [], [], []
    for node in nodes:
        ids.append(node.id)
        parents.append(node.parent_id or "")
        label = "(root)" if node.parent_id is None else _short(node.label)
        if node.failure:
            label = "⚠ " + label
        labels.append(_esc(label))
        hover = _hover(tree, node, paths[node.id], totals[node.id], usage.get(node.id, {}), pruned[node.id])
        if paint is not None:
            extra = paint.notes.get(node.id) or (
                ["no quality report yet: compute one on the Quality page"] if quality is None
                else ["quality: no samples measured here"])
            hover += "<br>" + "<br>".join(extra)
        hovers.append(hover)
        if pruned[node.id]:
            colours.append(PRUNED_COLOUR)
        elif paint is not None:
            value = paint.values.get(node.id)
            colours.append(NO_DATA_COLOUR if value is None else scale_colour(value, lo, hi))
        elif color_by == "samples":
            total = totals[node.id]
            share = total["live"] / total["target"] if total["target"] else 0.0
            colours.append(palette[round(min(share, 1.0) * 20)])
        elif node.parent_id is None:
            colours.append(STATUS_COLOURS["root"])
        else:
            colours.append(STATUS_COLOURS.get(node.status, STATUS_COLOURS["proposed"]))
        is_selected = node.id == selected
        widths.append(3 if is_selected else 1)
        lines.append("#212529" if is_selected else "#ffffff")
    texts = [text_colour(c) for c in colours]
    trace = dict(
        type="sunburst", ids=ids, parents=parents, labels=labels, hovertext=hovers, hoverinfo="text",
        marker=dict(colors=colours, line=dict(width=widths, color=lines)),
        insidetextfont=dict(color=texts), hoverlabel=dict(font=dict(color=texts)),
        maxdepth=maxdepth, insidetextorientation="radial", sort=False, leaf=dict(opacity=1.0),
    )
    if level and level in tree.nodes:
        trace["level"] = level
    layout = dict(margin=dict(t=8, l=8, r=8, b=8), height=height, uirevision="tree")
    data = [trace]
    if paint is not None and paint.values:
        data.append(_colour_bar(paint))
        layout.update(xaxis=dict(visible=False), yaxis=dict(visible=False), plot_bgcolor="rgba(0,0,0,0)")
    # Every value above is built here from known types, so plotly's per-element validation (most of the
    # time on a 5,000-node tree) is skipped.
    fig = go.Figure(data=data, layout=layout, _validate=False)
    return fig
