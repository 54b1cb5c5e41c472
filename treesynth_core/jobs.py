"""Long work (building, generating, or both pipelined: "run") as a background job that writes its progress
to the store.

The app starts a job and polls its row, so switching pages or reloading the browser neither stops nor
duplicates it. A row's ``status`` is "running", then an Outcome value (complete, partial, failed, cancelled,
interrupted); ``failed`` counts failed nodes (build), calls (generate) or both (run). A job whose process died
is shown as "interrupted"; running it again resumes from the store.

Progress goes to the row at most every ``PROGRESS_EVERY`` seconds (and once at the end), and the cancel flag
is read at most that often: a generation run makes hundreds of calls a second, and each write or read is a
transaction on a file the app shares.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Callable

from .balance import balance_job
from .config import Endpoint
from .errors import Cancelled, NotFoundError, TreeEditError, TreeSynthError
from .generate import generate, run
from .hub import push_job
from .importer import import_job
from .judge import judge_until
from .llm import LLM
from .outcome import Outcome
from .partition import build, repropose
from .routing import route
from .store import Store, now

log = logging.getLogger(__name__)
_threads: dict[tuple[str, int], threading.Thread] = {}
_registry = threading.RLock()  # held from a job's creation until its thread is registered
KINDS = ("build", "generate", "run", "judge", "propose")
ACTIONS: dict[str, Callable] = {"build": build, "generate": generate, "run": run, "judge": judge_until,
                               "propose": repropose}  # propose: params {"node_id": ...}, stores a proposal
KINDS += ("route", "balance", "import")  # issue 11: route rows down the tree; balance leaves; import an upload
ACTIONS.update({"route": route, "balance": balance_job, "import": import_job})
APP_SUMMARIES = ("build", "generate", "run")  # kinds whose report has an app summary: summary(for_cli=False)
APP_SUMMARIES += ("route", "balance")
# push the dataset to the Hugging Face Hub (hub.push_job): params are the options only (repo_id, private, statuses,
# license), never the token, which the job reads from HF_TOKEN; done/total count bytes sent
KINDS += ("push",)
ACTIONS["push"] = push_job
APP_SUMMARIES += ("push",)
PROGRESS_EVERY = 0.25  # seconds between two progress writes (or cancel reads) of a running job


def _key(db_path, job_id: int) -> tuple[str, int]:
    return os.path.abspath(str(db_path)), job_id


def _alive(job: dict, db_path: str) -> bool:
    if job["pid"] == os.getpid():
        with _registry:
            thread = _threads.get(_key(db_path, job["id"]))
        return bool(thread and thread.is_alive())
    try:
        os.kill(job["pid"], 0)
        return True
    except (OSError, TypeError):
        return False


def get_job(store: Store, job_id: int) -> dict:
    row = store.job_row(job_id)
    if row is None:
        raise NotFoundError(f"job {job_id} does not exist", "start a new build or generate job")
    row["params"] = json.loads(row["params"] or "{}")
    if row["status"] == "running" and not _alive(row, store.path):
        ended = {"status": Outcome.INTERRUPTED.value, "finished_at": now(),
                 "message": "the process running this job stopped; run it again to resume"}
        store.update_job(job_id, **ended)
        row.update(ended)  # the caller sees the same message and end time as the stored row
    return row


def active_job(store: Store, project_id: int) -> dict | None:
    for job_id in store.job_ids(project_id, running_only=True):
        job = get_job(store, job_id)
        if job["status"] == "running":
            return job
    return None


def recent_jobs(store: Store, project_id: int, limit: int = 10) -> list[dict]:
    return [get_job(store, job_id) for job_id in store.job_ids(project_id, limit=limit)]


def request_cancel(store: Store, job_id: int) -> None:
    store.update_job(job_id, cancel_requested=1)


def create_job(store: Store, project_id: int, kind: str, params: dict) -> int:
    if kind not in KINDS:
        raise ValueError(f"unknown job kind {kind!r}")
    with store.atomic():  # the check and the insert hold the write lock: two processes cannot both pass it
        running = active_job(store, project_id)
        if running:
            raise TreeEditError(f"a {running['kind']} job is already running for this project",
                                "wait for it or cancel it first")
        return store.insert_job({"project_id": project_id, "kind": kind, "params": json.dumps(params),
                                 "status": "running", "pid": os.getpid(), "started_at": now(),
                                 "heartbeat_at": now(), "message": "starting"})


def run_job(db_path: str, job_id: int, endpoint: Endpoint,
            echo: Callable[[int, int], None] | None = None) -> dict:
    """Run a created job to its end in this thread and return its final row. Never raises an error of the
    work itself: the row gets the outcome (complete / partial / failed / cancelled, see outcome.py) as its
    ``status``, the number of failed nodes (build), calls (generate) or both (run) as ``failed``, and the
    report's summary, which names what failed and how to retry, as ``message`` (and, for the kinds in
    ``APP_SUMMARIES``, the app's shorter one as ``app_message``)."""
    with _registry:  # this thread runs the job (the CLI runs it in its main thread): it is alive
        _threads[_key(db_path, job_id)] = threading.current_thread()
    store = Store(db_path)
    failed, app_message = 0, None
    try:
        job = get_job(store, job_id)
        params, project_id = job["params"], job["project_id"]

        progress = {"written": 0.0, "pending": None, "checked": 0.0, "stop": False}

        def write_progress() -> None:
            if progress["pending"] is not None:
                done, total = progress["pending"]
                store.update_job(job_id, done=done, total=total, heartbeat_at=now())
                progress["pending"], progress["written"] = None, time.monotonic()

        def on_progress(done: int, total: int) -> None:
            progress["pending"] = (done, total)
            if time.monotonic() - progress["written"] >= PROGRESS_EVERY:
                write_progress()
            if echo:
                echo(done, total)

        def should_stop() -> bool:
            if not progress["stop"] and time.monotonic() - progress["checked"] >= PROGRESS_EVERY:
                progress["stop"] = bool(store.job_row(job_id)["cancel_requested"])
                progress["checked"] = time.monotonic()
            return progress["stop"]

        # the job's concurrency is where the client's adaptive window starts (and a cap on units at once)
        spec = store.project(project_id)
        llm = LLM(endpoint, store, project_id, job_id=job_id,
                  concurrency=params.get("concurrency") or spec.settings.concurrency)
        try:
            report = ACTIONS[job["kind"]](store, project_id, llm, on_progress=on_progress, should_stop=should_stop,
                                          **params)
        finally:
            llm.close()
            write_progress()
        status, message, failed = report.outcome.value, report.summary(), report.failed_count
        if job["kind"] in APP_SUMMARIES:
            app_message = report.summary(for_cli=False)
    except Cancelled as exc:
        status, message = Outcome.CANCELLED.value, str(exc)  # what finished before the cancel is kept and counted
        failed = exc.report.failed_count if exc.report is not None else 0
        if exc.report is not None and job["kind"] in APP_SUMMARIES:
            app_message = exc.report.summary(for_cli=False)
    except TreeSynthError as exc:
        status, message = Outcome.FAILED.value, str(exc)
    except Exception as exc:  # a bug: keep the app alive and show it
        log.exception("job %s crashed", job_id)
        status, message = Outcome.FAILED.value, f"unexpected error: {exc!r}"
    store.update_job(job_id, status=status, message=message, app_message=app_message, failed=failed,
                     finished_at=now())
    job = get_job(store, job_id)
    store.close()
    return job


