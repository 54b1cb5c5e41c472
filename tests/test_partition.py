"""Partitioning over the fake server: the method's rules, failures, resume, infinite nodes, scheduling."""

import json
import threading
import time

import pytest

from treesynth_core import edits
from treesynth_core.errors import Cancelled
from treesynth_core.fakellm import Scripted, step_of
from treesynth_core.llm import LLM
from treesynth_core.outcome import Outcome
from treesynth_core.partition import Partitioner, build, check_criterion
from treesynth_core.prompts import CriterionReply
from treesynth_core.spec import RootSplit

from .conftest import make_project


def criterion(dimension, labels):
    return {"dimension": dimension, "labels": labels}


def check(reply, pivots=4, used=()):
    check_criterion(CriterionReply.model_validate(reply), pivots, list(used))


def test_a_valid_split_passes():
    check(criterion("difficulty", ["easy", "Easy", "hard", "hard"]), used=["topic"])


@pytest.mark.parametrize("reply, reason", [
    (criterion("difficulty", ["easy", "hard", "hard"]), "exactly 4 labels"),
    (criterion("difficulty", ["easy", "hard", "hard", "easy", "hard"]), "exactly 4 labels"),
    (criterion("Topics.", ["easy", "easy", "hard", "hard"]), "already used by an ancestor"),
    (criterion("difficulty", ["easy", "easy", "Other", "Other"]), "catch-all"),
    (criterion("difficulty", ["easy", "easy", "medium and hard", "hard"]), "combines"),
    (criterion("difficulty", ["Easy", "easy!", "EASY", "easy"]), "same value"),
    (criterion("difficulty", ["easy", "easy", " ", "hard"]), "empty"),
    (criterion('=HYPERLINK("http://x.test","go")', ["a", "a", "b", "b"]), "formula"),
    (criterion("<img src=x onerror=alert(1)>", ["a", "a", "b", "b"]), "HTML"),
    (criterion("misc", ["a", "a", "b", "b"]), "catch-all"),
    (criterion("difficulty and setting", ["a", "a", "b", "b"]), "combines several dimensions"),
    (criterion("difficulty", ["easy", "easy", "<b>hard</b>", "hard"]), "HTML"),
])
def test_rule_breaking_splits_are_rejected_with_a_reason(reply, reason):
    with pytest.raises(ValueError, match=reason):
        check(reply, used=["topic"])


def test_full_build_is_a_partition_with_one_new_dimension_per_level(fake, store, project, llm):
    report = build(store, project, llm, depth=2)
    tree = store.tree(project)
    assert not report.failed and len(report.expanded) == 4
    assert report.outcome is Outcome.COMPLETE and report.summary() == "expanded 4 node(s), 0 failed"
    assert len(tree) == 1 + 3 + 9 and len(tree.leaves()) == 9
    for node in tree.nodes.values():
        kids = tree.kids(node.id)
        if kids:
            assert node.dimension and node.dimension not in tree.used_dimensions(node.id)
            assert len({k.value.lower() for k in kids}) == len(kids)
            assert len(node.pivots) == 4
    assert fake.steps().count("pivots") == 4 and fake.steps().count("criterion") == 4


def test_each_kind_of_bad_criterion_is_re_asked_then_fixed(fake, store, project, llm):
    bad = [
        "{not json",
        json.dumps({"dimension": "topic"}),  # missing key
        "```json\n" + json.dumps(criterion("topic", ["a", "a", "b", "b"]))[:-3],  # fenced and broken: repairable
    ]
    fake.push(*[Scripted(content=b, step="criterion") for b in bad])
    store.update_project(project, store.project(project).model_copy(
        update={"settings": store.project(project).settings.model_copy(update={"reasks": 3})}))
    build(store, project, llm, depth=1)
    assert fake.steps().count("criterion") == 3
    assert store.tree(project).root.dimension == "topic"
    errors = [r["error"] for r in store.query("select error from calls where purpose='criterion' and valid=0")]
    assert len(errors) == 2 and "JSON" in errors[0] and "labels: Field required" in errors[1]
    assert store.query("select repaired from calls where purpose='criterion' and valid=1") == [{"repaired": 1}]


