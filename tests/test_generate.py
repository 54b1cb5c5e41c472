"""Leaf-wise generation over the fake server: quotas, dedup, invalid output, infinite draws, cancel, plan."""

import concurrent.futures as cf
import json
import threading
import time

import pytest

from treesynth_core import edits
from treesynth_core.errors import Cancelled, ConfigError
from treesynth_core.fakellm import Scripted, step_of
from treesynth_core.generate import call_units, generate, plan_generation
from treesynth_core.llm import LLM
from treesynth_core.outcome import Outcome
from treesynth_core.partition import build
from treesynth_core.samples import clean_samples
from treesynth_core.store import Store

from .conftest import make_project


@pytest.fixture
def built(fake, store, project, llm):
    build(store, project, llm, depth=2)
    fake.requests.clear()
    return store.tree(project)


def live(store, project):
    return {k: sum(v for s, v in c.items() if s != "rejected") for k, c in store.sample_counts(project).items()}


def test_every_leaf_gets_exactly_its_quota_with_its_path_in_the_prompt(fake, store, project, llm, built):
    edits.set_quota(store, built.leaves()[0].id, 2)
    report = generate(store, project, llm, per_leaf=5, samples_per_call=2)
    counts = live(store, project)
    assert counts[built.leaves()[0].id] == 2
    assert all(counts[leaf.id] == 5 for leaf in built.leaves()[1:])
    assert report.inserted == 2 + 8 * 5 and not report.short
    leaf = built.leaves()[3]
    sample = store.samples(project, node_ids=[leaf.id])[0]
    assert [tuple(p) for p in sample["drawn"]] == built.attributes(leaf.id)
    prompts = [r["messages"][1]["content"] for r in fake.requests]
    assert any(all(f"- {d}: {v}" in p for d, v in built.attributes(leaf.id)) for p in prompts)
    # a second run has nothing to do
    fake.requests.clear()
    assert generate(store, project, llm, per_leaf=5, samples_per_call=2).inserted == 0 and not fake.requests


def test_duplicates_and_invalid_samples_are_dropped_and_recorded(fake, store, project, llm, built):
    leaf = built.leaves()[0]
    same = {"question": "What is 2+2?", "answer": "4"}
    reply = json.dumps({"samples": [same, dict(same, question="what is 2 + 2"), {"question": "no answer"},
                                    {"question": "Q2", "answer": "A2"}]})
    fake.push(Scripted(content=reply, step="samples"))
    report = generate(store, project, llm, leaf_ids=[leaf.id], per_leaf=4, samples_per_call=4, concurrency=1)
    assert report.duplicates >= 1 and report.invalid == 1
    texts = [s["data"]["question"] for s in store.samples(project, node_ids=[leaf.id])]
    assert texts.count("What is 2+2?") == 1 and "what is 2 + 2" not in texts and len(texts) == 4
    dropped = store.query("select dropped from calls where dropped is not null")[0]["dropped"]
    assert "no text for field 'answer'" in dropped and "duplicate" in dropped


def test_clean_samples_refuses_a_field_over_the_cap_whole():
    at_cap, over = "q" * 100, "q" * 101
    good, problems = clean_samples([{"question": at_cap, "answer": "a"}, {"question": "ok", "answer": over}],
                                   ["question", "answer"], max_chars=100)
    assert good == [{"question": at_cap, "answer": "a"}]
    assert problems == ["sample 2: field 'answer' has 101 characters (cap max_field_chars=100)"]
    assert clean_samples([{"question": over, "answer": "a"}], ["question", "answer"])[0]  # no cap given


def test_an_over_long_sample_is_refused_counted_and_noted_never_truncated(fake, store, project, llm, built):
    leaf = built.leaves()[0]
    long = "How many apples? " + "x" * (25_000 - 17)
    at_cap = "y" * 20_000
    reply = json.dumps({"samples": [{"question": "Q1", "answer": "A1"}, {"question": long, "answer": "A2"},
                                    {"question": "Q3", "answer": at_cap}]})
    fake.push(Scripted(content=reply, step="samples"))
    report = generate(store, project, llm, leaf_ids=[leaf.id], per_leaf=2, samples_per_call=3, concurrency=1)
    assert report.invalid == 1 and report.inserted == 2 and report.outcome is Outcome.COMPLETE
    assert "1 invalid" in report.summary()
    stored = [s["data"] for s in store.samples(project)]
    assert stored == [{"question": "Q1", "answer": "A1"}, {"question": "Q3", "answer": at_cap}]  # the cap is inclusive
    assert not any(d["question"].startswith("How many apples") for d in stored)  # not cut down and kept
    dropped = store.query("select dropped from calls where dropped is not null")[0]["dropped"]
    assert dropped == "sample 2: field 'question' has 25,000 characters (cap max_field_chars=20000)"
    assert len(fake.requests) == 1  # one good sample was enough: no re-ask


