"""Streamlit helpers shared by the pages: where the database is, the endpoint, the open project, the sidebar,
errors, the node picker, settings inputs and background-job progress.

Pages stay thin: they read state, call ``treesynth_core`` and render. The core never imports this module.
Session keys set here start with ``ts_``; each page prefixes its own keys with its name.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from contextlib import contextmanager
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import streamlit as st
from pydantic import ValidationError

from treesynth_core import jobs
from treesynth_core.config import Endpoint, endpoint_from_env
from treesynth_core.errors import TreeSynthError
from treesynth_core.outcome import Outcome as RunOutcome
from treesynth_core.spec import Settings, bounds
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
    ("pages/6_Data.py", "Bring your own data", ":material/upload_file:"),
]
JOB_WORDS = {"build": "Building the tree", "generate": "Generating samples",
             "run": "Building and generating (each leaf as soon as it exists)",
             "judge": "Judging and refilling until enough samples fit",
             "route": "Routing rows down the tree", "balance": "Balancing: generating what under-full leaves miss",
             "import": "Importing the uploaded file", "push": "Pushing to the Hugging Face Hub"}


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


def invalid_input(exc: ValidationError) -> TreeSynthError:
    """A pydantic validation error (a setting or field out of range) as one line with what to do."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return TreeSynthError(f"{where}: {first['msg']}" if where else first["msg"], "change that value and try again")


class Guarded:
    failed: TreeSynthError | None = None


@contextmanager
def guard():
    """Show a core error (or an invalid value) as st.error with its hint instead of a traceback; ``.failed``
    holds it. Streamlit's own rerun/stop signals pass through (they are not Exceptions)."""
    outcome = Guarded()
    try:
        yield outcome
    except TreeSynthError as exc:
        outcome.failed = exc
        show_error(exc)
    except ValidationError as exc:
        outcome.failed = invalid_input(exc)
        show_error(outcome.failed)


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
        pid = int(raw) if raw and raw.isascii() and raw.isdigit() and len(raw) < 19 else None  # else: ignored
    projects = store.projects()
    if pid not in {p["id"] for p in projects}:
        latest = max(projects, key=lambda p: (p["updated_at"] or "", p["id"]), default=None)
        pid = latest["id"] if latest else None
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
        st.markdown("**TreeSynth Studio**")  # not a heading: the page title is the first heading (h1)
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
        where = "bundled offline model" if ep.is_local else ep.shown_url()
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


def setting_range(name: str, low=None, high=None) -> tuple:
    """The allowed range of a Settings field from ``spec.bounds``, the one source the CLI uses too;
    ``low``/``high`` only stand in where the field declares no bound."""
    lowest, highest = bounds(name)
    return (low if lowest is None else lowest), (high if highest is None else highest)


def number_setting(where, label: str, name: str, value, *, key: str, step=None, low=None, high=None, **kwargs):
    """A number input bounded like the Settings field ``name``. ``value`` is clamped into the range, so a
    project saved under wider limits still opens; ``low``/``high`` narrow the range further."""
    lo, hi = setting_range(name)
    lo = lo if low is None else (low if lo is None else max(lo, low))
    hi = hi if high is None else (high if hi is None else min(hi, high))
    is_int = Settings.model_fields[name].annotation is int
    cast = int if is_int else float
    lo, hi = (None if lo is None else cast(lo)), (None if hi is None else cast(hi))
    if value is not None:
        value = cast(min(max(value, lo if lo is not None else value), hi if hi is not None else value))
    return where.number_input(label, lo, hi, value, step if step is not None else (1 if is_int else 0.1),
                              key=key, **kwargs)