def test_ancestor_dimension_and_overlap_are_re_asked(fake, store, project, llm):
    build(store, project, llm, depth=1)
    child = store.tree(project).kids(store.tree(project).root.id)[0]
    fake.push(Scripted(content=json.dumps(criterion("Topic", ["x", "x", "y", "y"])), step="criterion"),
              Scripted(content=json.dumps(criterion("level", ["x", "x", "y"])), step="criterion"))
    build(store, project, llm, depth=2, under=child.id)
    reasons = [r["error"] for r in store.query("select error from calls where valid=0 order by id")]
    assert "already used by an ancestor" in reasons[0] and "exactly 4 labels" in reasons[1]
    assert store.node(child.id).dimension == "difficulty"


def test_a_node_that_keeps_failing_is_recorded_and_the_rest_go_on(fake, store, project, llm):
    build(store, project, llm, depth=1)
    tree = store.tree(project)
    bad_child = tree.kids(tree.root.id)[0]
    fake.push(*[Scripted(content="garbage", step="criterion")] * 3)
    report = build(store, project, llm, depth=2, concurrency=1)  # one node at a time takes all 3 bad replies
    failed = store.node(next(iter(report.failed)))
    assert failed.status == "failed" and "no usable reply after 3 tries" in failed.failure
    assert len(report.expanded) == 2
    assert fake.steps().count("criterion") == 1 + 3 + 2  # bounded, no loop
    # running build again retries only the failed node
    before = len(fake.requests)
    build(store, project, llm, depth=2)
    assert store.node(failed.id).status == "proposed" and store.tree(project).kids(failed.id)
    assert len(fake.requests) - before == 2  # its pivots were cached: criterion + coverage only
    assert failed.id == bad_child.id


def test_interrupted_build_resumes_without_repaying(fake, store, project, llm):
    stop = threading.Event()
    done = []

    def progress(n, total):
        done.append(n)
        if n >= 2:
            stop.set()

    with pytest.raises(Cancelled) as cancelled:
        build(store, project, llm, depth=3, on_progress=progress, should_stop=stop.is_set, concurrency=1)
    paid = len(fake.requests)
    expanded = [n for n in store.tree(project).nodes.values() if n.dimension]
    assert 2 <= len(expanded) < 13
    report = cancelled.value.report  # what finished before the cancel, counted
    assert report.cancelled and sorted(report.expanded) == sorted(n.id for n in expanded) and not report.failed
    build(store, project, llm, depth=3)
    tree = store.tree(project)
    assert len(tree.leaves()) == 27
    # every expanded node costs 3 calls (pivots, criterion, coverage); nothing was asked twice
    assert len(fake.requests) == 13 * 3
    assert paid == len(expanded) * 3


def test_values_over_the_cap_make_one_infinite_child(store, fake):
    fake.extra_values = 10
    fake.open_ended = True
    project = make_project(store, max_values=5, coverage_rounds=2)
    llm = LLM(fake.endpoint(max_retries=0), store, project)
    build(store, project, llm, depth=1)
    tree = store.tree(project)
    (child,) = tree.kids(tree.root.id)
    assert child.infinite and len(child.values) > 5
    assert len({v.lower() for v in child.values}) == len(child.values)
    assert tree.labelled_path(child.id) == [("topic", f"any of {len(child.values)} values")]


def test_coverage_adds_missing_values(store, fake):
    fake.extra_values = 2
    project = make_project(store, max_values=8)
    build(store, project, LLM(fake.endpoint(), store, project), depth=1)
    tree = store.tree(project)
    assert [k.value for k in tree.kids(tree.root.id)] == ["topic A", "topic B", "topic C", "topic D", "topic E"]


