"""Samples: filter by path attribute, node, status, reject reason or text; review one sample at a time by keyboard
(accept, reject with a reason, note, edit with the original kept, next / previous / next unreviewed); see the gaps;
review near-duplicates (from the last quality report, or found on demand) and reject the later of each pair;
see the leaf-fit judge's verdict of each sample, judge the shown leaves, filter the misfits and reject them.

Sample text is shown as text only (tables, st.text, text areas): never as Markdown or HTML.
"""

from __future__ import annotations

import html

import plotly.graph_objects as go
import streamlit as st

import treesynth_ui as ui
import treesynth_ui_review as review_ui
from treesynth_core import edits, judge, quality
from treesynth_core.judge import Verdict
from treesynth_core.llm import LLM
from treesynth_core.tree import Tree

ui.page("Samples", "🔍")
# One vocabulary from the database to the export to this screen: the stored words, as they are.
STATUSES = list(edits.SAMPLE_STATUSES)
STATUS_HELP = "generated: not reviewed yet · accepted · rejected (with a reason when one was given)"
COLOURS = {"generated": "#9fb3c8", "accepted": "#2b8a3e", "rejected": "#e03131"}
BULK_CONFIRM_KEY = "samples_bulk_pending"  # the sample ids "Reject all N shown" waits to confirm
GOTO_KEY = "samples_goto"  # set by the Quality page: {"project", "under", "near_dups"}
CONFIRM_KEY = "samples_neardup_pending"  # the sample ids a bulk near-duplicate reject waits to confirm
PAIRS_SHOWN = 20
MISFIT_CONFIRM_KEY = "samples_misfit_pending"  # the sample ids a bulk misfit reject waits to confirm
JUDGED_KEY = "samples_judge_last"  # (project id, outcome, summary) of the last judge run started here


def take_goto(pid: int, tree: Tree) -> None:
    """Apply a filter another page handed over (before the filter widgets are drawn), once."""
    goto = st.session_state.pop(GOTO_KEY, None)
    if not goto or goto.get("project") != pid:
        return
    if goto.get("under") in tree.nodes:
        st.session_state["samples_under"] = goto["under"]
    st.session_state["samples_neardup"] = bool(goto.get("near_dups"))
    st.session_state["samples_misfits"] = bool(goto.get("misfits"))
    st.session_state["samples_attrs"] = []
    st.session_state["samples_text"] = ""


def attribute_options(tree: Tree) -> list[str]:
    out = []
    for node in tree.nodes.values():
        parent = tree.nodes.get(node.parent_id) if node.parent_id else None
        if parent is None or tree.is_pruned(node.id):
            continue
        values = node.values if node.infinite else [node.value or ""]
        out += [f"{parent.dimension} = {v}" for v in values]
    return sorted(set(out))


def pairs_of(sample: dict, tree: Tree) -> set[str]:
    drawn = sample["drawn"] or tree.labelled_path(sample["node_id"])
    return {f"{d} = {v}" for d, v in drawn}


def filters(tree: Tree, reasons: list[str]) -> dict:
    c1, c2 = st.columns(2)
    with c1:
        under = ui.node_picker(tree, "Under node (leaf or subtree)", "samples_under")
        attrs = st.multiselect("Path contains every one of", attribute_options(tree), key="samples_attrs",
                               placeholder="dimension = value")
    with c2:
        s1, s2 = st.columns(2)
        statuses = s1.multiselect("Status", STATUSES, default=["generated", "accepted"], key="samples_status",
                                  help=STATUS_HELP)
        why = s2.multiselect("Reject reason", reasons, key="samples_reasons", placeholder="any",
                             help="Rejected samples with one of these reasons (tick rejected in Status)")
        text = st.text_input("Text contains", key="samples_text", placeholder="search every field, the note and "
                             "the reason")
    t1, t2 = st.columns(2)
    near = t1.toggle("Only near-duplicates of another sample", key="samples_neardup",
                     help="Pairs of samples whose embeddings have a cosine at or above the threshold, from the "
                          "last quality report (or found now)")
    misfits = t2.toggle("Only misfits (leaf-fit judge)", key="samples_misfits",
                        help="Samples the judge found missing the task or an attribute of their leaf's path")
    return {"under": under, "attrs": attrs, "statuses": statuses, "reasons": why, "text": text.strip().lower(),
            "near_dups": near, "misfits": misfits}


