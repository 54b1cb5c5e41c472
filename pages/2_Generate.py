"""Generate: choose leaves, see the cost plan, run generation in the background, watch it, cancel or resume."""

from __future__ import annotations

import pandas as pd
import streamlit as st

import treesynth_ui as ui
from treesynth_core.generate import plan_generation

ui.page("Generate", "⚙️")


def choose(tree, s) -> dict:
    """The generation parameters the user picked (the job's params, as generate() takes them)."""
    c1, c2 = st.columns([1, 2])
    scope = c1.radio("Leaves", ["Whole tree", "Under one node"], key="gen_scope", horizontal=True)
    under = None
    if scope == "Under one node":
        with c2:
            under = ui.node_picker(tree, "Node", "gen_under")
    approved = st.checkbox("Only approved or edited leaves", key="gen_approved",
                           help="Leaves you reviewed on the Tree page; proposed ones are skipped")
    n1, n2, n3, n4 = st.columns(4)
    per_leaf = ui.number_setting(n1, "Samples per leaf", "per_leaf", s.per_leaf, key="gen_per_leaf",
                                 help="A leaf with its own quota keeps it")
    per_call = ui.number_setting(n2, "Samples per call", "samples_per_call", s.samples_per_call, key="gen_per_call")
    low, high = ui.setting_range("generation_temperature", 0.0, 2.0)
    temperature = n3.slider("Temperature", float(low), float(high),
                            min(max(float(s.generation_temperature), float(low)), float(high)), 0.05, key="gen_temp")
    concurrency = ui.number_setting(n4, "Parallel calls", "concurrency", s.concurrency, key="gen_conc")
    return {"per_leaf": int(per_leaf), "under": under, "approved_only": approved,
            "samples_per_call": int(per_call), "temperature": float(temperature), "concurrency": int(concurrency)}


def show_plan(plan) -> None:
    m = st.columns(5)
    m[0].metric("Leaves", len(plan.leaves))
    m[1].metric("Samples missing", plan.missing)
    m[2].metric("LLM calls", plan.calls)
    m[3].metric("Est. tokens in", f"{plan.prompt_tokens:,}")
    m[4].metric("Est. tokens out", f"{plan.completion_tokens:,}")
    if plan.cost is None:
        st.markdown("**Estimated cost:** unknown: set prices on Home (we never guess a price)")
    else:
        st.markdown(f"**Estimated cost:** ${plan.cost:,.4f}")
    st.caption("Estimates: prompt size from the real prompt, output size from the samples made so far. "
               "Only missing samples are generated; rejected samples do not count towards a quota.")


def leaf_table(plan, counts: dict) -> None:
    rows = []
    for leaf in plan.leaves:
        c = counts.get(leaf.node_id, {})
        rows.append({"leaf": leaf.path, "quota": leaf.quota, "have": leaf.have, "missing": leaf.missing,
                     "accepted": c.get("accepted", 0), "rejected": c.get("rejected", 0)})
    frame = pd.DataFrame(rows, columns=["leaf", "quota", "have", "missing", "accepted", "rejected"])
    st.dataframe(frame, hide_index=True, width="stretch", height=min(400, 40 + 35 * max(1, len(rows))),
                 column_config={"have": st.column_config.ProgressColumn(
                     "have", min_value=0, max_value=max([r["quota"] for r in rows] or [1]), format="%d")})


def failures(store, pid: int, tree) -> None:
    rows = store.failed_calls(pid, limit=200)
    with st.expander(f"Failed LLM calls ({len(rows)}{'+' if len(rows) == 200 else ''})", expanded=False,
                     icon=":material/warning:" if rows else None):
        if not rows:
            st.caption("None so far.")
            return
        st.caption("Failures are recorded, never silently dropped. A failed call is retried on the next run.")
        frame = pd.DataFrame([{"when": r["created_at"], "step": r["purpose"], "attempt": r["attempt"],
                               "node": tree.path_text(r["node_id"]) if r["node_id"] in tree.nodes else r["node_id"],
                               "error": r["error"], "finish": r["finish_reason"]} for r in rows])
        st.dataframe(frame, hide_index=True, width="stretch")


with ui.open_store() as store:
    pid = ui.frame(store, "Generate samples")
    spec = store.project(pid)
    tree = store.tree(pid)
    if not tree.kids(tree.root.id):
        st.info("The tree is empty: build and review it first.")
        st.page_link("pages/1_Tree.py", label="Go to Tree", icon=":material/account_tree:")
        st.stop()
    job = ui.job_status(store, pid, "generate", "gen_job")  # with its retry / resume button
    busy = bool(job and job["status"] == "running")
    with ui.guard():
        st.subheader("What to generate")
        params = choose(tree, spec.settings)
        plan = plan_generation(store, pid, per_leaf=params["per_leaf"], under=params["under"],
                               approved_only=params["approved_only"], samples_per_call=params["samples_per_call"])
        show_plan(plan)
        if not plan.leaves:
            st.warning("No leaf matches: approve leaves on the Tree page, or untick 'Only approved'.")
        label = "Generating…" if busy else (f"Generate {plan.missing} sample(s)" if plan.missing else
                                            "Nothing missing: every selected leaf has its quota")
        if st.button(label, type="primary", key="gen_start", disabled=busy or plan.missing == 0):
            if ui.start_job(pid, "generate", params):
                st.rerun()
        st.subheader("Per leaf")
        leaf_table(plan, store.sample_counts(pid))
        failures(store, pid, tree)
