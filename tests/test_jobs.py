"""Background jobs: progress in the store, cancel, interrupted processes and one running job per project."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from treesynth_core import edits, jobs
from treesynth_core.errors import TreeEditError
from treesynth_core.fakellm import FakeLLM, Scripted
from treesynth_core.partition import build
from treesynth_core.llm import LLM

from tests.app_support import app_env  # noqa: F401  (the page test below)
from tests.app_support import errors as app_errors
from tests.app_support import texts as app_texts


def split_root(store, project_id, values=("algebra", "geometry", "statistics")) -> list[str]:
    return edits.set_split(store, store.tree(project_id).root.id, "topic", list(values))


def run(store, project_id, kind, params, endpoint, timeout=20) -> dict:
    job_id = jobs.start_job(store.path, project_id, kind, params, endpoint)
    jobs.wait(store.path, job_id, timeout)
    return jobs.get_job(store, job_id)


def sample_count(store, project_id) -> int:
    return store.query("select count(*) as n from samples where project_id = ?", [project_id])[0]["n"]


def wait_until(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


@pytest.fixture
def dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_build_job_runs_to_complete_with_progress(fake, store, project):
    job = run(store, project, "build", {"depth": 2}, fake.endpoint(max_retries=0, timeout=5))

    assert job["status"] == "complete", job["message"]
    assert job["failed"] == 0
    assert job["total"] == job["done"] == 4  # the root and its three children
    assert "expanded 4 node(s), 0 failed" in job["message"]
    assert job["finished_at"] and job["kind"] == "build" and job["params"] == {"depth": 2}
    tree = store.tree(project)
    assert tree.max_depth() == 2 and len(tree.leaves()) == 9
    calls = store.query("select distinct job_id from calls where project_id = ?", [project])
    assert [c["job_id"] for c in calls] == [job["id"]]


def test_generate_job_runs_to_complete_with_progress(fake, store, project):
    split_root(store, project)
    job = run(store, project, "generate", {"per_leaf": 4, "samples_per_call": 2},
              fake.endpoint(max_retries=0, timeout=5))

    assert job["status"] == "complete", job["message"]
    assert job["failed"] == 0
    assert job["total"] == job["done"] == 12
    assert job["message"].startswith("12 new sample(s)")
    assert {leaf: sum(by.values()) for leaf, by in store.sample_counts(project).items()} == {
        leaf.id: 4 for leaf in store.tree(project).leaves()}


def test_cancel_stops_a_generate_job_and_keeps_what_was_made(store, project):
    split_root(store, project)
    with FakeLLM(latency=0.2) as slow:
        job_id = jobs.start_job(store.path, project, "generate",
                                {"per_leaf": 6, "samples_per_call": 2, "concurrency": 2},
                                slow.endpoint(max_retries=0, timeout=5))
        wait_until(lambda: sample_count(store, project) > 0)
        assert jobs.get_job(store, job_id)["status"] == "running"
        jobs.request_cancel(store, job_id)
        jobs.wait(store.path, job_id, 10)
        requests_at_end = len(slow.requests)

    job = jobs.get_job(store, job_id)
    made = sample_count(store, project)
    assert job["status"] == "cancelled", job["message"]
    assert "cancelled" in job["message"] and job["failed"] == 0
    assert 0 < made < 18
    assert requests_at_end < 9  # nine calls would fill every leaf; the cancel stopped the rest
    assert job["done"] == made and job["total"] == 18
    assert jobs.active_job(store, project) is None

    # a new job resumes from what was kept
    with FakeLLM() as fast:
        again = run(store, project, "generate", {"per_leaf": 6, "samples_per_call": 2},
                    fast.endpoint(max_retries=0, timeout=5))
    assert again["status"] == "complete" and again["total"] == 18 - made
    assert sample_count(store, project) == 18


def test_a_job_whose_process_died_is_interrupted(store, project, dead_pid):
    job_id = jobs.create_job(store, project, "generate", {"per_leaf": 2})
    with store.atomic():
        store.db["jobs"].update(job_id, {"pid": dead_pid})

    job = jobs.get_job(store, job_id)

    assert job["status"] == "interrupted"
    assert "run it again to resume" in job["message"]
    assert store.query("select status, finished_at from jobs where id = ?", [job_id])[0]["finished_at"]
    assert jobs.active_job(store, project) is None
    assert jobs.create_job(store, project, "generate", {}) != job_id  # a new job may start


def test_a_job_of_a_live_process_stays_running_until_that_process_dies(store, project):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        job_id = jobs.create_job(store, project, "build", {})
        with store.atomic():
            store.db["jobs"].update(job_id, {"pid": sleeper.pid})
        assert jobs.get_job(store, job_id)["status"] == "running"
        with pytest.raises(TreeEditError, match="a build job is already running"):
            jobs.create_job(store, project, "generate", {})
    finally:
        sleeper.kill()
        sleeper.wait()
    assert jobs.get_job(store, job_id)["status"] == "interrupted"
    assert [j["status"] for j in jobs.recent_jobs(store, project)] == ["interrupted"]


def test_a_job_row_of_this_process_without_its_thread_is_interrupted(store, project):
    job_id = jobs.create_job(store, project, "build", {})  # created, but never started on a thread
    assert jobs.get_job(store, job_id)["status"] == "interrupted"


def test_create_job_refuses_a_second_running_job_for_the_same_project(store, project):
    split_root(store, project)
    other = store.create_project(store.project(project))
    split_root(store, other)
    with FakeLLM(latency=0.2) as slow:
        endpoint = slow.endpoint(max_retries=0, timeout=5)
        job_id = jobs.start_job(store.path, project, "generate", {"per_leaf": 20, "concurrency": 1}, endpoint)
        with pytest.raises(TreeEditError, match="a generate job is already running") as info:
            jobs.start_job(store.path, project, "build", {}, endpoint)
        assert "cancel" in info.value.hint
        assert jobs.active_job(store, project)["id"] == job_id
        rows = store.query("select id from jobs where project_id = ?", [project])
        assert [r["id"] for r in rows] == [job_id]  # the refused job left no row

        other_job = jobs.create_job(store, other, "generate", {})  # another project is not blocked
        assert other_job != job_id

        jobs.request_cancel(store, job_id)
        jobs.wait(store.path, job_id, 10)
    assert jobs.get_job(store, job_id)["status"] == "cancelled"


def test_unknown_job_kind_is_refused(store, project):
    with pytest.raises(ValueError, match="unknown job kind 'train'"):
        jobs.create_job(store, project, "train", {})
    assert store.query("select count(*) as n from jobs")[0]["n"] == 0


def test_a_job_that_fails_records_why(store, project):
    split_root(store, project)
    unreachable = FakeLLM().endpoint(base_url="http://127.0.0.1:9/v1", max_retries=0, timeout=2)
    job = run(store, project, "generate", {"per_leaf": 2}, unreachable)
    assert job["status"] == "failed"
    assert "the endpoint failed repeatedly (could not connect to http://127.0.0.1:9/v1" in job["message"]
    assert job["failed"] == 3  # one call per leaf, each refused: the abort rule's three
    assert jobs.active_job(store, project) is None


def test_a_build_job_with_a_failed_node_is_partial_and_says_how_to_retry(fake, store, project):
    build(store, project, LLM(fake.endpoint(max_retries=0, timeout=5), store, project), depth=1)
    fake.push(*[Scripted(content="not json at all", step="criterion")] * 3)  # one child's three tries
    job = run(store, project, "build", {"depth": 2, "concurrency": 1}, fake.endpoint(max_retries=0, timeout=5))

    assert job["status"] == "partial" and job["failed"] == 1, job["message"]
    assert job["message"].startswith("expanded 2 node(s), 1 failed (see `calls --failed`; first: criterion: no usable")
    assert "run build again to retry the failed nodes: it resumes" in job["message"]
    failed = store.query("select failure from nodes where status = 'failed'")
    assert len(failed) == job["failed"] and "no usable reply after 3 tries" in failed[0]["failure"]


def test_a_build_job_whose_root_fails_is_failed(fake, store, project):
    fake.fault_fn = lambda body: Scripted(content="I cannot answer in JSON, sorry.")
    job = run(store, project, "build", {"depth": 2}, fake.endpoint(max_retries=0, timeout=5))

    assert job["status"] == "failed" and job["failed"] == 1
    assert "the root's split failed (pivots: no usable reply after 3 tries" in job["message"]
    assert store.tree(project).root.status == "failed"


def test_a_generate_job_whose_every_reply_is_malformed_is_failed_after_three_calls(fake, store, project):
    split_root(store, project, values=[f"topic {i}" for i in range(6)])
    fake.fault_fn = lambda body: Scripted(content='{"samples": "none today"}')
    job = run(store, project, "generate", {"per_leaf": 2, "concurrency": 1}, fake.endpoint(max_retries=0))

    assert job["status"] == "failed" and job["failed"] == 3, job["message"]
    assert "stopped after 3 failed calls and no success" in job["message"]
    assert len(fake.requests) == 3 * 3  # three calls of three tries; the other three leaves were not paid for
    assert sample_count(store, project) == 0


def test_a_generate_job_with_a_failed_call_is_partial(fake, store, project):
    split_root(store, project)
    fake.push(*[Scripted(content="[]", step="samples")] * 3)  # the first call's three tries
    job = run(store, project, "generate", {"per_leaf": 2, "samples_per_call": 2, "concurrency": 1},
              fake.endpoint(max_retries=0))

    assert job["status"] == "partial" and job["failed"] == 1, job["message"]
    assert "1 failed call(s) (see `calls --failed`; first: samples: no usable reply" in job["message"]
    assert sample_count(store, project) == 6  # the next round filled the leaf whose call failed


def test_a_build_job_resumes_a_partial_tree(fake, store, project):
    build(store, project, LLM(fake.endpoint(max_retries=0, timeout=5), store, project), depth=1)
    job = run(store, project, "build", {"depth": 2}, fake.endpoint(max_retries=0, timeout=5))
    assert job["status"] == "complete" and job["total"] == job["done"] == 3  # only the three children were left
    assert store.tree(project).max_depth() == 2


def test_a_progress_write_survives_a_cancel_request_from_another_connection(store, project):
    from treesynth_core.store import Store

    job_id = jobs.create_job(store, project, "generate", {})
    cancel = threading.Thread(target=jobs.request_cancel, args=(store, job_id))
    with Store(store.path) as job_store:
        with job_store.atomic():  # what run_job's on_progress does, with the app's cancel arriving meanwhile
            job_store.query("select done from jobs where id = ?", [job_id])
            cancel.start()
            cancel.join(0.5)  # done at once today; with the write lock taken up front it waits for this commit
            job_store.db["jobs"].update(job_id, {"done": 1, "total": 2})
    cancel.join(5)
    row = store.query("select done, cancel_requested from jobs where id = ?", [job_id])[0]
    assert row == {"done": 1, "cancel_requested": 1}


def test_a_job_run_in_the_callers_thread_reads_as_running_meanwhile(store, project, fake):
    """The CLI runs its job in its own main thread: the app must not see it as interrupted."""
    job_id = jobs.create_job(store, project, "build", {"depth": 1})
    seen = []
    jobs.run_job(store.path, job_id, fake.endpoint(max_retries=0),
                 echo=lambda done, total: seen.append(jobs.get_job(store, job_id)["status"]))
    assert seen and set(seen) == {"running"}
    assert jobs.get_job(store, job_id)["status"] == "complete"


def test_an_unknown_job_id_is_not_found(store, project):
    from treesynth_core.errors import NotFoundError

    with pytest.raises(NotFoundError, match="job 99 does not exist"):
        jobs.get_job(store, 99)


def test_create_job_checks_and_inserts_in_one_write_transaction(store, project):
    """Another process holds the write lock while it starts a job: create_job waits for it and then sees that
    job, instead of reading "no job running" first and inserting a second one after the other commits."""
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    other = sqlite3.connect(store.path, timeout=30, isolation_level=None)
    results = []

    def start():
        try:
            results.append(jobs.create_job(store, project, "generate", {}))
        except TreeEditError as exc:
            results.append(exc)

    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("insert into jobs (project_id, kind, params, status, pid, started_at) "
                      "values (?, 'build', '{}', 'running', ?, 'now')", [project, sleeper.pid])
        thread = threading.Thread(target=start)
        thread.start()
        time.sleep(0.5)  # create_job is now waiting for the write lock (or, unguarded, has already read)
        other.execute("COMMIT")
        thread.join(30)
        assert len(results) == 1 and isinstance(results[0], TreeEditError), results
        assert "a build job is already running" in str(results[0])
        assert len(store.job_ids(project)) == 1
    finally:
        other.close()
        sleeper.kill()
        sleeper.wait()


def test_the_tree_page_builds_and_generates_a_subtree_as_one_run_job(app_env):
    from tests.test_app_tree import TREE, node_by_value, select

    pid = app_env.built()
    with app_env.store() as store:
        leaf = node_by_value(store, pid, "difficulty A", "topic A")
    at = select(app_env.app(TREE, pid), leaf.id)
    at.number_input(key="tree_levels").set_value(1)
    at.button(key="tree_run_sub").click().run()
    assert not app_errors(at)
    job = app_env.last_job(pid)
    assert job["kind"] == "run" and job["status"] == "complete", job["message"]
    assert job["params"] == {"depth": 3, "under": leaf.id}
    with app_env.store() as store:
        kids = store.tree(pid).kids(leaf.id)
        assert len(kids) == 3 and all(store.live_count(k.id) == 3 for k in kids)  # the project's per-leaf quota
    at.run()
    shown = app_texts(at)
    assert f"Last run job #{job['id']}: **complete**" in shown and "nodes and samples done" in shown


# ------------------------------------------------------------------------ jobs you can watch (issue 8)
def test_progress_counts_the_jobs_own_calls_tokens_and_cost_only_with_a_price(fake, store, project):
    split_root(store, project)
    endpoint = fake.endpoint(max_retries=0, timeout=5)
    first = run(store, project, "generate", {"per_leaf": 2, "samples_per_call": 2}, endpoint)
    job = run(store, project, "generate", {"per_leaf": 4, "samples_per_call": 2}, endpoint)
    mine = store.query("select count(*) as n, sum(prompt_tokens) as p, sum(completion_tokens) as c from calls "
                       "where job_id = ?", [job["id"]])[0]
    assert 0 < mine["n"] < store.usage(project)["calls"]  # the earlier job's calls are not counted

    seen = jobs.progress(store, job)
    assert (seen.done, seen.total, seen.calls) == (6, 6, mine["n"])
    assert (seen.prompt_tokens, seen.completion_tokens) == (mine["p"], mine["c"]) and seen.tokens > 0
    assert seen.cost is None  # no price configured: never guessed
    assert seen.eta_s is None  # a finished job has no time left
    assert seen.elapsed_s >= 0 and first["id"] != job["id"]

    spec = store.project(project)
    store.update_project(project, spec.model_copy(update={"settings": spec.settings.model_copy(
        update={"price_input_per_m": 2.0, "price_output_per_m": 10.0})}))
    priced = jobs.progress(store, job)
    assert priced.cost == pytest.approx((mine["p"] * 2.0 + mine["c"] * 10.0) / 1e6)


def test_progress_of_a_running_job_has_a_rate_and_an_eta(store, project):
    import datetime as dt

    start = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.timezone.utc)
    job_id = store.insert_job({"project_id": project, "kind": "generate", "params": "{}", "status": "running",
                               "pid": 0, "started_at": start.isoformat(), "done": 5, "total": 20})
    row = store.job_row(job_id)  # read as it is stored (get_job would mark a job of no live process interrupted)
    seen = jobs.progress(store, row, at=start + dt.timedelta(seconds=10))
    assert seen.elapsed_s == 10 and seen.rate == 0.5 and seen.eta_s == 30
    assert (seen.calls, seen.tokens, seen.cost) == (0, 0, None)
    nothing_yet = jobs.progress(store, {**row, "done": 0}, at=start + dt.timedelta(seconds=10))
    assert nothing_yet.rate is None and nothing_yet.eta_s is None


def test_a_running_push_job_holds_the_project_like_any_other(store, project):
    """Push (hub.push_job) is a job kind: one job per project holds for it both ways, its params carry no token."""
    assert "push" in jobs.KINDS and jobs.ACTIONS["push"].__name__ == "push_job"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        job_id = jobs.create_job(store, project, "push", {"repo_id": "me/math"})
        with store.atomic():
            store.db["jobs"].update(job_id, {"pid": sleeper.pid})
        with pytest.raises(TreeEditError, match="a push job is already running"):
            jobs.create_job(store, project, "generate", {})
    finally:
        sleeper.kill()
        sleeper.wait()
    assert jobs.get_job(store, job_id)["params"] == {"repo_id": "me/math"}
    assert jobs.get_job(store, job_id)["status"] == "interrupted"
