"""Tree: see the data space as a zoomable sunburst, review and fix it node by node, expand it in the background."""

from __future__ import annotations

import pandas as pd
import streamlit as st

import treesynth_ui as ui
from treesynth_core import edits
from treesynth_core.llm import LLM
from treesynth_core.partition import Partitioner
from treesynth_core.sunburst import build_figure, path_texts, subtree_counts
from treesynth_core.tree import Node, Tree

ui.page("Tree", "🌳")
OUTLINE_LINES = 400
BUILD_DEPTH_MIN = 1  # a project's max_depth may be 0 ("no tree"), but a build always adds at least one level


# ----------------------------------------------------------------------------- selection


def chart_click() -> str | None:
    """The node id of a click on a ring since the last run. The chart then gets a fresh key, which clears
    its own selection, so clicking the same ring again later is a new click."""
    version = st.session_state.get("tree_chart_v", 0)
    points = ((st.session_state.get(f"tree_chart_{version}") or {}).get("selection") or {}).get("points") or []
    if points and points[0].get("id"):
        st.session_state["tree_chart_v"] = version + 1
        return points[0]["id"]
    return None


def _on_pick() -> None:
    st.session_state["tree_node"] = st.session_state.get("tree_pick")


def _on_attention() -> None:
    """Select the node picked in the list of failed / flagged nodes; the list then reads "pick one" again."""
    nid = st.session_state.get("tree_attention")
    if nid:
        st.session_state["tree_node"] = nid
        st.session_state["tree_pick"] = nid
    st.session_state["tree_attention"] = None


def selected_node(tree: Tree) -> Node:
    click = chart_click()
    if click in tree.nodes:
        node = tree.nodes[click]
        if click == st.session_state.get("tree_level") and node.parent_id:
            click = node.parent_id  # a click on the centre zooms out: select the parent
        st.session_state["tree_node"] = click
        st.session_state["tree_pick"] = click
    nid = st.session_state.get("tree_node")
    if nid not in tree.nodes:
        nid = tree.root.id
        st.session_state["tree_node"] = nid
        st.session_state["tree_pick"] = nid
    return tree.nodes[nid]


def zoom_level(tree: Tree, node: Node) -> str | None:
    """Show the selected node's children; for a leaf, its siblings."""
    level = node.id if tree.kids(node.id) else node.parent_id
    st.session_state["tree_level"] = level
    return level


# ----------------------------------------------------------------------------- panels


def first_build(store, pid: int, busy: bool) -> None:
    spec = store.project(pid)
    root = store.tree(pid).root
    if root.failure:
        st.error(f"Proposing the first level failed: {ui.md_escape(root.failure)}  \n**What to do:** check the "
                 "endpoint on Home and try again, or set the first split by hand.", icon=":material/warning:")
    st.info("This project has no tree yet. Let the LLM propose it (it runs in the background; you review it "
            "afterwards), or set the first split by hand.")
    c1, c2 = st.columns(2)
    with c1.container(border=True):
        st.markdown("**Let the LLM propose the tree**")
        depth = ui.number_setting(st, "Depth", "max_depth", spec.settings.max_depth, key="tree_first_depth",
                                  low=BUILD_DEPTH_MIN, help="1 = only the first level, to review level by level")
        if st.button("Propose the tree", type="primary", disabled=busy, key="tree_first_go"):
            if ui.start_job(pid, "build", {"depth": int(depth)}):
                st.rerun()
    with c2.container(border=True):
        hand_split(store, store.tree(pid).root, "tree_root")


def hand_split(store, node: Node, key: str) -> None:
    st.markdown("**Set the split by hand**" + (" (replaces the current children)" if node.dimension else ""))
    with st.form(f"{key}_form"):
        dimension = st.text_input("Criterion (dimension)", node.dimension or "", key=f"{key}_dim",
                                  placeholder="e.g. topic")
        values = st.text_area("Values, one per line", key=f"{key}_values", placeholder="algebra\ngeometry")
        if st.form_submit_button("Set split"):
            with ui.guard():
                ids = edits.set_split(store, node.id, dimension, values.splitlines())
                ui.flash(f"Split set: {len(ids)} values of {dimension.strip()}.")
                st.rerun()


def attention(tree: Tree) -> tuple[list[Node], list[Node]]:
    """The live nodes whose expansion failed, and those carrying a note (a split that needs review)."""
    live = [n for n in tree.subtree(tree.root.id) if not tree.is_pruned(n.id)]
    return [n for n in live if n.status == "failed" or n.failure], [n for n in live if n.note]