def test_a_reply_whose_every_sample_is_over_long_is_re_asked_with_the_reason(fake, store, project, built):
    leaf = built.leaves()[0]
    spec = store.project(project)
    spec.settings.max_field_chars = 500
    store.update_project(project, spec)
    llm = LLM(fake.endpoint(max_retries=0, timeout=5), store, project)
    fake.push(Scripted(content=json.dumps({"samples": [{"question": "q" * 501, "answer": "a"}]}), step="samples"))
    report = generate(store, project, llm, leaf_ids=[leaf.id], per_leaf=1, samples_per_call=1, concurrency=1)
    assert report.inserted == 1 and report.failed_calls == 0
    assert len(fake.requests) == 2
    reask = fake.requests[1]["messages"][-1]["content"]
    assert "sample 1: field 'question' has 501 characters (cap max_field_chars=500)" in reask
    assert all(len(s["data"]["question"]) <= 500 for s in store.samples(project))


def test_the_same_question_with_another_answer_is_a_duplicate(fake, store, project, llm, built):
    leaf = built.leaves()[0]
    reply = json.dumps({"samples": [{"question": "Q1?", "answer": "4"}, {"question": "q1", "answer": "5"},
                                    {"question": "Q2", "answer": "4"}]})
    fake.push(Scripted(content=reply, step="samples"))
    report = generate(store, project, llm, leaf_ids=[leaf.id], per_leaf=3, samples_per_call=3, concurrency=1)
    assert report.duplicates == 1
    assert [s["data"]["question"] for s in store.samples(project)][:2] == ["Q1?", "Q2"]


def test_duplicates_across_leaves_are_dropped_too(fake, store, project, llm, built):
    a, b = built.leaves()[:2]
    same = json.dumps({"samples": [{"question": "Same Q", "answer": "same"}]})
    fake.push(Scripted(content=same, step="samples"), Scripted(content=same, step="samples"))
    generate(store, project, llm, leaf_ids=[a.id, b.id], per_leaf=1, samples_per_call=1, concurrency=1)
    questions = [s["data"]["question"] for s in store.samples(project)]
    assert questions.count("Same Q") == 1 and len(questions) == 2


def test_a_call_that_never_yields_a_sample_fails_visibly_without_looping(fake, store, project, llm, built):
    leaf = built.leaves()[0]
    fake.push(*[Scripted(content='{"samples": [{"nope": 1}]}', step="samples")] * 20)
    report = generate(store, project, llm, leaf_ids=[leaf.id], per_leaf=2, samples_per_call=2, max_rounds=2)
    assert report.failed_calls >= 1 and report.short == {leaf.id: 2}
    assert len(fake.requests) <= 2 * 3
    assert "no usable sample: sample 1 has no text for field 'question'" in report.errors[0]


def test_endpoint_down_stops_after_three_failed_calls_and_is_failed(store, project, built):
    from treesynth_core.config import Endpoint

    dead = LLM(Endpoint(base_url="http://127.0.0.1:9/v1", api_key="k", max_retries=0, timeout=2), store, project)
    report = generate(store, project, dead, per_leaf=2, concurrency=1)
    assert report.outcome is Outcome.FAILED and report.aborted and report.failed_calls == 3
    assert report.summary().startswith("the endpoint failed repeatedly (could not connect")
    assert store.usage(project)["failed_calls"] == 3  # the other six leaves were not tried


def test_infinite_leaf_draws_a_value_per_call(store, fake):
    fake.extra_values, fake.open_ended = 10, True
    project = make_project(store, max_values=4)
    llm = LLM(fake.endpoint(), store, project)
    build(store, project, llm, depth=1)
    (leaf,) = store.tree(project).leaves()
    assert leaf.infinite
    generate(store, project, llm, per_leaf=12, samples_per_call=1)
    drawn = {s["drawn"][0][1] for s in store.samples(project)}
    assert len(drawn) > 1 and drawn <= set(leaf.values)


