"""Generate page: the cost plan, a background run with progress, cancel, resume and recorded failures."""

from __future__ import annotations

import json
import time

from tests.app_support import app_env, errors, texts  # noqa: F401
from treesynth_core import edits
from treesynth_core.fakellm import Scripted
from treesynth_core.store import now

GEN = "pages/2_Generate.py"


def metric(at, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def test_plan_before_starting_with_unknown_price(app_env):
    pid = app_env.built()
    at = app_env.app(GEN, pid)
    assert not errors(at)
    assert metric(at, "Leaves") == "9" and metric(at, "Samples missing") == "27"
    assert metric(at, "LLM calls") == "9"  # 3 per leaf, 5 per call
    assert "unknown: set prices on Home" in texts(at)
    at.number_input(key="gen_per_leaf").set_value(10).run()
    assert metric(at, "Samples missing") == "90" and metric(at, "LLM calls") == "18"


def test_plan_with_prices_and_scope(app_env):
    pid = app_env.built(price_input_per_m=1.0, price_output_per_m=4.0)
    with app_env.store() as store:
        tree = store.tree(pid)
        topic_a = next(k for k in tree.kids(tree.root.id) if k.value == "topic A")
        edits.approve(store, tree.kids(topic_a.id)[0].id)
    at = app_env.app(GEN, pid)
    assert "**Estimated cost:** $" in texts(at)
    at.radio(key="gen_scope").set_value("Under one node").run()
    at.selectbox(key="gen_under").set_value(topic_a.id).run()
    assert metric(at, "Leaves") == "3"
    at.checkbox(key="gen_approved").check().run()
    assert metric(at, "Leaves") == "1" and metric(at, "Samples missing") == "3"


def test_generate_runs_as_a_job_and_fills_the_leaves(app_env):
    pid = app_env.built()
    at = app_env.app(GEN, pid)
    at.button(key="gen_start").click().run()
    assert not errors(at)
    job = app_env.last_job(pid)
    assert job["kind"] == "generate" and job["status"] == "complete"
    assert job["params"] == {"per_leaf": 3, "under": None, "approved_only": False, "samples_per_call": 5,
                             "temperature": 0.7, "concurrency": 16}
    with app_env.store() as store:
        assert len(store.samples(pid)) == 27
    at.run()
    assert "Last generate job" in texts(at) and metric(at, "Samples missing") == "0"
    assert at.button(key="gen_start").disabled
    table = at.dataframe[0].value
    assert list(table["have"]) == [3] * 9 and list(table["missing"]) == [0] * 9


def test_progress_and_cancel_while_running(app_env):
    pid = app_env.built(concurrency=1)
    app_env.fake.latency = 0.3
    at = app_env.app(GEN, pid)
    at.number_input(key="gen_conc").set_value(1)
    at.number_input(key="gen_per_call").set_value(1)
    at.button(key="gen_start").click().run()
    time.sleep(0.5)
    at.run()
    assert at.get("progress"), "a running job shows a progress bar"
    assert "Generating samples" in at.get("progress")[0].proto.text
    cancel = next(b for b in at.button if b.key and b.key.startswith("gen_job_cancel_"))
    cancel.click().run()
    job = app_env.last_job(pid)
    assert job["status"] == "cancelled"
    with app_env.store() as store:
        assert 0 < len(store.samples(pid)) < 27  # what finished is kept
    at.run()
    assert at.button(key="gen_job_resume")  # a cancelled run can be resumed


def test_an_interrupted_job_can_be_resumed(app_env):
    pid = app_env.built()
    params = {"per_leaf": 2, "under": None, "approved_only": False, "samples_per_call": 2, "temperature": 0.5,
              "concurrency": 4}
    with app_env.store() as store, store.atomic():
        store.db["jobs"].insert({"project_id": pid, "kind": "generate", "params": json.dumps(params),
                                 "status": "running", "pid": 2 ** 22 + 12345, "started_at": now(),
                                 "message": "running"})
    at = app_env.app(GEN, pid)
    assert "interrupted" in texts(at)
    at.button(key="gen_job_resume").click().run()
    job = app_env.last_job(pid)
    assert job["status"] == "complete" and job["params"] == params
    with app_env.store() as store:
        assert len(store.samples(pid)) == 18


def test_failed_calls_are_listed(app_env):
    pid = app_env.built(reasks=0)
    for _ in range(3):
        app_env.fake.push(Scripted(content="not json at all", step="samples"))
    at = app_env.app(GEN, pid)
    at.button(key="gen_start").click().run()
    app_env.last_job(pid)
    at.run()
    expander = next(e for e in at.expander if e.label.startswith("Failed LLM calls"))
    assert expander.label.startswith("Failed LLM calls (3")
    frame = at.dataframe[1].value
    assert set(frame["step"]) == {"samples"} and frame["error"].str.contains("no JSON object").all()


def test_empty_tree_points_to_the_tree_page(app_env):
    pid = app_env.project()
    at = app_env.app(GEN, pid)
    assert any("build and review it first" in i.value for i in at.info)