def test_hand_set_root_split_costs_no_call_and_locked_nodes_are_left_alone(store, fake):
    project = make_project(store)
    spec = store.project(project)
    spec.root_split = RootSplit(dimension="subject", values=["algebra", "geometry"])
    store.update_project(project, spec)
    llm = LLM(fake.endpoint(), store, project)
    build(store, project, llm, depth=1)
    tree = store.tree(project)
    assert tree.root.dimension == "subject" and not fake.requests
    algebra, geometry = tree.kids(tree.root.id)
    assert algebra.provenance == "human"
    edits.lock(store, geometry.id)
    report = build(store, project, llm, depth=2)
    assert report.expanded == [algebra.id] and report.skipped_locked == [geometry.id]
    assert store.tree(project).used_dimensions(store.tree(project).kids(algebra.id)[0].id)[0] == "subject"


def test_re_propose_is_fresh_and_not_stored_until_applied(fake, store, project, llm):
    build(store, project, llm, depth=1)
    root = store.tree(project).root
    partitioner = Partitioner(store, project, llm)
    fake.push(Scripted(content=json.dumps(criterion("setting", ["home", "home", "school", "school"])),
                       step="criterion"))
    proposal = partitioner.propose(root, store.tree(project), fresh=True)
    assert proposal.dimension == "setting" and store.node(root.id).dimension == "topic"
    assert proposal.labels == ["home", "home", "school", "school"]  # the criterion's value of each pivot
    edits.clear_split(store, root.id)
    partitioner.apply(store.node(root.id), proposal)
    assert [k.value for k in store.tree(project).kids(root.id)] == ["home", "school"]


def test_children_start_when_their_parent_is_done_not_per_level(store, fake):
    """One slow node stalls only its own subtree: its siblings' children are expanded meanwhile."""
    project = make_project(store, max_depth=3)
    llm = LLM(fake.endpoint(), store, project)
    build(store, project, llm, depth=1)
    slow_value = store.tree(project).kids(store.tree(project).root.id)[0].value
    started = {}

    def delay(body):
        user = body["messages"][1]["content"]
        started.setdefault(user[:200], time.monotonic())
        first_step = "Step: pivots" in body["messages"][0]["content"] and "difficulty" not in user
        return 1.0 if f"topic: {slow_value}" in user and first_step else 0.0

    fake.delay_fn = delay
    t0 = time.monotonic()
    build(store, project, llm, depth=3)
    tree = store.tree(project)
    slow = next(k for k in tree.kids(tree.root.id) if k.value == slow_value)
    fast_grandchildren = [g for k in tree.kids(tree.root.id) if k.id != slow.id for g in tree.kids(k.id)]
    assert all(tree.kids(g.id) for g in fast_grandchildren)
    # the fast branches reached depth 3 before the slow node's first call returned
    depth2_requests = [t for u, t in started.items() if u.count("\n- ") >= 2]
    assert min(depth2_requests) - t0 < 1.0


def test_a_split_that_only_mislabels_pivots_is_kept_with_a_note_for_review(fake, store, project, llm):
    mislabelled = json.dumps(criterion("level", ["easy", "easy", "hard", "Other", "hard"]))
    fake.push(*[Scripted(content=mislabelled, step="criterion")] * 3)
    report = build(store, project, llm, depth=1)
    root = store.tree(project).root
    assert not report.failed and root.dimension == "level"
    assert [k.value for k in store.tree(project).kids(root.id)] == ["easy", "hard"]  # the catch-all dropped
    assert "exactly 4 labels" in root.note


def test_reusing_an_ancestor_dimension_is_never_salvaged(fake, store, project, llm):
    build(store, project, llm, depth=1)
    child = store.tree(project).kids(store.tree(project).root.id)[0]
    reuse = json.dumps(criterion("topics", ["x", "x", "y", "y"]))
    fake.push(*[Scripted(content=reuse, step="criterion")] * 3)
    report = build(store, project, llm, depth=2, under=child.id)
    assert child.id in report.failed and store.node(child.id).status == "failed"


# ----------------------------------------------------------------------------- honest outcomes, exhaustive splits


def coverage(values, open_ended=False):
    return json.dumps({"new_values": values, "open_ended": open_ended})


def kids(store, project, node_id=None):
    tree = store.tree(project)
    return [k.value for k in tree.kids(node_id or tree.root.id)]


def coverage_errors(store):
    return [r["error"] for r in store.query("select error from calls where purpose='coverage' and valid=0 order by id")]


