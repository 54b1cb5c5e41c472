"""The Export page's push to the Hugging Face Hub: the options, the card preview, the push as a background job
(kind "push": bytes sent as it goes, a cancel button, it keeps running across reruns, page switches and reloads)
and how the last push ended: the repository's URL on success, the one-line reason on failure.

The token comes from HF_TOKEN in the app's environment only: it is never typed here, put in the job's parameters,
stored or shown (the job reads it from the environment when it runs)."""

from __future__ import annotations

import os
import re

import streamlit as st

import treesynth_ui as ui
from treesynth_core import hub, jobs
from treesynth_core.errors import TreeSynthError

SCOPES = {"Accepted only": ["accepted"], "Accepted and not yet reviewed": ["accepted", "generated"]}
PUSHED = re.compile(r"^pushed (?P<what>.+) to (?P<url>https?://[^\s()<>\[\]]+)$")  # hub.PushResult.summary(False)
OUTCOME_WORDS = {"complete": "done", "failed": "failed", "cancelled": "cancelled", "interrupted": "interrupted"}


def last_push(store, pid: int) -> dict | None:
    """The project's latest push job (running or ended), or None."""
    return next((j for j in jobs.recent_jobs(store, pid, limit=20) if j["kind"] == "push"), None)


def hub_panel(store, pid: int) -> None:
    running = jobs.active_job(store, pid)
    last = last_push(store, pid)
    with st.expander("Push to the Hugging Face Hub", icon=":material/cloud_upload:", expanded=last is not None):
        st.caption("Uploads data/train.parquet, data/train.jsonl, a sunburst image and a dataset card (task, fields, "
                   "tree with counts per leaf, model and settings, review counts, diversity when measured) to a "
                   "dataset repository in one commit. It runs in the background: you can switch pages or reload. "
                   "The token is read from HF_TOKEN in the environment the app was started with; it is never "
                   "stored or shown.")
        remember(last)
        c1, c2 = st.columns(2)
        repo = c1.text_input("Repository id", key="export_hub_repo", placeholder="me/my-dataset").strip()
        license_ = c2.text_input("License", key="export_hub_license").strip()
        which = st.radio("Samples", list(SCOPES), key="export_hub_statuses", horizontal=True)
        public = st.toggle("Public repository (default: private)", key="export_hub_public")
        has_token = bool(os.environ.get("HF_TOKEN", "").strip())
        if not has_token:
            st.caption("HF_TOKEN is not set: start the app with `HF_TOKEN=hf_... make run` to push.")
        options = hub.PushOptions(repo_id=repo or "me/dataset", private=not public, statuses=SCOPES[which],
                                  license=license_ or hub.DEFAULT_LICENSE)
        if st.toggle("Show the dataset card", key="export_hub_card"):
            st.code(hub.card_text(store, pid, options), language="markdown", wrap_lines=True)
        if running is not None and running["kind"] == "push":
            _poll_push(running["id"])
        elif running is not None:
            st.caption(f"A {ui.md_escape(running['kind'])} job is running for this project: push once it has ended.")
        if st.button("Push to the Hub", key="export_hub_push", type="primary", icon=":material/cloud_upload:",
                     disabled=not (repo and has_token) or running is not None):
            start(pid, options)
        if running is None and last is not None:
            outcome_panel(store, last)


def remember(last: dict | None) -> None:
    """A new session (a reload) starts from the last push's options, so "push again" is one click; else from the
    defaults (private, accepted and not yet reviewed, license "other")."""
    params = last["params"] if last else {}
    scope = next((name for name, statuses in SCOPES.items() if statuses == params.get("statuses")),
                 "Accepted and not yet reviewed")
    defaults = {"export_hub_repo": params.get("repo_id", ""),
                "export_hub_license": params.get("license", hub.DEFAULT_LICENSE),
                "export_hub_statuses": scope, "export_hub_public": not params.get("private", True)}
    for key, value in defaults.items():
        st.session_state.setdefault(key, value)


def start(pid: int, options: hub.PushOptions) -> None:
    """Check the options here (one line on the page, no job for a bad id), then start the job and rerun."""
    try:
        hub.check_repo_id(options.repo_id)
        hub.check_license(options.license)
    except TreeSynthError as exc:
        ui.show_error(exc)
        return
    params = {"repo_id": options.repo_id, "private": options.private, "statuses": options.chosen_statuses,
              "license": options.license}
    if ui.start_job(pid, "push", params):
        st.rerun()


def outcome_panel(store, job: dict) -> None:
    """How the last push ended: success with the link, failure with the reason, cancelled or interrupted."""
    outcome = ui.job_outcome(job)
    repo = job["params"].get("repo_id", "")
    message = job.get("app_message") or job.get("message") or ""
    took = ui.duration_text(jobs.progress(store, job).elapsed_s)
    head = f"Push job #{job['id']} to {ui.md_escape(repo)} {OUTCOME_WORDS.get(outcome, ui.md_escape(outcome))}"
    found = PUSHED.match(message) if outcome == "complete" else None
    if found:
        link = f"[{ui.md_escape(found['url'])}]({found['url']})"
        visibility = "private" if job["params"].get("private", True) else "public"
        st.success(f"Pushed {ui.md_escape(found['what'])} to {link} ({visibility}) · push job #{job['id']} took "
                   f"{took}.", icon=":material/check_circle:")
    elif outcome == "complete":
        st.success(f"{head}: {ui.md_escape(message)}", icon=":material/check_circle:")
    elif outcome == "failed":
        st.error(f"{head}: {ui.md_escape(message)}  \n**What to do:** fix what it says, then click **Push to the "
                 "Hub** again: a push is one commit, so nothing half-made is left on the Hub.",
                 icon=":material/error:")
    else:
        st.warning(f"{head}: {ui.md_escape(message)}  \n**What to do:** click **Push to the Hub** again: a push is "
                   "one commit, so the repository has all the files of a push or none.", icon=":material/stop_circle:")


@st.fragment(run_every=1)
def _poll_push(job_id: int) -> None:
    with ui.open_store() as store:
        job = jobs.get_job(store, job_id)
        if job["status"] != "running":
            st.rerun()  # the whole page redraws with the result
        done, total = job["done"] or 0, job["total"] or 0
        repo = ui.md_escape(job["params"].get("repo_id", ""))
        text = f"Pushing to {repo} (job #{job_id}): " + (
            f"{hub.size_text(done)} of {hub.size_text(total)} sent" if total else "writing the files…")
        if job["cancel_requested"]:
            text += " — stopping before the commit"
        st.progress(min(done / total, 1.0) if total else 0.0, text=text)
        st.caption(f"running for {ui.duration_text(jobs.progress(store, job).elapsed_s)} · It runs in the "
                   "background: you can switch pages or reload; it keeps going.")
        if st.button("Cancel", key=f"export_hub_cancel_{job_id}", disabled=bool(job["cancel_requested"])):
            jobs.request_cancel(store, job_id)
            st.rerun(scope="fragment")
