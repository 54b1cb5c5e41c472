"""Tree: see the data space as a zoomable sunburst, review and fix it node by node, expand it in the background."""

from __future__ import annotations

import pandas as pd
import streamlit as st

import treesynth_ui as ui
import treesynth_ui_history as history
import treesynth_ui_stranded as strand
import treesynth_ui_tree as tui
from treesynth_core import edits
from treesynth_core.sunburst import build_figure, folded_parent, view
from treesynth_core.tree import Node, Tree

ui.page("Tree", "🌳")
LIVE_EVERY_S = 2  # while a job runs, the chart is redrawn from the store this often
BUILD_DEPTH_MIN = 1  # a project's max_depth may be 0 ("no tree"), but a build always adds at least one level


# ----------------------------------------------------------------------------- selection


def chart_click() -> str | None:
    """The node id of a click on a ring since the last run. The chart then gets a fresh key, which clears
    its own selection, so clicking the same ring again later is a new click."""
    version = st.session_state.get("tree_chart_v", 0)
    points = chart_points()
    if points and points[0].get("id"):
        st.session_state["tree_chart_v"] = version + 1
        return points[0]["id"]
    return None


def chart_points() -> list:
    version = st.session_state.get("tree_chart_v", 0)
    return ((st.session_state.get(f"tree_chart_{version}") or {}).get("selection") or {}).get("points") or []


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
    folded = folded_parent(click)
    if folded in tree.nodes:  # "+N more": select the parent, zoom there and list the folded values
        st.session_state["tree_more"] = folded
        click = folded
    if click in tree.nodes:
        node = tree.nodes[click]
        if not folded and click == st.session_state.get("tree_level") and node.parent_id:
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
            payload = {"node": node.id, "dimension": dimension, "values": values.splitlines()}
            if store.has_children(node.id):  # the current children go: say how much first
                tui.ask(key, payload)
                st.rerun()
            held = len(store.sample_ids_on(node.id))
            if held:  # a leaf holding samples: ask where they go before splitting it
                tui.ask(f"strand_{key}", {**payload, "count": held})
                st.rerun()
            set_split(store, node.id, dimension, values.splitlines())
    asked = tui.pending(f"strand_{key}")
    if asked and asked["node"] == node.id:
        answer = strand.choice(key, asked["count"])
        if answer:
            set_split(store, node.id, asked["dimension"], asked["values"], route=answer == "route")
    held = tui.pending(key)
    if held and held["node"] == node.id:
        gone = edits.removal_counts(store, [k.id for k in store.tree(node.project_id).kids(node.id)])
        if tui.confirm(key, f"Setting this split replaces the current values of {ui.md_escape(node.dimension or '')}"
                       f" and removes **{gone.text()}** (every value below this node, with its samples). Undo "
                       "brings them back.", f"Remove {gone.nodes} node(s), set it"):
            set_split(store, node.id, held["dimension"], held["values"])


def set_split(store, node_id: str, dimension: str, values: list[str], route: bool = False) -> None:
    with ui.guard():
        ids = edits.set_split(store, node_id, dimension, values)
        ui.flash(f"Split set: {len(ids)} values of {dimension.strip()}.")
        if route:  # the curator chose to route the samples this split strands
            strand.start_route(store, store.node(node_id).project_id, node_id, [node_id])
        st.rerun()


def attention(data: tui.TreeData, stranded: dict[str, int]) -> tuple[list[Node], list[Node]]:
    """The live nodes whose expansion failed, and those carrying a note (a split that needs review) or stranded
    samples (samples left on a node that got children)."""
    live = [n for n in data.tree.nodes.values() if not data.pruned[n.id] and (n.failure or n.note or n.id in stranded
                                                                              or n.status == "failed")]
    order = data.remember("order", lambda: {n.id: i for i, n in enumerate(
        data.tree.subtree(data.tree.root.id))})
    live.sort(key=lambda n: order.get(n.id, 0))
    return [n for n in live if n.status == "failed" or n.failure], [n for n in live if n.note or n.id in stranded]


