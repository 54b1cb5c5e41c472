"""The one scheduler (scheduler.py) and the pipelined run over the fake server: a slow call stalls only its own
subtree and leaves, cancel and resume keep exact quotas, units in flight follow the LLM's window, expansions
read only their path, the call log stores each message once, and run's report, job and CLI agree."""

from __future__ import annotations

import json
import threading
import time

import pytest

from treesynth_core import cli, edits, jobs
from treesynth_core.errors import Cancelled
from treesynth_core.fakellm import FakeLLM, Scripted, step_of
from treesynth_core.generate import generate, run
from treesynth_core.llm import LLM
from treesynth_core.outcome import Outcome
from treesynth_core.partition import build
from treesynth_core.store import Store

from .conftest import make_project


def subspace(body: dict) -> str:
    user = next(m["content"] for m in body["messages"] if m["role"] == "user")
    return user.split("\n\n")[0]


def live(store, project) -> dict[str, int]:
    return {k: sum(v for s, v in c.items() if s != "rejected") for k, c in store.sample_counts(project).items()}


def leaves_under(tree, node_id) -> set[str]:
    return {n.id for n in tree.leaves(node_id)}


# ----------------------------------------------------------------------------- pipelining


def test_a_slow_call_stalls_only_its_own_subtree_and_leaves(fake, store):
    """One node's first call hangs: every other leaf is built and filled while it hangs (from timestamps)."""
    project = make_project(store, max_depth=3)
    # (the fake server queues 5 connects); no hedging: the slow call's twin would hang as long (same body), and
    # this is about the schedule (test_hedge.py has the stragglers)
    llm = LLM(fake.endpoint(max_retries=2, timeout=10), store, project, concurrency=4, hedge=False)
    build(store, project, llm, depth=1)
    root = store.tree(project).root
    slow_value = store.tree(project).kids(root.id)[0].value
    hang = 1.5
    seen: list[tuple[float, str, str]] = []  # (arrival, step, subspace)
    lock = threading.Lock()

    def delay(body: dict) -> float:
        step, where = step_of(body), subspace(body)
        with lock:
            seen.append((time.monotonic(), step, where))
        return hang if slow_first(step, where) else 0.02

    def slow_first(step: str, where: str) -> bool:  # the slow node's pivots call: its subspace is one attribute
        return step == "pivots" and where.count("\n- ") == 1 and f"- topic: {slow_value}\n" in where

    fake.delay_fn = delay
    started = time.monotonic()
    report = run(store, project, llm, depth=3, per_leaf=2, samples_per_call=2)
    wall = time.monotonic() - started
    tree = store.tree(project)
    slow = next(k for k in tree.kids(root.id) if k.value == slow_value)
    slow_leaves = leaves_under(tree, slow.id)
    fast_leaves = {n.id for n in tree.leaves()} - slow_leaves
    assert report.outcome is Outcome.COMPLETE, report.summary()
    assert len(fast_leaves) == 18 and len(slow_leaves) == 9
    assert live(store, project) == {leaf: 2 for leaf in fast_leaves | slow_leaves}

    hung_at = next(t for t, step, where in seen if slow_first(step, where))
    fast_samples = [t for t, step, where in seen if step == "samples" and f"topic: {slow_value}" not in where]
    slow_calls = [t for t, step, where in seen if f"topic: {slow_value}" in where and t > hung_at]
    assert len(fast_samples) == 18
    # every fast leaf was built and asked for its samples while the slow call still hung
    assert max(fast_samples) < hung_at + hang
    # and the slow subtree's own calls came only after it
    assert min(slow_calls) >= hung_at + hang - 0.05
    # the run took the slow chain (the hang plus the subtree's own calls), not the hang plus everything else
    assert wall < hang + 2.0


def test_run_fills_leaves_that_exist_at_once_and_grows_the_rest(fake, store):
    project = make_project(store, max_depth=2)
    llm = LLM(fake.endpoint(max_retries=2, timeout=5), store, project)
    build(store, project, llm, depth=1)
    kept, *grown = store.tree(project).kids(store.tree(project).root.id)
    edits.lock(store, kept.id)  # a locked node is never split: it stays a leaf, and is filled
    fake.requests.clear()
    fake.latency = 0.05
    report = run(store, project, llm, depth=2, per_leaf=3, samples_per_call=3)
    tree = store.tree(project)
    assert report.outcome is Outcome.COMPLETE and report.build.skipped_locked == [kept.id]
    assert sorted(report.build.expanded) == sorted(n.id for n in grown)
    assert live(store, project) == {leaf.id: 3 for leaf in tree.leaves()} and len(tree.leaves()) == 7
    # the locked leaf's call went out with the first expansions' calls: it did not wait for the build
    steps = [step_of(r) for r in fake.requests]
    assert steps.index("samples") < steps.index("criterion") and f"topic: {kept.value}" in subspace(
        fake.requests[steps.index("samples")])
    assert report.summary() == ("expanded 2 node(s), 0 failed; 21 new sample(s), 0 duplicate(s) and 0 invalid "
                                "dropped, 0 failed call(s)")


