"""Widgets of the Tree page (issue 8): the page's view of the tree kept while nothing changed, a node finder
that scales to 20,000 nodes, the breadcrumb, "next unreviewed node", the evidence of a split, the per-leaf
quota, two-step confirmations that state what an action removes, and the outline. Streamlit only here and in
pages/1_Tree.py; every change goes through ``treesynth_core.edits``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import streamlit as st

import treesynth_ui as ui
from treesynth_core import edits
from treesynth_core.evidence import evidence
from treesynth_core.sunburst import leaf_sizes, path_texts, pruned_flags, subtree_counts
from treesynth_core.tree import Node, Tree

PICK_ALL_UP_TO = 3000  # a tree up to this size lists every path in the finder; a bigger one is searched
PICK_MATCHES = 200
OUTLINE_BUDGET = 1200  # lines of outline text over all top-level values
OUTLINE_MIN = 20  # lines per top-level value at least
EVIDENCE_CALLS = 30


# ----------------------------------------------------------------------------- the page's view of the tree


@dataclass
class TreeData:
    """One read of a project's tree and everything the page derives from it."""

    stamp: tuple
    tree: Tree
    counts: dict[str, dict[str, int]]
    totals: dict[str, dict[str, int]]
    paths: dict[str, str]
    pruned: dict[str, bool]
    sizes: dict[str, int]
    per_leaf: int
    memo: dict = field(default_factory=dict)  # other figures derived from this read (valid while it is)

    def remember(self, key, compute):
        """``compute()``, once per read of the tree."""
        if key not in self.memo:
            self.memo[key] = compute()
        return self.memo[key]


def tree_data(store, project_id: int, per_leaf: int) -> TreeData:
    """The tree, its sample counts, subtree totals and paths, read again only when ``Store.tree_stamp`` says
    the nodes or samples changed (a 20,000-node tree takes most of a second to read and derive; the stamp a
    few hundredths). Kept in this session only, never across sessions."""
    stamp = (project_id, per_leaf, store.tree_stamp(project_id))
    held = st.session_state.get("tree_data")
    if isinstance(held, TreeData) and held.stamp == stamp:
        return held
    tree = store.tree(project_id)
    counts = store.sample_counts(project_id)
    data = TreeData(stamp, tree, counts, subtree_counts(tree, counts, per_leaf), path_texts(tree),
                    pruned_flags(tree), leaf_sizes(tree), per_leaf)
    st.session_state["tree_data"] = data
    return data


def unreviewed(tree: Tree, pruned: dict[str, bool]) -> list[str]:
    """Nodes a curator has not looked at yet, in outline order: proposed by the LLM and not approved or edited,
    or carrying a failure or a needs-review note; pruned subtrees and the root left out."""
    out = []
    for node in tree.subtree(tree.root.id)[1:]:
        if pruned.get(node.id):
            continue
        if node.status == "proposed" or node.failure or node.note:
            out.append(node.id)
    return out


def next_unreviewed(tree: Tree, pruned: dict[str, bool], after: str | None) -> str | None:
    """The first unreviewed node after ``after`` in outline order, wrapping round; None when all are reviewed."""
    todo = unreviewed(tree, pruned)
    if not todo:
        return None
    order = {n.id: i for i, n in enumerate(tree.subtree(tree.root.id))}
    here = order.get(after, -1)
    later = [nid for nid in todo if order[nid] > here]
    return (later or todo)[0]


# ----------------------------------------------------------------------------- finding and moving


def go_to(node_id: str) -> None:
    st.session_state["tree_node"] = node_id
    st.session_state["tree_pick"] = node_id


def finder(data: TreeData, current: str, on_change) -> None:
    """Pick a node by its path. Up to PICK_ALL_UP_TO nodes every path is listed (type to filter); above, a
    search box narrows the list to the first PICK_MATCHES paths that contain the words typed, so the page
    never ships 20,000 options."""
    tree, paths = data.tree, data.paths
    if len(tree) <= PICK_ALL_UP_TO:
        ids = [n.id for n in tree.subtree(tree.root.id)]
        help_text = "Type to search the paths"
    else:
        c1, c2 = st.columns([1, 2])
        words = c1.text_input("Search the paths", key="tree_find", placeholder="e.g. geometry hard",
                              help=f"{len(tree):,} nodes: type words of a path, then pick it on the right")
        words = words.lower().split()
        near = [n.id for n in tree.path(current)] + [k.id for k in tree.kids(current)[:50]]
        found = [nid for nid, text in paths.items() if words and all(w in text.lower() for w in words)]
        ids = list(dict.fromkeys(near + found[:PICK_MATCHES]))
        help_text = (f"{len(found):,} path(s) match" + (f", the first {PICK_MATCHES} listed" if len(found) >
                                                         PICK_MATCHES else "")) if words else \
            "The selected node's path and children; search on the left for others"
    if st.session_state.get("tree_pick") not in ids:
        st.session_state["tree_pick"] = current if current in ids else ids[0]
    where = st if len(tree) <= PICK_ALL_UP_TO else c2
    where.selectbox("Find a node by its path", ids, format_func=lambda nid: paths.get(nid, nid), key="tree_pick",
                    on_change=on_change, help=help_text)