def test_a_failed_root_makes_the_build_failed_with_its_reason(fake, store, project, llm):
    fake.fault_fn = lambda body: Scripted(content="Sure! Here are some ideas, in prose.")
    report = build(store, project, llm, depth=2)
    root = store.tree(project).root
    assert report.outcome is Outcome.FAILED and report.failed == {root.id: root.failure}
    assert root.status == "failed" and "pivots: no usable reply after 3 tries" in root.failure
    assert "the root's split failed (pivots: no usable reply" in report.summary()
    assert "run build again to retry the failed nodes: it resumes" in report.summary()


def test_a_node_that_fails_with_an_unexpected_error_fails_alone(fake, store, project, llm, monkeypatch):
    build(store, project, llm, depth=1)
    victim = store.tree(project).kids(store.tree(project).root.id)[1]
    real_apply = Partitioner.apply

    def apply(self, node, proposal, **kw):
        if node.id == victim.id:
            raise RuntimeError("a row the store refused")
        return real_apply(self, node, proposal, **kw)

    monkeypatch.setattr(Partitioner, "apply", apply)
    report = build(store, project, llm, depth=2)
    assert report.outcome is Outcome.PARTIAL and list(report.failed) == [victim.id]
    assert store.node(victim.id).failure == "unexpected error: RuntimeError: a row the store refused"
    assert len(report.expanded) == 2  # its siblings were expanded


def test_failures_before_any_success_stop_the_build(fake, store, project):
    project = make_project(store, max_depth=3)
    llm = LLM(fake.endpoint(max_retries=0), store, project)
    build(store, project, llm, depth=1)  # three children to expand
    edits.set_split(store, store.tree(project).kids(store.tree(project).root.id)[0].id, "level", ["x", "y", "z"])
    fake.fault_fn = lambda body: Scripted(status=500)
    report = build(store, project, llm, depth=3, concurrency=1)  # five nodes to expand, one at a time
    # the third failure stops the build; the node the worker had already taken finishes, the fifth never starts
    assert report.aborted and report.outcome is Outcome.FAILED and 3 <= len(report.failed) <= 4
    assert report.summary().startswith("the endpoint failed on every node (")
    assert len(fake.requests) - 3 == len(report.failed)  # one refused call per tried node
    assert sum(1 for n in store.tree(project).nodes.values() if n.status == "failed") == len(report.failed)


def test_a_coverage_reply_without_its_list_is_re_asked_not_read_as_complete(fake, store, project, llm):
    fake.push(Scripted(content=json.dumps({"open_ended": False}), step="coverage"),
              Scripted(content=coverage(["topic D"]), step="coverage"))
    report = build(store, project, llm, depth=1)
    assert kids(store, project) == ["topic A", "topic B", "topic C", "topic D"]
    assert "new_values: Field required" in coverage_errors(store)[0]
    assert report.outcome is Outcome.COMPLETE and store.tree(project).root.note is None


@pytest.mark.parametrize("bad, reason", [
    (coverage(['=HYPERLINK("http://x.test")', "topic D"]), "spreadsheet formula"),
    (coverage(["<img src=x onerror=alert(1)>"]), "HTML"),
    (coverage(["Other"]), "catch-all"),
    (coverage(["Topic A", "topic b."]), "every proposed value repeats one already listed"),
    (coverage([], open_ended=True), '"open_ended" is true but "new_values" is empty'),
])
def test_coverage_values_that_break_the_rules_are_re_asked_with_the_reason(fake, store, project, llm, bad, reason):
    fake.push(Scripted(content=bad, step="coverage"), Scripted(content=coverage(["topic D"]), step="coverage"))
    report = build(store, project, llm, depth=1)
    assert reason in coverage_errors(store)[0]
    assert kids(store, project) == ["topic A", "topic B", "topic C", "topic D"]
    assert report.outcome is Outcome.COMPLETE and store.tree(project).root.note is None