# ----------------------------------------------------------------------------- cancel, resume, exact quotas


def test_cancel_then_resume_keeps_exact_quotas(store):
    project = make_project(store, max_depth=2)
    with FakeLLM(latency=0.03) as fake:
        llm = LLM(fake.endpoint(max_retries=2, timeout=5), store, project, concurrency=4)
        stop = threading.Event()

        def progress(done: int, total: int) -> None:
            if sum(live(store, project).values()) >= 7:
                stop.set()

        with pytest.raises(Cancelled) as cancelled:
            run(store, project, llm, per_leaf=5, samples_per_call=2, on_progress=progress, should_stop=stop.is_set)
        report = cancelled.value.report
        made = sum(live(store, project).values())
        assert report.cancelled and report.outcome is Outcome.CANCELLED and report.generation.inserted == made
        assert 7 <= made < 45 and all(n <= 5 for n in live(store, project).values())
        again = run(store, project, llm, per_leaf=5, samples_per_call=2)
    tree = store.tree(project)
    assert again.outcome is Outcome.COMPLETE and again.generation.inserted == 45 - made
    assert live(store, project) == {leaf.id: 5 for leaf in tree.leaves()} and len(tree.leaves()) == 9
    hashes = [s["norm_hash"] for s in store.samples(project)]
    assert len(hashes) == len(set(hashes)) == 45


