"""Tree page (issue 8): Re-propose as a background job with its stored proposals compared as a diff (kept,
renamed, added, removed, the pivots behind each value, a choice per value, the numbers removed before it runs),
and the History panel (per node and per project: undo, redo, restore a node's earlier split). Every change goes
through ``treesynth_core.edits``; each lands in the history.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

import treesynth_ui as ui
import treesynth_ui_stranded as strand
import treesynth_ui_tree as tui
from treesynth_core import edits, jobs
from treesynth_core.tree import Node, Tree, normalise

KIND_MARK = {"kept": "= kept", "renamed": "~ renamed", "added": "+ added", "removed": "- removed"}
HISTORY_ROWS = 30
RESTORE_ROWS = 10  # the node's newest events searched for earlier splits (they carry their rows)


# ----------------------------------------------------------------------------- re-propose and replace


def last_propose_job(store, pid: int, node_id: str) -> dict | None:
    for job in jobs.recent_jobs(store, pid, limit=20):
        if job["kind"] == "propose" and (job.get("params") or {}).get("node_id") == node_id:
            return job
    return None


def repropose(store, pid: int, tree: Tree, node: Node, busy: bool) -> None:
    st.markdown(f"**Re-propose the criterion of {ui.md_escape(node.label)}** · the LLM proposes again in the "
                "background; compare value by value before anything changes")
    pruned = tree.is_pruned(node.id)
    if st.button("Re-propose", key="tree_repropose", disabled=busy or node.locked or pruned,
                 help="Locked nodes are left to you" if node.locked else "Restore it first" if pruned else
                 "Runs as a job: you can leave the page; the proposal is kept until you apply or dismiss it"):
        if ui.start_job(pid, "propose", {"node_id": node.id}):
            st.rerun()
    job = last_propose_job(store, pid, node.id)
    if job and job["status"] != "running" and ui.job_outcome(job) == "failed":
        st.error(f"Re-propose (job #{job['id']}) failed: {ui.md_escape(job.get('message') or '')}",
                 icon=":material/warning:")
    held = edits.proposals(store, node.id)
    if not held:
        return
    ids = [p.id for p in held]
    if st.session_state.get("tree_proposal_pick") not in ids:
        st.session_state["tree_proposal_pick"] = ids[0]
    by_id = {p.id: p for p in held}
    pid_ = st.selectbox(
        f"Stored proposals ({len(held)})", ids, key="tree_proposal_pick",
        format_func=lambda i: f"#{i} · {by_id[i].split.dimension} · {len(by_id[i].split.values)} values · "
                              f"{ui.when_text(by_id[i].created_at)}")
    compare(store, tree, node, by_id[pid_])


def pivots_by_value(split) -> dict[str, list[str]]:
    """The proposal's pivot samples grouped by the value the criterion gave each (first field, shortened)."""
    out: dict[str, list[str]] = {}
    for pivot, label in zip(split.pivots, split.labels or []):
        text = " ".join(str(next(iter(pivot.values()), "")).split()) if isinstance(pivot, dict) else str(pivot)
        out.setdefault(normalise(str(label)), []).append(text[:80] + ("…" if len(text) > 80 else ""))
    return out


