"""The leaf-fit judge (issue 9): verdicts per sample and attribute over the real fake server and the real openai
client; "until N fit" per leaf with refills, a hard budget and resume after SIGKILL; the `judge` command."""

from __future__ import annotations

import json
import math
import os
import re
import time

import pytest

from tests.test_cli import cli, cli_env, command, kill_when, make_db, read_only, run_main
from treesynth_core import edits
from treesynth_core.fakellm import MISFIT_MARKER, FakeLLM, Scripted, step_of
from treesynth_core.generate import generate
from treesynth_core.judge import (NOT_JUDGED, check_reply, judge_samples, judge_until, plan_judge,
                                  sample_attributes, sample_verdicts)
from treesynth_core.judge_cli import plan_text
from treesynth_core.outcome import Outcome
from treesynth_core.partition import build
from treesynth_core.prompts import JudgeReply
from treesynth_core.store import Store

LEAVES = 9  # the fake's depth-2 tree: 3 x 3


@pytest.fixture
def tree(fake, store, project, llm):
    """A depth-2 tree (9 leaves) built on the fake; the fake marks about one generated sample in 3."""
    report = build(store, project, llm, depth=2)
    assert report.outcome is Outcome.COMPLETE
    fake.misfit_every = 3
    return project


def fill(store, project, llm, per_leaf: int) -> None:
    report = generate(store, project, llm, per_leaf=per_leaf)
    assert report.outcome is Outcome.COMPLETE, report.summary()


def marked(sample: dict) -> bool:
    return any(MISFIT_MARKER in v for v in sample["data"].values())


def judge_calls(store, project) -> list[dict]:
    return store.query("select * from calls where project_id = ? and purpose = 'judge' order by id", [project])


def fitting_live(store, project) -> dict[str, int]:
    """Live samples per leaf whose verdict fits (every leaf listed)."""
    live = store.samples(project, statuses=["generated", "accepted"])
    verdicts = sample_verdicts(store, project, live)
    out = {leaf.id: 0 for leaf in store.tree(project).leaves()}
    for s in live:
        out[s["node_id"]] += bool(verdicts[s["id"]].fits)
    return out


# ----------------------------------------------------------------------------- verdicts


def test_verdicts_are_stored_per_sample_and_attribute_and_match_the_marker(fake, store, tree, llm):
    fill(store, tree, llm, per_leaf=4)
    samples = store.samples(tree)
    assert any(marked(s) for s in samples) and not all(marked(s) for s in samples)
    report = judge_samples(store, tree, llm)
    assert report.outcome is Outcome.COMPLETE, report.summary()
    assert report.judged == len(samples) == 36 and report.misfits == sum(map(marked, samples))
    assert report.judge_calls == LEAVES  # one batched call per leaf
    calls = {c["id"]: c for c in judge_calls(store, tree)}
    assert len(calls) == LEAVES and all(c["valid"] == 1 and c["error"] is None for c in calls.values())
    stored = store.verdicts(tree)
    verdicts = sample_verdicts(store, tree, samples)
    spec, t = store.project(tree), store.tree(tree)
    for s in samples:
        rows = stored[s["id"]]
        attributes = sample_attributes(spec, t.path(s["node_id"]), s["drawn"])
        assert [(r["dimension"], r["value"]) for r in rows] == list(attributes)
        assert attributes[0] == ("task", spec.task) and len(attributes) == 3  # the task, then two levels
        assert [r["position"] for r in rows] == [0, 1, 2]
        assert len({r["call_id"] for r in rows}) == 1 and calls[rows[0]["call_id"]]["node_id"] == s["node_id"]
        verdict = verdicts[s["id"]]
        assert verdict.fits is (not marked(s)), s
        if marked(s):  # the fake fails the leaf's own value and says why
            assert [r["fits"] for r in rows] == [True, True, False] and MISFIT_MARKER in rows[2]["reason"]
            assert verdict.word == "misfit" and verdict.why.startswith(f"{rows[2]['dimension']} = {rows[2]['value']}")
        else:
            assert verdict.word == "fits" and verdict.why == ""
    assert all(s["status"] == "generated" for s in store.samples(tree))  # a plain run rejects nothing
    again = judge_samples(store, tree, llm)
    assert again.to_judge == 0 and again.judge_calls == 0 and again.outcome is Outcome.COMPLETE