def test_concurrent_inserts_never_pass_a_quota(store, project):
    tree = store.tree(project)
    leaf = tree.root.id
    results = []

    def add(k: int) -> None:
        rows = [{"data": {"question": f"q{k}-{i}", "answer": "a"}, "norm_hash": f"{k}-{i}"} for i in range(10)]
        results.append(store.add_samples(project, leaf, rows, cap=25, call_id=None))

    threads = [threading.Thread(target=add, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.live_count(leaf) == 25 == sum(inserted for inserted, _ in results)
    dup_rows = [{"data": {"question": "x", "answer": "a"}, "norm_hash": h} for h in ("0-0", "new", "new")]
    assert store.add_samples(project, leaf, dup_rows, cap=None, call_id=None) == (1, 2)  # stored and in-batch


# ----------------------------------------------------------------------------- one window, bounded threads


def test_units_in_flight_follow_the_window_and_queued_units_hold_no_thread(store, project):
    edits.set_split(store, store.tree(project).root.id, "topic", [f"topic {i}" for i in range(6)])
    with FakeLLM(latency=0.02) as fake:
        in_flight = 0
        lock = threading.Lock()
        seen = []  # (requests at the server, the window's size, unit workers alive), at each request
        # no hedging: a hedge may go beyond the window by a spare slot (test_hedge.py)
        llm = LLM(fake.endpoint(max_retries=2, timeout=5), store, project, concurrency=4, hedge=False)

        def delay(body: dict) -> float:
            nonlocal in_flight
            with lock:
                in_flight += 1
                workers = sum(t.name.startswith("treesynth-unit") for t in threading.enumerate())
                seen.append((in_flight, llm.window.size, workers))
            time.sleep(0.02)
            with lock:
                in_flight -= 1
            return 0.0

        fake.delay_fn = delay
        report = generate(store, project, llm, per_leaf=60, samples_per_call=2)  # 180 calls queued
    assert report.outcome is Outcome.COMPLETE and report.inserted == 360
    assert max(n for n, _, _ in seen) >= 4  # the window was used
    assert all(n <= size for n, size, _ in seen)  # never more requests than the window (it grows after successes)
    # a worker per unit in flight: the window plus a quarter, never one per queued call
    assert all(workers <= size + max(1, size // 4) for _, size, workers in seen)
    assert max(workers for _, _, workers in seen) < 20
    # all end: idle workers are told to stop and are not joined one by one (a run's end does not wait for them)
    deadline = time.monotonic() + 5
    while [t for t in threading.enumerate() if t.name.startswith("treesynth-unit")] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not [t for t in threading.enumerate() if t.name.startswith("treesynth-unit")]


# ----------------------------------------------------------------------------- O(depth) expansion


def test_an_expansion_reads_its_path_not_the_tree(fake, store, monkeypatch):
    project = make_project(store, max_depth=3)
    llm = LLM(fake.endpoint(max_retries=2, timeout=5), store, project)
    whole_tree_reads = []
    real_tree = Store.tree

    def counted(self, project_id):
        whole_tree_reads.append(threading.current_thread().name)
        return real_tree(self, project_id)

    monkeypatch.setattr(Store, "tree", counted)
    report = run(store, project, llm, per_leaf=1, samples_per_call=1)
    assert report.outcome is Outcome.COMPLETE and len(report.build.expanded) == 13
    assert whole_tree_reads == ["MainThread"]  # once, to find where to start; never per expansion or call
    monkeypatch.undo()
    tree = store.tree(project)
    leaf = tree.leaves()[5]
    assert [n.id for n in store.node_path(leaf.id)] == [n.id for n in tree.path(leaf.id)]
    assert store.has_children(tree.root.id) and not store.has_children(leaf.id)


# ----------------------------------------------------------------------------- the call log


def test_each_distinct_message_is_logged_once_and_calls_read_back_what_was_sent(fake, store, project, llm):
    edits.set_split(store, store.tree(project).root.id, "topic", ["algebra", "geometry"])
    generate(store, project, llm, per_leaf=6, samples_per_call=2)
    calls = store.query("select id from calls where purpose = 'samples' order by id")
    assert len(calls) == 6 == len(fake.requests)
    logged = sorted(json.dumps(store.call_messages(c["id"])) for c in calls)  # calls run concurrently: any order
    assert logged == sorted(json.dumps(r["messages"]) for r in fake.requests)
    stored = store.query("select role, count(*) as n from call_messages group by role")
    assert {r["role"]: r["n"] for r in stored}["system"] == 1  # the system prompt, shared by every call
    assert store.query("select count(*) as n from calls where messages is not null")[0]["n"] == 0


# ----------------------------------------------------------------------------- one outcome: report, job, CLI


def test_a_run_with_a_failed_node_is_partial_with_its_counts(fake, store):
    project = make_project(store, max_depth=2)
    llm = LLM(fake.endpoint(max_retries=2, timeout=5), store, project, concurrency=1)
    build(store, project, llm, depth=1)
    bad = store.tree(project).kids(store.tree(project).root.id)[0]
    fake.fault_fn = lambda body: (Scripted(content="no JSON") if step_of(body) == "criterion"
                                  and f"topic: {bad.value}" in subspace(body) else None)
    report = run(store, project, llm, per_leaf=2, samples_per_call=2, concurrency=1)
    assert report.outcome is Outcome.PARTIAL and report.failed_count == 1 and list(report.build.failed) == [bad.id]
    assert report.generation.inserted == 12 and not report.generation.short  # the two good subtrees, full
    assert "expanded 2 node(s), 1 failed; 12 new sample(s)" in report.summary()
    assert report.summary().endswith("run the same command again to retry: it resumes")
    fake.fault_fn = None
    again = run(store, project, llm, per_leaf=2, samples_per_call=2)
    assert again.outcome is Outcome.COMPLETE and again.generation.inserted == 6
    assert live(store, project) == {leaf.id: 2 for leaf in store.tree(project).leaves()}


def test_a_run_whose_root_fails_is_failed(store, project):
    dead = FakeLLM().endpoint(base_url="http://127.0.0.1:9/v1", max_retries=0, timeout=2)
    report = run(store, project, LLM(dead, store, project), per_leaf=2)
    assert report.outcome is Outcome.FAILED and report.failed_count == 1 and not report.generation.inserted
    assert report.generation.no_leaves.startswith("the tree has no leaves: the root's split failed (could not "
                                                  "connect")
    assert report.summary().startswith("the tree has no leaves: the root's split failed")


def test_run_as_a_job_and_from_the_command_line(fake, store, project, tmp_path, capsys, monkeypatch):
    job_id = jobs.start_job(store.path, project, "run", {"depth": 1, "per_leaf": 2},
                            fake.endpoint(max_retries=2, timeout=5))
    jobs.wait(store.path, job_id, 20)
    job = jobs.get_job(store, job_id)
    assert job["status"] == "complete" and job["failed"] == 0 and job["kind"] == "run"
    assert job["done"] == job["total"] == 1 + 3 * 2  # one node expanded, three leaves of two samples
    assert job["message"].startswith("expanded 1 node(s), 0 failed; 6 new sample(s)")

    monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-fake-test-key-123456")
    monkeypatch.setenv("TREESYNTH_MODEL", "fake-model")
    code = cli.main(["run", "--db", store.path, "--depth", "2", "--per-leaf", "3", "--samples-per-call", "3"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "expanded 3 node(s), 0 failed; 27 new sample(s)" in out.out and "13 nodes and 9 leaves" in out.out
    counts = live(store, project)  # (the first job's depth-1 leaves keep their samples; they were split since)
    assert {leaf.id: counts.get(leaf.id) for leaf in store.tree(project).leaves()} == {
        leaf.id: 3 for leaf in store.tree(project).leaves()}
    fake.fault_fn = lambda body: Scripted(content="[]") if step_of(body) == "samples" else None
    code = cli.main(["run", "--db", store.path, "--depth", "2", "--per-leaf", "4", "--samples-per-call", "1"])
    out = capsys.readouterr()
    assert code == 2 and "error: run failed: expanded 0 node(s), 0 failed; 0 new sample(s)" in out.err
