"""The tree as an SVG sunburst for the dataset card (images/sunburst.svg): drawn here because plotly's static image
export needs kaleido and a Chrome, which this project does not install. Pure: a Tree and counts in, SVG text out."""

from __future__ import annotations

import math
from html import escape

from .tree import Tree


PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
           "#bab0ac"]
MAX_RINGS = 5
CHAR_PX = 6.2  # the width of one character of the labels (11 px sans-serif), to decide whether a label fits


def sunburst_svg(tree: Tree, per_leaf: dict[str, int], size: int = 640) -> str:
    """The live tree as an SVG sunburst: one ring per level, each node's angle proportional to its subtree's
    samples (its leaves' count; every leaf counts 1 while there are no samples), colour by top-level branch,
    lighter further out; labels where the sector is wide enough, every sector's path in its tooltip."""
    root = tree.root
    if root is None:
        return f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}"></svg>\n'
    total_samples = sum(per_leaf.values())

    weights: dict[str, float] = {}

    def fill(node_id: str) -> float:
        kids = tree.kids(node_id, include_pruned=False)
        w = (float(per_leaf.get(node_id, 0)) if total_samples else 1.0) if not kids else sum(fill(k.id) for k in kids)
        weights[node_id] = w
        return w

    fill(root.id)
    live = [n for n in tree.nodes.values() if not tree.is_pruned(n.id)]
    rings = max(1, min(MAX_RINGS, max((n.depth for n in live), default=1)))
    c = size / 2
    ring = (size / 2 - 4) / (rings + 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {size} {size}" width="{size}" height="{size}" '
             'font-family="sans-serif" font-size="11">',
             f'<circle cx="{c}" cy="{c}" r="{ring:.1f}" fill="#eeeeee"><title>{escape(tree.root.label)}: '
             f'{int(weights[root.id]) if total_samples else 0} samples</title></circle>',
             f'<text x="{c}" y="{c + 4}" text-anchor="middle">{total_samples:,}</text>']

    def point(r: float, a: float) -> tuple[float, float]:
        return c + r * math.sin(a), c - r * math.cos(a)

    def draw(node_id: str, start: float, span: float, depth: int, colour: str | None) -> None:
        kids = tree.kids(node_id, include_pruned=False)
        total = weights[node_id]
        a = start
        for i, kid in enumerate(kids):
            share = weights[kid.id] / total if total else 1 / len(kids)
            sweep = span * share
            if sweep <= 0:
                continue
            hue = colour or PALETTE[i % len(PALETTE)]
            r0, r1 = ring * depth, ring * (depth + 1)
            large = 1 if sweep > math.pi else 0
            end = a + min(sweep, 2 * math.pi - 1e-6)
            (x0, y0), (x1, y1) = point(r1, a), point(r1, end)
            (x2, y2), (x3, y3) = point(r0, end), point(r0, a)
            opacity = max(0.35, 1 - 0.15 * (depth - 1))
            samples = int(weights[kid.id]) if total_samples else 0
            parts.append(f'<path d="M{x0:.1f},{y0:.1f} A{r1:.1f},{r1:.1f} 0 {large} 1 {x1:.1f},{y1:.1f} '
                         f'L{x2:.1f},{y2:.1f} A{r0:.1f},{r0:.1f} 0 {large} 0 {x3:.1f},{y3:.1f} Z" fill="{hue}" '
                         f'fill-opacity="{opacity:.2f}" stroke="#ffffff" stroke-width="1">'
                         f'<title>{escape(tree.path_text(kid.id))}: {samples:,} samples</title></path>')
            label = kid.label if len(kid.label) <= 14 else kid.label[:13] + "…"
            if sweep * (r0 + r1) / 2 >= CHAR_PX * len(label) + 4:  # the label fits along the arc's middle
                tx, ty = point((r0 + r1) / 2, a + sweep / 2)
                parts.append(f'<text x="{tx:.1f}" y="{ty:.1f}" text-anchor="middle" dominant-baseline="middle">'
                             f'{escape(label)}</text>')
            if depth < rings:
                draw(kid.id, a, sweep, depth + 1, hue)
            a += sweep

    draw(root.id, 0.0, 2 * math.pi, 1, None)
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
