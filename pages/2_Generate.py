"""Generate: choose leaves, see the cost plan, run generation in the background, watch it, cancel or resume;
or write the selection as batch files (OpenAI Batch API, vllm run-batch) and import their results."""

from __future__ import annotations

import zlib
from pathlib import Path

import pandas as pd
import streamlit as st

import treesynth_ui as ui
from treesynth_core import batch, batch_api
from treesynth_core.generate import duplicate_rate, plan_generation
from treesynth_core.outcome import Outcome

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
    metrics = [("Leaves", len(plan.leaves), None), ("Samples missing", plan.missing, None)]
    if plan.awaited:
        metrics.append(("Out in batch files", plan.awaited, "Asked for in batch files whose results are not imported "
                        "yet: not asked for again here. Import their results, or release the lines to generate "
                        "them here (the Batch files panel below)."))
    metrics += [("LLM calls", plan.calls, None), ("Est. tokens in", f"{plan.prompt_tokens:,}", None),
                ("Est. tokens out", f"{plan.completion_tokens:,}", None)]
    for column, (label, value, help_text) in zip(st.columns(len(metrics)), metrics):
        column.metric(label, value, help=help_text)
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
        rows.append({"leaf": leaf.path, "quota": leaf.quota, "have": leaf.have, "in batch files": leaf.awaited,
                     "missing": leaf.missing, "accepted": c.get("accepted", 0), "rejected": c.get("rejected", 0)})
    frame = pd.DataFrame(rows, columns=["leaf", "quota", "have", "in batch files", "missing", "accepted",
                                        "rejected"])
    st.dataframe(frame, hide_index=True, width="stretch", height=min(400, 40 + 35 * max(1, len(rows))),
                 column_config={"have": st.column_config.ProgressColumn(
                     "have", min_value=0, max_value=max([r["quota"] for r in rows] or [1]), format="%d")})


def duplicates_per_call(store, pid: int, job: dict | None) -> None:
    """The last generation job's duplicate rate per call (issue 9): of the usable samples its calls returned, how
    many were duplicates (exact, cut-off or prefixed copies), and how many calls returned nothing else."""
    if not job or job["status"] == "running" or not job.get("started_at"):
        return
    rate = duplicate_rate(store.sample_call_notes(pid, job["started_at"], job.get("finished_at")))
    if not rate.calls:
        return
    m = st.columns(3)
    m[0].metric("Duplicates (last job)", "-" if rate.rate is None else f"{rate.rate:.0%}",
                help="Duplicates among the usable samples the job's generation calls returned")
    m[1].metric("Duplicate samples", f"{rate.duplicates} of {rate.returned}")
    m[2].metric("Calls with only duplicates", f"{rate.all_duplicates} of {rate.calls}")
    if rate.rate is not None and rate.rate >= 0.5:
        st.warning("Most samples the model returned were copies. A small model copies the prompt's list of "
                   "existing samples: set the project's avoid list to off (`avoid_list`), or use a larger model.")


def failures(store, pid: int, tree) -> None:
    """The project's failed tries: a failed try is re-asked with its reason, so only the calls that gave up (their
    last try failed, or the endpoint failed) lost samples; the banner's "call(s) failed" counts those."""
    rows = store.failed_calls(pid, limit=200)
    counts = store.failure_counts(pid)
    title = "Failed LLM calls" + (f": {counts['failed_attempts']} failed attempt(s) · {counts['gave_up']} call(s) "
                                  "gave up" if rows else "")
    with st.expander(title, expanded=False, icon=":material/warning:" if rows else None):
        if not rows:
            st.caption("None so far.")
            return
        st.caption("Every failed attempt is recorded, never silently dropped (in this project, newest first"
                   + (f"; the newest {len(rows)} shown" if counts["failed_attempts"] > len(rows) else "") + "). A "
                   "reply that breaks the rules is asked again with the reason; a call gives up after its last try "
                   "or when the endpoint fails, and the next run asks for its samples again.")
        tz = ui.browser_timezone()
        frame = pd.DataFrame([{"when": ui.when_text(r["created_at"], tz=tz), "step": r["purpose"],
                               "attempt": r["attempt"],
                               "node": tree.path_text(r["node_id"]) if r["node_id"] in tree.nodes else r["node_id"],
                               "error": r["error"], "finish": r["finish_reason"]} for r in rows])
        st.dataframe(frame, hide_index=True, width="stretch")


