"""Generate page: the cost plan, a background run with progress, cancel, resume and recorded failures."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.app_support import app_env, download, downloads, errors, texts  # noqa: F401
from treesynth_core import edits
from treesynth_core.fakellm import BatchFaults, FakeModel, Scripted, run_batch
from treesynth_core.store import now

GEN = "pages/2_Generate.py"


def metric(at, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def test_plan_before_starting_with_unknown_price(app_env):
    pid = app_env.built()
    at = app_env.app(GEN, pid)
    assert not errors(at)
    assert metric(at, "Leaves") == "9" and metric(at, "Samples missing") == "27"
    assert metric(at, "LLM calls") == "9"  # 3 per leaf, 10 per call
    assert "unknown: set prices on Home" in texts(at)
    at.number_input(key="gen_per_leaf").set_value(15).run()
    assert metric(at, "Samples missing") == "135" and metric(at, "LLM calls") == "18"  # 15 per leaf: 2 calls each


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
    assert job["params"] == {"per_leaf": 3, "under": None, "approved_only": False, "samples_per_call": 10,
                             "temperature": 0.7, "concurrency": 64}
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
    watch = texts(at)  # elapsed time, calls and tokens so far, and no guessed cost
    assert "running for " in watch and " call(s)" in watch and "tokens in" in watch
    assert "cost unknown (no price set on Home)" in watch
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
    assert expander.label == "Failed LLM calls: 3 failed attempt(s) · 3 call(s) gave up"  # no re-asks here
    frame = at.dataframe[1].value
    assert set(frame["step"]) == {"samples"} and frame["error"].str.contains("no JSON object").all()


def test_failed_attempts_that_were_re_asked_are_told_from_calls_that_gave_up(app_env):
    pid = app_env.built(reasks=2)
    for _ in range(4):  # one at a time: the first call fails its 3 tries, the second call's re-ask succeeds
        app_env.fake.push(Scripted(content="not json at all", step="samples"))
    at = app_env.app(GEN, pid)
    at.number_input(key="gen_conc").set_value(1).run()
    at.button(key="gen_start").click().run()
    job = app_env.last_job(pid)
    at.run()
    assert job["failed"] == 1 and any("1 call(s) failed" in w.value for w in at.warning)
    expander = next(e for e in at.expander if e.label.startswith("Failed LLM calls"))
    assert expander.label == "Failed LLM calls: 4 failed attempt(s) · 1 call(s) gave up"
    frame = next(d.value for d in at.dataframe if "attempt" in d.value.columns)
    assert sorted(frame["attempt"]) == [1, 1, 2, 3]
    assert all(when.endswith(" s ago") or when.endswith(" min ago") for when in frame["when"])  # not ISO


def test_times_are_shown_as_people_read_them():
    import datetime as dt

    from treesynth_ui import when_text

    now = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc)
    assert when_text("2026-03-01T11:59:20.000+00:00", now) == "40 s ago"
    assert when_text("2026-03-01T11:55:00.000+00:00", now) == "5 min ago"
    assert when_text("2026-03-01T09:00:00.000+00:00", now) == "3 h ago"
    assert when_text("2026-02-20T09:30:00.000+00:00", now) == "2026-02-20 09:30 UTC"
    assert when_text("2026-02-20T09:30:00.000+00:00", now, tz="Europe/Berlin") == "2026-02-20 10:30"
    assert when_text("2026-02-20T09:30:00.000+00:00", now, tz="Not/AZone") == "2026-02-20 09:30 UTC"
    assert when_text(None, now) == "" and when_text("garbage", now) == "garbage"


def test_empty_tree_points_to_the_tree_page(app_env):
    pid = app_env.project()
    at = app_env.app(GEN, pid)
    assert any("build and review it first" in i.value for i in at.info)


# ----------------------------------------------------------------------------- the Batch panel


def batch_table(at):
    return next(d.value for d in at.dataframe if "samples added" in d.value.columns)


def batch_export(app_env, pid: int):
    at = app_env.app(GEN, pid)
    at.button(key="gen_batch_export").click().run()
    assert not errors(at)
    return at


def test_batch_panel_writes_the_selection_as_request_files_to_download(app_env, downloads):
    pid = app_env.built()
    at = app_env.app(GEN, pid)
    assert next(e for e in at.expander if e.label.startswith("Batch files")).label == "Batch files (0)"
    at.number_input(key="gen_per_leaf").set_value(4).run()
    at.button(key="gen_batch_export").click().run()
    assert not errors(at)
    assert "round 1: 9 request line(s) asking for 36 sample(s) in 9 leaf/leaves" in texts(at)
    table = batch_table(at)
    assert list(table["state"]) == ["exported"] and list(table["pending"]) == [9] and list(table["lines"]) == [9]
    assert list(table["file"]) == [f"project{pid}-round1.jsonl"] and list(table["samples out"]) == [36]
    assert any("36 sample(s) are out in batch files" in i.value for i in at.info)
    name, data = download(at, downloads, "gen_batch_download")
    lines = [json.loads(line) for line in data.decode().splitlines()]
    assert name == f"project{pid}-round1.jsonl" and len(lines) == 9
    assert {line["custom_id"].split(":")[3] for line in lines} == {"1"}
    assert lines[0]["body"]["response_format"]["type"] == "json_schema"
    with app_env.store() as store:
        assert Path(store.batches(pid)[0]["path"]).read_bytes() == data


def test_batch_panel_imports_an_uploaded_results_file(app_env):
    pid = app_env.built()
    at = batch_export(app_env, pid)
    with app_env.store() as store:
        request = Path(store.batches(pid)[0]["path"])
    results = run_batch(request.read_text().splitlines(), FakeModel(first_number=10**6).default_reply,
                        BatchFaults(reverse=True, server_error_every=4))
    data = "".join(json.dumps(line) + "\n" for line in results).encode()
    at.file_uploader(key="gen_batch_upload").upload("res.jsonl", data, "application/jsonl").run()
    at.button(key="gen_batch_import").click().run()
    assert not errors(at)
    assert any("Import partial: 9 result line(s): 7 used, 2 failed" in w.value for w in at.warning)
    assert list(batch_table(at)["samples added"]) == [21]
    assert metric(at, "Samples missing") == "6"  # the failed lines' samples, missing again
    at.button(key="gen_batch_import").click().run()  # the same file again: a no-op
    assert any("Import complete" in s.value and "9 already imported (no-op)" in s.value for s in at.success)
    with app_env.store() as store:
        assert len(store.samples(pid)) == 21


def test_batch_panel_submits_polls_and_releases(app_env):
    pid = app_env.built()
    at = batch_export(app_env, pid)
    at.button(key="gen_batch_submit").click().run()
    assert not errors(at) and "submitted as batch\\_" in texts(at)  # Markdown-escaped
    assert list(batch_table(at)["state"]) == ["submitted"]
    at.button(key="gen_batch_poll").click().run()
    assert "in\\_progress 0/9 done" in texts(at)
    at.button(key="gen_batch_poll").click().run()
    assert any("Import complete: 9 result line(s): 9 used" in s.value for s in at.success)
    assert metric(at, "Samples missing") == "0"
    assert list(batch_table(at)["state"]) == ["imported"]
    at.number_input(key="gen_per_leaf").set_value(5).run()
    at.button(key="gen_batch_export").click().run()
    assert list(batch_table(at)["state"]) == ["exported", "imported"]
    assert not at.get("button") or "gen_batch_cancel" not in [b.key for b in at.button]  # #1 is still picked
    picker = next(box for box in at.selectbox if box.label == "Batch file")
    assert picker.format_func(picker.value).endswith("(imported)")  # the label follows the state
    picker.set_value(2).run()
    at.button(key="gen_batch_cancel").click().run()
    assert "9 pending request line(s) released" in texts(at)
    assert list(batch_table(at)["state"]) == ["cancelled", "imported"]


def test_batch_price_factor_is_saved_and_bounded(app_env):
    pid = app_env.built()
    at = app_env.app(GEN, pid)
    factor = at.number_input(key="gen_batch_factor")
    assert factor.value == 0.5 and (factor.min, factor.max) == (0.0, 10.0)
    factor.set_value(0.25).run()
    with app_env.store() as store:
        assert store.project(pid).settings.batch_price_factor == 0.25
    assert "batch price factor (0.25)" in texts(at)


def test_batch_messages_name_the_pages_buttons_not_cli_commands(app_env):
    pid = app_env.built()
    at = batch_export(app_env, pid)
    at.button(key="gen_batch_export").click().run()  # everything missing is out already
    assert "nothing to export" in texts(at) and "release their lines to ask again" in texts(at)
    with app_env.store() as store:
        request = Path(store.batches(pid)[0]["path"])
    results = run_batch(request.read_text().splitlines(), FakeModel(first_number=10**6).default_reply,
                        BatchFaults(server_error_every=4))
    data = "".join(json.dumps(line) + "\n" for line in results).encode()
    at.file_uploader(key="gen_batch_upload").upload("res.jsonl", data, "application/jsonl").run()
    at.button(key="gen_batch_import").click().run()
    warning = next(w.value for w in at.warning if "Import partial" in w.value)
    assert "the next request file asks for them" in warning
    assert "batch export" not in texts(at) and "batch cancel" not in texts(at) and "\\`" not in texts(at)


def test_plan_and_button_count_the_samples_out_in_batch_files_and_generate_skips_them(app_env):
    pid = app_env.built()
    at = batch_export(app_env, pid)  # the 27 missing samples (3 per leaf) are out in a request file
    assert metric(at, "Samples missing") == "0" and metric(at, "Out in batch files") == "27"
    button = at.button(key="gen_start")
    assert button.disabled and button.label == ("Nothing to generate: the 27 sample(s) out in batch files fill the "
                                                "selected leaves")
    at.number_input(key="gen_per_leaf").set_value(4).run()
    assert metric(at, "Samples missing") == "9" and metric(at, "LLM calls") == "9"
    assert at.button(key="gen_start").label == "Generate 9 sample(s) (27 out in batch files, not asked for again)"
    table = next(d.value for d in at.dataframe if "in batch files" in d.value.columns)
    assert set(table["in batch files"]) == {3} and set(table["missing"]) == {1}
    at.button(key="gen_start").click().run()
    job = app_env.last_job(pid)
    assert job["status"] == "complete", job["message"]
    with app_env.store() as store:
        assert len(store.samples(pid)) == 9  # one per leaf: the batch files' 27 are not paid for twice


def test_no_matching_leaf_says_no_leaf_selected(app_env):
    pid = app_env.built()  # every leaf is "proposed": none approved
    at = app_env.app(GEN, pid)
    at.checkbox(key="gen_approved").check().run()
    assert metric(at, "Leaves") == "0"
    button = at.button(key="gen_start")
    assert button.label == "No leaf selected" and button.disabled
    assert any("No leaf matches" in w.value for w in at.warning)


def test_a_project_without_a_tree_on_purpose_generates_from_the_task(app_env):
    pid = app_env.project(max_depth=0)  # e.g. the naive baseline: the root is the only leaf
    at = app_env.app(GEN, pid)
    assert not errors(at) and "build and review it first" not in texts(at)
    assert metric(at, "Leaves") == "1" and metric(at, "Samples missing") == "3"
    assert at.button(key="gen_start").label == "Generate 3 sample(s)"
    at.button(key="gen_start").click().run()
    job = app_env.last_job(pid)
    assert job["status"] == "complete", job["message"]
    with app_env.store() as store:
        root = store.tree(pid).root.id
        assert [s["node_id"] for s in store.samples(pid)] == [root] * 3


def test_batch_panel_refuses_a_request_file_uploaded_as_results(app_env):
    pid = app_env.built()
    at = batch_export(app_env, pid)
    with app_env.store() as store:
        request = Path(store.batches(pid)[0]["path"])
    at.file_uploader(key="gen_batch_upload").upload("req.jsonl", request.read_bytes(), "application/jsonl").run()
    at.button(key="gen_batch_import").click().run()
    assert any("this is a request file, not a results file" in e.value for e in at.error)
    table = batch_table(at)
    assert list(table["state"]) == ["exported"] and list(table["pending"]) == [9] and list(table["failed"]) == [0]


def test_a_finished_job_says_how_long_it_took_its_tokens_and_its_cost(app_env):
    pid = app_env.built(price_input_per_m=1.0, price_output_per_m=4.0)
    at = app_env.app(GEN, pid)
    at.button(key="gen_start").click().run()
    job = app_env.last_job(pid)
    at.run()
    with app_env.store() as store:
        used = store.query("select count(*) as n, sum(prompt_tokens) as p, sum(completion_tokens) as c from calls "
                           "where job_id = ?", [job["id"]])[0]
    line = next(c.value for c in at.caption if c.value.startswith("took "))
    assert f"{used['n']:,} call(s)" in line and f"{used['p']:,} tokens in, {used['c']:,} out" in line
    assert f"cost so far ${(used['p'] * 1.0 + used['c'] * 4.0) / 1e6:,.4f}" in line
    assert "samples a second" in line or "samples a minute" in line
