"""Stranded samples on the Tree page (issue 8, part 7): samples sitting on a node that got children after they
were made count toward no leaf's quota and are exported with a shorter path. Before an action would split a leaf
that holds samples the page asks what to do with them (route them to the new children with the LLM once the
split exists, or leave them flagged); after it happened, the node's panel shows how many there are with three
actions: route with the LLM (a "route" job, its plan shown first), move them all to one leaf, or leave them
flagged. Every move goes through ``treesynth_core.edits`` (one history event: Undo brings them back).
"""

from __future__ import annotations

import streamlit as st

import treesynth_ui as ui
import treesynth_ui_tree as tui
from treesynth_core import edits, jobs
from treesynth_core.errors import TreeSynthError
from treesynth_core.routing import plan_routing
from treesynth_core.tree import Node

AFTER_KEY = "tree_route_after"  # a build job whose stranded samples are routed when it ends
LEFT_KEY = "tree_stranded_left"  # node ids whose stranded samples the curator chose to leave flagged
MOVE_CHOICES = 200  # leaves offered in "Move all to"


def counts(store, data: tui.TreeData) -> dict[str, int]:
    """Stranded samples by node, once per read of the tree (the stamp changes when samples move)."""
    return data.remember("stranded", lambda: edits.stranded(store, data.tree.root.project_id))


def would_strand(data: tui.TreeData, under: str, depth: int, approved_only: bool = False) -> dict[str, int]:
    """The unsplit nodes a build of ``under``'s subtree down to ``depth`` would split that hold samples:
    {node id: samples on it}. Locked and pruned nodes are left alone by a build, so they are not counted."""
    tree = data.tree
    out = {}
    for n in tree.subtree(under):
        if n.depth >= depth or n.locked or data.pruned[n.id] or tree.kids(n.id) or n.infinite:
            continue
        if approved_only and n.status != "approved" and n.parent_id is not None:
            continue
        held = sum(data.counts.get(n.id, {}).values())
        if held:
            out[n.id] = held
    return out


# ----------------------------------------------------------------------------- before: ask


def choice(key: str, held: int, leaves: int = 1) -> str | None:
    """The question asked before a split strands samples; "route", "leave" or None (not answered yet)."""
    where = "This leaf holds" if leaves == 1 else f"{leaves} leaves below this node hold"
    st.warning(f"{where} **{held} sample(s)**. After the split they would sit on an inner node: they would count "
               "toward no leaf's quota and be exported with a shorter path. Route them to the new children with "
               "the LLM once the split exists, or leave them flagged (the node then lists them to move later).",
               icon=":material/call_split:")
    answer = None  # the long label gets a row of its own: in the page's narrow column it would be cut
    if st.button("Route them to the new children with the LLM", key=f"tree_strand_{key}_route", type="primary",
                 width="stretch", help="Once the split exists, a background job asks the LLM which new child each "
                                       "sample belongs to, several per call"):
        answer = "route"
    c2, c3 = st.columns([3, 2])
    if c2.button("Leave them flagged", key=f"tree_strand_{key}_leave", width="stretch"):
        answer = "leave"
    if c3.button("Cancel", key=f"tree_strand_{key}_no", width="stretch"):
        tui.ask(f"strand_{key}", None)
        st.rerun()
    if answer:
        tui.ask(f"strand_{key}", None)
    return answer


def route_after(job_id: int | None, under: str, nodes: list[str]) -> None:
    """Route the samples stranded on ``nodes`` once the build job ``job_id`` has ended (see ``follow_up``)."""
    if job_id:
        st.session_state[AFTER_KEY] = {"job": job_id, "under": under, "nodes": list(nodes)}
        ui.flash("When the split exists, its stranded samples are routed to the new children with the LLM.")


def start_route(store, pid: int, under: str, nodes: list[str]) -> int | None:
    """Start the route job for the samples now stranded on ``nodes`` (from ``under`` down). None: none to route."""
    stranded = edits.stranded(store, pid)
    ids = [i for nid in nodes if stranded.get(nid) for i in store.sample_ids_on(nid)]
    if not ids:
        return None
    job_id = ui.start_job(pid, "route", {"start_node_id": under, "sample_ids": ids})
    if job_id:
        ui.flash(f"Routing {len(ids)} stranded sample(s) to the new children with the LLM (job #{job_id}).")
    return job_id


def follow_up(store, pid: int, busy: bool) -> None:
    """After the build the curator asked to route after: start the route job (once)."""
    held = st.session_state.get(AFTER_KEY)
    if not held or busy:
        return
    job = jobs.get_job(store, held["job"])
    if job["status"] == "running":
        return
    st.session_state.pop(AFTER_KEY, None)
    if start_route(store, pid, held["under"], held["nodes"]):
        st.rerun()
    st.info("The build made no split under the samples you asked to route: nothing to route.",
            icon=":material/info:")


