"""The generation prompt's avoid list and near-duplicates at generation time (issue 9 part 6), over the fake server
as a copier (it answers with its prompt's avoid list, as the bundled 0.5B model did)."""

import json

import pytest

from treesynth_core.fakellm import FakeLLM, Scripted
from treesynth_core.generate import avoid_style, duplicate_rate, generate
from treesynth_core.llm import LLM
from treesynth_core.outcome import Outcome
from treesynth_core.partition import build
from treesynth_core.prompts import samples_messages
from treesynth_core.samples import copy_text, near_copies, strip_label_tail
from treesynth_core.spec import ProjectSpec, RootSplit, Settings, parse_fields
from treesynth_core.store import now

ORIGINAL = {"question": "Tom has 12 apples and buys 3 more. How many apples does Tom have now?", "answer": "15"}


def two_leaves(store, **settings) -> int:
    spec = ProjectSpec(name="math", task="GSM8K-style grade-school math word problems",
                       fields=parse_fields("question: the problem, answer: the worked solution"),
                       settings=Settings(**{"max_depth": 1, "per_leaf": 4, "samples_per_call": 1, **settings}),
                       root_split=RootSplit(dimension="topic", values=["fractions", "percentages"]))
    return store.create_project(spec)


@pytest.fixture
def copier():
    with FakeLLM(copy_avoid=True) as server:
        yield server


def run(store, fake, mode: str, *, provider: str = "openai", max_rounds: int = 3):
    pid = two_leaves(store, avoid_list=mode)
    llm = LLM(fake.endpoint(max_retries=1, timeout=5, provider=provider), store, pid)
    build(store, pid, llm)  # the hand-set root split: no call
    since = now()
    report = generate(store, pid, llm, concurrency=1, max_rounds=max_rounds)
    return pid, report, duplicate_rate(store.sample_call_notes(pid, since))


def test_auto_is_off_for_the_local_model_and_samples_elsewhere():
    assert avoid_style("auto", is_local=True) == "off"
    assert avoid_style("auto", is_local=False) == "samples"
    assert [avoid_style(m, True) for m in ("samples", "topics", "off")] == ["samples", "topics", "off"]


def test_a_copier_duplicates_with_the_avoid_list_and_not_without_it(store, copier):
    rates = {}
    for mode, provider in (("samples", "openai"), ("topics", "openai"), ("off", "openai"), ("auto", "local")):
        pid, report, rate = run(store, copier, mode, provider=provider)
        rates[mode] = rate.rate
        assert rate.duplicates == report.duplicates  # the call log and the report agree
    assert rates["samples"] > 0.5 and rates["topics"] > 0.5
    assert rates["off"] == rates["auto"] == 0.0
    assert min(rates["samples"], rates["topics"]) > rates["off"]


def test_the_local_endpoint_gets_no_avoid_list_under_auto(store, copier):
    run(store, copier, "auto", provider="local")
    prompts = [r["messages"][1]["content"] for r in copier.requests]
    assert prompts and not any("Do not repeat" in p or "already covered" in p for p in prompts)


def test_all_duplicate_calls_end_partial_in_bounded_calls_with_the_count(store, copier):
    pid, report, rate = run(store, copier, "samples", max_rounds=3)
    calls = len(copier.requests)
    assert calls <= 3 * 4 * 2  # max_rounds x calls per round (4 samples, 1 per call) x 2 leaves: never a loop
    assert report.outcome is Outcome.PARTIAL and report.short
    assert report.duplicates == rate.duplicates > 0 and rate.all_duplicates > 0
    assert f"{report.duplicates} duplicate(s)" in report.summary()
    assert rate.calls == calls  # every call succeeded: the duplicates are counted, not failures
    assert "were duplicates" in rate.text()
    noted = [r["dropped"] for r in store.sample_call_notes(pid, "")]
    assert any(n and "1 of 1 sample(s) were duplicates" in n for n in noted)