def test_a_split_whose_coverage_still_drops_values_keeps_the_good_ones_and_carries_a_note(fake, store, project, llm):
    bad = coverage(['=HYPERLINK("http://x.test")', "Other", "topic D"])
    fake.push(*[Scripted(content=bad, step="coverage")] * 3)
    report = build(store, project, llm, depth=1)
    root = store.tree(project).root
    assert kids(store, project) == ["topic A", "topic B", "topic C", "topic D"]
    assert root.note.startswith("coverage incomplete: 2 proposed value(s) dropped (")
    assert "spreadsheet formula" in root.note and "catch-all" in root.note
    assert root.note.endswith("check that the values cover the space")
    assert report.outcome is Outcome.PARTIAL and report.flagged == {root.id: root.note}
    assert "1 split(s) flagged for review" in report.summary()


def test_a_coverage_step_that_never_answers_usably_leaves_a_note(fake, store, project, llm):
    fake.push(*[Scripted(content='{"new_values": "topic D"}', step="coverage")] * 3)
    report = build(store, project, llm, depth=1)
    root = store.tree(project).root
    assert kids(store, project) == ["topic A", "topic B", "topic C"]
    assert root.note.startswith("coverage incomplete: no usable coverage reply after 3 tries (")
    assert report.outcome is Outcome.PARTIAL


def test_a_coverage_call_that_fails_outright_leaves_a_note(fake, store, project):
    llm = LLM(fake.endpoint(max_retries=0), store, project)
    fake.push(Scripted(status=500, step="coverage"))
    report = build(store, project, llm, depth=1)
    root = store.tree(project).root
    assert root.note.startswith("coverage incomplete: the coverage call failed (") and "HTTP 500" in root.note
    assert report.outcome is Outcome.PARTIAL and kids(store, project) == ["topic A", "topic B", "topic C"]


def test_a_formula_dimension_is_never_salvaged(fake, store, project, llm):
    formula = json.dumps(criterion('=HYPERLINK("http://x.test","go")', ["a", "a", "b", "b"]))
    fake.push(*[Scripted(content=formula, step="criterion")] * 3)
    report = build(store, project, llm, depth=1)
    root = store.tree(project).root
    assert report.outcome is Outcome.FAILED and root.status == "failed" and "spreadsheet formula" in root.failure
    assert not store.tree(project).kids(root.id)


def test_a_lone_surrogate_in_a_pivot_is_re_asked_and_never_reaches_a_prompt(fake, store, project, llm):
    good = [{"question": f"Q{i}", "answer": f"A{i}"} for i in range(3)]
    reply = json.dumps({"samples": good})[:-2] + ', {"question": "bad \\ud800 text", "answer": "x"}]}'
    fake.push(Scripted(content=reply, step="pivots"))
    report = build(store, project, llm, depth=2)
    root = store.tree(project).root
    assert report.outcome is Outcome.COMPLETE and len(root.pivots) == 4
    later = [m["content"] for r in fake.requests if step_of(r) != "pivots" for m in r["messages"]]
    assert later and not any("\\ud800" in text or "\ud800" in text for text in later)  # no prompt carries it
    assert not store.query("select id from calls where valid = 1 and response like '%ud800%'")  # never cached


def test_an_over_long_pivot_is_dropped_counted_and_never_reaches_a_prompt(fake, store, project, llm):
    long = "x" * 25_000
    pivots = [{"question": f"Q{i}", "answer": f"A{i}"} for i in range(4)]
    pivots.insert(1, {"question": long, "answer": "A"})
    fake.push(Scripted(content=json.dumps({"samples": pivots}), step="pivots"))
    report = build(store, project, llm, depth=1)
    root = store.tree(project).root
    assert report.outcome is Outcome.COMPLETE
    assert [p["question"] for p in root.pivots] == ["Q0", "Q1", "Q2", "Q3"]  # refused whole, not truncated
    later = [m["content"] for r in fake.requests if step_of(r) != "pivots" for m in r["messages"]]
    assert later and not any("x" * 1000 in text for text in later)
    dropped = store.query("select dropped from calls where purpose = 'pivots'")[0]["dropped"]
    assert dropped == "sample 2: field 'question' has 25,000 characters (cap max_field_chars=20000)"