def near_pairs(store, pid: int, rows: list[dict]) -> tuple[list[dict], list[tuple[int, int, float]]]:
    """The rows that have a near-duplicate among the rows, and those pairs (both samples in ``rows``), most
    similar first. The pairs come from the session's last quality report; without one the user finds them."""
    entry = ui.last_quality(pid)
    c1, c2 = st.columns([3, 1])
    default = entry.threshold if entry is not None else 0.85
    threshold = c1.slider("Near-duplicate threshold (cosine)", 0.50, 0.99, float(default), 0.01,
                          key="samples_neardup_threshold")
    c2.write("")
    if c2.button("Find near-duplicates" if entry is None else "Find again", key="samples_neardup_find",
                 width="stretch", help="Embeds samples that have no vector yet (kept), then pairs them"):
        with ui.guard():
            entry = ui.compute_quality(store, pid, threshold=threshold)
    if entry is None:
        st.info("No near-duplicates measured in this session yet: click **Find near-duplicates** (or compute "
                "the report on the Quality page).")
        return [], []
    notes = [f"pairs from the quality report of {entry.at} (threshold {entry.threshold:.2f})"]
    if threshold < entry.threshold:
        notes.append(f"a lower threshold than {entry.threshold:.2f} needs **Find again**")
    if not ui.quality_is_current(store, pid, entry):
        notes.append("the project changed since: samples added or edited since are not paired; find again to "
                     "include them")
    report = entry.report
    if report.dataset.near_dup_pairs > len(report.pairs):
        notes.append(f"the report keeps the {len(report.pairs):,} most similar of {report.dataset.near_dup_pairs:,} "
                     "pairs: reject, then find again for the rest")
    st.caption(" · ".join(notes))
    by_id = {r["id"]: r for r in rows}
    pairs = [(a, b, c) for a, b, c in report.pairs if c >= threshold and a in by_id and b in by_id]
    keep = {i for a, b, _ in pairs for i in (a, b)}
    return [r for r in rows if r["id"] in keep], pairs


def pair_review(store, pairs: list[tuple[int, int, float]], rows: list[dict], fields: list[str]) -> None:
    later = quality.redundant_samples(pairs)
    st.markdown(f"**{len(pairs):,} near-duplicate pair(s)** among the samples shown, most similar first")
    bulk_reject(store, later, prefix="samples_neardup", confirm_key=CONFIRM_KEY,
                button=f"Reject the later of each pair ({len(later):,} sample(s))…",
                warning="sample(s), the later of each pair", after="The earlier sample of each pair is kept.",
                done="near-duplicate sample(s) rejected; the earlier of each pair kept.")
    by_id = {r["id"]: r for r in rows}
    for x, y, cosine in pairs[:PAIRS_SHOWN]:
        a, b = min(x, y), max(x, y)
        left, right = st.columns(2)
        for col, sid, word in ((left, a, "earlier"), (right, b, "later")):
            r = by_id[sid]
            col.caption(f"#{sid} · {word} · {r['status']}")
            col.text("\n".join(f"{k}: {r['data'].get(k, '')}" for k in fields))
        st.caption(f"cosine {cosine:.3f}")
    if len(pairs) > PAIRS_SHOWN:
        st.caption(f"… and {len(pairs) - PAIRS_SHOWN:,} more pair(s); their samples are in the table below.")