def start_job(db_path: str, project_id: int, kind: str, params: dict, endpoint: Endpoint) -> int:
    """Create a job row and run it on a daemon thread; returns the job id at once."""
    with Store(db_path) as store, _registry:
        job_id = create_job(store, project_id, kind, params)
        thread = threading.Thread(target=run_job, args=(str(db_path), job_id, endpoint), daemon=True,
                                  name=f"treesynth-job-{job_id}")
        _threads[_key(db_path, job_id)] = thread
        thread.start()
    return job_id


def wait(db_path: str, job_id: int, timeout: float | None = None) -> None:
    thread = _threads.get(_key(db_path, job_id))
    if thread:
        thread.join(timeout)


# --- jobs you can watch (issue 8): elapsed time, rate, ETA, tokens and cost so far
@dataclass(frozen=True)
class JobProgress:
    """Where a job stands: ``done`` of ``total`` units (nodes, samples...), seconds since it started (until it
    finished), units per second, seconds left at that rate (None until there is a rate or without a total), the
    calls and tokens its LLM calls used so far, and their cost (None when the project has no price: never
    guessed)."""

    done: int
    total: int
    elapsed_s: float
    rate: float | None
    eta_s: float | None
    calls: int
    failed_calls: int
    prompt_tokens: int
    completion_tokens: int
    cost: float | None

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def _stamp(text: str | None) -> dt.datetime | None:
    try:
        when = dt.datetime.fromisoformat(text) if text else None
    except ValueError:
        return None
    return when if when is None or when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def progress(store: Store, job: dict, at: dt.datetime | None = None) -> JobProgress:
    """The progress of a job row (as ``get_job`` returns it) at ``at`` (default: now)."""
    started, finished = _stamp(job.get("started_at")), _stamp(job.get("finished_at"))
    end = finished or at or dt.datetime.now(dt.timezone.utc)
    elapsed = max(0.0, (end - started).total_seconds()) if started else 0.0
    done, total = int(job.get("done") or 0), int(job.get("total") or 0)
    rate = done / elapsed if done and elapsed > 0 else None
    eta = (total - done) / rate if rate and total >= done and job.get("status") == "running" else None
    usage = store.job_usage(job["id"])
    settings = store.project(job["project_id"]).settings
    cost = None
    if settings.price_input_per_m is not None and settings.price_output_per_m is not None:
        cost = (usage["prompt_tokens"] * settings.price_input_per_m
                + usage["completion_tokens"] * settings.price_output_per_m) / 1e6
    return JobProgress(done=done, total=total, elapsed_s=elapsed, rate=rate, eta_s=eta, calls=usage["calls"],
                       failed_calls=usage["failed_calls"], prompt_tokens=usage["prompt_tokens"],
                       completion_tokens=usage["completion_tokens"], cost=cost)
