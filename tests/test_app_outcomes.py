"""Job outcomes on the pages: complete as success, partial as a warning with its counts and a retry button,
failed as an error; the retry starts a job that redoes only what failed. Jobs finish through jobs.run_job
(the code path the app uses) against the fake server, with some calls failing."""

from __future__ import annotations

import treesynth_ui as ui
from tests.app_support import app_env, errors, texts  # noqa: F401

TREE = "pages/1_Tree.py"
GEN = "pages/2_Generate.py"


def kids_by_value(store, pid) -> dict:
    tree = store.tree(pid)
    return {k.value: k for k in tree.kids(tree.root.id)}


def alerts(at, kind: str) -> str:
    return "\n".join(e.value for e in getattr(at, kind))


def test_a_complete_build_shows_success_and_no_retry(app_env):
    pid = app_env.built()
    at = app_env.app(TREE, pid)
    assert not errors(at)
    assert "Last build job" in alerts(at, "success") and "**complete**" in alerts(at, "success")
    assert "Last build job" not in alerts(at, "warning") + alerts(at, "caption")
    assert not [b for b in at.button if b.key == "tree_job_retry"]


def test_a_partial_build_shows_a_warning_with_counts_and_retry_redoes_the_failed_node(app_env):
    pid = app_env.project(reasks=0)
    app_env.fail_calls_mentioning("topic B")  # topic B's expansion fails; the rest of the tree is built
    job = app_env.run_job(pid, "build", {"depth": 2})
    assert job["status"] == "partial" and job["failed"] >= 1
    at = app_env.app(TREE, pid)
    warning = alerts(at, "warning")
    assert f"Last build job #{job['id']}: **partial**" in warning
    assert f"{job['failed']} node(s) failed" in warning and "What to do" in warning
    assert "Last build job" not in alerts(at, "success") + alerts(at, "caption")
    retry = at.button(key="tree_job_retry")
    assert retry.label == "Retry the failed nodes"
    with app_env.store() as store:
        assert kids_by_value(store, pid)["topic B"].status == "failed"
    app_env.fail_calls_mentioning(None)  # the endpoint behaves again
    calls_before = len(app_env.fake.requests)
    retry.click().run()
    assert not at.exception
    again = app_env.last_job(pid)
    assert again["id"] > job["id"] and again["kind"] == "build"
    assert again["params"] == {"depth": 2, "under": None} and again["status"] == "complete"
    with app_env.store() as store:
        topic_b = kids_by_value(store, pid)["topic B"]
        assert store.tree(pid).kids(topic_b.id) and topic_b.status != "failed"
    steps = app_env.fake.steps()[calls_before:]
    assert "pivots" in steps and steps.count("pivots") == 1  # only the failed node was asked again
    at.run()
    assert f"Last build job #{again['id']}: **complete**" in alerts(at, "success")


def test_a_failed_build_shows_an_error_and_a_retry(app_env):
    pid = app_env.project(reasks=0)
    app_env.fail_calls_mentioning("")  # every call
    job = app_env.run_job(pid, "build", {"depth": 2})
    assert job["status"] == "failed"
    at = app_env.app(TREE, pid)
    problem = alerts(at, "error")
    assert f"Last build job #{job['id']}: **failed**" in problem and "What to do" in problem
    assert not at.exception
    assert at.button(key="tree_job_retry").label == "Retry the failed nodes"


def test_a_partial_generation_offers_to_generate_the_missing_samples(app_env):
    pid = app_env.built(reasks=0)
    app_env.fail_calls_mentioning("topic B")  # the three leaves under topic B get nothing
    params = {"per_leaf": 2, "under": None, "approved_only": False, "samples_per_call": 2, "temperature": 0.7,
              "concurrency": 4}
    job = app_env.run_job(pid, "generate", params)
    assert job["status"] == "partial" and job["failed"] >= 3
    at = app_env.app(GEN, pid)
    warning = alerts(at, "warning")
    assert f"Last generate job #{job['id']}: **partial**" in warning and f"{job['failed']} call(s) failed" in warning
    button = at.button(key="gen_job_retry")
    assert button.label == "Generate the missing samples"
    app_env.fail_calls_mentioning(None)
    button.click().run()
    again = app_env.last_job(pid)
    assert again["id"] > job["id"] and again["params"] == params and again["status"] == "complete"
    with app_env.store() as store:
        assert len(store.samples(pid)) == 18