def settings_inputs(prefix: str, s: Settings) -> dict:
    """Inputs for the generation settings; returns keyword arguments for Settings (prices None = unknown)."""
    c1, c2, c3 = st.columns(3)
    out = dict(
        pivots=number_setting(c1, "Pivot samples per node", "pivots", s.pivots, key=f"{prefix}_pivots",
                              help="Example samples the LLM writes before choosing a node's criterion"),
        max_values=number_setting(c2, "Values cap per criterion", "max_values", s.max_values,
                                  key=f"{prefix}_max_values",
                                  help="Beyond this many values a node becomes open-ended (values drawn at random)"),
        max_depth=number_setting(c3, "Tree depth", "max_depth", s.max_depth, key=f"{prefix}_max_depth"),
        per_leaf=number_setting(c1, "Samples per leaf (quota)", "per_leaf", s.per_leaf, key=f"{prefix}_per_leaf"),
        samples_per_call=number_setting(c2, "Samples per LLM call", "samples_per_call", s.samples_per_call,
                                        key=f"{prefix}_samples_per_call"),
        concurrency=number_setting(c3, "Parallel LLM calls", "concurrency", s.concurrency,
                                   key=f"{prefix}_concurrency"),
    )
    t1, t2, t3, t4 = st.columns(4)
    out.update(
        pivot_temperature=number_setting(t1, "Pivot temperature", "pivot_temperature", s.pivot_temperature,
                                         key=f"{prefix}_t_pivot"),
        criterion_temperature=number_setting(t2, "Criterion temperature", "criterion_temperature",
                                             s.criterion_temperature, key=f"{prefix}_t_criterion"),
        coverage_temperature=number_setting(t3, "Coverage temperature", "coverage_temperature",
                                            s.coverage_temperature, key=f"{prefix}_t_coverage"),
        generation_temperature=number_setting(t4, "Generation temperature", "generation_temperature",
                                              s.generation_temperature, key=f"{prefix}_t_generation"),
    )
    p1, p2 = st.columns(2)
    out.update(
        price_input_per_m=number_setting(p1, "Price per million input tokens (USD)", "price_input_per_m",
                                         s.price_input_per_m, step=0.01, format="%.4f", key=f"{prefix}_price_in",
                                         placeholder="unknown", help="Leave empty if you do not know it"),
        price_output_per_m=number_setting(p2, "Price per million output tokens (USD)", "price_output_per_m",
                                          s.price_output_per_m, step=0.01, format="%.4f",
                                          key=f"{prefix}_price_out", placeholder="unknown",
                                          help="Leave empty if you do not know it"),
    )
    modes = list(Settings.model_fields["avoid_list"].annotation.__args__)
    out["avoid_list"] = st.selectbox(
        "Show the model the leaf's recent samples (avoid list)", modes, index=modes.index(s.avoid_list),
        key=f"{prefix}_avoid_list",
        help="auto: off for the bundled local model (small models copy the list), the samples themselves for any "
             "other endpoint; topics: only their first words, marked 'do not copy'; off: no list. Exact duplicates "
             "and near-copies are dropped whatever you pick.")
    return {k: (int(v) if isinstance(v, (int, float)) and k in _INT_SETTINGS else v) for k, v in out.items()}


_INT_SETTINGS = {"pivots", "max_values", "max_depth", "per_leaf", "samples_per_call", "concurrency"}


def when_text(stamp: str | None, now: dt.datetime | None = None, tz: str | None = None) -> str:
    """A stored UTC timestamp as people read it: "40 s ago", "5 min ago", "3 h ago" within a day, else the date
    and time in the browser's time zone (``tz``; UTC when unknown). Unreadable values are shown as they are."""
    try:
        when = dt.datetime.fromisoformat(stamp)
    except (TypeError, ValueError):
        return str(stamp or "")
    when = when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)
    seconds = ((now or dt.datetime.now(dt.timezone.utc)) - when).total_seconds()
    if 0 <= seconds < 60:
        return f"{int(seconds)} s ago"
    if 0 <= seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if 0 <= seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    if tz:
        try:
            return when.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M")
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def browser_timezone() -> str | None:
    """The browser's time zone name, when Streamlit knows it."""
    try:
        return st.context.timezone
    except Exception:  # no browser session (bare mode, tests)
        return None


def cost_text(prompt_tokens: int, completion_tokens: int, s: Settings) -> str:
    if s.price_input_per_m is None or s.price_output_per_m is None:
        return "unknown price (set prices on Home)"
    return f"${(prompt_tokens * s.price_input_per_m + completion_tokens * s.price_output_per_m) / 1e6:,.4f}"


# ----------------------------------------------------------------------------- background jobs


