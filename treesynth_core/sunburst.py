"""The sunburst figure of a project's tree (plotly only; no Streamlit).

Sectors are keyed by node id (``ids``/``parents``), so two nodes with the same label never merge. Sector
size counts leaves (the tree's shape); colour shows either the node's review status or its samples.
Every text that came from an LLM or a user is HTML-escaped before plotly sees it.
"""

from __future__ import annotations

import html

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


def build_figure(tree: Tree, counts: dict[str, dict[str, int]] | None = None,
                 usage: dict[str, dict] | None = None, *, color_by: str = "status", level: str | None = None,
                 selected: str | None = None, maxdepth: int = 4, per_leaf: int = 10,
                 height: int = 620) -> go.Figure:
    """A sunburst of ``tree``. ``color_by`` is "status" or "samples" (how full each subtree is against
    its leaves' quotas); ``level`` zooms to a node; ``selected`` gets a dark outline; ``maxdepth`` rings
    are drawn from the current level."""
    counts = counts or {}
    usage = usage or {}
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
        hovers.append(_hover(tree, node, paths[node.id], totals[node.id], usage.get(node.id, {}), pruned[node.id]))
        if pruned[node.id]:
            colours.append(PRUNED_COLOUR)
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
    trace = dict(
        type="sunburst", ids=ids, parents=parents, labels=labels, hovertext=hovers, hoverinfo="text",
        marker=dict(colors=colours, line=dict(width=widths, color=lines)),
        maxdepth=maxdepth, insidetextorientation="radial", sort=False, leaf=dict(opacity=1.0),
    )
    if level and level in tree.nodes:
        trace["level"] = level
    layout = dict(margin=dict(t=8, l=8, r=8, b=8), height=height, uirevision="tree")
    # Every value above is built here from known types, so plotly's per-element validation (most of the
    # time on a 5,000-node tree) is skipped.
    fig = go.Figure(data=[trace], layout=layout, _validate=False)
    return fig