def attention_panel(tree: Tree) -> None:
    """How many nodes failed or need review, and a list to jump to each (none shown when all is well)."""
    failed, review = attention(tree)
    if not failed and not review:
        return
    failed_ids, review_ids = {n.id for n in failed}, {n.id for n in review}
    counts = ([f"{len(failed)} node(s) failed to expand"] if failed else []) + (
        [f"{len(review)} node(s) need review"] if review else [])
    (st.error if failed else st.warning)(
        " · ".join(counts) + ": pick one below to see why, then fix it (retry, re-propose the criterion, or set "
        "the split by hand).", icon=":material/flag:")
    paths = path_texts(tree)

    def describe(nid: str) -> str:
        tags = (["failed"] if nid in failed_ids else []) + (["needs review"] if nid in review_ids else [])
        return f"{' + '.join(tags)}: {paths.get(nid, nid)}"

    ids = [n.id for n in failed] + [n.id for n in review if n.id not in failed_ids]
    st.selectbox("Go to a node that failed or needs review", ids, index=None, key="tree_attention",
                 format_func=describe, on_change=_on_attention, placeholder=f"Pick one of {len(ids)}")


def chart(tree: Tree, node: Node, counts: dict, usage: dict, per_leaf: int) -> None:
    c1, c2 = st.columns([2, 1])
    color_by = c1.segmented_control("Colour by", ["status", "samples"], default="status", key="tree_color",
                                    required=True)
    rings = c2.slider("Rings shown", 2, 6, 4, key="tree_rings")
    if color_by == "samples":
        st.caption("Pale = no samples yet · dark green = quota filled · grey = pruned")
    else:
        st.markdown(":gray-badge[proposed] :green-badge[approved] :blue-badge[edited by you] :red-badge[failed] "
                    ":gray-badge[pruned: pale] · ⚠ marks a failure")
    st.caption("Click a ring to select it and zoom in; click the centre to zoom out. Hover for details.")
    fig = build_figure(tree, counts, usage, color_by=color_by, level=zoom_level(tree, node), selected=node.id,
                       maxdepth=rings, per_leaf=per_leaf)
    st.plotly_chart(fig, on_select="rerun", selection_mode="points",
                    key=f"tree_chart_{st.session_state.get('tree_chart_v', 0)}", config={"displaylogo": False})


def node_header(store, tree: Tree, node: Node, counts: dict) -> None:
    st.markdown("**Selected node**")
    st.code("\n".join(f"{'  ' * i}{d} = {v}" for i, (d, v) in enumerate(tree.labelled_path(node.id)))
            or "(root): the whole task", language=None)
    live = subtree_counts(tree, counts)[node.id]["live"]  # the whole subtree, as the chart counts it
    flags = [f"{live} samples below"] if node.parent_id is None else [
        f"status **{node.status}**", f"by {node.provenance}", f"depth {node.depth}", f"{live} samples below"]
    if node.locked:
        flags.append("🔒 locked")
    if tree.is_pruned(node.id) and node.status != "pruned":
        flags.append("an ancestor is pruned")
    st.caption(" · ".join(flags))
    if node.failure:
        st.error(f"Expanding this node failed: {ui.md_escape(node.failure)}  \n**What to do:** retry the failed "
                 "nodes (the button at the top when the last build was partial), re-propose the criterion, or set "
                 "the split by hand below.", icon=":material/warning:")
    if node.note:
        text, button = st.columns([4, 1], vertical_alignment="center")
        text.warning(f"Needs review: {ui.md_escape(node.note)}  \n**What to do:** check that the values below "
                     "cover the whole space and add what is missing, or re-propose the criterion. Approving this "
                     "node, replacing its split or **Mark reviewed** clears this mark.", icon=":material/flag:")
        if button.button("Mark reviewed", key="tree_resolve_note", width="stretch",
                         help="You checked this split: clear the mark and keep the split as it is"):
            edits.resolve_note(store, node.id)
            ui.flash("Marked reviewed: the split is kept as it is.")
            st.rerun()


