"""Streamlit helpers shared by the pages: where the database is, the endpoint, the open project, the sidebar,
errors, the node picker, settings inputs and background-job progress.

Pages stay thin: they read state, call ``treesynth_core`` and render. The core never imports this module.
Session keys set here start with ``ts_``; each page prefixes its own keys with its name.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from pathlib import Path

import streamlit as st

from treesynth_core import jobs
from treesynth_core.config import Endpoint, endpoint_from_env
from treesynth_core.errors import TreeSynthError
from treesynth_core.spec import Settings
from treesynth_core.store import Store
from treesynth_core.sunburst import path_texts
from treesynth_core.tree import Tree

REPO = Path(__file__).resolve().parent
PROJECT_KEY = "ts_project_id"
FLASH_KEY = "ts_flash"
PAGES = [
    ("app.py", "Home: projects & endpoint", ":material/home:"),
    ("pages/1_Tree.py", "Tree: build & review", ":material/account_tree:"),
    ("pages/2_Generate.py", "Generate samples", ":material/bolt:"),
    ("pages/3_Samples.py", "Review samples", ":material/fact_check:"),
    ("pages/4_Export.py", "Export & import", ":material/download:"),
]
JOB_WORDS = {"build": "Building the tree", "generate": "Generating samples"}


# ----------------------------------------------------------------------------- plumbing


def db_path() -> str:
    """The database file: $TREESYNTH_DB, else data/treesynth.db in the repository."""
    return os.environ.get("TREESYNTH_DB") or str(REPO / "data" / "treesynth.db")


@contextmanager
def open_store():
    """A Store for this script run only (a sqlite connection must not outlive the run's thread)."""
    store = Store(db_path())
    try:
        yield store
    finally:
        store.close()


def _secret_key() -> str:
    try:
        return str(st.secrets.get("OPENAI_API_KEY", "") or "")
    except Exception:  # no secrets.toml, or an unreadable one: the environment is the only source
        return ""


def endpoint() -> Endpoint:
    """The endpoint from the environment; the API key falls back to st.secrets["OPENAI_API_KEY"]."""
    if os.environ.get("OPENAI_API_KEY"):
        return endpoint_from_env()
    return endpoint_from_env(api_key=_secret_key() or None)


def md_escape(text) -> str:
    """Text safe to place inside Markdown (labels, alerts): no formatting, links or HTML."""
    text = re.sub(r"([\\`*_\[\]<>|~$])", r"\\\1", str(text))
    text = re.sub(r"(?m)^(\s*)([-+=#])", r"\1\\\2", text)
    return re.sub(r"(?m)^(\s*\d+)([.)])", r"\1\\\2", text)


def error_text(exc: TreeSynthError) -> str:
    text = md_escape(exc.message)
    if exc.hint:
        text += f"  \n**What to do:** {md_escape(exc.hint)}"
    return text


def show_error(exc: TreeSynthError) -> None:
    st.error(error_text(exc), icon=":material/warning:")


class Outcome:
    failed: TreeSynthError | None = None


@contextmanager
def guard():
    """Show a core error as st.error with its hint instead of a traceback; ``.failed`` holds it."""
    outcome = Outcome()
    try:
        yield outcome
    except TreeSynthError as exc:
        outcome.failed = exc
        show_error(exc)


def flash(message: str, error: TreeSynthError | None = None) -> None:
    """A message shown once, after the rerun that follows an action (plus the error that stopped it)."""
    st.session_state.setdefault(FLASH_KEY, []).append(("success", md_escape(message)))
    if error is not None:
        st.session_state[FLASH_KEY].append(("error", error_text(error)))


def show_flash() -> None:
    for kind, text in st.session_state.pop(FLASH_KEY, []):
        (st.error if kind == "error" else st.success)(text, icon=":material/warning:" if kind == "error" else ":material/check_circle:")


# ----------------------------------------------------------------------------- page frame


def page(title: str, icon: str, *, wide: bool = True) -> None:
    st.set_page_config(page_title=f"{title} · TreeSynth Studio", page_icon=icon,
                       layout="wide" if wide else "centered")


def current_project(store: Store) -> int | None:
    """The open project, shared by all pages: the one opened in this session, else the one in the URL
    (so a reload or a bookmark keeps it), else the most recently changed one. None when there is none."""
    pid = st.session_state.get(PROJECT_KEY)
    if pid is None:
        raw = st.query_params.get("project")
        pid = int(raw) if raw and raw.isdigit() else None
    if pid is None or not store.query("select 1 from projects where id = ?", [pid]):
        rows = store.query("select id from projects order by updated_at desc, id desc limit 1")
        pid = rows[0]["id"] if rows else None
    open_project(pid)
    return pid


def open_project(project_id: int | None) -> None:
    if project_id is None:
        st.session_state.pop(PROJECT_KEY, None)
        st.query_params.pop("project", None)
    else:
        st.session_state[PROJECT_KEY] = int(project_id)
        if st.query_params.get("project") != str(project_id):
            st.query_params["project"] = str(project_id)


def sidebar(store: Store) -> None:
    with st.sidebar:
        st.markdown("### TreeSynth Studio")
        pid = current_project(store)
        link_params = {"project": str(pid)} if pid is not None else None
        for path, label, icon in PAGES:
            st.page_link(path, label=label, icon=icon, query_params=link_params)
        st.divider()
        if pid is None:
            st.caption("No project open. Create or open one on Home.")
        else:
            st.caption("Open project")
            st.text(store.project(pid).name)
        ep = endpoint()
        where = "bundled offline model" if ep.is_local else (ep.base_url or "api.openai.com")
        st.caption(f"LLM: {md_escape(ep.model)} at {md_escape(where)}")


def require_project(store: Store) -> int:
    """The open project; otherwise a pointer to Home and the run stops here."""
    pid = current_project(store)
    if pid is None:
        st.info("No project is open. Create one or open an existing one on Home.")
        st.page_link("app.py", label="Go to Home", icon=":material/home:")
        st.stop()
    return pid


def frame(store: Store, title: str, *, need_project: bool = True) -> int | None:
    """What every page starts with: the sidebar, the title, pending messages and the open project
    (a page that needs one stops with a pointer to Home when none is open)."""
    sidebar(store)
    st.title(title)
    pid = require_project(store) if need_project else current_project(store)
    show_flash()
    return pid


# ----------------------------------------------------------------------------- widgets


def node_picker(tree: Tree, label: str, key: str, *, ids: list[str] | None = None, on_change=None,
                help: str | None = None) -> str | None:
    """A searchable select box over the path of every node (type to filter)."""
    if tree.root is None:
        return None
    ids = ids if ids is not None else [n.id for n in tree.subtree(tree.root.id)]
    if not ids:
        return None
    if st.session_state.get(key) not in ids:
        st.session_state[key] = ids[0]
    paths = path_texts(tree)
    return st.selectbox(label, ids, format_func=lambda nid: paths.get(nid, nid), key=key, on_change=on_change,
                        help=help or "Type to search the paths")


def settings_inputs(prefix: str, s: Settings) -> dict:
    """Inputs for the generation settings; returns keyword arguments for Settings (prices None = unknown)."""
    c1, c2, c3 = st.columns(3)
    out = dict(
        pivots=c1.number_input("Pivot samples per node", 2, 20, s.pivots, key=f"{prefix}_pivots",
                               help="Example samples the LLM writes before choosing a node's criterion"),
        max_values=c2.number_input("Values cap per criterion", 2, 200, s.max_values, key=f"{prefix}_max_values",
                                   help="Beyond this many values a node becomes open-ended (values drawn at random)"),
        max_depth=c3.number_input("Tree depth", 1, 8, s.max_depth, key=f"{prefix}_max_depth"),
        per_leaf=c1.number_input("Samples per leaf (quota)", 1, 10_000, s.per_leaf, key=f"{prefix}_per_leaf"),
        samples_per_call=c2.number_input("Samples per LLM call", 1, 20, s.samples_per_call,
                                         key=f"{prefix}_samples_per_call"),
        concurrency=c3.number_input("Parallel LLM calls", 1, 64, s.concurrency, key=f"{prefix}_concurrency"),
    )
    t1, t2, t3, t4 = st.columns(4)
    out.update(
        pivot_temperature=t1.number_input("Pivot temperature", 0.0, 2.0, s.pivot_temperature, 0.1,
                                          key=f"{prefix}_t_pivot"),
        criterion_temperature=t2.number_input("Criterion temperature", 0.0, 2.0, s.criterion_temperature, 0.1,
                                              key=f"{prefix}_t_criterion"),
        coverage_temperature=t3.number_input("Coverage temperature", 0.0, 2.0, s.coverage_temperature, 0.1,
                                             key=f"{prefix}_t_coverage"),
        generation_temperature=t4.number_input("Generation temperature", 0.0, 2.0, s.generation_temperature,
                                               0.1, key=f"{prefix}_t_generation"),
    )
    p1, p2 = st.columns(2)
    out.update(
        price_input_per_m=p1.number_input("Price per million input tokens (USD)", 0.0, None, s.price_input_per_m,
                                          0.01, format="%.4f", key=f"{prefix}_price_in",
                                          placeholder="unknown", help="Leave empty if you do not know it"),
        price_output_per_m=p2.number_input("Price per million output tokens (USD)", 0.0, None,
                                           s.price_output_per_m, 0.01, format="%.4f", key=f"{prefix}_price_out",
                                           placeholder="unknown", help="Leave empty if you do not know it"),
    )
    return {k: (int(v) if isinstance(v, (int, float)) and k in _INT_SETTINGS else v) for k, v in out.items()}


_INT_SETTINGS = {"pivots", "max_values", "max_depth", "per_leaf", "samples_per_call", "concurrency"}


def cost_text(prompt_tokens: int, completion_tokens: int, s: Settings) -> str:
    if s.price_input_per_m is None or s.price_output_per_m is None:
        return "unknown price (set prices on Home)"
    return f"${(prompt_tokens * s.price_input_per_m + completion_tokens * s.price_output_per_m) / 1e6:,.4f}"


# ----------------------------------------------------------------------------- background jobs


def job_status(store: Store, project_id: int, kind: str, key: str) -> dict | None:
    """Show the project's running job (live, polled every second) or the last one of ``kind``.

    Returns the running job, else the last job of this kind (or None)."""
    running = jobs.active_job(store, project_id)
    if running:
        _poll_job(running["id"], key)
        return running
    recent = [j for j in jobs.recent_jobs(store, project_id, limit=20) if j["kind"] == kind]
    if recent:
        job = recent[0]
        text = f"Last {md_escape(kind)} job #{job['id']} {job['status']}: {md_escape(job['message'] or '')}"
        words = {"done": st.caption, "failed": st.error, "cancelled": st.warning, "interrupted": st.warning}
        words.get(job["status"], st.info)(text)
        return job
    return None


@st.fragment(run_every=1)
def _poll_job(job_id: int, key: str) -> None:
    with open_store() as store:
        job = jobs.get_job(store, job_id)
        if job["status"] != "running":
            st.rerun()  # the whole page redraws with the result
        total, done = job["total"] or 0, job["done"] or 0
        word = JOB_WORDS.get(job["kind"], job["kind"])
        unit = "nodes" if job["kind"] == "build" else "samples"
        text = f"{word} (job #{job_id}): {done} of {total} {unit}" if total else f"{word} (job #{job_id}): starting…"
        if job["cancel_requested"]:
            text += " — cancelling after the calls in flight"
        st.progress(min(done / total, 1.0) if total else 0.0, text=text)
        st.caption("It runs in the background: you can switch pages or reload; it keeps going.")
        if st.button("Cancel", key=f"{key}_cancel_{job_id}", disabled=bool(job["cancel_requested"])):
            jobs.request_cancel(store, job_id)
            st.rerun(scope="fragment")


def start_job(project_id: int, kind: str, params: dict) -> int | None:
    """Start a background job; shows the error (e.g. another job running) and returns None on failure."""
    try:
        return jobs.start_job(db_path(), project_id, kind, params, endpoint())
    except TreeSynthError as exc:
        show_error(exc)
        return None


# ----------------------------------------------------------------------------- table edits


def value_changes(before: dict[str, str], after_rows: list[dict]) -> tuple[list[tuple[str, str]], list[str], list[str]]:
    """Diff a node's children table: ``before`` maps child id -> value; ``after_rows`` are the edited rows
    (dicts with ``id``, empty for a new row, and ``value``). Returns (renames, additions, deletions)."""
    renames, adds, kept = [], [], set()
    for row in after_rows:
        nid = row.get("id")
        value = row.get("value")
        value = value.strip() if isinstance(value, str) else ""
        if isinstance(nid, str) and nid in before:
            kept.add(nid)
            if value and value != before[nid]:
                renames.append((nid, value))
        elif value:
            adds.append(value)
    return renames, adds, [nid for nid in before if nid not in kept]