def batch_panel(store, pid: int, params: dict) -> None:
    """The selection as OpenAI Batch request files; their state; the request file to download; a results file
    to import; submit and poll when an endpoint with the Batch API is configured."""
    rows = batch.records(store, pid)
    s = store.project(pid).settings
    with st.expander(f"Batch files ({len(rows)})", expanded=bool(rows), icon=":material/inventory_2:"):
        if "gen_batch_result" in st.session_state:
            show_import(*st.session_state.pop("gen_batch_result"))
        c1, c2 = st.columns([2, 1])
        factor = ui.number_setting(c2, "Batch price factor", "batch_price_factor", s.batch_price_factor,
                                   key="gen_batch_factor", step=0.05, help="OpenAI's Batch API: 0.5 of the price")
        if factor is not None and float(factor) != s.batch_price_factor:
            with ui.guard():
                batch.set_price_factor(store, pid, float(factor))
        st.caption("Write this selection's missing samples as OpenAI Batch request lines: submit them to the Batch "
                   "API here, or run the file on a GPU machine with `vllm run-batch -i FILE -o RESULT --model M` "
                   "and import RESULT below. Failed lines are asked for again by the next round's file. Batch calls "
                   "cost the prices times the batch price factor "
                   f"({store.project(pid).settings.batch_price_factor:g}).")
        if c1.button("Create request files for this selection", key="gen_batch_export", icon=":material/note_add:"):
            with ui.guard():
                folder = batch.default_folder(ui.db_path())
                folder.mkdir(parents=True, exist_ok=True)
                report = batch.export_requests(
                    store, pid, batch.request_path(folder, pid, store.next_batch_round(pid)),
                    per_leaf=params["per_leaf"], under=params["under"], approved_only=params["approved_only"],
                    samples_per_call=params["samples_per_call"], temperature=params["temperature"])
                ui.flash(report.summary(for_cli=False))
                st.rerun()
        out = sum(r["samples out"] for r in rows)
        if out:
            st.info(f"{out} sample(s) are out in batch files. Generating here does not ask for them again: import "
                    "their results, or release the lines you will not run (their samples are then missing again).",
                    icon=":material/schedule:")
        if rows:
            frame = pd.DataFrame(rows).assign(file=[Path(r["file"]).name for r in rows])
            st.dataframe(frame, hide_index=True, width="stretch")
            batch_actions(store, pid, rows)
        upload = st.file_uploader("Import a results file (a Batch API output or error file, or vllm run-batch's "
                                  "output)", type=["jsonl"], key="gen_batch_upload")
        if upload is not None and st.button("Import results", key="gen_batch_import", icon=":material/upload:"):
            with ui.guard():
                imported(batch.import_lines(store, pid, upload))


