"""The Samples page's review of one sample at a time, by keyboard (issue 8).

The current sample is the one the curator picked (a table row, or next / previous / next unreviewed): nothing acts
before there is one. Every action is a callback, so a key press is one rerun of the review panel (a fragment), which
then shows the state after the action (the whole page reruns when the action takes a sample out of the filters,
so every count on it agrees). Keys (``st.button(shortcut=...)``, Streamlit >= 1.52; they do nothing while
the focus is in a text box): A accept, X reject with the chosen reason, U undo the review (back to generated),
J / K next / previous, N next unreviewed, E edit. Every change goes through ``treesynth_core.edits``; sample text is
shown as text only.
"""

from __future__ import annotations

import difflib
import json

import pandas as pd
import streamlit as st

import treesynth_ui as ui
from treesynth_core import edits, judge
from treesynth_core.errors import TreeSynthError
from treesynth_core.judge import Verdict
from treesynth_core.tree import Tree

REASONS = ["incorrect", "off-topic for its leaf", "duplicate", "low quality", "unsafe", "wrong format"]
NO_REASON = "(no reason)"
# fields after judge; provenance: generated (by the LLM) or imported (issue 11)
TABLE_COLUMNS = ["id", "status", "judge", "leaf", "provenance", "reason", "note", "edited", "misfit because"]
CURRENT_KEY = "samples_current"  # the sample shown on the right: None until the curator picks one
TABLE_SEEN_KEY = "samples_table_seen"  # the table selection seen last run (a changed one is a pick)
TABLE_KEY = "samples_table_key"  # the table widget's key: a new one after a key press, so no stale row stays ticked
FOLLOW_KEY = "samples_table_follow"  # set by a key press: the table moves to show the new current sample
EDITING_KEY = "samples_editing"  # the sample whose editor is open
LAST_ACTION_KEY = "samples_last_action"
REVIEW_ERROR_KEY = "samples_review_error"
WINDOW_KEY = "samples_table_start"  # the first row the table shows
TABLE_ROWS = 300  # the table shows this many rows around the current sample (10,000 rows is 1 s a key press)
VISIBLE_ROWS = 9  # rows the table shows without scrolling: a window never starts closer than this to the end


def reason_chosen() -> str | None:
    """The reject reason the curator set (their own words first); None: no reason."""
    own = (st.session_state.get("samples_reason_text") or "").strip()
    picked = st.session_state.get("samples_reason") or NO_REASON
    return own or (None if picked == NO_REASON else picked)


def _step(ids: list[int], statuses: dict[int, str], current: int | None, how: str) -> int | None:
    """The sample after (or before) ``current`` in the list; "unreviewed": the next one still generated, from
    ``current`` on, wrapping round (None when every one is reviewed)."""
    if not ids:
        return None
    at = ids.index(current) if current in ids else -1
    if how == "next":
        return ids[min(at + 1, len(ids) - 1)]
    if how == "previous":
        return ids[max(at - 1, 0)] if at >= 0 else ids[0]
    order = ids[at + 1:] + ids[:at + 1]
    return next((i for i in order if statuses.get(i) == "generated"), None)


def _act(sid: int, status: str, ids: list[int], statuses: dict[int, str]) -> None:
    """Callback of Accept / Reject / Undo review: change the sample; after accept or reject, move on to the next
    unreviewed one."""
    reason = reason_chosen() if status == "rejected" else None
    try:
        with ui.open_store() as store:
            edits.set_sample_status(store, [sid], status, reason=reason)
    except TreeSynthError as exc:
        st.session_state[REVIEW_ERROR_KEY] = ui.error_text(exc)
        return
    st.session_state[LAST_ACTION_KEY] = f"Sample #{sid} {status}" + (f" ({reason})" if reason else "") + "."
    after = {**statuses, sid: status}
    if status != "generated":
        _follow(_step(ids, after, sid, "unreviewed") or sid)
    st.session_state.pop(EDITING_KEY, None)


def _move(ids: list[int], statuses: dict[int, str], how: str) -> None:
    target = _step(ids, statuses, st.session_state.get(CURRENT_KEY), how)
    if target is None:
        st.session_state[LAST_ACTION_KEY] = "Every sample shown is reviewed."
    else:
        _follow(target)
    st.session_state.pop(EDITING_KEY, None)