def attention_panel(data: tui.TreeData, stranded: dict[str, int]) -> None:
    """How many nodes failed or need review, and a list to jump to each (none shown when all is well)."""
    failed, review = data.remember("attention", lambda: attention(data, stranded))
    if not failed and not review:
        return
    failed_ids, review_ids = {n.id for n in failed}, {n.id for n in review if n.note}
    flagged = sum(1 for n in review if n.id in stranded)
    counts = ([f"{len(failed)} node(s) failed to expand"] if failed else []) + (
        [f"{len(review_ids)} node(s) need review"] if review_ids else []) + (
        [f"{flagged} node(s) hold stranded samples"] if flagged else [])
    fix = ("retry, re-propose the criterion, or set the split by hand" if failed or review_ids else "") + (
        ("; " if failed or review_ids else "") + "route or move the stranded samples" if flagged else "")
    (st.error if failed else st.warning)(" · ".join(counts) + f": pick one below to see why, then fix it ({fix}).",
                                         icon=":material/flag:")
    paths = data.paths

    def describe(nid: str) -> str:
        tags = (["failed"] if nid in failed_ids else []) + (["needs review"] if nid in review_ids else []) + (
            [f"{stranded[nid]} stranded samples"] if nid in stranded else [])
        return f"{' + '.join(tags)}: {paths.get(nid, nid)}"

    ids = [n.id for n in failed] + [n.id for n in review if n.id not in failed_ids]
    st.selectbox("Go to a node that failed or needs review", ids, index=None, key="tree_attention",
                 format_func=describe, on_change=_on_attention, placeholder=f"Pick one of {len(ids)}")


def chart(store, pid: int, node: Node, level: str, spec, live: bool = False) -> None:
    """The sunburst from the zoomed node down. While a job runs it is drawn in a fragment that reads the tree
    again every LIVE_EVERY_S seconds, so a build is seen growing; a click there reruns the whole page."""
    data = tui.tree_data(store, pid, spec.settings.per_leaf)
    if live and chart_points():
        st.rerun()  # a click while live: the whole page selects it
    tree = data.tree
    c1, c2 = st.columns([2, 1])
    color_by = c1.segmented_control("Colour by", ["status", "samples", "failures"], default="status",
                                    key="tree_color", required=True)
    rings = c2.slider("Rings shown", 2, 6, 4, key="tree_rings")
    if color_by == "samples":
        st.caption("Pale = no samples yet · dark green = quota filled · grey = pruned")
    elif color_by == "failures":
        st.caption("Pale = nothing failed below · darker red = more failed nodes and failed LLM calls below")
    else:
        st.markdown(":gray-badge[proposed] :green-badge[approved] :blue-badge[edited by you] :red-badge[failed] "
                    ":gray-badge[pruned: pale] · ⚠ marks a failure")
    st.caption("Click a ring to select it and zoom in; click the centre to zoom out; **+N more** gathers values "
               "too narrow to draw, click it to list them. Hover for details and evidence."
               + (" · The chart follows the running job." if live else ""))
    level = level if level in tree.nodes else tree.root.id
    fig = build_figure(tree, data.counts, store.usage_by_node(pid), color_by=color_by, level=level,
                       selected=node.id if node.id in tree.nodes else None, maxdepth=rings,
                       per_leaf=spec.settings.per_leaf, settings=spec.settings, totals=data.totals,
                       paths=data.paths, pruned=data.pruned, sizes=data.sizes)
    strand.mark_figure(fig, strand.counts(store, data))
    st.plotly_chart(fig, on_select="rerun", selection_mode="points",
                    key=f"tree_chart_{st.session_state.get('tree_chart_v', 0)}", config={"displaylogo": False})
    if live:
        st.caption(f"{len(tree):,} nodes so far")


@st.fragment(run_every=LIVE_EVERY_S)
def live_chart(pid: int, node: Node, level: str, spec) -> None:
    with ui.open_store() as store:
        chart(store, pid, node, level, spec, live=True)


def folded_panel(data: tui.TreeData, level: str, maxdepth: int) -> None:
    """After a click on "+N more": the folded values of that node, to pick one."""
    parent = st.session_state.get("tree_more")
    tree = data.tree
    if parent not in tree.nodes:
        return

    folds = view(tree, level, maxdepth, sizes=data.sizes).folds.get(parent)
    kids = [tree.nodes[k] for k in folds] if folds else []
    if not kids:
        st.session_state.pop("tree_more", None)
        return
    with st.container(border=True):
        st.markdown(f"**{len(kids)} values of {ui.md_escape(tree.nodes[parent].dimension or '')}** too narrow to "
                    "draw one by one (each under 2 degrees of the ring)")
        ids = [k.id for k in kids]
        st.selectbox("Pick one to select it", ids, index=None, key="tree_more_pick", on_change=_on_more,
                     format_func=lambda nid: f"{tree.nodes[nid].label} · {tree.nodes[nid].status} · "
                                             f"{data.totals[nid]['live']} samples below",
                     placeholder=f"Pick one of {len(ids)}")
        if st.button("Close the list", key="tree_more_close"):
            st.session_state.pop("tree_more", None)
            st.rerun()