def filtered(store, pid: int, tree: Tree, f: dict) -> list[dict]:
    scope = [n.id for n in tree.subtree(f["under"] or tree.root.id)]
    rows = store.samples(pid, node_ids=scope, statuses=f["statuses"] or STATUSES)
    wanted = set(f["attrs"])
    reasons = set(f["reasons"])
    out = []
    for r in rows:
        if wanted and not wanted <= pairs_of(r, tree):
            continue
        if reasons and (r.get("reason") or "") not in reasons:
            continue
        if f["text"] and not any(f["text"] in str(v).lower()
                                 for v in [*r["data"].values(), r.get("note") or "", r.get("reason") or ""]):
            continue
        out.append(r)
    return out


def bulk(store, rows: list[dict]) -> None:
    ids = [r["id"] for r in rows]
    if not ids:
        return
    with st.expander(f"Bulk review: act on all {len(ids)} sample(s) shown",
                     expanded=bool(st.session_state.get(BULK_CONFIRM_KEY))):
        c1, c2, c3 = st.columns(3)
        for col, status, word in [(c1, "accepted", "Accept"), (c3, "generated", "Mark generated")]:
            if col.button(f"{word} all {len(ids)} shown", key=f"samples_bulk_{status}", width="stretch"):
                with ui.guard():
                    n = edits.set_sample_status(store, ids, status)
                    ui.flash(f"{n} sample(s) now {status}.")
                    st.rerun()
        with c2:
            reason = review_ui.reason_chosen()
            bulk_reject(store, ids, prefix="samples_bulk", confirm_key=BULK_CONFIRM_KEY,
                        button=f"Reject all {len(ids)} shown…", warning="sample(s), every one shown",
                        after=f"Reject reason: {reason or 'none'}.", done="sample(s) now rejected.", reason=reason)


def judge_panel(store, pid: int, tree: Tree, rows: list[dict], verdicts: dict[int, Verdict],
                running: dict | None) -> None:
    """The verdicts among the rows, a button that judges the unjudged samples of the leaves they are in (in this
    page, with a spinner: a quick pass), and "until N fit" for those leaves as a background job."""
    leaf_ids = sorted({r["node_id"] for r in rows if r["node_id"] in tree.nodes and not tree.kids(r["node_id"])})
    words = [verdicts[r["id"]].word for r in rows]
    st.caption(f"Among the samples shown: {words.count('fits')} fit, {words.count('misfit')} misfit, "
               f"{words.count('not judged')} not judged")
    last = st.session_state.get(JUDGED_KEY)
    if last and last[0] == pid:
        {"complete": st.success, "partial": st.warning}.get(last[1], st.error)(ui.md_escape(last[2]))
    if not leaf_ids:
        return
    plan = judge.plan_judge(store, pid, leaf_ids=leaf_ids)
    s = store.project(pid).settings
    st.caption(f"{plan.unjudged:,} live sample(s) of the {len(plan.leaves):,} leaf/leaves shown have no verdict: "
               f"{plan.judge_calls:,} judge call(s), one per leaf ({judge.JUDGE_CHUNK} samples a call), cost "
               f"{ui.cost_text(plan.prompt_tokens, plan.completion_tokens, s)}")
    if st.button(f"Judge the shown leaves ({plan.unjudged:,} sample(s))", key="samples_judge_run",
                 disabled=not plan.unjudged, icon=":material/gavel:",
                 help="Asks the LLM whether each sample has the task and every attribute of its leaf's path. "
                      "Runs in this page, not as a background job: keep the page open until it ends."):
        bar = st.progress(0.0, text="Judging…")
        llm = LLM(ui.endpoint(), store, pid, concurrency=s.concurrency)
        try:
            with st.spinner("Judging in this page (not a background job): keep it open until it ends"):
                report = judge.judge_samples(store, pid, llm, leaf_ids=leaf_ids, on_progress=lambda done, total: (
                    bar.progress(min(done / total, 1.0) if total else 1.0, text=f"Judged {done} of {total}")))
        finally:
            llm.close()
        st.session_state[JUDGED_KEY] = (pid, report.outcome.value, report.summary())
        st.rerun()
    until_panel(store, pid, leaf_ids, running)