def _follow(sample_id: int) -> None:
    """Make ``sample_id`` current after a key press or button: the table moves to show it on its second row, and
    is drawn as a new widget so the row ticked by an earlier click is not shown as if it were this one."""
    st.session_state[CURRENT_KEY] = sample_id
    st.session_state[FOLLOW_KEY] = True
    st.session_state[TABLE_KEY + "_n"] = n = st.session_state.get(TABLE_KEY + "_n", 0) + 1
    st.session_state[TABLE_KEY] = f"samples_table_{n}"
    st.session_state[TABLE_SEEN_KEY] = []


def _toggle_edit(sid: int) -> None:
    st.session_state[EDITING_KEY] = None if st.session_state.get(EDITING_KEY) == sid else sid


def _save_note(sid: int) -> None:
    try:
        with ui.open_store() as store:
            edits.set_sample_note(store, sid, st.session_state.get(f"samples_note_{sid}") or "")
        st.session_state[LAST_ACTION_KEY] = f"Note of sample #{sid} saved."
    except TreeSynthError as exc:
        st.session_state[REVIEW_ERROR_KEY] = ui.error_text(exc)


def window(ids: list[int], current: int | None) -> int:
    """The first row the table shows. After a key press it moves so that the current sample is on its second row;
    after a click it stays put (no jump under the mouse); "Table from the first row" keeps it at the top until the
    current sample changes."""
    start = st.session_state.get(WINDOW_KEY, 0)
    follow = st.session_state.pop(FOLLOW_KEY, False)  # after a key press: the sample on row 2
    moved = st.session_state.get(WINDOW_KEY + "_for") != current  # a window the curator chose stays while not
    st.session_state[WINDOW_KEY + "_for"] = current
    if current in ids:
        at = ids.index(current)
        if follow or (moved and not start <= at < start + TABLE_ROWS):
            start = max(0, at - 1)
    start = max(0, min(start, len(ids) - VISIBLE_ROWS))
    st.session_state[WINDOW_KEY] = start
    return start


def _from_the_top() -> None:
    st.session_state[WINDOW_KEY] = 0


def picked_from_table(rows: list[dict]) -> None:
    """A row the curator clicked becomes the current sample; a selection that did not change since the last run
    (a stale one, after next/previous moved on) is not a pick."""
    state = st.session_state.get(st.session_state.get(TABLE_KEY, "samples_table"))
    chosen = list(state["selection"]["rows"]) if state and state.get("selection") else []
    if chosen != st.session_state.get(TABLE_SEEN_KEY, []):
        st.session_state[TABLE_SEEN_KEY] = chosen
        if chosen and chosen[0] < len(rows):
            st.session_state[CURRENT_KEY] = rows[chosen[0]]["id"]
            st.session_state.pop(EDITING_KEY, None)


def table(rows: list[dict], fields: list[str], tree: Tree, verdicts: dict[int, Verdict], current: int | None) -> None:
    frame = pd.DataFrame([{"▶": "▶" if r["id"] == current else "", "id": r["id"], "status": r["status"],
                           "judge": verdicts[r["id"]].word, **{k: r["data"].get(k, "") for k in fields},
                           "leaf": tree.path_text(r["node_id"]) if r["node_id"] in tree.nodes else "(deleted)",
                           "provenance": r.get("provenance") or "generated",
                           "reason": r.get("reason") or "", "note": r.get("note") or "",
                           "edited": bool(r.get("edited")), "misfit because": verdicts[r["id"]].why}
                          for r in rows], columns=["▶", *TABLE_COLUMNS[:3], *fields, *TABLE_COLUMNS[3:]])
    st.dataframe(frame, hide_index=True, width="stretch", height=360, key=st.session_state.get(TABLE_KEY, "samples_table"),
                 on_select="rerun",
                 selection_mode="single-row",
                 column_config={"▶": st.column_config.TextColumn("▶", width=30, help="The sample on the right"),
                                "id": st.column_config.NumberColumn("id", width="small")})