def test_cancel_keeps_what_was_made(store, project, built, fake):
    fake.latency = 0.05
    llm = LLM(fake.endpoint(), store, project)
    stop = threading.Event()

    def progress(done, total):
        if done >= 4:
            stop.set()

    with pytest.raises(Cancelled) as cancelled:
        generate(store, project, llm, per_leaf=4, samples_per_call=1, concurrency=2, on_progress=progress,
                 should_stop=stop.is_set)
    made = sum(live(store, project).values())
    assert 4 <= made < 36
    report = cancelled.value.report  # what finished before the cancel, counted
    assert report.cancelled and report.inserted == made and report.failed_count == 0
    report = generate(store, project, llm, per_leaf=4, samples_per_call=1)
    assert report.inserted == 36 - made and sum(live(store, project).values()) == 36


def test_plan_counts_calls_and_never_guesses_prices(store, project, built):
    plan = plan_generation(store, project, per_leaf=5, samples_per_call=2)
    assert len(plan.leaves) == 9 and plan.missing == 45 and plan.calls == 27
    assert plan.prompt_tokens > 0 and plan.cost is None
    spec = store.project(project)
    spec.settings.price_input_per_m, spec.settings.price_output_per_m = 1.0, 2.0
    store.update_project(project, spec)
    plan = plan_generation(store, project, per_leaf=5, samples_per_call=2)
    assert plan.cost == pytest.approx((plan.prompt_tokens * 1 + plan.completion_tokens * 2) / 1e6)
    edits.prune(store, built.leaves()[0].id)
    assert len(plan_generation(store, project, per_leaf=5).leaves) == 8
    edits.approve(store, built.leaves()[1].id)
    assert len(plan_generation(store, project, per_leaf=5, approved_only=True).leaves) == 1


def test_placeholder_text_copied_from_the_prompt_is_not_a_sample(fake, store, project, llm, built):
    leaf = built.leaves()[0]
    reply = json.dumps({"samples": [{"question": "...", "answer": "..."}, {"question": "Q9", "answer": "A9"}]})
    fake.push(Scripted(content=reply, step="samples"))
    report = generate(store, project, llm, leaf_ids=[leaf.id], per_leaf=1, samples_per_call=2, concurrency=1)
    assert report.invalid == 1
    assert [s["data"]["question"] for s in store.samples(project)] == ["Q9"]
    assert all(isinstance(r["seed"], int) for r in fake.requests)  # every call asks for a fresh seed


# ----------------------------------------------------------------------------- honest outcomes


def test_a_failed_root_is_never_a_leaf(fake, store, project, llm):
    fake.fault_fn = lambda body: Scripted(content="no JSON here", step="pivots") if step_of(body) == "pivots" else None
    build(store, project, llm, depth=2)
    fake.fault_fn, before = None, len(fake.requests)
    report = generate(store, project, llm, per_leaf=2)
    assert report.outcome is Outcome.FAILED
    assert report.summary().startswith("the tree has no leaves: the root's split failed (pivots: no usable reply")
    assert report.summary().endswith("; run build again")
    assert len(fake.requests) == before and not store.samples(project)  # nothing unconstrained was generated
    assert plan_generation(store, project, per_leaf=2).leaves == []


def test_an_unsplit_root_is_not_a_leaf(fake, store, project, llm):
    report = generate(store, project, llm, per_leaf=2)
    assert report.outcome is Outcome.FAILED and not fake.requests
    assert report.summary() == "the tree has no leaves: the root has not been split yet; run build first"


def test_failed_nodes_get_no_samples_and_make_the_run_partial(fake, store, project, llm):
    build(store, project, llm, depth=1)
    fake.push(*[Scripted(content="garbage", step="criterion")] * 3)
    build(store, project, llm, depth=2, concurrency=1)
    failed = [n for n in store.tree(project).nodes.values() if n.status == "failed"]
    assert len(failed) == 1
    report = generate(store, project, llm, per_leaf=1)
    assert report.outcome is Outcome.PARTIAL and report.failed_nodes == [failed[0].id]
    assert report.inserted == 6 and failed[0].id not in live(store, project)
    assert "1 failed node(s) have no samples: run build again to retry them, or prune them" in report.summary()