def compare(store, tree: Tree, node: Node, proposal) -> None:
    split = proposal.split
    diff = edits.diff_split(store, node.id, split.dimension, split.values, split.infinite)
    kinds = " · ".join(f"{diff.count(k)} {k}" for k in KIND_MARK if diff.count(k))
    same_dim = (node.dimension or "") == split.dimension
    st.markdown(f"Criterion: **{ui.md_escape(node.dimension or '(none)')}** → **{ui.md_escape(split.dimension)}**"
                + (" (the same)" if same_dim else "") + f" · {kinds}")
    if diff.identical:
        st.success("The proposal is identical to the current split: replacing it changes nothing below.",
                   icon=":material/check:")
    pivots = pivots_by_value(split)
    rows = []
    for c in diff.changes:
        shown = pivots.get(normalise(c.new or ""), [])
        rows.append({"change": KIND_MARK[c.kind], "current value": c.old or "", "proposed value": c.new or "",
                     "nodes below": c.nodes_below, "samples below": c.samples_below,
                     "pivots": f"{len(shown)}: {shown[0]}" if shown else "",
                     "apply": c.kind == "kept" or c.apply})
    version = st.session_state.get("tree_diff_v", 0)
    edited = st.data_editor(
        pd.DataFrame(rows), key=f"tree_diff_{proposal.id}_{version}", hide_index=True, width="stretch",
        disabled=["change", "current value", "proposed value", "nodes below", "samples below", "pivots"],
        column_config={"nodes below": st.column_config.NumberColumn(
            "nodes below", help="Nodes under this value's node, not counting it (the outline's 'N below')"),
            "samples below": st.column_config.NumberColumn(
                "samples below", help="Samples on this value's node and the nodes under it"),
            "apply": st.column_config.CheckboxColumn(
            "apply", help="Kept values always stay. Renamed: take the new name (unticked: keep the old one; its "
                          "subtree stays either way). Added: add it. Removed: delete it with its subtree and samples "
                          "(unticked: keep it)")})
    decisions = []
    for c, row in zip(diff.changes, edited.to_dict("records")):
        c.apply = True if c.kind == "kept" else bool(row["apply"])
        decisions.append(c)
    gone = diff.removal()
    if split.note:
        st.caption(f"This proposal needs review: {ui.md_escape(split.note)}")
    c1, c2 = st.columns(2)
    label = f"Replace: remove {gone.text()}" if gone.nodes else "Replace (nothing is removed)"
    if c1.button(label, type="primary", key="tree_replace", width="stretch",
                 help="Kept and renamed values keep their subtree and samples; only ticked removals go. "
                      "It lands in the history: Undo brings everything back"):
        held = 0 if tree.kids(node.id) else len(store.sample_ids_on(node.id))
        if held:  # a leaf holding samples: ask where they go before splitting it
            tui.ask("strand_replace", {"node": node.id, "proposal": proposal.id, "count": held,
                                       "apply": [c.apply for c in decisions]})
            st.rerun()
        tui.ask("replace", {"node": node.id, "proposal": proposal.id, "apply": [c.apply for c in decisions]})
        if not gone.nodes:
            _replace(store, node, proposal, decisions)
        st.rerun()
    asked = tui.pending("strand_replace")
    if asked and asked["node"] == node.id and asked["proposal"] == proposal.id:
        answer = strand.choice("replace", asked["count"])
        if answer:
            for c, keep in zip(decisions, asked["apply"]):
                c.apply = keep
            _replace(store, node, proposal, decisions)
            if answer == "route":
                strand.start_route(store, node.project_id, node.id, [node.id])
            st.rerun()
    if c2.button("Dismiss this proposal", key="tree_discard", width="stretch"):
        edits.dismiss_proposal(store, proposal.id)
        ui.flash(f"Proposal #{proposal.id} dismissed; the current split stays.")
        st.rerun()
    held = tui.pending("replace")
    if held and held["node"] == node.id and held["proposal"] == proposal.id and gone.nodes:
        for c, keep in zip(decisions, held["apply"]):
            c.apply = keep
        gone = diff.removal()
        if tui.confirm("replace", f"Replacing the split of {ui.md_escape(node.label)} removes **{gone.nodes} "
                       f"node(s) and {gone.samples} sample(s)** (the removed values and everything below them). "
                       "Undo (above the chart) brings them back.", f"Remove {gone.nodes} node(s), replace"):
            _replace(store, node, proposal, decisions)
            st.rerun()


def _replace(store, node: Node, proposal, decisions) -> None:
    split = proposal.split
    with ui.guard():
        edits.replace_split(store, node.id, split.dimension, decisions, pivots=split.pivots, note=split.note,
                            proposal_id=proposal.id)
        tui.ask("replace", None)
        st.session_state["tree_diff_v"] = st.session_state.get("tree_diff_v", 0) + 1
        ui.flash(f"Replaced the criterion with {split.dimension}: " + ", ".join(
            f"{sum(c.kind == k and (c.apply or k == 'kept') for c in decisions)} {k}" for k in KIND_MARK) + ".")


# ----------------------------------------------------------------------------- history