@st.fragment
def review(pid: int, ids: list[int], node_ids: list[str], statuses: list[str], fields: list[str]) -> None:
    """The samples shown (``ids``, on ``node_ids``, still in one of ``statuses``), as a table and one sample at a
    time, read afresh. Reruns alone on a key press or click."""
    with ui.open_store() as store, ui.guard():
        tree = store.tree(pid)
        wanted = set(ids)
        by_id = {r["id"]: r for r in store.samples(pid, node_ids=node_ids, statuses=statuses) if r["id"] in wanted}
        rows = [by_id[i] for i in ids if i in by_id]
        if len(rows) != len(ids):
            # a sample left the filters (e.g. rejected while showing generated and accepted): the page's own
            # counts ("N sample(s) match", the bulk actions) would be stale, so the whole page redraws once;
            # a key press that keeps the count (accept, next, ...) stays a fragment rerun
            st.rerun(scope="app")
        ids = [r["id"] for r in rows]
        statuses = {r["id"]: r["status"] for r in rows}
        start = window(ids, st.session_state.get(CURRENT_KEY))
        shown = rows[start:start + TABLE_ROWS]
        picked_from_table(shown)  # the rows the curator saw when they clicked
        current = st.session_state.get(CURRENT_KEY)
        current = current if current in statuses else None
        judged = shown + ([by_id[current]] if current is not None and current not in {r["id"] for r in shown} else [])
        verdicts = judge.sample_verdicts(store, pid, judged, tree=tree)
        left, right = st.columns([1, 1], gap="large")
        with left:
            todo = sum(s == "generated" for s in statuses.values())
            st.caption(f"{todo:,} of {len(rows):,} shown still generated (not reviewed yet)"
                       + (f" · table rows {start + 1:,}-{start + len(shown):,}: it follows the sample you review"
                          if len(shown) < len(rows) else ""))
            table(shown, fields, tree, verdicts, current)
            if start:
                st.button("Table from the first row", key="samples_table_top", type="tertiary",
                          icon=":material/vertical_align_top:", on_click=_from_the_top)
        with right:
            error = st.session_state.pop(REVIEW_ERROR_KEY, None)
            if error:
                st.error(error, icon=":material/warning:")
            done = st.session_state.pop(LAST_ACTION_KEY, None)
            if done:
                st.caption(ui.md_escape(done))
            navigation(ids, statuses, current)
            if current is None:
                st.info("No sample selected: click a row, or press **N** for the next unreviewed sample "
                        "(**J** / **K**: next / previous). Nothing is accepted or rejected before you pick one.")
            else:
                detail(by_id[current], fields, tree, verdicts[current], ids, statuses)


def navigation(ids: list[int], statuses: dict[int, str], current: int | None) -> None:
    n1, n2, n3 = st.columns([2, 2, 3])
    n1.button("Previous", key="samples_prev", shortcut="K", on_click=_move, args=(ids, statuses, "previous"),
              width="stretch", disabled=not ids or current == ids[0])
    n2.button("Next", key="samples_next", shortcut="J", on_click=_move, args=(ids, statuses, "next"),
              width="stretch", disabled=not ids or current == ids[-1])
    n3.button("Next unreviewed", key="samples_next_todo", shortcut="N", on_click=_move,
              args=(ids, statuses, "unreviewed"), width="stretch", disabled="generated" not in statuses.values())