def test_truncated_and_prefixed_copies_are_near_duplicates():
    fields = ["question"]
    new = [{"question": "Tom has 12 apples and buys 3 mo; reply:"},  # cut off mid-word, a label after it
           {"question": "Tom has 12 apples and buys 3 more. How many apples does Tom have now? reply: 15"},
           {"question": "Here is a new one: Tom has 12 apples and buys 3 more. How many apples does Tom have now?"},
           {"question": "TOM has 12 apples, and buys 3 more; how many apples does Tom have now"},
           {"question": "Tom has 12 apples and buys 4 more. How many apples does Tom have now?"},  # another number
           {"question": "Sara saves $5 a week. How many weeks until she has $60?"}]
    found = near_copies(new, [ORIGINAL], fields)
    assert found == {0: "prefix", 1: "prefix", 2: "suffix", 3: "exact"}
    assert strip_label_tail("How many; reply:", ["question"]) == ("How many", True)
    assert strip_label_tail("What is the answer", ["question"]) == ("What is the answer", False)
    assert copy_text({"question": "Tom has 12 app; answer :"}, fields) == "Tom has 12"


def test_a_copy_within_one_reply_is_caught():
    twice = [ORIGINAL, {"question": ORIGINAL["question"][:40] + "; reply:", "answer": "x"}]
    assert near_copies(twice, [], ["question"]) == {1: "prefix"}


def test_a_cut_off_copy_of_a_stored_sample_is_dropped_and_noted(store, fake):
    pid = two_leaves(store, avoid_list="samples")
    llm = LLM(fake.endpoint(max_retries=1, timeout=5), store, pid)
    build(store, pid, llm)
    leaf = store.tree(pid).leaves()[0]
    cut = dict(ORIGINAL, question=" ".join(ORIGINAL["question"].split()[:7]) + "; reply:")
    prefixed = dict(ORIGINAL, question="Question: " + ORIGINAL["question"])
    fake.push(Scripted(content=json.dumps({"samples": [ORIGINAL]}), step="samples"),
              Scripted(content=json.dumps({"samples": [cut, prefixed, {"question": "A new one?", "answer": "1"}]}),
                       step="samples"))
    generate(store, pid, llm, leaf_ids=[leaf.id], per_leaf=1, samples_per_call=1)
    report = generate(store, pid, llm, leaf_ids=[leaf.id], per_leaf=4, samples_per_call=3, concurrency=1,
                      max_rounds=1)
    texts = [s["data"]["question"] for s in store.samples(pid, node_ids=[leaf.id])]
    assert texts == [ORIGINAL["question"], "A new one?"]
    assert report.duplicates == 2
    notes = [r["dropped"] for r in store.sample_call_notes(pid, "") if r["dropped"]]
    assert notes == ["2 of 3 sample(s) were duplicates (2 near: cut-off or prefixed copies)"]


def test_topics_list_shows_openings_marked_do_not_copy():
    spec = ProjectSpec(name="m", task="math problems", fields=parse_fields("question, answer"))
    user = samples_messages(spec, [("topic", "fractions")], 1, [ORIGINAL], "topics")[1]["content"]
    assert "do not copy these" in user and "- Tom has 12 apples and buys ..." in user
    assert ORIGINAL["question"] not in user
    assert "Do not repeat" in samples_messages(spec, [], 1, [ORIGINAL])[1]["content"]
    assert "Do not repeat" not in samples_messages(spec, [], 1, [])[1]["content"]


# ----------------------------------------------------------------------------- the Generate page (AppTest)
from tests.app_support import app_env, errors  # noqa: E402, F401


def test_generate_page_shows_the_last_jobs_duplicate_rate(app_env):  # noqa: F811
    pid = app_env.built(avoid_list="samples")
    app_env.fake.copy_avoid = True
    at = app_env.app("pages/2_Generate.py", pid)
    at.number_input(key="gen_conc").set_value(1)
    at.number_input(key="gen_per_call").set_value(1)
    at.button(key="gen_start").click().run()
    job = app_env.last_job(pid)
    at.run()
    assert not errors(at)
    shown = {m.label: m.value for m in at.metric}
    with app_env.store() as store:
        rate = duplicate_rate(store.sample_call_notes(pid, job["started_at"], job["finished_at"]))
    assert rate.duplicates > 0 and shown["Duplicates (last job)"] == f"{rate.rate:.0%}"
    assert shown["Duplicate samples"] == f"{rate.duplicates} of {rate.returned}"
    assert shown["Calls with only duplicates"] == f"{rate.all_duplicates} of {rate.calls}"
    assert any("avoid list" in w.value for w in at.warning)