def expand(pid: int, data: tui.TreeData, kind: str, params: dict, key: str) -> None:
    """Start a build (or build-and-generate) job; when it would split leaves that hold samples, ask first."""
    under = params.get("under") or data.tree.root.id
    held = would_strand(data, under, params["depth"], bool(params.get("approved_only")))
    if held:
        tui.ask(f"strand_{key}", {"kind": kind, "params": params, "under": under, "nodes": list(held),
                                  "count": sum(held.values())})
        st.rerun()
    if ui.start_job(pid, kind, params):
        st.rerun()


def expand_question(pid: int, data: tui.TreeData, key: str, under: str) -> None:
    """The held expansion's question about the samples it strands; the answer starts the job."""
    held = tui.pending(f"strand_{key}")
    if not held or held["under"] != under:
        return
    answer = choice(key, held["count"], len(held["nodes"]))
    if answer:
        job_id = ui.start_job(pid, held["kind"], held["params"])
        if job_id and answer == "route":
            route_after(job_id, held["under"], held["nodes"])
        if job_id:
            st.rerun()


# ----------------------------------------------------------------------------- after: the node's panel


def panel(store, pid: int, data: tui.TreeData, node: Node, busy: bool) -> None:
    """The selected node's stranded samples: the count and what to do with them."""
    n = counts(store, data).get(node.id)
    if not n:
        return
    left = st.session_state.setdefault(LEFT_KEY, set())
    if node.id in left:
        text, button = st.columns([4, 1], vertical_alignment="center")
        text.caption(f"! {n} stranded sample(s) on this node, left flagged.")
        if button.button("Deal with them", key="tree_stranded_show", width="stretch"):
            left.discard(node.id)
            st.rerun()
        return
    st.warning(f"**{n} stranded sample(s)** on this node: it was a leaf when they were made and has children now, "
               "so they count toward no leaf's quota and are exported with a shorter path.  \n**What to do:** "
               "route them to the children with the LLM, move them all to one leaf, or leave them flagged.",
               icon=":material/call_split:")
    ids = store.sample_ids_on(node.id)
    plan = data.remember(("stranded_plan", node.id), lambda: _plan(store, pid, node.id, ids))
    c1, c2 = st.columns([3, 2], vertical_alignment="bottom")
    if c1.button("Route with the LLM", key="tree_stranded_route", type="primary", disabled=busy, width="stretch",
                 help="A background job asks the LLM which child each sample belongs to, several per call, down "
                      "to a leaf; 'none of these' keeps a sample here, flagged"):
        if ui.start_job(pid, "route", edits.stranded_route_params(store, node.id)):
            st.rerun()
    if c2.button("Leave flagged", key="tree_stranded_leave", width="stretch",
                 help="Keep them here; the node stays in the list of nodes that need attention"):
        left.add(node.id)
        st.rerun()
    if plan:
        st.caption(plan)
    tree = data.tree
    leaves = [k.id for k in tree.subtree(node.id)[1:] if not tree.kids(k.id) and not data.pruned[k.id]]
    if not leaves:
        return
    with st.form("tree_stranded_move_form", border=False):
        m1, m2 = st.columns([3, 2], vertical_alignment="bottom")
        cut = 0 if node.parent_id is None else len(data.paths.get(node.id, "")) + 3  # the path below this node
        target = m1.selectbox("Move all to", leaves[:MOVE_CHOICES], key=f"tree_stranded_to_{node.id}",
                              format_func=lambda nid: data.paths.get(nid, nid)[cut:] or nid)
        if m2.form_submit_button(f"Move all {n}", width="stretch"):
            with ui.guard():
                moved = edits.move_samples(store, ids, target)
                ui.flash(f"Moved {moved} stranded sample(s) to {tree.nodes[target].label}. Undo brings them back.")
                st.rerun()


def _plan(store, pid: int, node_id: str, ids: list[int]) -> str:
    try:
        plan = plan_routing(store, pid, sample_ids=ids, start_node_id=node_id)
    except TreeSynthError as exc:  # a plan that cannot be made must not hide the actions
        return f"Routing plan unavailable: {exc}"
    if not plan.rows:
        return "Nothing to route: these samples already have an answer here ('none of these'); move them by hand."
    cost = "cost unknown (no prices set)" if plan.cost is None else f"about ${plan.cost:.4f}"
    return (f"Routing plan: {plan.rows} sample(s) over {plan.levels} level(s), about {plan.calls} call(s), "
            f"~{plan.prompt_tokens + plan.completion_tokens:,} tokens, {cost}.")


def mark_figure(fig, stranded: dict[str, int]) -> None:
    """Add the stranded count to the hover of each sector that holds stranded samples."""
    if not stranded or not fig.data:
        return
    trace = fig.data[0]
    ids, hovers = list(trace.ids or []), list(trace.hovertext or [])
    marked = False
    for i, nid in enumerate(ids[:len(hovers)]):
        if nid in stranded:
            hovers[i] += f"<br><b>! {stranded[nid]} stranded samples</b>: select it to route or move them"
            marked = True
    if marked:
        trace.hovertext = hovers