def breadcrumb(tree: Tree, level: str) -> None:
    """The way from the root to the zoomed node, each step a button that zooms there."""
    path = tree.path(level)
    if len(path) < 2:
        return
    cols = st.columns(min(len(path), 6))
    shown = path[-6:]
    for i, (col, node) in enumerate(zip(cols, shown)):
        label = "(root)" if node.parent_id is None else node.label
        last = i == len(shown) - 1
        col.button(("› " if i else "") + ui.md_escape(label[:24]), key=f"tree_crumb_{node.id}", disabled=last,
                   width="stretch", help=None if last else f"Zoom out to {label}", on_click=go_to, args=(node.id,))


def next_button(data: TreeData, node: Node) -> None:
    todo = data.remember("unreviewed", lambda: unreviewed(data.tree, data.pruned))
    order = data.remember("order", lambda: {n.id: i for i, n in enumerate(data.tree.subtree(data.tree.root.id))})
    here = order.get(node.id, -1)
    target = next((nid for nid in todo if order[nid] > here), todo[0] if todo else None)
    st.button(f"Next unreviewed ({len(todo)})" if todo else "Every node is reviewed",
              key="tree_next_unreviewed", disabled=not todo, icon=":material/skip_next:", on_click=go_to,
              args=(target,), width="stretch", shortcut="N",
              help="Select the next node still to review (key N): proposed by the LLM and not yet approved or "
                   "edited, or marked failed or needs review; in outline order after the selected node")


# ----------------------------------------------------------------------------- evidence


def evidence_panel(store, tree: Tree, node: Node, settings) -> None:
    """Why the node is split the way it is: pivots (with the value the criterion gave each), the note, the calls."""
    ev = evidence(store, tree, node.id, settings, EVIDENCE_CALLS)
    title = f"Evidence: {len(ev.pivots)} pivot(s) · {ev.calls.calls} LLM call(s)"
    with st.expander(title, expanded=False):
        if ev.pivots:
            st.markdown(f"**Pivot samples** the LLM wrote for this node"
                        + (f", and the value of *{ui.md_escape(node.dimension)}* it gave each" if ev.labels_known else
                           " (the value given to each is not in the call log, or no longer fits this split)"))
            rows = [{"value": p.label or "", **{k: str(v) for k, v in p.sample.items()}} for p in ev.pivots]
            frame = pd.DataFrame(rows)
            if not ev.labels_known:
                frame = frame.drop(columns=["value"])
            st.dataframe(frame, hide_index=True, width="stretch", key=f"tree_pivots_{node.id}")
        else:
            st.caption("No pivot samples: this split was set by hand or imported.")
        if ev.note:
            st.caption(f"Needs review: {ui.md_escape(ev.note)}")
        st.caption(ui.md_escape(ev.calls.text()))
        for other in ev.other_calls:  # re-proposals, routing, generation: not what made this split
            st.caption(ui.md_escape(f"Also for this node, {other.text()}"))
        rows = sorted([r for c in [ev.calls, *ev.other_calls] for r in c.rows], key=lambda r: -r["id"])[:EVIDENCE_CALLS]
        if rows:
            frame = pd.DataFrame([{"call": r["id"], "for": r["for"], "step": r["purpose"], "try": r["attempt"],
                                   "tokens": (r["prompt_tokens"] or 0) + (r["completion_tokens"] or 0),
                                   "seconds": round(r["duration_s"] or 0.0, 2), "error": r["error"] or "",
                                   "when": ui.when_text(r["created_at"])} for r in rows])
            st.dataframe(frame, hide_index=True, width="stretch", key=f"tree_calls_{node.id}")


# ----------------------------------------------------------------------------- quota