def test_a_leaf_with_many_samples_is_judged_in_chunks(fake, store, tree, llm):
    fill(store, tree, llm, per_leaf=7)
    report = judge_samples(store, tree, llm, chunk=3)
    assert report.judged == 63 and report.judge_calls == LEAVES * math.ceil(7 / 3)
    sizes = [len(re.findall(r"^\[\d+\] ", r["messages"][1]["content"], re.M))
             for r in fake.requests if step_of(r) == "judge"]
    assert sorted(sizes) == [1] * LEAVES + [3] * (2 * LEAVES)  # per leaf: two calls of three samples, one of one
    assert plan_judge(store, tree).unjudged == 0


def test_an_edited_sample_or_a_renamed_value_is_judged_again(fake, store, tree, llm):
    fill(store, tree, llm, per_leaf=2)
    judge_samples(store, tree, llm)
    first = store.samples(tree)[0]
    second = next(s for s in store.samples(tree) if s["node_id"] != first["node_id"])
    edits.edit_sample(store, first["id"], {**first["data"], "answer": "a new answer"})
    assert first["id"] not in store.verdicts(tree)  # the text changed: its verdict is gone
    leaf = store.tree(tree).nodes[second["node_id"]]
    others = [s for s in store.samples(tree) if s["node_id"] == leaf.id]
    edits.rename_value(store, leaf.id, "a renamed value")
    verdicts = sample_verdicts(store, tree, store.samples(tree))
    assert verdicts[first["id"]] is NOT_JUDGED and all(verdicts[s["id"]] is NOT_JUDGED for s in others)
    report = judge_samples(store, tree, llm)
    assert report.judged == 1 + len(others)
    rows = store.verdicts(tree)[second["id"]]
    assert rows[-1]["value"] == "a renamed value"


def test_a_deleted_sample_takes_its_verdicts_with_it(fake, store, tree, llm):
    fill(store, tree, llm, per_leaf=1)
    judge_samples(store, tree, llm)
    leaf = store.tree(tree).leaves()[0]
    edits.delete_subtree(store, leaf.id)
    assert store.query("select count(*) as n from verdicts")[0]["n"] == (LEAVES - 1) * 3
    store.delete_project(tree)
    assert store.query("select count(*) as n from verdicts")[0]["n"] == 0


def test_an_infinite_node_is_judged_on_the_value_drawn_for_the_sample(store, project):
    spec = store.project(project)
    root = store.tree(project).root
    store.update_node(root.id, dimension="name")
    (child,) = store.add_children(store.node(root.id), [{"infinite": True, "values": ["Ada", "Bo", "Cy"]}],
                                  provenance="llm")
    path = store.tree(project).path(child)
    assert sample_attributes(spec, path, [["name", "Bo"]])[1] == ("name", "Bo")
    assert sample_attributes(spec, path, [["name", "Zed"]])[1] == ("name", "any of 3 values")  # not a value now
    assert sample_attributes(spec, path, [])[1] == ("name", "any of 3 values")


def test_check_reply_names_what_is_missing_or_repeated():
    reply = JudgeReply.model_validate({"verdicts": [
        {"sample": 1, "attributes": [{"fits": True, "reason": "ok"}] * 2},
        {"sample": 1, "attributes": [{"fits": True, "reason": "ok"}] * 2},
        {"sample": 4, "attributes": [{"fits": False, "reason": "no"}]}]})
    with pytest.raises(ValueError) as info:
        check_reply(reply, 3, 2)
    assert "no verdict for sample(s) 2, 3" in str(info.value) and "there is no sample 4" in str(info.value)
    assert "sample(s) 1 judged more than once" in str(info.value)
    good = JudgeReply.model_validate({"verdicts": [
        {"sample": 2, "attributes": [{"fits": True, "reason": "ok"}]},
        {"sample": 1, "attributes": [{"fits": True, "reason": "ok"}, {"fits": True, "reason": "ok"}]}]})
    with pytest.raises(ValueError, match="sample 2 has 1 attribute verdict"):
        check_reply(good, 2, 2)