def value_editor(store, node: Node) -> None:
    """Rename the value that defines this node (the same edit as a rename in its parent's values table)."""
    if node.parent_id is None or node.infinite:
        return
    with st.form("tree_value_form", border=False):
        c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
        value = c1.text_input("Value of this node", node.value or "", key=f"tree_value_{node.id}")
        if c2.form_submit_button("Rename value", width="stretch") and value.strip() != (node.value or ""):
            with ui.guard():
                edits.rename_value(store, node.id, value)
                ui.flash(f"Value renamed to {value.strip()}.")
                st.rerun()


def criterion_editor(store, node: Node) -> None:
    if not node.dimension:
        st.caption("Not split yet: expand it with the LLM below, or set its split by hand.")
        return
    with st.form("tree_dim_form", border=False):
        c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
        name = c1.text_input("Criterion (the dimension that splits this node)", node.dimension,
                             key=f"tree_dim_{node.id}")
        if c2.form_submit_button("Rename", width="stretch") and name.strip() != node.dimension:
            with ui.guard():
                edits.rename_dimension(store, node.id, name)
                ui.flash(f"Criterion renamed to {name.strip()}.")
                st.rerun()


def values_editor(store, tree: Tree, node: Node, counts: dict) -> None:
    kids = tree.kids(node.id)
    if len(kids) == 1 and kids[0].infinite:
        child = kids[0]
        st.markdown(f"**Open-ended values** ({len(child.values)}; one is drawn at random for each call)")
        with st.form("tree_inf_form"):
            text = st.text_area("Values, one per line", "\n".join(child.values), height=200, key=f"tree_inf_{child.id}")
            if st.form_submit_button("Save values"):
                with ui.guard():
                    edits.set_values(store, child.id, text.splitlines())
                    ui.flash("Values saved.")
                    st.rerun()
        return
    if not node.dimension:
        return
    st.markdown(f"**Values of {ui.md_escape(node.dimension)}** · rename in place, add a row, or select rows and "
                "delete them (deleting removes the subtree and its samples)")
    rows = [{"id": k.id, "value": k.label, "status": k.status,
             "samples": sum(sum(counts.get(n.id, {}).values()) for n in tree.subtree(k.id))} for k in kids]
    frame = pd.DataFrame(rows, columns=["id", "value", "status", "samples"])
    version = st.session_state.get("tree_values_v", 0)
    with st.form("tree_values_form"):
        edited = st.data_editor(
            frame, key=f"tree_values_{node.id}_{version}", num_rows="dynamic", hide_index=True, width="stretch",
            disabled=["status", "samples"],
            column_config={"id": None, "value": st.column_config.TextColumn("value", required=True),
                           "status": st.column_config.TextColumn("status", width="small"),
                           "samples": st.column_config.NumberColumn("samples", width="small")})
        if st.form_submit_button("Save value changes"):
            renames, adds, deletes = ui.value_changes({k.id: k.label for k in kids}, edited.to_dict("records"))
            done = []
            with ui.guard() as outcome:
                for nid, value in renames:
                    edits.rename_value(store, nid, value)
                    done.append(f"renamed to {value}")
                for value in adds:
                    edits.add_value(store, node.id, value)
                    done.append(f"added {value}")
                for nid in deletes:
                    removed = edits.delete_subtree(store, nid)
                    done.append(f"deleted {tree.nodes[nid].label} ({removed} node(s))")
            if done:
                st.session_state["tree_values_v"] = version + 1
                ui.flash("Values: " + "; ".join(done) + ".", outcome.failed)
                st.rerun()


def actions(store, tree: Tree, node: Node) -> None:
    is_root = node.parent_id is None
    pruned = tree.is_pruned(node.id)
    top, bottom = st.columns(2), st.columns(2)
    b = [*top, *bottom]
    with ui.guard():
        if b[0].button("Approve", key="tree_approve", width="stretch", disabled=pruned,
                       help="Restore the subtree first" if pruned else "Mark this node reviewed (clears its "
                       "needs-review mark)"):
            edits.approve(store, node.id)
            ui.flash("Node approved.")
            st.rerun()
        if b[1].button("Approve subtree", key="tree_approve_sub", width="stretch", disabled=pruned,
                       help="Restore the subtree first" if pruned else "Approve this node and every node below it"):
            n = edits.approve(store, node.id, subtree=True)
            ui.flash(f"Approved the subtree ({n} nodes).")
            st.rerun()
        if b[2].button("Unlock" if node.locked else "Lock", key="tree_lock", width="stretch",
                       help="A locked node is never expanded or changed by the LLM"):
            edits.lock(store, node.id, not node.locked)
            ui.flash("Unlocked." if node.locked else "Locked: the LLM will leave this node alone.")
            st.rerun()
        if node.status == "pruned":
            if b[3].button("Restore subtree", key="tree_restore", width="stretch"):
                n = edits.restore(store, node.id)
                ui.flash(f"Restored {n} node(s).")
                st.rerun()
        elif b[3].button("Prune subtree", key="tree_prune", disabled=is_root, width="stretch",
                         help="Exclude this subtree from building, generation and export (it can be restored)"):
            n = edits.prune(store, node.id)
            ui.flash(f"Pruned {n} node(s).")
            st.rerun()