def test_a_failed_generation_is_an_error(app_env):
    pid = app_env.built(reasks=0)
    app_env.fail_calls_mentioning("")
    job = app_env.run_job(pid, "generate", {"per_leaf": 1})
    assert job["status"] == "failed"
    at = app_env.app(GEN, pid)
    assert f"Last generate job #{job['id']}: **failed**" in alerts(at, "error")
    assert at.button(key="gen_job_retry").label == "Generate the missing samples"


def test_an_old_done_row_reads_as_complete_or_partial(app_env):
    pid = app_env.built()
    with app_env.store() as store, store.atomic():
        job_id = app_env.last_job(pid)["id"]
        store.db["jobs"].update(job_id, {"status": "done", "failed": 0})
    at = app_env.app(TREE, pid)
    assert "**complete**" in alerts(at, "success")
    with app_env.store() as store, store.atomic():
        store.db["jobs"].update(job_id, {"status": "done", "failed": 2})
    at.run()
    assert "**partial**" in alerts(at, "warning") and "2 node(s) failed" in alerts(at, "warning")


def test_retry_parameters_keep_the_scope_and_drop_the_approved_filter():
    from treesynth_ui import retry_params

    whole = {"kind": "build", "params": {"depth": 3}}
    assert retry_params(whole) == {"depth": 3, "under": None}
    subtree = {"kind": "build", "params": {"depth": 3, "under": "abc"}}
    assert retry_params(subtree) == {"depth": 3, "under": "abc"}  # a subtree job retries in its subtree
    approved = {"kind": "build", "params": {"depth": 3, "approved_only": True}}
    assert retry_params(approved) == {"depth": 3, "under": None}  # failed nodes are no longer "approved"
    generate = {"kind": "generate", "params": {"per_leaf": 2, "under": "abc", "approved_only": True}}
    assert retry_params(generate) == generate["params"]


def test_a_partial_generation_banner_is_short_and_speaks_the_apps_language(app_env):
    """The banner shows the app's summary (counts and the first failure's reason, cut short) and one 'What to
    do'; the CLI's pointers (`calls --failed`, 'run generate again', 'edit the node by hand') stay in the job
    row's message, which the CLI prints."""
    pid = app_env.built(reasks=0)
    app_env.fail_calls_mentioning("topic B")
    job = app_env.run_job(pid, "generate", {"per_leaf": 2, "samples_per_call": 2, "concurrency": 4})
    assert job["status"] == "partial"
    assert "see `calls --failed`" in job["message"] and "run generate again to retry" in job["message"]
    at = app_env.app(GEN, pid)
    banner = next(w.value for w in at.warning if f"Last generate job #{job['id']}" in w.value)
    assert f"{job['failed']} call(s) failed" in banner and "first failure: samples: no usable reply" in banner
    for jargon in ("calls --failed", "call log", "edit the node by hand", "run generate again"):
        assert jargon not in banner, jargon
    assert banner.count("What to do") == 1
    message = banner.split(" · ", 1)[1].split("  \n**What to do:**")[0]
    assert message == ui.md_escape(job["app_message"]) and len(message) < 320, message
    assert len(job["app_message"].split("first failure: ", 1)[1]) <= 160


def test_a_partial_build_banner_names_the_first_failure_without_cli_pointers(app_env):
    pid = app_env.project(reasks=0)
    app_env.fail_calls_mentioning("topic B")
    job = app_env.run_job(pid, "build", {"depth": 2})
    assert job["status"] == "partial" and "see `calls --failed`" in job["message"]
    warning = alerts(app_env.app(TREE, pid), "warning")
    assert f"Last build job #{job['id']}: **partial**" in warning and "first failure: " in warning
    assert "calls --failed" not in warning and "run build again" not in warning and "call log" not in warning