def test_bad_judge_replies_are_reasked_and_recorded(fake, store, tree, llm):
    fill(store, tree, llm, per_leaf=2)
    short = json.dumps({"verdicts": [{"sample": 1, "attributes": [{"fits": True, "reason": "ok"}] * 3}]})
    one_attribute = json.dumps({"verdicts": [{"sample": i, "attributes": [{"fits": True, "reason": "ok"}]}
                                             for i in (1, 2)]})
    extra_key = json.dumps({"verdicts": [], "score": 3})
    fake.push(Scripted("this is not JSON", step="judge"), Scripted(short, step="judge"),
              Scripted(one_attribute, step="judge"), Scripted(extra_key, step="judge"),
              Scripted(status=200, content='{"verdicts": [{"sample": 1, "attributes": [{"fits": "maybe"}]}]}',
                       step="judge"))
    fake.push(Scripted(finish_reason="length", content='{"verdicts": [', step="judge"))
    report = judge_samples(store, tree, llm, concurrency=1)
    failed = [c for c in judge_calls(store, tree) if c["error"]]
    reasons = " | ".join(c["error"] for c in failed)
    assert len(failed) == 6, reasons
    assert "no verdict for sample(s) 2" in reasons and "has 1 attribute verdict(s); give exactly 3" in reasons
    assert "cut off at max_tokens" in reasons and "expected shape" in reasons
    # three calls each took re-asks (two replies wrong each), so two leaves' first calls failed for good
    assert report.judge_failed == 2 and report.outcome is Outcome.PARTIAL, report.summary()
    assert report.unjudged == 4 and report.judged == 14
    assert "2 judge call(s) failed" in report.summary() and "see `calls --failed`" in report.summary()
    again = judge_samples(store, tree, llm)  # a rerun judges what is left
    assert again.judged == 4 and again.outcome is Outcome.COMPLETE
    verdicts = sample_verdicts(store, tree, store.samples(tree))
    assert all(v.fits is (not marked(s)) for s in store.samples(tree) for v in [verdicts[s["id"]]])


def test_a_judge_that_always_fails_stops_after_three_calls(fake, store, tree, llm):
    fill(store, tree, llm, per_leaf=1)
    fake.fault_fn = lambda body: Scripted(status=500) if step_of(body) == "judge" else None
    report = judge_samples(store, tree, llm, concurrency=1)
    assert report.aborted and report.judge_calls == 3 and report.judged == 0
    assert report.outcome is Outcome.FAILED and "failed repeatedly" in report.summary()


# ----------------------------------------------------------------------------- until N fit


def test_until_n_ends_with_exactly_n_fitting_live_samples_per_leaf(fake, store, tree, llm):
    fill(store, tree, llm, per_leaf=2)
    judge_samples(store, tree, llm)  # misfits judged before the run are rejected by it
    progress = []
    start = store.last_call_id()
    report = judge_until(store, tree, llm, per_leaf=5, on_progress=lambda d, t: progress.append((d, t)))
    assert report.outcome is Outcome.COMPLETE, report.summary()
    assert fitting_live(store, tree) == {leaf: 5 for leaf in fitting_live(store, tree)}
    assert all(store.live_count(leaf.id) == 5 for leaf in store.tree(tree).leaves())  # never over quota
    rejected = store.samples(tree, statuses=["rejected"])
    assert rejected and all(marked(s) for s in rejected) and report.rejected == len(rejected)
    assert not any(marked(s) for s in store.samples(tree, statuses=["generated", "accepted"]))
    assert report.rejected_before == sum(map(marked, rejected)) - report.misfits
    assert progress[-1] == (45, 45) and report.fitting == report.target == 45 and not report.short
    assert report.calls == store.calls_since(tree, start) <= report.budget


def test_until_n_honours_a_leaf_quota_and_accepted_samples(fake, store, tree, llm):
    leaves = store.tree(tree).leaves()
    edits.set_quota(store, leaves[0].id, 2)
    fill(store, tree, llm, per_leaf=1)
    first = store.samples(tree, node_ids=[leaves[1].id])[0]
    edits.edit_sample(store, first["id"], {**first["data"], "question": f"{first['data']['question']} {MISFIT_MARKER}"})
    edits.set_sample_status(store, [first["id"]], "accepted")  # a human kept it: the judge never rejects it
    report = judge_until(store, tree, llm, per_leaf=3)
    assert report.outcome is Outcome.COMPLETE, report.summary()
    assert store.live_count(leaves[0].id) == 2 and store.live_count(leaves[1].id) == 3
    kept = [s for s in store.samples(tree, node_ids=[leaves[1].id]) if s["id"] == first["id"]][0]
    assert kept["status"] == "accepted" and sample_verdicts(store, tree, [kept])[kept["id"]].fits is False
    assert report.target == 2 + 3 * (LEAVES - 1)