def job_outcome(job: dict) -> str:
    """How the job ended (an Outcome value), or "running". A row from before outcomes existed says "done":
    read it as migration m009 does, complete when nothing failed, else partial."""
    if job["status"] == "done":
        return (RunOutcome.PARTIAL if job.get("failed") else RunOutcome.COMPLETE).value
    return job["status"]


# what a job's ``failed`` column counts, and what its done/total progress counts
_FAILED_UNIT = {"build": "node(s)", "generate": "call(s)", "run": "node(s) and call(s)"}
_DONE_UNIT = {"build": "nodes processed", "generate": "samples made", "run": "nodes and samples done",
              "judge": "fitting samples", "route": "rows routed", "balance": "samples balanced",
              "import": "bytes read", "propose": "proposals made", "push": "bytes sent"}
_PROGRESS_UNIT = {"build": "nodes", "generate": "samples", "run": "nodes and samples", "judge": "fitting samples",
                  "route": "rows", "balance": "samples", "import": "bytes read", "push": "bytes"}
_WHAT_TO_DO = {
    ("build", "partial"): "click **Retry the failed nodes**: finished nodes are kept and only what failed is "
                          "asked again. Or fix a failed node by hand: it is listed next to the chart.",
    ("build", "failed"): "check the endpoint on Home, then click **Retry the failed nodes**: the build resumes.",
    ("generate", "partial"): "click **Generate the missing samples**: only what is still missing is generated. "
                             "The failed calls are listed at the bottom of this page.",
    ("generate", "failed"): "check the endpoint on Home, then click **Generate the missing samples**: it resumes.",
    ("run", "partial"): "click **Run again**: finished nodes and samples are kept; only failed nodes are expanded "
                        "again and only missing samples are generated.",
    ("run", "failed"): "check the endpoint on Home, then click **Run again**: it resumes.",
}
_ALERTS = {"complete": st.success, "partial": st.warning, "failed": st.error, "cancelled": st.warning,
           "interrupted": st.warning}
_ICONS = {"complete": ":material/check_circle:", "partial": ":material/warning:", "failed": ":material/error:",
          "cancelled": ":material/stop_circle:", "interrupted": ":material/stop_circle:"}


def job_text(job: dict) -> str:
    """One paragraph on how a finished job ended: its outcome, the counts, its message (the app's short one:
    counts and the first failure; the CLI's fuller text names commands) and what to do."""
    outcome, kind = job_outcome(job), job["kind"]
    text = f"Last {md_escape(kind)} job #{job['id']}: **{md_escape(outcome)}**"
    counts = []
    if job.get("failed"):
        counts.append(f"{job['failed']} {_FAILED_UNIT.get(kind, '')} failed".replace("  ", " "))
    if job.get("total"):
        counts.append(f"{job.get('done') or 0} of {job['total']} {_DONE_UNIT.get(kind, 'done')}")
    if counts:
        text += " (" + ", ".join(counts) + ")"
    message = job.get("app_message") or job.get("message")  # the app's words; older rows have only the CLI's
    if message:
        text += f" · {md_escape(message)}"
    todo = _WHAT_TO_DO.get((kind, outcome))
    if todo is None and outcome in ("cancelled", "interrupted"):
        todo = "resume it: what finished is kept and only what is missing is done."
    return text + (f"  \n**What to do:** {todo}" if todo else "")


def retry_params(job: dict) -> dict:
    """The parameters that redo what a job left undone. Building and generating resume from the store, so
    the same scope only redoes what failed or is missing. A build drops ``approved_only``: a node whose
    expansion failed is marked failed, no longer approved, so that filter would skip exactly those nodes."""
    params = dict(job["params"])
    if job["kind"] in ("build", "run"):
        params.pop("approved_only", None)
        params["under"] = params.get("under")  # None: the whole tree
    return params