def until_panel(store, pid: int, leaf_ids: list[str], running_job: dict | None) -> None:
    """Fill the leaves shown until N samples fit: judge, reject misfits, generate what is missing, repeat, under a
    hard call budget, as a background job (it survives a reload; a rerun resumes)."""
    low, high = ui.setting_range("per_leaf")
    s = store.project(pid).settings
    until = st.number_input("Fill these leaves until this many samples fit", min_value=max(1, int(low)),
                            max_value=int(high), value=max(1, s.per_leaf), step=1, key="samples_until_n")
    plan = judge.plan_judge(store, pid, until=int(until), leaf_ids=leaf_ids)
    st.caption(f"Plan if nothing misfits: {plan.missing:,} sample(s) to generate in {plan.generation_calls:,} "
               f"call(s), {plan.judge_calls + plan.new_judge_calls:,} judge call(s); cost "
               f"{ui.cost_text(plan.prompt_tokens, plan.completion_tokens, s)}. Hard budget: "
               f"{plan.default_budget:,} call(s), re-asks included; a leaf that stops gaining fitting samples is "
               "left short and reported.")
    # a running job is shown once, at the top of the page; otherwise how the last judge job ended
    running = running_job is not None
    if not running:
        ui.job_status(store, pid, "judge", key="samples_until")
    if st.button(f"Judge and refill until {int(until)} fit (background job)", key="samples_until_run",
                 disabled=running, icon=":material/task_alt:"):
        if ui.start_job(pid, "judge", {"per_leaf": int(until), "leaf_ids": leaf_ids}):
            st.rerun()


def misfit_review(store, rows: list[dict]) -> None:
    """Reject the misfits shown (those not rejected yet), after a confirmation listing them."""
    ids = [r["id"] for r in rows if r["status"] != "rejected"]
    bulk_reject(store, ids, prefix="samples_misfit", confirm_key=MISFIT_CONFIRM_KEY,
                button=f"Reject the misfits shown ({len(ids):,} sample(s))…", warning="misfit sample(s)",
                after="Their verdicts stay.", done="misfit sample(s) rejected.")


def bulk_reject(store, ids: list[int], *, prefix: str, confirm_key: str, button: str, warning: str, after: str,
                done: str, reason: str | None = None) -> None:
    """A bulk reject behind a confirmation that lists the ids: the button asks, "Reject them" acts (through
    edits, the owner of sample changes), "Cancel" forgets. Ids no longer shown drop out of a pending request."""
    pending = [i for i in st.session_state.get(confirm_key) or [] if i in set(ids)]
    if pending:
        st.warning(f"Reject {len(pending):,} {warning}: " + ", ".join(f"#{i}" for i in pending[:40])
                   + (" …" if len(pending) > 40 else "") + f". {after} It lands in the project's history: undo it "
                   "there (Tree page, History) in one step.",
                   icon=":material/warning:")
        yes, no, _ = st.columns([1, 1, 3])
        if yes.button("Reject them", type="primary", key=f"{prefix}_yes"):
            st.session_state.pop(confirm_key, None)
            with ui.guard():
                count = edits.set_sample_status(store, pending, "rejected", reason=reason)
                ui.flash(f"{count} {done}")
                st.rerun()
        if no.button("Cancel", key=f"{prefix}_no"):
            st.session_state.pop(confirm_key, None)
            st.rerun()
    elif st.button(button, key=f"{prefix}_reject", disabled=not ids, icon=":material/delete_sweep:"):
        st.session_state[confirm_key] = ids
        st.rerun()