def test_a_spent_budget_ends_partial_with_counts_and_never_passes_the_cap(fake, store, tree, llm):
    fake.misfit_every = 2
    report = judge_until(store, tree, llm, per_leaf=4, budget=14)
    assert report.outcome is Outcome.PARTIAL and report.budget_spent
    assert report.calls <= 14 and store.usage(tree)["calls"] - _build_calls(store, tree) <= 14
    assert report.short and sum(report.short.values()) == report.target - report.fitting
    text = report.summary()
    assert f"{report.fitting}/{LEAVES * 4} fitting samples" in text and "the budget is spent" in text
    assert f"{len(report.short)} leaf/leaves short of 4 fitting" in text
    assert all(store.live_count(leaf.id) <= 4 for leaf in store.tree(tree).leaves())
    # a new run, a new budget: it continues. The model now writes fitting samples: with one misfit in two still
    # coming, a leaf may draw two misfit-only rounds in a row and be left short as stalled, rightly (how often
    # depends on how requests interleave; seen once in a loaded CI rehearsal), which the stall test covers
    fake.misfit_every = 0
    again = judge_until(store, tree, llm, per_leaf=4, budget=500)
    assert again.outcome is Outcome.COMPLETE and set(fitting_live(store, tree).values()) == {4}


def _build_calls(store, project) -> int:
    return store.query("select count(*) as n from calls where project_id = ? and purpose not in "
                       "('samples', 'judge')", [project])[0]["n"]


def test_the_budget_holds_when_every_judge_reply_needs_every_reask(fake, store, tree, llm):
    fill(store, tree, llm, per_leaf=2)
    fake.fault_fn = lambda body: Scripted("not JSON") if step_of(body) == "judge" else None
    before = store.usage(tree)["calls"]
    report = judge_until(store, tree, llm, per_leaf=2, budget=7)
    assert store.usage(tree)["calls"] - before <= 7 == report.budget
    assert report.judge_calls == 2 and report.judge_failed == 2  # 2 x 3 attempts; a third would pass 7
    assert report.outcome is Outcome.FAILED and report.budget_spent


def test_a_leaf_that_never_fits_is_left_short_after_the_stall_rounds(fake, store, tree, llm):
    leaf = store.tree(tree).leaves()[0]
    lines = [f"- {dim}: {value}" for dim, value in store.tree(tree).labelled_path(leaf.id)]

    def always_misfit(body):
        if step_of(body) != "samples" or not all(line in body["messages"][1]["content"] for line in lines):
            return None
        return Scripted(json.dumps({"samples": [{"question": f"q {time.monotonic_ns()} {MISFIT_MARKER}",
                                                 "answer": "a"}]}))

    fake.fault_fn = always_misfit
    report = judge_until(store, tree, llm, per_leaf=1, samples_per_call=1, budget=500)
    assert report.outcome is Outcome.PARTIAL and report.short == {leaf.id: 1} and report.stalled == [leaf.id]
    assert report.calls < 500 and "gave no new fitting sample in 5 rounds" in report.summary()


def test_plan_counts_calls_and_sets_a_default_budget(fake, store, tree, llm):
    fill(store, tree, llm, per_leaf=3)
    plan = plan_judge(store, tree)
    assert (plan.unjudged, plan.judge_calls, plan.default_budget) == (27, LEAVES, LEAVES * 3)
    until = plan_judge(store, tree, until=5, chunk=10)
    assert until.missing == 18 and until.generation_calls == LEAVES and until.new_judge_calls == LEAVES
    assert until.calls == 3 * LEAVES and until.default_budget == 3 * until.calls
    assert "budget 81 call(s) at most" in plan_text(until) and "cost unknown" in plan_text(until)


# ----------------------------------------------------------------------------- the command