def _on_more() -> None:
    nid = st.session_state.get("tree_more_pick")
    if nid:
        tui.go_to(nid)
    st.session_state["tree_more_pick"] = None
    st.session_state.pop("tree_more", None)


def node_header(store, data: tui.TreeData, node: Node) -> None:
    tree = data.tree
    st.markdown("**Selected node**")
    st.code("\n".join(f"{'  ' * i}{d} = {v}" for i, (d, v) in enumerate(tree.labelled_path(node.id)))
            or "(root): the whole task", language=None)
    live = data.totals[node.id]["live"]  # the whole subtree, as the chart counts it
    flags = [f"{live} samples below"] if node.parent_id is None else [
        f"status **{node.status}**", f"by {node.provenance}", f"depth {node.depth}", f"{live} samples below"]
    if node.locked:
        flags.append("🔒 locked")
    if data.pruned[node.id] and node.status != "pruned":
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
        c1, c2 = st.columns([2, 1], vertical_alignment="bottom")
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


def values_editor(store, data: tui.TreeData, node: Node) -> None:
    tree = data.tree
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
                "delete them (you confirm with the numbers first; Undo brings them back)")
    rows = [{"id": k.id, "value": k.label, "status": k.status, "samples": data.totals[k.id]["live"]} for k in kids]
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
            if deletes:  # nothing runs before the curator has seen what goes
                tui.ask("values", {"node": node.id, "renames": renames, "adds": adds, "deletes": deletes})
                st.rerun()
            apply_values(store, tree, renames, adds, [], node.id)
    held = tui.pending("values")
    if held and held["node"] == node.id:
        gone = edits.removal_counts(store, held["deletes"])
        names = ", ".join(tree.nodes[n].label for n in held["deletes"] if n in tree.nodes)
        if tui.confirm("values", f"Deleting **{ui.md_escape(names)}** removes **{gone.text()}** (each value with "
                       "everything below it)." + (" Your renames and additions are saved with it." if
                                                  held["renames"] or held["adds"] else "")
                       + " Undo (above the chart) brings them back.", f"Delete {gone.nodes} node(s)"):
            apply_values(store, tree, held["renames"], held["adds"], held["deletes"], node.id)


def apply_values(store, tree: Tree, renames, adds, deletes, node_id: str) -> None:
    done = []
    with ui.guard() as outcome:
        for nid, value in renames:
            edits.rename_value(store, nid, value)
            done.append(f"renamed to {value}")
        for value in adds:
            edits.add_value(store, node_id, value)
            done.append(f"added {value}")
        for nid in deletes:
            removed = edits.delete_subtree(store, nid)
            done.append(f"deleted {tree.nodes[nid].label} ({removed} node(s))")
    if done:
        st.session_state["tree_values_v"] = st.session_state.get("tree_values_v", 0) + 1
        ui.flash("Values: " + "; ".join(done) + ".", outcome.failed)
        st.rerun()


