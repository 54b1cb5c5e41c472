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
import math
from dataclasses import dataclass, field

import plotly.graph_objects as go
from plotly.colors import sample_colorscale

from .samples import NOT_CONTENT
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
COLOR_MODES = ("status", "samples", "failures", "diversity", "overlap", "imbalance")
QUALITY_MODES = ("diversity", "overlap", "imbalance")  # imbalance: a Paint made by balance.imbalance_paint
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
FOLD_COLOUR = "#ced4da"  # a "+N more" sector: several small siblings folded into one
FAILURE_NONE = "#f1f3f5"  # "failures" mode: nothing failed below this node
FAILURE_SCALE = [[0.0, "#ffc9c9"], [1.0, "#a51111"]]  # 1 failure .. FAILURE_TOP or more
FAILURE_TOP = 32
# Level of detail: a sector narrower than this many degrees is not drawn on its own (see ``view``). At 2
# degrees a ring holds at most 180 sectors, so 6 rings stay under ~1,100 sectors (and a ~1 MB figure) at any
# tree size, and the outer rings never turn into a haze of hairline sectors and their white borders.
MIN_DEGREES = 2.0
FOLD_PREFIX = "more:"


def _short(text: str, limit: int = LABEL_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _esc(text) -> str:
    return html.escape(str(text), quote=False)


def subtree_counts(tree: Tree, counts: dict[str, dict[str, int]], per_leaf: int = 10) -> dict[str, dict[str, int]]:
    """Per node, over its whole subtree: live (not rejected, not excluded by balancing) and accepted samples, and the target
    (the sum of the quotas of its live leaves)."""
    pruned = _pruned_flags(tree)
    totals = {nid: {"live": 0, "accepted": 0, "target": 0} for nid in tree.nodes}
    for node in sorted(tree.nodes.values(), key=lambda n: -n.depth):
        own = counts.get(node.id, {})
        totals[node.id]["live"] += sum(n for status, n in own.items() if status not in NOT_CONTENT)
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


pruned_flags = _pruned_flags  # per node: pruned itself or under a pruned node


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


def _pivot_text(pivot) -> str:
    """A pivot sample in one short line: its first field's text."""
    if isinstance(pivot, dict) and pivot:
        return str(next(iter(pivot.values())))
    return str(pivot)


def _hover(tree: Tree, node: Node, path: str, totals: dict, use: dict, pruned: bool, settings=None,
           failures: int = 0) -> str:
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
    calls = f"LLM calls: {use.get('calls', 0)}, failed: {failed}"
    tokens = int(use.get("prompt_tokens", 0) or 0) + int(use.get("completion_tokens", 0) or 0)
    if tokens:
        calls += f" · {tokens:,} tokens"
        cost = settings.cost(use.get("prompt_tokens", 0) or 0, use.get("completion_tokens", 0) or 0) \
            if settings is not None else None
        if cost is not None:
            calls += f" · ${cost:,.4f}"
    lines.append(calls)
    if failures:
        lines.append(f"failures in this subtree: {failures}")
    if node.pivots:
        lines.append(f"pivots: {len(node.pivots)} · e.g. {_esc(_short(_pivot_text(node.pivots[0]), 70))}")
    if node.note:
        lines.append(f"<b>needs review:</b> {_esc(_short(node.note, 120))}")
    if node.failure:
        lines.append(f"<b>failure:</b> {_esc(_short(node.failure, 120))}")
    return "<br>".join(lines)


# ------------------------------------------------------------------------------------ level of detail


@dataclass
class View:
    """What the chart draws of a tree: the nodes from ``root`` down, ring by ring, while a sector is at least
    ``min_degrees`` wide. Siblings narrower than that are folded into one "+N more" sector per parent
    (``folds``: parent id -> the folded child ids, in order); a node too narrow to split, or on the last ring,
    is drawn without its children. So the number of sectors is bounded by the rings and the angle, not by the
    size of the tree."""

    root: str
    nodes: list[Node]
    folds: dict[str, list[str]]
    sizes: dict[str, int]

    def sector_count(self) -> int:
        return len(self.nodes) + len(self.folds)


def fold_id(parent_id: str) -> str:
    """The id of the "+N more" sector under ``parent_id`` (never a node id: those are hex)."""
    return f"{FOLD_PREFIX}{parent_id}"


def folded_parent(sector_id: str | None) -> str | None:
    """The parent whose folded children ``sector_id`` stands for, or None for a node's own sector."""
    if sector_id and sector_id.startswith(FOLD_PREFIX):
        return sector_id[len(FOLD_PREFIX):]
    return None


def leaf_sizes(tree: Tree) -> dict[str, int]:
    """Per node, how many leaves (nodes without children, pruned ones included) its subtree holds: the
    angular size of its sector."""
    sizes = {nid: 0 for nid in tree.nodes}
    for node in sorted(tree.nodes.values(), key=lambda n: -n.depth):
        if not tree.children.get(node.id):
            sizes[node.id] += 1
        if node.parent_id in sizes:
            sizes[node.parent_id] += sizes[node.id]
    return sizes


def view(tree: Tree, level: str | None = None, maxdepth: int = 4, min_degrees: float | None = None,
         sizes: dict[str, int] | None = None) -> View:
    """The sectors to draw from ``level`` (default the root) down ``maxdepth`` rings, the centre included;
    ``min_degrees`` defaults to MIN_DEGREES."""
    min_degrees = MIN_DEGREES if min_degrees is None else min_degrees
    sizes = sizes if sizes is not None else leaf_sizes(tree)
    root = level if level in tree.nodes else tree.root.id
    whole = max(sizes[root], 1)

    def degrees(nid: str) -> float:
        return 360.0 * sizes[nid] / whole

    shown, folds = [tree.nodes[root]], {}
    frontier, ring = [root], 1
    while frontier and ring < maxdepth:
        nxt = []
        for parent in frontier:
            kids = tree.children.get(parent, [])
            if not kids or degrees(parent) < min_degrees:
                continue
            narrow = [k for k in kids if degrees(k.id) < min_degrees]
            if len(narrow) == 1:  # folding one sector into "+1 more" saves nothing
                narrow = []
            drawn = [k for k in kids if k not in narrow] if narrow else kids
            shown += drawn
            nxt += [k.id for k in drawn]
            if narrow:
                folds[parent] = [k.id for k in narrow]
        frontier, ring = nxt, ring + 1
    return View(root, shown, folds, sizes)


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
    if isinstance(report, Paint):  # figures the caller computed (issue 11: imported rows against a target)
        return report
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


def failure_counts(tree: Tree, usage: dict[str, dict] | None = None) -> dict[str, int]:
    """Per node with any, over its whole subtree: failed nodes (a failed expansion) plus failed LLM call
    attempts (a node missing from the result has none). Each failure walks up its path, so the cost follows
    the failures, not the size of the tree."""
    usage = usage or {}
    totals: dict[str, int] = {}
    own = {nid: int((use or {}).get("failed", 0) or 0) for nid, use in usage.items() if nid in tree.nodes}
    for node in tree.nodes.values():
        if node.failure or node.status == "failed":
            own[node.id] = own.get(node.id, 0) + 1
    for nid, n in own.items():
        node = tree.nodes.get(nid)
        while node is not None and n:
            totals[node.id] = totals.get(node.id, 0) + n
            node = tree.nodes.get(node.parent_id) if node.parent_id else None
    return totals


def failure_colour(count: int) -> str:
    if count <= 0:
        return FAILURE_NONE
    t = min(math.log2(count) / math.log2(FAILURE_TOP), 1.0)
    return sample_colorscale(FAILURE_SCALE, [t])[0]


def _fold_hover(tree: Tree, parent: Node, folded: list[str], totals: dict, failures: dict) -> str:
    names = ", ".join(_esc(_short(tree.nodes[k].label, 30)) for k in folded[:6])
    more = f" and {len(folded) - 6} more" if len(folded) > 6 else ""
    live = sum(totals[k]["live"] for k in folded)
    target = sum(totals[k]["target"] for k in folded)
    lines = [f"<b>+{len(folded)} more values of {_esc(_short(parent.dimension or '', 60))}</b>",
             f"{names}{more}", f"too narrow to draw one by one · samples: {live} of {target} wanted"]
    failed = sum(failures.get(k, 0) for k in folded)
    if failed:
        lines.append(f"failures in them: {failed}")
    lines.append("click to list them")
    return "<br>".join(lines)


def build_figure(tree: Tree, counts: dict[str, dict[str, int]] | None = None,
                 usage: dict[str, dict] | None = None, *, color_by: str = "status", level: str | None = None,
                 selected: str | None = None, maxdepth: int = 4, per_leaf: int = 10,
                 height: int = 620, quality=None, settings=None, totals: dict | None = None,
                 min_degrees: float | None = None, paths: dict | None = None, pruned: dict | None = None,
                 sizes: dict | None = None) -> go.Figure:
    """A sunburst of ``tree`` from ``level`` (default the root) down ``maxdepth`` rings, the centre included,
    with a bounded number of sectors (``view``: siblings narrower than ``min_degrees`` fold into one "+N more"
    sector whose id is ``fold_id(parent)``). Sector size counts leaves. ``color_by`` is "status" (the default),
    "samples" (how full each subtree is against its leaves' quotas), "failures" (failed nodes and failed call
    attempts in the subtree), "diversity" (each node's paper-style mean cosine) or "overlap" (each node's worst
    sibling centroid cosine); the last two read ``quality``, a :class:`treesynth_core.quality.QualityReport`
    (without one every sector is neutral grey), and add a colour bar with a fixed span (``DIVERSITY_SPAN``,
    ``OVERLAP_SPAN``). Labels are black or white by contrast with their sector; ``selected`` gets a dark
    outline. ``settings`` (the project's) prices the hover's tokens; ``totals`` (``subtree_counts``), ``paths``
    (``path_texts``), ``pruned`` (``pruned_flags``) and ``sizes`` (``leaf_sizes``) may be passed when the caller
    has them already (each is a pass over the whole tree)."""
    if color_by not in COLOR_MODES:
        raise ValueError(f"color_by must be one of {', '.join(COLOR_MODES)}, not {color_by!r}")
    counts = counts or {}
    usage = usage or {}
    paint = quality_paint(quality, tree, color_by) if color_by in QUALITY_MODES else None
    lo, hi = paint.span if paint else (0.0, 1.0)
    totals = totals if totals is not None else subtree_counts(tree, counts, per_leaf)
    failures = failure_counts(tree, usage)
    shown = view(tree, level, maxdepth, min_degrees, sizes)
    pruned = pruned if pruned is not None else _pruned_flags(tree)
    paths = paths if paths is not None else path_texts(tree)
    palette = sample_colorscale(SAMPLE_SCALE, [0.05 + 0.9 * i / 20 for i in range(21)])

    def share_colour(live: int, target: int) -> str:
        return palette[round(min(live / target if target else 0.0, 1.0) * 20)]

    ids, parents, labels, hovers, colours, widths, lines, values = [], [], [], [], [], [], [], []
    for node in shown.nodes:
        ids.append(node.id)
        parents.append("" if node.id == shown.root else (node.parent_id or ""))
        values.append(shown.sizes[node.id])
        label = "(root)" if node.parent_id is None else _short(node.label)
        if node.failure:
            label = "⚠ " + label
        labels.append(_esc(label))
        hover = _hover(tree, node, paths[node.id], totals[node.id], usage.get(node.id, {}), pruned[node.id],
                       settings, failures.get(node.id, 0))
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
            colours.append(share_colour(totals[node.id]["live"], totals[node.id]["target"]))
        elif color_by == "failures":
            colours.append(failure_colour(failures.get(node.id, 0)))
        elif node.parent_id is None:
            colours.append(STATUS_COLOURS["root"])
        else:
            colours.append(STATUS_COLOURS.get(node.status, STATUS_COLOURS["proposed"]))
        is_selected = node.id == selected
        widths.append(3 if is_selected else 1)
        lines.append("#212529" if is_selected else "#ffffff")
    for parent_id, folded in shown.folds.items():
        ids.append(fold_id(parent_id))
        parents.append(parent_id)
        values.append(sum(shown.sizes[k] for k in folded))
        labels.append(f"+{len(folded)} more")
        hovers.append(_fold_hover(tree, tree.nodes[parent_id], folded, totals, failures))
        if color_by == "samples":
            colours.append(share_colour(sum(totals[k]["live"] for k in folded),
                                        sum(totals[k]["target"] for k in folded)))
        elif color_by == "failures":
            colours.append(failure_colour(sum(failures.get(k, 0) for k in folded)))
        else:
            colours.append(FOLD_COLOUR)
        holds_selected = selected in folded
        widths.append(3 if holds_selected else 1)
        lines.append("#212529" if holds_selected else "#ffffff")
    texts = [text_colour(c) for c in colours]
    trace = dict(
        type="sunburst", ids=ids, parents=parents, labels=labels, values=values, branchvalues="total",
        hovertext=hovers, hoverinfo="text",
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
    # Every value above is built here from known types, so plotly's per-element validation is skipped.
    fig = go.Figure(data=data, layout=layout, _validate=False)
    return fig
