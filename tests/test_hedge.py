"""Stragglers (issue 10): hedged requests over the fake HTTP server. A request that runs far past its kind's
recent median gets one identical copy; the first answer counts, exactly one result is stored, and the call log
(so the cost) counts both requests."""

from __future__ import annotations

import time

from treesynth_core import edits
from treesynth_core.fakellm import Scripted
from treesynth_core.generate import duplicate_rate, generate, run
from treesynth_core.hedge import MIN_OBSERVED, Hedger, RequestThreads
from treesynth_core.llm import HEDGED, LLM
from treesynth_core.outcome import Outcome

from .conftest import make_project


def quick_hedger(**kw) -> Hedger:
    """A hedger for tests: a straggler after 0.3 s (the fake answers in milliseconds)."""
    return Hedger(**{"floor": 0.3, "cold": 0.3, **kw})


def rows(store, project, purpose):
    return store.query("select id, node_id, purpose, valid, error, finish_reason, prompt_tokens, completion_tokens, dropped, "
                       "attempt from calls where project_id = ? and purpose = ? order by id", [project, purpose])


def two_leaves(store, project) -> list[str]:
    return edits.set_split(store, store.tree(project).root.id, "topic", ["fractions", "percentages"])


# ----------------------------------------------------------------------------- the policy


def test_a_request_is_a_straggler_after_a_multiple_of_its_kinds_median_never_before_the_floor():
    hedger = Hedger(factor=3.0, floor=0.5, cold=7.0)
    assert hedger.after("samples") == 7.0  # no history: the cold wait
    for seconds in (1.0, 1.2, 0.8, 1.1, 0.9):
        hedger.observe("pivots", seconds)
    assert hedger.after("pivots") == 3.0  # 3 x its median (1.0)
    assert hedger.after("samples") == 3.0  # too few of its own: every kind's answers decide
    for _ in range(MIN_OBSERVED):
        hedger.observe("samples", 0.01)
    assert hedger.after("samples") == 0.5  # its own median, but never under the floor
    assert Hedger(floor=2.0, cold=0.3).after("x") == 2.0  # the floor holds for the cold wait too


def test_the_budget_allows_a_few_copies_and_then_one_in_twenty_requests():
    hedger = Hedger(share=0.05, allowance=2)
    assert [hedger.take() for _ in range(3)] == [True, True, False]
    for _ in range(40):
        hedger.sent()
    assert [hedger.take() for _ in range(3)] == [True, True, False]  # 2 + 5% of 40 requests: 4 copies in all
    assert hedger.hedges == 4 and hedger.requests == 40


def test_request_threads_are_reused_and_a_failure_is_handed_to_the_waiter():
    threads = RequestThreads("test-request")
    assert [threads.submit(lambda x: x * 2, i).result(timeout=5) for i in range(20)] == [i * 2 for i in range(20)]
    assert threads._threads == 1  # one at a time: one thread served all
    failed = threads.submit(lambda: 1 / 0)
    assert isinstance(failed.exception(timeout=5), ZeroDivisionError)
    threads.close()


# ----------------------------------------------------------------------------- over the fake server