def actions(store, data: tui.TreeData, node: Node) -> None:
    is_root = node.parent_id is None
    pruned = data.pruned[node.id]
    top, bottom = st.columns(2), st.columns(2)
    b = [*top, *bottom]
    with ui.guard():
        if b[0].button("Approve", key="tree_approve", width="stretch", disabled=pruned, shortcut="A",
                       help="Restore the subtree first" if pruned else "Mark this node reviewed (key A; clears its "
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
            above = node.parent_id is not None and data.pruned.get(node.parent_id, False)
            if b[3].button("Restore subtree", key="tree_restore", width="stretch", disabled=above,
                           help="A node above this one is pruned: restore that one (select it in the chart or the "
                                "outline)" if above else "Bring this subtree back into building, generation and "
                                "export"):
                n = edits.restore(store, node.id)
                ui.flash(f"Restored {n} node(s).")
                st.rerun()
        elif b[3].button("Prune subtree", key="tree_prune", disabled=is_root, width="stretch",
                         help="Exclude this subtree from building, generation and export (you confirm with the "
                              "numbers first; it can be restored)"):
            tui.ask("prune", node.id)
            st.rerun()
    if tui.pending("prune") == node.id:
        nodes = len(data.tree.subtree(node.id))
        live = data.totals[node.id]["live"]
        if tui.confirm("prune", f"Pruning **{ui.md_escape(node.label)}** excludes **{nodes} node(s) and the "
                       f"{live} sample(s) on them** from building, generation and export. Nothing is deleted: "
                       "Restore subtree or Undo brings it back.", f"Prune {nodes} node(s)"):
            with ui.guard():
                n = edits.prune(store, node.id)
                ui.flash(f"Pruned {n} node(s).")
                st.rerun()


def expand_panel(pid: int, data: tui.TreeData, node: Node, busy: bool, per_leaf: int) -> None:
    tree = data.tree
    st.markdown("**Expand with the LLM** (in the background)")
    room = max(1, int(ui.setting_range("max_depth")[1]) - node.depth)
    below = data.remember(("reach", node.id), lambda: max(n.depth for n in tree.subtree(node.id))) - node.depth
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
    blocked = busy or node.locked or data.pruned[node.id]
    if c1.button("Expand this node", key="tree_expand_node", disabled=blocked or bool(tree.kids(node.id)),
                 width="stretch", help="Already split" if tree.kids(node.id) else None):
        strand.expand(pid, data, "build", {"depth": node.depth + 1, "under": node.id}, "expand")
    if c2.button("Expand subtree", key="tree_expand_sub", disabled=blocked, width="stretch",
                 help="Splits every unsplit node below this one, down to the chosen depth below it"):
        strand.expand(pid, data, "build", {"depth": node.depth + int(levels), "under": node.id}, "expand")
    if st.button("Build and generate this subtree", key="tree_run_sub", disabled=blocked, width="stretch",
                 icon=":material/bolt:",
                 help=f"Splits every unsplit node below this one down to the chosen depth below it and fills "
                      f"each leaf with samples ({per_leaf} per leaf, the project's quota) as soon as the leaf "
                      "exists: no review between building and generating"):
        strand.expand(pid, data, "run", {"depth": node.depth + int(levels), "under": node.id}, "expand")
    strand.expand_question(pid, data, "expand", node.id)


def whole_tree_panel(pid: int, data: tui.TreeData, busy: bool, max_depth: int) -> None:
    with st.container(border=True):
        st.markdown("**Whole tree** · review level by level: approve what is right, then expand only that")
        c1, c2, c3 = st.columns([1, 2, 2], vertical_alignment="bottom")
        depth = ui.number_setting(c1, "Down to depth", "max_depth", max(max_depth, data.remember(
                                      "depth", data.tree.max_depth)),
                                  key="tree_all_depth", low=BUILD_DEPTH_MIN)
        if c2.button("Expand every approved leaf", key="tree_expand_approved", disabled=busy, width="stretch"):
            strand.expand(pid, data, "build", {"depth": int(depth), "approved_only": True}, "all")
        if c3.button("Expand every leaf", key="tree_expand_all", disabled=busy, width="stretch"):
            strand.expand(pid, data, "build", {"depth": int(depth)}, "all")
        strand.expand_question(pid, data, "all", data.tree.root.id)


# ----------------------------------------------------------------------------- the page

with ui.open_store() as store:
    pid = ui.frame(store, "Tree: build & review")
    spec = store.project(pid)
    job = ui.job_status(store, pid, ("build", "run", "route"), "tree_job")
    busy = bool(job and job["status"] == "running")
    strand.follow_up(store, pid, busy)  # a build the curator asked to route the stranded samples after
    data = tui.tree_data(store, pid, spec.settings.per_leaf)
    tree = data.tree
    if not tree.kids(tree.root.id):
        first_build(store, pid, busy)
        st.stop()
    node = selected_node(tree)
    level = zoom_level(tree, node)
    tui.finder(data, node.id, _on_pick)
    left, right = st.columns([3, 2], gap="large")
    with left:
        attention_panel(data, strand.counts(store, data))
        nav, undo = st.columns([1, 1], vertical_alignment="center")
        with nav:
            tui.next_button(data, node)
        history.undo_redo(store, pid, undo)
        tui.breadcrumb(tree, level)
        if busy:
            live_chart(pid, node, level, spec)
        else:
            chart(store, pid, node, level, spec)
        folded_panel(data, level, st.session_state.get("tree_rings", 4))
        whole_tree_panel(pid, data, busy, spec.settings.max_depth)
    with right:
        with ui.guard():
            node_header(store, data, node)
            strand.panel(store, pid, data, node, busy)
            tui.evidence_panel(store, tree, node, spec.settings)
            value_editor(store, node)
            criterion_editor(store, node)
            values_editor(store, data, node)
            tui.quota_control(store, tree, node, spec.settings.per_leaf)
            actions(store, data, node)
            history.history_panel(store, pid, tree, node)
            st.divider()
            expand_panel(pid, data, node, busy, spec.settings.per_leaf)
            with st.expander("Set this node's split by hand"):
                hand_split(store, node, "tree_hand")
    st.divider()
    with ui.guard():
        history.repropose(store, pid, tree, node, busy)  # full width: the diff table has seven columns
    st.divider()
    tui.outline(store, data, spec.settings)