def job_actions(project_id: int, job: dict, key: str) -> None:
    """The button that finishes what a partial, failed, cancelled or interrupted job left undone."""
    outcome, kind = job_outcome(job), job["kind"]
    if kind == "import" and outcome in ("partial", "failed"):
        return  # bad rows or a refused file: importing the same file again changes nothing
    if outcome in ("partial", "failed"):
        label = {"build": "Retry the failed nodes", "run": "Run again",
                 "judge": "Judge and refill again", "route": "Route the rows left",
                 "balance": "Balance again"}.get(kind, "Generate the missing samples")
        params, button_key = retry_params(job), f"{key}_retry"
        help_text = {
            "build": "Builds again with the same depth: finished nodes are kept, failed and unfinished ones are "
                     "expanded" + (" (every unsplit leaf in that scope, approved or not)"
                                   if job["params"].get("approved_only") else "") + ".",
            "run": "Builds and generates again with the same settings: only failed nodes are expanded and only "
                   "missing samples are made.",
            "judge": "Judges, rejects misfits and refills again with the same target and a fresh call budget.",
        }.get(kind, "Generates again with the same settings: only missing samples.")
    elif outcome in ("cancelled", "interrupted"):
        label, params, button_key = f"Resume job #{job['id']} with the same settings", dict(job["params"]), f"{key}_resume"
        help_text = "Only what is still missing is done"
    else:
        return
    if st.button(label, key=button_key, type="primary" if outcome != "failed" else "secondary", help=help_text,
                 icon=":material/replay:"):
        if start_job(project_id, kind, params):
            st.rerun()


def job_status(store: Store, project_id: int, kind: str | tuple[str, ...], key: str) -> dict | None:
    """Show the project's running job (live, polled every second) or how the last one of ``kind`` (a kind or a
    tuple of kinds) ended:
    complete as success, partial as a warning with its counts, failed as an error, cancelled or interrupted
    as a warning, with a button that redoes what it left undone.

    Returns the running job, else the last job of this kind (or None)."""
    running = jobs.active_job(store, project_id)
    if running:
        _poll_job(running["id"], key)
        return running
    kinds = (kind,) if isinstance(kind, str) else kind
    recent = [j for j in jobs.recent_jobs(store, project_id, limit=20) if j["kind"] in kinds]
    if not recent:
        return None
    job = recent[0]
    outcome = job_outcome(job)
    _ALERTS.get(outcome, st.info)(job_text(job), icon=_ICONS.get(outcome))
    st.caption(progress_text(jobs.progress(store, job), _PROGRESS_UNIT.get(job["kind"], "steps"), running=False))
    job_actions(project_id, job, key)
    return job


def running_job(store: Store, project_id: int, key: str) -> dict | None:
    """The project's running job, if any, shown live (polled every second, with its cancel button)."""
    running = jobs.active_job(store, project_id)
    if running:
        _poll_job(running["id"], key)
    return running


@st.fragment(run_every=1)
def _poll_job(job_id: int, key: str) -> None:
    with open_store() as store:
        job = jobs.get_job(store, job_id)
        if job["status"] != "running":
            st.rerun()  # the whole page redraws with the result
        total, done = job["total"] or 0, job["done"] or 0
        word = JOB_WORDS.get(job["kind"], job["kind"])
        unit = _PROGRESS_UNIT.get(job["kind"], "steps")
        text = f"{word} (job #{job_id}): {done} of {total} {unit}" if total else f"{word} (job #{job_id}): starting…"
        if job["cancel_requested"]:
            text += " — cancelling after the calls in flight"
        st.progress(min(done / total, 1.0) if total else 0.0, text=text)
        st.caption(progress_text(jobs.progress(store, job), unit, running=True)
                   + " · It runs in the background: you can switch pages or reload; it keeps going.")
        if st.button("Cancel", key=f"{key}_cancel_{job_id}", disabled=bool(job["cancel_requested"])):
            jobs.request_cancel(store, job_id)
            st.rerun(scope="fragment")


def duration_text(seconds: float) -> str:
    """A duration as people read it: "45 s", "3 min 05 s", "2 h 07 min"."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def progress_text(p: jobs.JobProgress, unit: str, *, running: bool) -> str:
    """A job's elapsed time, rate, time left, calls, tokens and cost so far, in one line."""
    parts = [("running for " if running else "took ") + duration_text(p.elapsed_s)]
    if p.rate is not None:
        parts.append(f"{p.rate * 60:,.1f} {unit} a minute" if p.rate < 1 else f"{p.rate:,.1f} {unit} a second")
    if p.eta_s is not None:
        parts.append(f"about {duration_text(p.eta_s)} left")
    parts.append(f"{p.calls:,} call(s)" + (f" ({p.failed_calls:,} failed)" if p.failed_calls else ""))
    parts.append(f"{p.prompt_tokens:,} tokens in, {p.completion_tokens:,} out")
    parts.append("cost unknown (no price set on Home)" if p.cost is None else f"cost so far ${p.cost:,.4f}")
    return " · ".join(parts)


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