def test_an_unexpected_error_in_one_call_is_counted_and_the_rest_go_on(fake, store, project, llm, built,
                                                                         monkeypatch):
    victim = built.leaves()[4].id
    real_add = store.add_samples

    def add_samples(project_id, node_id, rows, **kw):
        if node_id == victim:
            raise RuntimeError("disk quota exceeded")
        return real_add(project_id, node_id, rows, **kw)

    monkeypatch.setattr(store, "add_samples", add_samples)
    report = generate(store, project, llm, per_leaf=2, samples_per_call=2, concurrency=2)
    assert report.outcome is Outcome.PARTIAL and report.inserted == 16 and report.short == {victim: 2}
    # the leaf's call failed in round 1 and again in round 2 (round 3 made no progress, so it did not run)
    assert report.failed_calls == 2 and set(report.errors) == {"unexpected error: RuntimeError: disk quota exceeded"}


def test_a_run_with_nothing_missing_is_complete(fake, store, project, llm, built):
    assert generate(store, project, llm, per_leaf=1).outcome is Outcome.COMPLETE
    fake.requests.clear()
    report = generate(store, project, llm, per_leaf=1)
    assert report.outcome is Outcome.COMPLETE and report.missing == 0 and not fake.requests


# ----------------------------------------------------------------------------- run arguments and large runs


def test_zero_per_leaf_means_zero_not_the_default(fake, store, project, llm, built):
    own = built.leaves()[0]
    edits.set_quota(store, own.id, 2)  # a leaf's own quota still counts
    plan = plan_generation(store, project, per_leaf=0)
    assert plan.missing == 2 and plan.calls == 1
    report = generate(store, project, llm, per_leaf=0, samples_per_call=2)
    assert report.inserted == 2 and report.outcome is Outcome.COMPLETE and len(fake.requests) == 1
    assert live(store, project) == {own.id: 2}


@pytest.mark.parametrize("arguments,message", [
    ({"samples_per_call": 0}, "samples_per_call must be a whole number from 1 to 20, not 0"),
    ({"per_leaf": -1}, "per_leaf must be a whole number from 0 to 10000, not -1"),
    ({"per_leaf": 10_001}, "per_leaf must be a whole number from 0 to 10000"),
    ({"concurrency": 0}, "concurrency must be a whole number from 1 to 64, not 0"),
])
def test_arguments_out_of_range_are_refused_before_any_call(fake, store, project, llm, built, arguments, message):
    with pytest.raises(ConfigError, match=message):
        generate(store, project, llm, **arguments)
    if "concurrency" not in arguments:
        with pytest.raises(ConfigError, match=message):
            plan_generation(store, project, **arguments)
    assert not fake.requests and not store.samples(project)


def test_call_units_are_the_rounds_calls_in_order_made_one_at_a_time():
    missing = {"a": 7, "b": 0, "c": -2, "d": 3}
    units = call_units(missing, 3)
    assert iter(units) is units  # a generator, not a list
    old = [(i, min(3, m - k)) for i, m in missing.items() if m > 0 for k in range(0, m, 3)]  # the former list
    assert list(units) == old == [("a", 3), ("a", 3), ("a", 1), ("d", 3)]


def test_a_huge_quota_is_planned_without_listing_calls_and_a_cancel_stops_it_at_once(fake, store, project, built):
    plan = plan_generation(store, project, per_leaf=10_000, samples_per_call=1)
    assert plan.calls == 9 * 10_000 and plan.missing == 90_000
    llm = LLM(fake.endpoint(max_retries=0, timeout=5), store, project)
    started = time.monotonic()
    with pytest.raises(Cancelled) as cancelled:
        generate(store, project, llm, per_leaf=10_000, samples_per_call=1, concurrency=2,
                 should_stop=lambda: len(fake.requests) >= 6)
    assert time.monotonic() - started < 10
    report = cancelled.value.report
    assert report.missing == 90_000 and 6 <= report.inserted <= 6 + 4 and len(fake.requests) <= 6 + 4
    assert sum(report.short.values()) == 90_000 - report.inserted