def coverage(store, pid: int, tree: Tree) -> None:
    counts = store.sample_counts(pid)
    leaves = tree.leaves()
    if not leaves or not tree.kids(tree.root.id):
        st.caption("No tree yet.")
        return
    per_leaf = sorted(({"leaf": tree.path_text(n.id), **{s: counts.get(n.id, {}).get(s, 0) for s in STATUSES}}
                       for n in leaves), key=lambda r: r["generated"] + r["accepted"])
    shown = per_leaf[:150]
    st.markdown(f"**Samples per leaf** · emptiest first ({len(shown)} of {len(per_leaf)} leaves)")
    st.plotly_chart(bars([r["leaf"] for r in shown], shown, height=max(260, 22 * len(shown))), key="samples_leaf_chart")
    top: dict[str, dict[str, int]] = {}
    for kid in tree.kids(tree.root.id, include_pruned=False):
        agg = top.setdefault(kid.label, {s: 0 for s in STATUSES})
        for n in tree.subtree(kid.id):
            for s in STATUSES:
                agg[s] += counts.get(n.id, {}).get(s, 0)
    st.markdown(f"**Samples per value of {ui.md_escape(tree.root.dimension or 'the first level')}**")
    st.plotly_chart(bars(list(top), list(top.values()), height=max(220, 30 * len(top))), key="samples_top_chart")


def bars(labels: list[str], rows: list[dict], height: int) -> go.Figure:
    names = [html.escape(label if len(label) <= 90 else "…" + label[-89:]) for label in labels]
    fig = go.Figure([go.Bar(name=s, y=names, x=[r[s] for r in rows], orientation="h",
                            marker_color=COLOURS.get(s, "#adb5bd")) for s in STATUSES])
    fig.update_layout(barmode="stack", height=height, margin=dict(t=10, b=10, l=10, r=10),
                      yaxis=dict(autorange="reversed", automargin=True), legend=dict(orientation="h"))
    return fig


with ui.open_store() as store:
    pid = ui.frame(store, "Review samples")
    spec = store.project(pid)
    tree = store.tree(pid)
    take_goto(pid, tree)
    running = ui.running_job(store, pid, key="samples_job")
    if running:
        st.caption("The samples below are as they were when the page loaded: they refresh when the job ends.")
    browse, charts = st.tabs(["Browse & review", "Coverage (where the gaps are)"])
    with browse, ui.guard():
        known = {r["reason"] for r in store.samples(pid, statuses=["rejected"]) if r.get("reason")}
        chosen_filters = filters(tree, review_ui.REASONS + sorted(known - set(review_ui.REASONS)))
        rows = filtered(store, pid, tree, chosen_filters)
        verdicts = judge.sample_verdicts(store, pid, rows, tree=tree, spec=spec)
        with st.expander("Leaf-fit judge", expanded=chosen_filters["misfits"]):
            judge_panel(store, pid, tree, rows, verdicts, running)
        if chosen_filters["misfits"]:
            rows = [r for r in rows if verdicts[r["id"]].fits is False]
        else:
            st.session_state.pop(MISFIT_CONFIRM_KEY, None)
        pairs = []
        if chosen_filters["near_dups"]:
            rows, pairs = near_pairs(store, pid, rows)
        else:
            st.session_state.pop(CONFIRM_KEY, None)
        st.caption(f"{len(rows)} sample(s) match · pick a row (or press N), then review by keyboard: A accept, "
                   "X reject, U back to generated, J / K next / previous, N next unreviewed, E edit")
        if pairs:
            with st.expander("Near-duplicate pairs side by side", expanded=True):
                pair_review(store, pairs, rows, spec.field_names)
        if chosen_filters["misfits"] and rows:
            misfit_review(store, rows)
        bulk(store, rows)
        if rows:
            review_ui.review(pid, [r["id"] for r in rows], sorted({r["node_id"] for r in rows}),
                   chosen_filters["statuses"] or STATUSES, spec.field_names)
        elif chosen_filters["near_dups"] and ui.last_quality(pid) is not None:
            st.success("No near-duplicate pair among the samples these filters show.")
        elif chosen_filters["misfits"]:
            st.success("No misfit among the samples these filters show (samples not judged yet are not listed).")
        elif not chosen_filters["near_dups"]:
            st.info("No sample matches. Generate some on the Generate page, or widen the filters.")
    with charts, ui.guard():
        coverage(store, pid, tree)