def batch_actions(store, pid: int, rows: list[dict]) -> None:
    labels = {r["batch"]: f"#{r['batch']} round {r['round']} part {r['part']} ({r['state']})" for r in rows}
    # Streamlit keeps a keyed selectbox's shown label when only format_func's text changes (streamlit#13788): the
    # key follows the labels, so a new state redraws it, and the file picked before stays picked
    options, before = list(labels), st.session_state.get("gen_batch_picked")
    pick = st.selectbox("Batch file", options, index=options.index(before) if before in options else 0,
                        format_func=labels.get, key=f"gen_batch_pick_{zlib.crc32('|'.join(labels.values()).encode())}")
    st.session_state["gen_batch_picked"] = pick
    record = next(r for r in rows if r["batch"] == pick)
    path = Path(record["file"])
    b1, b2, b3, b4 = st.columns(4)
    if path.is_file():
        b1.download_button("Download the request file", path.read_bytes(), file_name=path.name,
                           mime="application/jsonl", key="gen_batch_download", icon=":material/download:")
    else:
        b1.caption(f"{path.name} is no longer on disk")
    endpoint = ui.endpoint()
    if (endpoint.api_key or endpoint.base_url) and not endpoint.is_local:
        waiting = [r["batch"] for r in rows if r["state"] in ("exported", "submitting")]
        if b2.button(f"Submit {len(waiting)} to the Batch API", key="gen_batch_submit", disabled=not waiting):
            with ui.guard(), st.spinner("Uploading..."):
                ui.flash("; ".join(batch_api.submit(store, pid, endpoint, waiting).lines))
                st.rerun()
        out = [r["batch"] for r in rows if r["state"] in ("submitted", "downloaded")]
        if b3.button("Check and import results", key="gen_batch_poll", disabled=not out):
            with ui.guard(), st.spinner("Asking the provider..."):
                report = batch_api.poll(store, pid, endpoint, out)
                if report.imported is None:
                    ui.flash("; ".join(report.lines))
                    st.rerun()
                imported(report.imported)
    if record["state"] not in ("imported", "cancelled") and b4.button(
            "Release its pending lines", key="gen_batch_cancel",
            help="Its unanswered lines become missing again and go into the next file; results that come later "
                 "are ignored"):
        with ui.guard():
            running = record["state"] == "submitted" and record["remote"] not in batch_api.REMOTE_ENDED
            ui.flash(batch_api.cancel(store, pid, pick, endpoint if running else None))
            st.rerun()


def imported(report) -> None:
    """Show how an import went after the rerun that refreshes the tables."""
    st.session_state["gen_batch_result"] = (report.outcome.value, report.summary(for_cli=False))
    st.rerun()


def show_import(outcome: str, summary: str) -> None:
    text = ui.md_escape(f"Import {outcome}: {summary}")
    {Outcome.COMPLETE.value: st.success, Outcome.PARTIAL.value: st.warning}.get(outcome, st.error)(text)


with ui.open_store() as store:
    pid = ui.frame(store, "Generate samples")
    spec = store.project(pid)
    tree = store.tree(pid)
    if not tree.kids(tree.root.id) and spec.settings.max_depth > 0:  # depth 0: no tree on purpose, the root is a leaf
        st.info("The tree is empty: build and review it first.")
        st.page_link("pages/1_Tree.py", label="Go to Tree", icon=":material/account_tree:")
        st.stop()
    job = ui.job_status(store, pid, "generate", "gen_job")  # with its retry / resume button
    busy = bool(job and job["status"] == "running")
    duplicates_per_call(store, pid, job)
    with ui.guard():
        st.header("What to generate")
        params = choose(tree, spec.settings)
        plan = plan_generation(store, pid, per_leaf=params["per_leaf"], under=params["under"],
                               approved_only=params["approved_only"], samples_per_call=params["samples_per_call"])
        show_plan(plan)
        if not plan.leaves:
            st.warning("No leaf matches: approve leaves on the Tree page, or untick 'Only approved'.")
        out = f"{plan.awaited} out in batch files"
        if busy:
            label = "Generating…"
        elif not plan.leaves:
            label = "No leaf selected"
        elif plan.missing:
            label = f"Generate {plan.missing} sample(s)" + (f" ({out}, not asked for again)" if plan.awaited else "")
        elif plan.awaited:
            label = f"Nothing to generate: the {plan.awaited} sample(s) out in batch files fill the selected leaves"
        else:
            label = "Nothing missing: every selected leaf has its quota"
        if st.button(label, type="primary", key="gen_start", disabled=busy or plan.missing == 0):
            if ui.start_job(pid, "generate", params):
                st.rerun()
        st.header("Per leaf")
        leaf_table(plan, store.sample_counts(pid))
        failures(store, pid, tree)
        batch_panel(store, pid, params)