def repropose(store, pid: int, tree: Tree, node: Node, busy: bool) -> None:
    st.markdown("**Re-propose the criterion** · ask the LLM again and compare before replacing")
    pruned = tree.is_pruned(node.id)
    if st.button("Re-propose", key="tree_repropose", disabled=busy or node.locked or pruned,
                 help="Locked nodes are left to you" if node.locked else "Restore it first" if pruned else None):
        with ui.guard(), st.spinner("Asking the LLM (pivots, criterion, coverage)…"):
            proposal = Partitioner(store, pid, LLM(ui.endpoint(), store, pid)).propose(node, tree, fresh=True)
            st.session_state["tree_proposal"] = {"node": node.id, "proposal": proposal}
    held = st.session_state.get("tree_proposal")
    if not held or held["node"] != node.id:
        return
    proposal = held["proposal"]
    c1, c2 = st.columns(2)
    with c1.container(border=True):
        st.markdown("Current")
        st.text(f"{node.dimension or '(no criterion)'}\n" + "\n".join(f"  - {k.label}" for k in tree.kids(node.id)))
    with c2.container(border=True):
        st.markdown("Proposed" + (" (open-ended)" if proposal["infinite"] else ""))
        st.text(f"{proposal['dimension']}\n" + "\n".join(f"  - {v}" for v in proposal["values"]))
    below = len(tree.subtree(node.id)) - 1
    r1, r2 = st.columns(2)
    if r1.button("Replace", type="primary", key="tree_replace",
                 help=f"Deletes the {below} node(s) below and their samples" if below else None):
        with ui.guard():
            edits.replace_with(store, node.id, proposal)  # kept and renamed values keep their subtree
            st.session_state.pop("tree_proposal", None)
            ui.flash(f"Replaced the criterion with {proposal['dimension']}.")
            st.rerun()
    if r2.button("Keep the current one", key="tree_discard"):
        st.session_state.pop("tree_proposal", None)
        st.rerun()


def expand_panel(pid: int, tree: Tree, node: Node, busy: bool, per_leaf: int) -> None:
    st.markdown("**Expand with the LLM** (in the background)")
    room = max(1, int(ui.setting_range("max_depth")[1]) - node.depth)
    below = max(n.depth for n in tree.subtree(node.id)) - node.depth  # how far its subtree reaches now
    if st.session_state.get("tree_levels_node") != node.id or not 1 <= st.session_state.get("tree_levels", 0) <= room:
        st.session_state["tree_levels"] = min(below + 1, room)  # each node starts one level deeper than it reaches
        st.session_state["tree_levels_node"] = node.id
    levels = st.number_input(
        "Depth below this node", 1, room, key="tree_levels",
        help="How far below this node its subtree should reach, counted from this node: 1 = its children, 2 = "
             "their children too. Unsplit nodes above that depth are split; nodes already split are kept.")
    if below:
        st.caption(f"Its subtree already reaches {below} level(s) below it, so depth {int(levels)} "
                   + (f"adds {int(levels) - below} level(s) where it is deepest." if levels > below else
                      "only splits nodes that are still unsplit above that depth."))
    c1, c2 = st.columns(2)
    blocked = busy or node.locked or tree.is_pruned(node.id)
    if c1.button("Expand this node", key="tree_expand_node", disabled=blocked or bool(tree.kids(node.id)),
                 width="stretch", help="Already split" if tree.kids(node.id) else None):
        if ui.start_job(pid, "build", {"depth": node.depth + 1, "under": node.id}):
            st.rerun()
    if c2.button("Expand subtree", key="tree_expand_sub", disabled=blocked, width="stretch",
                 help="Splits every unsplit node below this one, down to the chosen depth below it"):
        if ui.start_job(pid, "build", {"depth": node.depth + int(levels), "under": node.id}):
            st.rerun()
    if st.button("Build and generate this subtree", key="tree_run_sub", disabled=blocked, width="stretch",
                 icon=":material/bolt:",
                 help=f"Splits every unsplit node below this one down to the chosen depth below it and fills "
                      f"each leaf with samples ({per_leaf} per leaf, the project's quota) as soon as the leaf "
                      "exists: no review between building and generating"):
        if ui.start_job(pid, "run", {"depth": node.depth + int(levels), "under": node.id}):
            st.rerun()