def detail(sample: dict, fields: list[str], tree: Tree, verdict: Verdict, ids: list[int],
           statuses: dict[int, str]) -> None:
    sid = sample["id"]
    made = "imported" if sample.get("provenance") == "imported" else "made by the LLM"
    st.markdown(f"**Sample #{sid}** · status {sample['status']} · {made} · "
                f"{ids.index(sid) + 1} of {len(ids)} shown")
    if sample["status"] == "excluded":
        st.caption("Set aside by balancing (its leaf was over its target): not exported by default and not counted. "
                   "**Undo review** (U) restores it to generated; undo that in the history.")
    b1, b2, b3 = st.columns(3)
    for col, status, word, key in [(b1, "accepted", "Accept", "A"), (b2, "rejected", "Reject", "X"),
                                   (b3, "generated", "Undo review", "U")]:
        col.button(word, key=f"samples_one_{status}", shortcut=key, disabled=sample["status"] == status,
                   width="stretch", on_click=_act, args=(sid, status, ids, statuses),
                   type="primary" if status == "accepted" else "secondary",
                   help={"accepted": "Accept and go to the next unreviewed sample",
                         "rejected": "Reject with the reason below and go to the next unreviewed sample",
                         "generated": "Back to generated (not reviewed)"}[status])
    r1, r2 = st.columns(2)
    r1.selectbox("Reject reason", [NO_REASON, *REASONS], key="samples_reason",
                 help="Kept for the next samples until you change it")
    r2.text_input("or your own reason", key="samples_reason_text", max_chars=200)
    if sample["status"] == "rejected" and sample.get("reason"):
        st.caption(f"Rejected because: {ui.md_escape(sample['reason'])}")
    if st.session_state.get(EDITING_KEY) == sid:
        edit_form(sample, fields)
    else:
        for name in fields:  # every field, as text only
            st.caption(name)
            st.text(sample["data"].get(name, ""))
    st.button("Close the editor" if st.session_state.get(EDITING_KEY) == sid else "Edit", key="samples_edit",
              shortcut="E", on_click=_toggle_edit, args=(sid,), icon=":material/edit:")
    if sample.get("edited"):
        original(sample, fields)
    st.text_input("Note (saved when you press Enter or leave the box)", value=sample.get("note") or "",
                  key=f"samples_note_{sid}", on_change=_save_note, args=(sid,), max_chars=1000)
    path = tree.labelled_path(sample["node_id"]) if sample["node_id"] in tree.nodes else []
    st.caption("Leaf path")
    st.code("\n".join(f"{'  ' * i}{d} = {v}" for i, (d, v) in enumerate(path)) or "(root)", language=None)
    if sample["drawn"] and [tuple(p) for p in sample["drawn"]] != path:
        st.caption("Values drawn for this sample")
        st.code("\n".join(f"{d} = {v}" for d, v in sample["drawn"]), language=None)
    st.caption("Leaf-fit judge" + (f" (call #{verdict.call_id})" if verdict.call_id else ""))
    if verdict.fits is None:
        st.text("not judged yet (or changed since): use Judge the shown leaves")
    else:  # the judge's reasons are model text: shown as text only
        st.text("fits the task and every attribute of its path" if verdict.fits else
                "misfit:\n" + "\n".join(f"{d} = {v}: {why}" for d, v, why in verdict.failing))


def edit_form(sample: dict, fields: list[str]) -> None:
    sid = sample["id"]
    with st.form(f"samples_edit_{sid}"):
        for k in fields:
            st.text_area(k, sample["data"].get(k, ""), key=f"samples_field_{sid}_{k}", height=150)
        st.form_submit_button("Save edit", type="primary", on_click=_save_edit, args=(sid, fields))


def _save_edit(sid: int, fields: list[str]) -> None:
    try:
        with ui.open_store() as store:
            edits.edit_sample(store, sid, {k: st.session_state.get(f"samples_field_{sid}_{k}", "") for k in fields})
    except TreeSynthError as exc:
        st.session_state[REVIEW_ERROR_KEY] = ui.error_text(exc)  # the editor stays open with the text typed
        return
    st.session_state.pop(EDITING_KEY, None)
    st.session_state[LAST_ACTION_KEY] = f"Sample #{sid} saved; its original is kept."


def _revert(sid: int) -> None:
    try:
        with ui.open_store() as store:
            edits.revert_sample(store, sid)
    except TreeSynthError as exc:
        st.session_state[REVIEW_ERROR_KEY] = ui.error_text(exc)
        return
    st.session_state[LAST_ACTION_KEY] = f"Sample #{sid} is back to its original text."


def original(sample: dict, fields: list[str]) -> None:
    """What the curator changed, as a diff against the text as generated, and the way back to it."""
    before = json.loads(sample["original"]) if isinstance(sample.get("original"), str) else sample.get("original")
    with st.expander("Edited by you: the changes against the original", icon=":material/difference:"):
        for name in fields:
            old, new = (before or {}).get(name, ""), sample["data"].get(name, "")
            if old != new:
                st.caption(name)
                st.code("\n".join(difflib.unified_diff(old.splitlines(), new.splitlines(), "original", "edited",
                                                       lineterm="")), language="diff")
        st.button("Revert to the original", key="samples_revert", icon=":material/undo:", on_click=_revert,
                  args=(sample["id"],))