def test_a_slow_samples_call_is_hedged_its_twin_counts_and_both_are_paid_for(fake, store, project):
    leaves = two_leaves(store, project)
    fake.push(Scripted(delay=8.0, step="samples"))  # the first samples request hangs; its identical twin does not
    llm = LLM(fake.endpoint(max_retries=1, timeout=20), store, project)
    llm.hedger = quick_hedger()
    started = time.monotonic()
    report = generate(store, project, llm, per_leaf=3, samples_per_call=3)
    wall = time.monotonic() - started
    assert report.outcome is Outcome.COMPLETE, report.summary()
    assert wall < 5.0, wall  # not the 8 s hang
    assert {leaf: store.live_count(leaf) for leaf in leaves} == {leaf: 3 for leaf in leaves}  # one result stored

    calls = rows(store, project, "samples")
    hedged = [c for c in calls if c["finish_reason"] == HEDGED]
    counted = [c for c in calls if c["finish_reason"] != HEDGED]
    assert len(counted) == 2 and all(c["valid"] == 1 and c["error"] is None for c in counted)
    assert len(hedged) == 1 and hedged[0]["valid"] == 0 and hedged[0]["error"] is None
    assert "the first request was abandoned" in hedged[0]["dropped"]
    twin = next(c for c in counted if c["node_id"] == hedged[0]["node_id"])
    assert hedged[0]["prompt_tokens"] == twin["prompt_tokens"] > 0  # the same prompt, sent twice
    # every stored sample comes from a counted call, none from the abandoned one
    sources = {r["call_id"] for r in store.query("select call_id from samples where project_id = ?", [project])}
    assert sources <= {c["id"] for c in counted}
    usage = store.usage(project)
    assert usage["calls"] == 3 and usage["failed_calls"] == 0  # the cost counts both requests; nothing failed
    assert usage["prompt_tokens"] == sum(c["prompt_tokens"] for c in calls)
    assert store.failure_counts(project) == {"failed_attempts": 0, "gave_up": 0}
    rate = duplicate_rate(store.sample_call_notes(project, "0"))  # the abandoned twin is no generation call
    assert rate.calls == 2 and rate.returned == 6
    assert llm.hedger.hedges == 1 and llm.hedger.won == 1
    llm.close()


def test_a_hung_tree_step_is_hedged_in_a_pipelined_run(fake, store):
    project = make_project(store, max_depth=2)
    fake.push(Scripted(delay=8.0, step="criterion"))  # the root's criterion call hangs
    llm = LLM(fake.endpoint(max_retries=1, timeout=20), store, project)
    llm.hedger = quick_hedger()
    started = time.monotonic()
    report = run(store, project, llm, per_leaf=2, samples_per_call=2)
    assert report.outcome is Outcome.COMPLETE, report.summary()
    assert time.monotonic() - started < 6.0
    hedged = [c for c in rows(store, project, "criterion") if c["finish_reason"] == HEDGED]
    assert len(hedged) == 1
    assert all(store.live_count(leaf.id) == 2 for leaf in store.tree(project).leaves())
    llm.close()


def test_without_budget_a_slow_call_is_waited_for_and_nothing_extra_is_sent(fake, store, project):
    two_leaves(store, project)
    fake.push(Scripted(delay=1.5, step="samples"))
    llm = LLM(fake.endpoint(max_retries=1, timeout=20), store, project)
    llm.hedger = quick_hedger(allowance=0, share=0.0)
    started = time.monotonic()
    report = generate(store, project, llm, per_leaf=2, samples_per_call=2)
    assert report.outcome is Outcome.COMPLETE and time.monotonic() - started >= 1.4
    assert store.usage(project)["calls"] == 2 and len(fake.requests) == 2
    llm.close()


def test_a_copy_that_also_hangs_is_logged_with_the_deadline_failure(fake, store, project):
    """Both requests outlive the call's deadline: one failed call, and the copy's row so its prompt is counted."""
    leaf = two_leaves(store, project)[0]
    fake.push(Scripted(delay=6.0, step="samples"), Scripted(delay=6.0, step="samples"))
    llm = LLM(fake.endpoint(max_retries=0, timeout=1.0), store, project, concurrency=1)  # deadline 1 s
    llm.hedger = quick_hedger()
    report = generate(store, project, llm, leaf_ids=[leaf], per_leaf=1, samples_per_call=1, max_rounds=1)
    calls = rows(store, project, "samples")
    failed = [c for c in calls if c["error"]]
    hedged = [c for c in calls if c["finish_reason"] == HEDGED]
    assert len(failed) == 1 and "deadline" in failed[0]["error"]
    assert len(hedged) == 1 and "without an answer" in hedged[0]["dropped"] and hedged[0]["error"] is None
    assert report.failed_calls >= 1
    llm.close()


def test_a_local_endpoint_or_hedge_false_never_hedges(fake, store, project):
    local = LLM(fake.endpoint(provider="local"), store, project)
    off = LLM(fake.endpoint(), store, project, hedge=False)
    for llm in (local, off):
        llm.hedge_stragglers()
        assert llm.hedger is None
        llm.close()
    on = LLM(fake.endpoint(timeout=8), store, project)
    on.hedge_stragglers()
    assert on.hedger is not None and on.hedger.after("samples") == 4.0  # cold: half the timeout, at most 10 s
    on.close()