def whole_tree_panel(pid: int, tree: Tree, busy: bool, max_depth: int) -> None:
    with st.container(border=True):
        st.markdown("**Whole tree** · review level by level: approve what is right, then expand only that")
        c1, c2, c3 = st.columns([1, 2, 2], vertical_alignment="bottom")
        depth = ui.number_setting(c1, "Down to depth", "max_depth", max(max_depth, tree.max_depth()),
                                  key="tree_all_depth", low=BUILD_DEPTH_MIN)
        if c2.button("Expand every approved leaf", key="tree_expand_approved", disabled=busy, width="stretch"):
            if ui.start_job(pid, "build", {"depth": int(depth), "approved_only": True}):
                st.rerun()
        if c3.button("Expand every leaf", key="tree_expand_all", disabled=busy, width="stretch"):
            if ui.start_job(pid, "build", {"depth": int(depth)}):
                st.rerun()


def outline(tree: Tree, counts: dict) -> None:
    st.subheader("Outline")
    root = tree.root
    st.caption(f"{len(tree)} nodes, {len(tree.leaves())} live leaves, depth {tree.max_depth()} · root criterion: "
               f"{ui.md_escape(root.dimension or '(none)')} · ⚠ failed, ! needs review, ✂ pruned")
    for top in tree.kids(root.id):
        nodes = tree.subtree(top.id)
        failed = sum(1 for n in nodes if n.failure)
        flagged = sum(1 for n in nodes if n.note)
        label = (f"{top.label} · {top.status} · {len(nodes) - 1} below" + (f" · ⚠ {failed} failed" if failed else "")
                 + (f" · {flagged} need review" if flagged else ""))
        with st.expander(ui.md_escape(label)):
            lines = []
            for n in nodes[:OUTLINE_LINES]:
                mark = "⚠ " if n.failure else ("! " if n.note else ("✂ " if n.status == "pruned" else ""))
                split = f"  [{n.dimension}]" if n.dimension else ""
                samples = sum(counts.get(n.id, {}).values())
                extra = f"  ({samples} samples)" if samples else ""
                lines.append(f"{'    ' * (n.depth - 1)}{mark}{n.label} · {n.status}{split}{extra}")
                if n.failure:
                    lines.append(f"{'    ' * n.depth}failure: {n.failure[:200]}")
                if n.note:
                    lines.append(f"{'    ' * n.depth}needs review: {n.note[:200]}")
            if len(nodes) > OUTLINE_LINES:
                lines.append(f"... {len(nodes) - OUTLINE_LINES} more nodes: pick one in the path box to see it")
            st.text("\n".join(lines))


# ----------------------------------------------------------------------------- the page

with ui.open_store() as store:
    pid = ui.frame(store, "Tree: build & review")
    spec = store.project(pid)
    job = ui.job_status(store, pid, ("build", "run"), "tree_job")
    busy = bool(job and job["status"] == "running")
    tree = store.tree(pid)
    if not tree.kids(tree.root.id):
        first_build(store, pid, busy)
        st.stop()
    counts = store.sample_counts(pid)
    node = selected_node(tree)
    ui.node_picker(tree, "Find a node by its path", "tree_pick", on_change=_on_pick)
    left, right = st.columns([3, 2], gap="large")
    with left:
        attention_panel(tree)
        chart(tree, node, counts, store.usage_by_node(pid), spec.settings.per_leaf)
        whole_tree_panel(pid, tree, busy, spec.settings.max_depth)
    with right:
        with ui.guard():
            node_header(store, tree, node, counts)
            value_editor(store, node)
            criterion_editor(store, node)
            values_editor(store, tree, node, counts)
            actions(store, tree, node)
            st.divider()
            repropose(store, pid, tree, node, busy)
            st.divider()
            expand_panel(pid, tree, node, busy, spec.settings.per_leaf)
            with st.expander("Set this node's split by hand"):
                hand_split(store, node, "tree_hand")
    st.divider()
    outline(tree, counts)