def test_summary_for_the_app_is_short_and_the_cli_keeps_the_fuller_text():
    from treesynth_core.generate import GenerationReport, RunReport
    from treesynth_core.partition import BuildReport

    reason = ("samples: no usable reply after 3 tries; last problem: " + "x" * 300)[:297] + "..."
    hinted = "samples: no usable reply after 3 tries; last problem: not JSON (see the call log; edit the node by " \
             "hand or retry)"
    report = GenerationReport(inserted=4, failed_calls=2, errors=[hinted, reason], short={"a": 3}, missing=7)
    cli = report.summary()
    assert "(see `calls --failed`; first: " + hinted + ")" in cli and "run generate again to retry" in cli
    app = report.summary(for_cli=False)
    assert app == ("4 new sample(s), 2 call(s) failed; 1 leaf/leaves still short (3 samples); first failure: "
                   "samples: no usable reply after 3 tries; last problem: not JSON")
    long = GenerationReport(inserted=0, failed_calls=1, errors=[reason], missing=2).summary(for_cli=False)
    first = long.split("first failure: ")[1]
    assert len(first) == 160 and first.endswith("…")
    build_report = BuildReport(expanded=["r"], failed={"n": hinted.replace("samples", "criterion")})
    assert build_report.summary(for_cli=False) == ("expanded 1 node(s), 1 failed; first failure: criterion: no "
                                                   "usable reply after 3 tries; last problem: not JSON")
    both = RunReport(build_report, report).summary(for_cli=False)
    assert both.startswith("expanded 1 node(s), 1 failed; 4 new sample(s), 2 call(s) failed")
    assert "`" not in both and "call log" not in both


def test_max_tokens_grows_with_the_samples_asked_and_the_leafs_sample_size(fake, store, project, llm, built):
    """Ten samples of 150 tokens do not fit in the default 1,024: the first call of a leaf asks room for them
    (1.5 x 10 x 150 + 64); once the leaf has short samples, the setting is enough again."""
    leaf = built.leaves()[0].id
    for quota in (10, 20):  # one call each: the second one's leaf has samples
        generate(store, project, llm, per_leaf=quota, samples_per_call=10, leaf_ids=[leaf])
    sizes = [body["max_tokens"] for body in fake.requests if step_of(body) == "samples"]
    assert sizes[0] == 1.5 * 10 * 150 + 64 and sizes[-1] == 1024  # the fake's samples are about 25 tokens
    assert len(sizes) == 2 and live(store, project)[leaf] == 20


def test_a_leaf_pruned_while_the_run_fills_it_is_no_longer_asked_for(fake, store, project, llm, built, tmp_path):
    """Another writer (the app, another process) prunes a subtree mid-run: the calls in flight for its leaves store
    nothing, no new call is made for them, and the run says so without calling it a failure."""
    topic = next(kid for kid in built.kids(built.root.id) if built.kids(kid.id))
    pruned = {leaf.id for leaf in built.leaves(under=topic.id)}
    other = Store(tmp_path / "test.db")  # a second connection, as another process has
    sent: list[str] = []
    at_prune: dict[str, int] = {}
    lock = threading.Lock()

    def delay(body: dict) -> float:
        with lock:
            sent.append(body["messages"][1]["content"])
            if len(sent) == 4:
                edits.prune(other, topic.id)
                at_prune.update({k: v for k, v in live(other, project).items() if k in pruned})
        return 0.0

    fake.delay_fn = delay
    try:
        report = generate(store, project, llm, per_leaf=6, samples_per_call=2, concurrency=2)
    finally:
        other.close()
    counts = live(store, project)
    assert report.failed_calls == 0 and set(report.gone) <= pruned and report.gone
    assert report.outcome is Outcome.COMPLETE, report.summary()
    assert "pruned or deleted during the run" in report.summary()
    assert all(counts.get(leaf.id, 0) == 6 for leaf in built.leaves() if leaf.id not in pruned)
    # nothing stored there after the prune: not even the calls that were already in flight
    assert {k: counts.get(k, 0) for k in pruned} == {k: at_prune.get(k, 0) for k in pruned}
    # after the prune, at most the calls already in flight went to the pruned leaves, one per leaf at most
    after = sent[4:]
    paths = {leaf_id: built.attributes(leaf_id) for leaf_id in pruned}
    asked = [leaf_id for prompt in after for leaf_id, attrs in paths.items()
             if all(f"- {d}: {v}" in prompt for d, v in attrs)]
    assert all(asked.count(leaf_id) <= 2 for leaf_id in pruned), asked
    notes = store.query("select dropped from calls where dropped like 'not stored: leaf % was pruned%'")
    assert len(notes) >= len(report.gone)  # each refused call says why its reply was not stored