def undo_redo(store, pid: int, where=st) -> None:
    """Project-wide Undo and Redo of the last change (any page, any session: the history is in the store). Each is
    disabled when it has nothing to do; Undo's help names the import or routing run it stops at."""
    c1, c2 = where.columns(2)
    busy = jobs.active_job(store, pid) is not None  # a running job writes under what an undo would restore
    wait = "Wait for the running job to finish (or cancel it): it is changing the tree. " if busy else ""
    stop = edits.undo_barrier(store, pid)
    undo_help = (f"Nothing to undo: the last change left cannot be undone ({stop})" if stop else
                 "Undo the project's last change (it stays in the history, and Redo applies it again)")
    if c1.button("Undo", key="tree_undo", icon=":material/undo:", width="stretch",
                 disabled=busy or not edits.can_undo(store, pid), help=wait + undo_help):
        with ui.guard():
            ev = edits.undo(store, pid)
            if ev is None:  # another session took the last one back meanwhile
                where.info("Nothing to undo.", icon=":material/info:")
            else:
                ui.flash(f"Undone: {ev.summary}.")
                st.rerun()
    if c2.button("Redo", key="tree_redo", icon=":material/redo:", width="stretch",
                 disabled=busy or not edits.can_redo(store, pid),
                 help=wait + "Apply again the change undone last (nothing to redo when nothing was undone since "
                             "the last change)"):
        with ui.guard():
            ev = edits.redo(store, pid)
            if ev is None:
                where.info("Nothing to redo.", icon=":material/info:")
            else:
                ui.flash(f"Redone: {ev.summary}.")
                st.rerun()
    if stop and not busy:
        where.caption(f"Undo stops at: {ui.md_escape(stop)}")


def history_panel(store, pid: int, tree: Tree, node: Node) -> None:
    with st.expander("History · every change, earlier splits", expanded=False):
        st.caption("Undo and Redo (above the chart) take back or apply again the project's last change.")
        scope = st.segmented_control("Show", ["This node", "Whole project"], default="This node",
                                     key="tree_history_scope", required=True)
        events = edits.history(store, pid, node_id=node.id if scope == "This node" else None, limit=HISTORY_ROWS,
                               payloads=False)
        if not events:
            st.caption("No changes recorded here yet.")
        else:
            st.dataframe(pd.DataFrame([{"#": e.id, "when": ui.when_text(e.created_at), "who": e.actor,
                                        "what": e.summary, "undone": "undone" if e.undone else ""}
                                       for e in events]), hide_index=True, width="stretch",
                         key=f"tree_history_{scope}")
        restore_panel(store, tree, node)


def restore_panel(store, tree: Tree, node: Node) -> None:
    """Give the node back a split it had after one of its earlier split events."""
    splits = [e for e in edits.history(store, node.project_id, node_id=node.id, limit=RESTORE_ROWS)
              if (e.after or {}).get("split") and not e.undone]
    current = (node.dimension, [k.label for k in tree.kids(node.id)])
    earlier = [e for e in splits if (e.after["split"].get("dimension"), e.after["split"].get("values")) != current]
    if not earlier:
        return
    by_id = {e.id: e for e in earlier}
    pick = st.selectbox("Restore an earlier split of this node", list(by_id), key="tree_restore_pick",
                        format_func=lambda i: f"#{i} · {by_id[i].after['split']['dimension']}: "
                                              f"{', '.join(by_id[i].after['split']['values'][:5])}"
                                              f"{' …' if len(by_id[i].after['split']['values']) > 5 else ''} · "
                                              f"{ui.when_text(by_id[i].created_at)}")
    state = by_id[pick].after["split"]
    diff = edits.diff_split(store, node.id, state["dimension"], state["values"], state.get("infinite", False))
    gone = diff.removal()
    st.caption(" · ".join(f"{diff.count(k)} {k}" for k in KIND_MARK if diff.count(k))
               + (f" · removes {gone.text()}" if gone.nodes else " · nothing is removed"))
    if st.button("Restore this split", key="tree_restore_split", width="stretch"):
        if gone.nodes:
            tui.ask("restore", {"node": node.id, "event": pick})
        else:
            with ui.guard():
                edits.restore_split(store, node.id, pick)
                ui.flash(f"Restored the split of event #{pick}.")
        st.rerun()
    held = tui.pending("restore")
    if held and held["node"] == node.id and held["event"] == pick:
        if tui.confirm("restore", f"Restoring that split removes **{gone.text()}**. Undo brings them back.",
                       f"Remove {gone.nodes} node(s), restore"):
            with ui.guard():
                edits.restore_split(store, node.id, pick)
                ui.flash(f"Restored the split of event #{pick}.")
            st.rerun()