def quota_control(store, tree: Tree, node: Node, per_leaf: int) -> None:
    """A leaf's own quota (samples wanted), or the project's per-leaf default."""
    if node.parent_id is None or tree.kids(node.id, include_pruned=False):
        return
    own = node.quota
    with st.form("tree_quota_form", border=False):
        low, high = ui.setting_range("per_leaf")
        value = st.number_input("Samples wanted for this leaf", int(low or 0), int(high), own if own is not None
                                else per_leaf, key=f"tree_quota_{node.id}",
                                help=f"This leaf's quota; the project's default is {per_leaf} per leaf")
        c2, c3 = st.columns(2)
        if c2.form_submit_button("Set quota", width="stretch"):
            with ui.guard():
                edits.set_quota(store, node.id, int(value))
                ui.flash(f"Quota set: {int(value)} sample(s) for this leaf.")
                st.rerun()
        if c3.form_submit_button(f"Use default ({per_leaf})", width="stretch", disabled=own is None):
            with ui.guard():
                edits.set_quota(store, node.id, None)
                ui.flash(f"This leaf uses the project's quota again ({per_leaf}).")
                st.rerun()
    st.caption(f"Quota: {own} (this leaf's own)" if own is not None else f"Quota: {per_leaf} (the project's)")


# ----------------------------------------------------------------------------- confirmations


def ask(key: str, payload) -> None:
    """Hold an action until the curator confirms it (see ``pending``)."""
    st.session_state[f"tree_confirm_{key}"] = payload


def pending(key: str):
    return st.session_state.get(f"tree_confirm_{key}")


def confirm(key: str, message: str, label: str) -> bool:
    """A held action's warning with its numbers and two buttons; True once the curator confirms."""
    st.warning(message, icon=":material/delete:")
    c1, c2 = st.columns([3, 2])
    if c1.button(label, key=f"tree_confirm_{key}_yes", type="primary", width="stretch"):
        st.session_state.pop(f"tree_confirm_{key}", None)
        return True
    if c2.button("Cancel", key=f"tree_confirm_{key}_no", width="stretch"):
        st.session_state.pop(f"tree_confirm_{key}", None)
        st.rerun()
    return False


# ----------------------------------------------------------------------------- outline


def outline(store, data: TreeData, settings) -> None:
    tree = data.tree
    st.header("Outline")  # h2: the page title is the h1
    root = tree.root
    leaves = data.remember("live_leaves", lambda: sum(
        1 for n in tree.nodes.values() if not data.pruned[n.id] and not tree.kids(n.id, include_pruned=False)))
    depth = data.remember("depth", tree.max_depth)
    st.caption(f"{len(tree):,} nodes, {leaves:,} live leaves, depth {depth} · root criterion: "
               f"{ui.md_escape(root.dimension or '(none)')} · ⚠ failed, ! needs review, ✂ pruned · "
               "each split lists the pivot samples it was chosen from")
    if root.pivots:
        with st.expander("(root) · evidence of the first split"):
            st.text("\n".join(evidence(store, tree, root.id, settings, call_rows=0).lines(notes=False)))
    for label, text in data.remember("outline", lambda: outline_sections(data)):
        with st.expander(ui.md_escape(label)):
            st.text(text)


def outline_sections(data: TreeData) -> list[tuple[str, str]]:
    """(title, text) per top-level value: its nodes as indented lines with marks, notes and pivots, at most
    OUTLINE_BUDGET lines over all of them."""
    tree, counts = data.tree, data.counts
    tops = tree.kids(tree.root.id)
    cap = max(OUTLINE_MIN, OUTLINE_BUDGET // max(len(tops), 1))
    out = []
    for top in tops:
        nodes = tree.subtree(top.id)
        failed = sum(1 for n in nodes if n.failure)
        flagged = sum(1 for n in nodes if n.note)
        label = (f"{top.label} · {top.status} · {len(nodes) - 1} below"
                 + (f" · ⚠ {failed} failed" if failed else "") + (f" · {flagged} need review" if flagged else ""))
        lines: list[str] = []
        for n in nodes:
            if len(lines) >= cap:
                break
            mark = "⚠ " if n.failure else ("! " if n.note else ("✂ " if n.status == "pruned" else ""))
            split = f"  [{n.dimension}]" if n.dimension else ""
            samples = sum(counts.get(n.id, {}).values())
            extra = f"  ({samples} samples)" if samples else ""
            pad = "    " * n.depth
            lines.append(f"{'    ' * (n.depth - 1)}{mark}{n.label} · {n.status}{split}{extra}")
            if n.failure:
                lines.append(f"{pad}failure: {n.failure[:200]}")
            if n.note:
                lines.append(f"{pad}needs review: {n.note[:200]}")
            for i, p in enumerate(n.pivots, 1):
                lines.append(f"{pad}pivot {i}: {_pivot_line(p)}")
        if len(lines) >= cap:
            lines.append(f"... more below: select a node under {top.label} to see it")
        out.append((label, "\n".join(lines)))
    return out


def _pivot_line(pivot) -> str:
    text = " | ".join(" ".join(str(v).split()) for v in pivot.values()) if isinstance(pivot, dict) else str(pivot)
    return text if len(text) <= 120 else text[:119] + "…"