# --- quality (issue 9)
# The last quality report of each project, shared by the Quality, Samples and Tree pages for the session:
# {project id: QualityEntry}. A report is computed only on a click (embedding can take minutes) and kept with
# the project's change stamp, so a page can say when the project changed since.

import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

QUALITY_KEY = "ts_quality"
SUNBURST_MODES = ["status", "samples", "diversity", "overlap"]
QUALITY_LEGEND = {  # the caption under a sunburst painted by quality (the figure carries the colour bar)
    "diversity": "Each node's paper-style mean cosine over the samples below it: blue = diverse, red = repetitive · "
                 "pale grey: no figure (fewer than two samples, or pruned). Hover for the numbers; recompute on "
                 "the Quality page after changes.",
    "overlap": "Each node's highest centroid cosine with a sibling: blue = its value separates the samples well, "
               "red = it overlaps a sibling · pale grey: no figure. Hover for the worst sibling and the split's "
               "worst pair.",
}
PAGES.append(("pages/5_Quality.py", "Quality: diversity & overlap", ":material/insights:"))


def last_quality(project_id: int | None):
    """The project's last quality entry in this session (``.report``, ``.stamp``, ``.threshold``,
    ``.statuses``, ``.at``), or None."""
    return st.session_state.get(QUALITY_KEY, {}).get(project_id) if project_id is not None else None


def last_quality_report(project_id: int | None):
    """The project's last QualityReport in this session, or None (what the Tree page paints with)."""
    entry = last_quality(project_id)
    return entry.report if entry is not None else None


def quality_is_current(store: Store, project_id: int, entry) -> bool:
    """Whether nothing in the project changed since ``entry`` was computed."""
    return entry is not None and entry.stamp == store.export_stamp(project_id)


@dataclass
class QualityEntry:
    """A quality report and what it was computed from: the project's change stamp, threshold and statuses."""

    report: object  # treesynth_core.quality.QualityReport
    stamp: tuple
    threshold: float
    statuses: tuple[str, ...]
    at: str = field(default_factory=lambda: time.strftime("%H:%M:%S"))


def embed_with_progress(store: Store, project_id: int, what: str = "samples") -> int:
    """Embed the project's samples that have no vector yet, with a progress bar; returns how many were new.
    Each chunk is stored as it is done, so a page switch mid-way keeps what finished."""
    from treesynth_core import quality

    bar = st.progress(0.0, text=f"Embedding {what}…")

    def on_progress(done: int, total: int) -> None:
        bar.progress(min(done / total, 1.0) if total else 1.0,
                     text=f"Embedding {what}: {done:,} of {total:,} (each is embedded once and kept)")

    try:
        return quality.embed_samples(store, project_id, on_progress=on_progress)
    finally:
        bar.empty()


def compute_quality(store: Store, project_id: int, *, threshold: float,
                    statuses: tuple[str, ...] = ("generated", "accepted")) -> QualityEntry:
    """Embed what is missing (with progress), measure the project and remember the report for the session."""
    from treesynth_core import quality

    stamp = store.export_stamp(project_id)
    embed_with_progress(store, project_id)
    with st.spinner("Measuring diversity, near-duplicates and sibling overlap…"):
        report = quality.quality_report(store, project_id, statuses=tuple(statuses), threshold=threshold,
                                        embed_missing=False)
    entry = QualityEntry(report, stamp, threshold, tuple(statuses))
    st.session_state.setdefault(QUALITY_KEY, {})[project_id] = entry
    return entry


def quality_number(value, digits: int = 3) -> str:
    """A metric as shown: "not enough data" for None (never NaN), ints with separators, floats rounded."""
    if value is None or (isinstance(value, float) and value != value):
        return "not enough data"
    if isinstance(value, bool) or isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}f}"