def test_judge_command_exit_codes(tmp_path, capsys, monkeypatch):
    with FakeLLM(misfit_every=3) as fake:
        db = make_db(tmp_path / "j.db", fake, depth=2)
        env = cli_env(fake.base_url)
        assert cli("generate", "--db", db, "--per-leaf", "2", env=env, cwd=tmp_path).returncode == 0
        plain = cli("judge", "--db", db, env=env, cwd=tmp_path)
        assert plain.returncode == 0 and "judged 18 sample(s) in 9 call(s)" in plain.stdout, plain.stderr
        nothing = cli("judge", "--db", db, env=env, cwd=tmp_path)
        assert nothing.returncode == 0 and "nothing to judge" in nothing.stdout
        asked = cli("judge", "--db", db, "--until", "4", env=env, cwd=tmp_path)
        assert asked.returncode == 0 and "run again with --yes" in asked.stderr and "plan: 9 leaves" in asked.stdout
        with Store(db) as store:
            assert not store.samples(store.only_project_id(), statuses=["rejected"])  # nothing done without --yes
        partial = cli("judge", "--db", db, "--until", "4", "--yes", "--budget", "9", env=env, cwd=tmp_path)
        assert partial.returncode == 3 and "warning: partial judge" in partial.stderr, partial.stderr
        assert "the budget is spent" in partial.stdout and "  short: topic=topic " in partial.stderr
        fake.misfit_every = 0  # fitting samples from now on: with misfits still coming a leaf may rightly stall
        done = cli("judge", "--db", db, "--until", "4", "--yes", env=env, cwd=tmp_path)
        assert done.returncode == 0 and "36/36 fitting samples" in done.stdout, done.stdout + done.stderr
        fake.fault_fn = lambda body: Scripted(status=500) if step_of(body) == "judge" else None
        assert cli("generate", "--db", db, "--per-leaf", "5", env=env, cwd=tmp_path).returncode == 0
        failed = cli("judge", "--db", db, env=env, cwd=tmp_path)
        assert failed.returncode == 2 and "error: judge failed" in failed.stderr, failed.stderr
    for name in [n for n in os.environ if n.startswith(("OPENAI_", "TREESYNTH_"))]:
        monkeypatch.delenv(name)
    for bad in (["--until", "0"], ["--budget", "0"], ["--chunk", "51"], ["--under", "nope"], ["--project", "7"]):
        code, _, err = run_main(capsys, "judge", "--db", db, *bad)
        assert code == 2 and err.count("error:") == 1 and "Traceback" not in err, (bad, err)
    code, _, err = run_main(capsys, "judge", "--db", db, "--until", "9", "--yes")
    assert code == 2 and "no LLM endpoint is configured" in err  # refused before anything is changed


def test_judge_until_killed_mid_run_resumes_to_exactly_n_fitting_per_leaf(tmp_path):
    """SIGKILL a `judge --until 6` subprocess while its calls are in flight, then run it again: every leaf ends with
    exactly 6 live samples, all judged and fitting; the killed run's committed verdicts and rejections stay."""
    with FakeLLM() as quick:
        db = make_db(tmp_path / "kill.db", quick, depth=2)
    args = ("judge", "--db", db, "--until", "6", "--yes", "--samples-per-call", "2", "--chunk", "3",
            "--concurrency", "2")

    def judged() -> int:
        with read_only(db) as conn:
            return conn.execute("select count(distinct sample_id) from verdicts").fetchone()[0]

    with FakeLLM(latency=0.15, misfit_every=3) as slow:
        env = cli_env(slow.base_url)
        kill_when(command(*args), env, tmp_path, lambda: judged() >= 12, "no verdict appeared", timeout=60)
        with Store(db) as store:
            project = store.only_project_id()
            kept_rejected = {s["id"] for s in store.samples(project, statuses=["rejected"])}
            assert sum(fitting_live(store, project).values()) < 6 * LEAVES  # killed before the end
        slow.latency = 0.0
        # what this test checks is the resume's exactness, not the budget: a kill late in a misfit-heavy stretch can
        # leave more refills than the default budget (3x the plan) covers, so the resume gets room
        resumed = cli(*args, "--budget", "400", env=env, cwd=tmp_path, timeout=120)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    with Store(db) as store:
        live = store.samples(project, statuses=["generated", "accepted"])
        assert fitting_live(store, project) == {leaf.id: 6 for leaf in store.tree(project).leaves()}
        assert len(live) == 6 * LEAVES and all(store.live_count(leaf.id) == 6 for leaf in store.tree(project).leaves())
        assert all(v.fits for v in sample_verdicts(store, project, live).values())
        rejected = store.samples(project, statuses=["rejected"])
        assert kept_rejected <= {s["id"] for s in rejected} and all(marked(s) for s in rejected)


def test_until_n_runs_as_a_background_job_like_build_and_generate(fake, store, tree, llm):
    """The app's jobs run the judge too: its outcome, failed count and summary land in the job row."""
    from treesynth_core import jobs

    fill(store, tree, llm, per_leaf=2)
    job_id = jobs.create_job(store, tree, "judge", {"per_leaf": 4})
    job = jobs.run_job(store.path, job_id, fake.endpoint(max_retries=0, timeout=5))
    assert job["status"] == "complete" and job["failed"] == 0, job["message"]
    assert fitting_live(store, tree) == {leaf: 4 for leaf in fitting_live(store, tree)}
    assert job["done"] == job["total"] == 4 * LEAVES
