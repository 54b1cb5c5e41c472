"""Generation through batch files (issue 10 part 5): request lines, the Batch API on the fake server, the fake
``vllm run-batch`` script, import (idempotent, any order, capped at quota), kills in the middle, cost, the CLI."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests import fake_run_batch
from tests.conftest import make_project
from tests.test_cli import cli, cli_env, command, refused, run_main, use_env
from treesynth_core import batch, batch_api, edits
from treesynth_core.errors import ConfigError, EndpointError, TreeSynthError
from treesynth_core.fakellm import FAKE_MODEL, BatchFaults, FakeModel, failed_line, run_batch
from treesynth_core.generate import generate
from treesynth_core.llm import LLM
from treesynth_core.outcome import Outcome
from treesynth_core.partition import build
from treesynth_core.store import Store

ROOT = Path(__file__).resolve().parent.parent
RUN_BATCH = ROOT / "tests" / "fake_run_batch.py"
FAULTS = BatchFaults(reverse=True, server_error_every=5, invalid_every=7, duplicate=True)


def built(store: Store, fake, **settings) -> int:
    """A project with a two-level tree (3 x 3 = 9 leaves) built on the fake server."""
    pid = make_project(store, **settings)
    report = build(store, pid, LLM(fake.endpoint(max_retries=0, timeout=5), store, pid), depth=2)
    assert report.outcome is Outcome.COMPLETE
    return pid


def read_lines(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def run_file(requests: Path, results: Path, *flags: str, model: str = FAKE_MODEL, first: int = 10**6,
             process: bool = False) -> None:
    """The fake `vllm run-batch` over a request file: the script in its own process, or (quicker) its main()
    in this one."""
    args = ["-i", str(requests), "-o", str(results), "--model", model, "--first-number", str(first), *flags]
    if process:
        subprocess.run([sys.executable, str(RUN_BATCH), *args], check=True, capture_output=True, timeout=60)
    else:
        assert fake_run_batch.main(args) == 0


def leaf_counts(store: Store, pid: int) -> dict[str, int]:
    return {leaf.id: store.live_count(leaf.id) for leaf in store.tree(pid).leaves()}


def assert_consistent(store: Store, pid: int) -> None:
    """0 lost, 0 duplicated: every sample comes from exactly one closed request line, each closed line's
    samples are all there, no pending line has a call or a sample, and no two samples share a fingerprint."""
    samples = store.samples(pid)
    assert len({s["norm_hash"] for s in samples}) == len(samples)
    calls = {c["id"]: c for c in store.query("select id, params, batch_id from calls where project_id = ? and "
                                             "batch_id is not null", [pid])}
    per_call = Counter(s["call_id"] for s in samples)
    requests = store.query("select * from batch_requests where project_id = ?", [pid])
    logged = Counter(json.loads(c["params"])["custom_id"] for c in calls.values())
    for r in requests:
        if r["state"] == "pending":
            assert logged[r["custom_id"]] == 0 and r["call_id"] is None
        else:
            assert logged[r["custom_id"]] == 1, r  # one call row per closed line, however often it was read
            assert per_call.get(r["call_id"], 0) == r["inserted"]
            assert json.loads(calls[r["call_id"]]["params"])["custom_id"] == r["custom_id"]
    assert sum(r["inserted"] for r in requests) == sum(per_call[c] for c in calls)


def finish_rounds(store: Store, pid: int, tmp_path: Path, quota: int, rounds: int = 4) -> int:
    """Export, run (fake run-batch, no faults) and import until every leaf has its quota; returns the rounds."""
    for n in range(1, rounds + 1):
        report = batch.export_requests(store, pid, tmp_path / f"finish{n}.jsonl", model=FAKE_MODEL)
        if not report.requests:
            assert set(leaf_counts(store, pid).values()) == {quota}
            return n - 1
        run_file(tmp_path / f"finish{n}.jsonl", tmp_path / f"finish{n}.out.jsonl", first=10**7 * n)
        batch.import_file(store, pid, tmp_path / f"finish{n}.out.jsonl")
    raise AssertionError("the leaves did not fill")


# ----------------------------------------------------------------------------- export


def test_request_lines_have_the_openai_batch_shape(fake, store, tmp_path):
    pid = built(store, fake, per_leaf=7, samples_per_call=3)
    report = batch.export_requests(store, pid, tmp_path / "req.jsonl", model="my-model", temperature=0.4)
    lines = read_lines(tmp_path / "req.jsonl")
    leaves = {leaf.id for leaf in store.tree(pid).leaves()}
    assert report.requests == len(lines) == 9 * 3 and report.samples == 63 and report.leaves == 9
    assert report.round == 1 and report.files == [str(tmp_path / "req.jsonl")]
    counts = Counter()
    for line in lines:
        project, leaf, unit, round_no = line["custom_id"].split(":")
        assert (int(project), int(round_no)) == (pid, 1) and leaf in leaves
        assert line["method"] == "POST" and line["url"] == "/v1/chat/completions"
        body = line["body"]
        assert body["model"] == "my-model" and body["temperature"] == 0.4 and body["max_tokens"] == 1024
        assert isinstance(body["seed"], int)
        count = int(body["messages"][1]["content"].split("Count: ")[1].split("\n")[0])
        schema = body["response_format"]["json_schema"]["schema"]
        assert body["response_format"]["type"] == "json_schema"
        assert schema["properties"]["samples"]["minItems"] == schema["properties"]["samples"]["maxItems"] == count
        assert schema["properties"]["samples"]["items"]["required"] == ["question", "answer"]
        counts[leaf] += count
        assert int(unit) < 3
    assert set(counts.values()) == {7}  # 3 + 3 + 1 per leaf
    assert len({line["custom_id"] for line in lines}) == len(lines)
    [record] = store.batches(pid)
    assert record["state"] == "exported" and record["lines"] == 27 and record["samples"] == 63
    assert store.pending_batch_samples(pid) == dict.fromkeys(leaves, 7)


@pytest.mark.parametrize("kind, expected", [("json_object", {"type": "json_object"}), ("none", None)])
def test_other_response_formats(fake, store, tmp_path, kind, expected):
    pid = built(store, fake, per_leaf=1)
    batch.export_requests(store, pid, tmp_path / "req.jsonl", response_format=kind)
    assert {json.dumps(line["body"].get("response_format")) for line in read_lines(tmp_path / "req.jsonl")} == {
        json.dumps(expected)}


def test_infinite_draws_are_frozen_into_the_line_and_reach_the_samples(fake, store, tmp_path):
    pid = built(store, fake, per_leaf=6, samples_per_call=1)
    tree = store.tree(pid)
    leaf = tree.leaves()[0]
    store.update_node(leaf.id, infinite=1, values=[f"city {i}" for i in range(40)])
    batch.export_requests(store, pid, tmp_path / "req.jsonl", model=FAKE_MODEL)
    drawn = {}
    for line in read_lines(tmp_path / "req.jsonl"):
        if line["custom_id"].split(":")[1] == leaf.id:
            attributes = json.loads(store.batch_request(line["custom_id"])["attributes"])
            assert attributes[-1][1].startswith("city ")
            assert f"- {attributes[-1][0]}: {attributes[-1][1]}" in line["body"]["messages"][1]["content"]
            drawn[line["custom_id"]] = attributes
    assert len(drawn) == 6 and len({json.dumps(a) for a in drawn.values()}) > 1  # fresh draws per line
    run_file(tmp_path / "req.jsonl", tmp_path / "res.jsonl")
    batch.import_file(store, pid, tmp_path / "res.jsonl")
    for sample in store.samples(pid, node_ids=[leaf.id]):
        custom_id = json.loads(store.query("select params from calls where id = ?", [sample["call_id"]])[0]
                               ["params"])["custom_id"]
        assert sample["drawn"] == drawn[custom_id]
        assert sample["drawn"][-1][1] in sample["data"]["question"]  # the fake wrote about the frozen draw


def test_files_are_split_at_the_line_and_byte_caps(fake, store, tmp_path):
    pid = built(store, fake, per_leaf=2, samples_per_call=1)
    report = batch.export_requests(store, pid, tmp_path / "req.jsonl", max_lines=5)
    assert [Path(f).name for f in report.files] == [f"req.part00{i}.jsonl" for i in range(1, 5)]
    assert [len(read_lines(f)) for f in report.files] == [5, 5, 5, 3]
    assert not (tmp_path / "req.jsonl").exists()
    records = sorted(store.batches(pid), key=lambda r: r["part"])
    assert [r["part"] for r in records] == [1, 2, 3, 4] and {r["round"] for r in records} == {1}
    for record in records:  # each line is recorded against the file that holds it
        for line in read_lines(record["path"]):
            assert store.batch_request(line["custom_id"])["batch_id"] == record["id"]
    size = max(len(line) for line in (tmp_path / "req.part001.jsonl").read_bytes().splitlines(keepends=True))
    report = batch.export_requests(store, pid, tmp_path / "big.jsonl", per_leaf=4, max_bytes=3 * size + 10)
    assert all(os.path.getsize(f) <= 3 * size + 10 for f in report.files) and len(report.files) >= 3
    assert sum(len(read_lines(f)) for f in report.files) == report.requests == 18
    with pytest.raises(ConfigError, match="more than a batch file may hold"):
        batch.export_requests(store, pid, tmp_path / "tiny.jsonl", per_leaf=6, max_bytes=100)
    assert not list(tmp_path.glob("tiny*")) and not list(tmp_path.glob(".tiny*"))  # nothing left behind
    assert store.next_batch_round(pid) == 3  # the refused export recorded nothing


def test_lines_out_are_not_asked_for_again_until_imported_or_cancelled(fake, store, tmp_path):
    pid = built(store, fake, per_leaf=4, samples_per_call=2)
    first = batch.export_requests(store, pid, tmp_path / "r1.jsonl")
    again = batch.export_requests(store, pid, tmp_path / "r2.jsonl")
    assert again.requests == 0 and again.pending == 36 and not (tmp_path / "r2.jsonl").exists()
    assert "still out in earlier batch files" in again.summary()
    with pytest.raises(ConfigError, match="would replace the request file of batch"):
        batch.export_requests(store, pid, tmp_path / "r1.jsonl", per_leaf=6)
    assert "18 pending request line(s) released" in batch_api.cancel(store, pid, first.batch_ids[0])
    second = batch.export_requests(store, pid, tmp_path / "r2.jsonl")
    assert second.requests == 18 and second.round == 2 and second.pending == 0
    run_file(tmp_path / "r1.jsonl", tmp_path / "late.jsonl")
    late = batch.import_file(store, pid, tmp_path / "late.jsonl")  # results of a cancelled file are ignored
    assert late.ignored == 18 and late.inserted == 0 and store.samples(pid) == []
    assert "18 of released lines (ignored)" in late.summary()


def test_generate_does_not_pay_again_for_samples_out_in_batch_files(fake, store, tmp_path):
    from treesynth_core.fakellm import step_of
    from treesynth_core.generate import plan_generation

    pid = built(store, fake, per_leaf=4, samples_per_call=2)
    batch.export_requests(store, pid, tmp_path / "r1.jsonl", model=FAKE_MODEL)
    plan = plan_generation(store, pid)
    assert plan.missing == 0 and plan.awaited == 36 and plan.calls == 0
    asked = len(fake.requests)
    report = generate(store, pid, LLM(fake.endpoint(), store, pid))
    assert report.outcome is Outcome.COMPLETE and report.inserted == 0 and report.awaited == 36
    assert len(fake.requests) == asked and "36 sample(s) out in batch files were not asked for" in report.summary()
    plan = plan_generation(store, pid, per_leaf=6)  # a larger quota: only the difference
    assert (plan.missing, plan.awaited, plan.calls) == (18, 36, 9)
    run_file(tmp_path / "r1.jsonl", tmp_path / "res.jsonl")
    assert batch.import_file(store, pid, tmp_path / "res.jsonl").inserted == 36  # generate left them room
    assert plan_generation(store, pid).awaited == 0
    report = generate(store, pid, LLM(fake.endpoint(), store, pid), per_leaf=6)
    assert report.inserted == 18 and report.awaited == 0 and set(leaf_counts(store, pid).values()) == {6}
    assert [step_of(r) for r in fake.requests[asked:]].count("samples") == 9


def test_released_lines_are_missing_again_for_generate(fake, store, tmp_path):
    from treesynth_core.generate import plan_generation

    pid = built(store, fake, per_leaf=2, samples_per_call=2)
    first = batch.export_requests(store, pid, tmp_path / "r1.jsonl")
    assert plan_generation(store, pid).missing == 0
    batch_api.cancel(store, pid, first.batch_ids[0])
    plan = plan_generation(store, pid)
    assert plan.missing == 18 and plan.awaited == 0


def test_cli_generate_plans_around_the_samples_out_in_batch_files(fake, store, tmp_path, capsys, monkeypatch):
    pid = built(store, fake, per_leaf=2, samples_per_call=2)
    use_env(monkeypatch, fake.base_url)
    assert run_main(capsys, "batch", "export", "--db", store.path)[0] == 0
    asked = len(fake.requests)
    code, out, _ = run_main(capsys, "generate", "--db", store.path)
    assert code == 0 and out.startswith("plan: 9 leaves, 0 samples missing (18 more out in batch files, not asked "
                                        "for again), 0 calls")
    assert "nothing missing: every selected leaf has its quota or has its missing samples out in batch files" in out
    code, out, _ = run_main(capsys, "generate", "--db", store.path, "--per-leaf", "3")
    assert code == 0 and "9 new sample(s)" in out and "18 sample(s) out in batch files were not asked for" in out
    assert len(fake.requests) == asked + 9 and set(leaf_counts(store, pid).values()) == {1}


def test_export_refuses_no_leaves_and_bad_options(fake, store, tmp_path):
    pid = make_project(store)
    with pytest.raises(TreeSynthError, match="the root has not been split yet"):
        batch.export_requests(store, pid, tmp_path / "req.jsonl")
    pid = built(store, fake)
    with pytest.raises(ConfigError, match="per_leaf must be"):
        batch.export_requests(store, pid, tmp_path / "req.jsonl", per_leaf=10**6)
    with pytest.raises(ConfigError, match="response format"):
        batch.export_requests(store, pid, tmp_path / "req.jsonl", response_format="xml")
    with pytest.raises(ConfigError, match="is a directory"):
        batch.export_requests(store, pid, tmp_path)
    assert store.batches(pid) == []


# ----------------------------------------------------------------------------- the Batch API on the fake server


def test_round_trip_through_the_batch_api_with_faults(fake, store, tmp_path):
    """Results reversed, every 5th line a 500 (error file), every 7th an unusable body, one line twice: round 1
    is partial, its failed lines go into round 2's file, and round 2 fills every leaf exactly to its quota."""
    pid = built(store, fake, per_leaf=10, samples_per_call=2)
    endpoint = fake.endpoint()
    fake.batch_faults = FAULTS
    started = time.perf_counter()
    first = batch.export_requests(store, pid, tmp_path / "r1.jsonl", model=FAKE_MODEL)
    submitted = batch_api.submit(store, pid, endpoint)
    assert first.requests == 45 and len(fake.batches) == 1 and "submitted as batch_" in submitted.lines[0]
    remote = next(iter(fake.batches.values()))
    assert remote["metadata"] == {"treesynth": store.batch(first.batch_ids[0])["token"]}
    running = batch_api.poll(store, pid, endpoint)
    assert running.running == 1 and running.imported is None and "in_progress 0/45 done" in running.lines[0]
    done = batch_api.poll(store, pid, endpoint)
    report = done.imported
    failed, unusable = 45 // 5, len([n for n in range(1, 46) if n % 7 == 0 and n % 5])
    assert (report.failed, report.invalid, report.repeated) == (failed, unusable, 1)
    assert report.done == 45 - failed - unusable and report.inserted == 2 * report.done
    assert report.outcome is Outcome.PARTIAL and sum(report.short.values()) == 2 * (failed + unusable)
    record = store.batch(first.batch_ids[0])
    assert record["state"] == "imported" and record["remote_status"] == "completed"
    assert Path(record["output_path"]).is_file() and Path(record["error_path"]).is_file()
    errors = read_lines(record["error_path"])  # the 500s, and the repeated line: line 45 (reversed: first), a 500
    assert len(errors) == failed + 1 and all(map(failed_line, errors))
    assert_consistent(store, pid)

    fake.batch_faults = BatchFaults()
    second = batch.export_requests(store, pid, tmp_path / "r2.jsonl", model=FAKE_MODEL)
    assert second.round == 2 and second.requests == failed + unusable  # exactly the failed lines, re-queued
    batch_api.submit(store, pid, endpoint)
    batch_api.poll(store, pid, endpoint)
    final = batch_api.poll(store, pid, endpoint).imported
    wall = time.perf_counter() - started
    assert final.outcome is Outcome.COMPLETE and final.summary().startswith(f"{second.requests} result line(s)")
    assert set(leaf_counts(store, pid).values()) == {10}
    assert_consistent(store, pid)
    assert batch.export_requests(store, pid, tmp_path / "r3.jsonl").requests == 0
    calls = store.batch_usage(pid)
    assert calls["calls"] == 45 + second.requests and calls["prompt_tokens"] > 0 and calls["completion_tokens"] > 0
    print(f"\nbatch round trip on the fake: {first.requests} requests, {failed + unusable} failed lines re-queued in "
          f"round 2, {fake.batch_lines} lines run, {wall:.2f}s wall")


def test_import_twice_and_duplicate_lines_are_no_ops(fake, store, tmp_path):
    pid = built(store, fake, per_leaf=4, samples_per_call=2)
    batch.export_requests(store, pid, tmp_path / "req.jsonl", model=FAKE_MODEL)
    run_file(tmp_path / "req.jsonl", tmp_path / "res.jsonl", "--reverse", "--duplicate")
    first = batch.import_file(store, pid, tmp_path / "res.jsonl")
    assert (first.lines, first.done, first.repeated, first.inserted) == (19, 18, 1, 36)
    assert first.outcome is Outcome.COMPLETE
    before = store.samples(pid)
    again = batch.import_file(store, pid, tmp_path / "res.jsonl")
    assert (again.repeated, again.done, again.inserted) == (19, 0, 0) and again.outcome is Outcome.COMPLETE
    assert "19 already imported (no-op)" in again.summary()
    assert store.samples(pid) == before and set(leaf_counts(store, pid).values()) == {4}
    assert_consistent(store, pid)


def test_a_killed_submit_finds_its_batch_again_and_nothing_is_lost(fake, store, tmp_path, capsys, monkeypatch):
    """SIGKILL while the create call is in flight (the batch exists remotely, its id is not stored), then
    submit and poll in new processes: one remote batch, 0 lost, 0 duplicated, every leaf exactly at quota."""
    pid = built(store, fake, per_leaf=6, samples_per_call=2)
    batch.export_requests(store, pid, tmp_path / "req.jsonl", model=FAKE_MODEL)
    db, env = store.path, cli_env(fake.base_url)
    fake.batch_create_delay, fake.batch_faults = 30, FAULTS
    proc = subprocess.Popen(command("batch", "submit", "--db", db), env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not fake.batches and time.monotonic() < deadline:
        time.sleep(0.02)
    assert fake.batches, "the submit never reached the create call"
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    fake.batch_create_delay = 0
    [record] = store.batches(pid)
    assert record["state"] == "submitting" and record["input_file_id"] and record["remote_id"] is None
    use_env(monkeypatch, fake.base_url)  # the next commands run in this process: the kill is what needed one
    code, out, _ = run_main(capsys, "batch", "submit", "--db", db)
    assert code == 0 and "found again as batch_" in out and len(fake.batches) == 1 and len(fake.files) == 1
    code, out, err = run_main(capsys, "batch", "poll", "--db", db, "--wait", "--interval", "1")
    assert code == 3 and "warning: partial import" in err and "still short" in out
    assert_consistent(store, pid)
    fake.batch_faults = BatchFaults()
    code, out, _ = run_main(capsys, "batch", "export", "--db", db, "--out", tmp_path / "r2.jsonl")
    assert code == 0 and "round 2:" in out
    assert run_main(capsys, "batch", "submit", "--db", db)[0] == 0
    code, out, err = run_main(capsys, "batch", "poll", "--db", db, "--wait", "--interval", "1")
    assert code == 0 and "in_progress" in out and "completed, downloaded" in out, err
    assert set(leaf_counts(store, pid).values()) == {6}
    assert_consistent(store, pid)


def test_a_killed_import_resumes_with_nothing_lost_or_duplicated(fake, store, tmp_path):
    pid = built(store, fake, per_leaf=300, samples_per_call=2)
    batch.export_requests(store, pid, tmp_path / "req.jsonl", model=FAKE_MODEL)
    run_file(tmp_path / "req.jsonl", tmp_path / "res.jsonl", "--reverse", "--duplicate", "--server-error-every",
             "11", "--invalid-every", "13", process=True)
    db, env = store.path, cli_env(fake.base_url)
    proc = subprocess.Popen(command("batch", "import", "--db", db, "--file", tmp_path / "res.jsonl"), env=env,
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen, deadline = 0, time.monotonic() + 60
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as reader:
        while seen == 0 and time.monotonic() < deadline and proc.poll() is None:
            seen = reader.execute("select count(*) from samples").fetchone()[0]
            time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert proc.returncode == -signal.SIGKILL, "the import finished before it could be killed"
    assert_consistent(store, pid)
    closed = store.query("select count(*) as n from batch_requests where state != 'pending'")[0]["n"]
    assert 0 < closed < 1350, closed  # killed in the middle
    result = cli("batch", "import", "--db", db, "--file", tmp_path / "res.jsonl", env=env, cwd=tmp_path)
    assert result.returncode == 3, result.stderr  # the 500s and unusable lines make it partial
    assert_consistent(store, pid)
    assert store.query("select count(*) as n from batch_requests where state = 'pending'")[0]["n"] == 0
    assert finish_rounds(store, pid, tmp_path, 300) == 1
    assert_consistent(store, pid)


def test_import_caps_at_the_quota_when_generate_filled_the_leaves_meanwhile(fake, store, tmp_path):
    pid = built(store, fake, per_leaf=4, samples_per_call=2)
    batch.export_requests(store, pid, tmp_path / "req.jsonl", model=FAKE_MODEL)
    edits.prune(store, store.tree(pid).leaves()[0].id)
    # a larger quota meanwhile: generate asks for 7 less the 4 out in the file, so each live leaf gets 3
    generate(store, pid, LLM(fake.endpoint(), store, pid), per_leaf=7)
    assert set(leaf_counts(store, pid).values()) == {3}
    run_file(tmp_path / "req.jsonl", tmp_path / "res.jsonl")
    report = batch.import_file(store, pid, tmp_path / "res.jsonl")
    assert report.invalid == 2 and "the leaf was pruned after the export" in report.errors[0]
    assert report.inserted == 8 and report.over_quota == 8 * 4 - 8  # one per live leaf fits
    assert set(leaf_counts(store, pid).values()) == {4}
    notes = [c["dropped"] for c in store.call_log(pid, limit=100) if c["dropped"]]
    assert any("beyond the leaf's quota" in n for n in notes)


def test_an_expired_batch_closes_its_unanswered_lines_and_the_next_round_asks_again(fake, store, tmp_path):
    pid = built(store, fake, per_leaf=2, samples_per_call=2)
    endpoint = fake.endpoint()
    first = batch.export_requests(store, pid, tmp_path / "r1.jsonl", model=FAKE_MODEL)
    batch_api.submit(store, pid, endpoint)
    remote = next(iter(fake.batches.values()))
    remote.update(status="expired", errors={"object": "list", "data": [
        {"code": "batch_expired", "message": "the batch did not complete within 24h"}]})
    report = batch_api.poll(store, pid, endpoint)
    assert "expired: the batch did not complete within 24h, downloaded no result file" in report.lines[0]
    assert report.imported.lost == 9 and report.outcome is Outcome.FAILED
    assert "9 request(s) had no result when their batch ended" in report.imported.summary()
    assert sum(report.imported.short.values()) == 18
    assert store.batch(first.batch_ids[0])["state"] == "imported"
    assert {r["note"] for r in store.query("select note from batch_requests")} == {
        "no result line when the batch ended (expired: the batch did not complete within 24h)"}
    assert batch.export_requests(store, pid, tmp_path / "r2.jsonl").requests == 9
    assert batch_api.poll(store, pid, endpoint).lines == []  # nothing submitted is left to poll


def test_cancel_stops_a_running_batch_at_the_provider_and_releases_its_lines(fake, store, tmp_path):
    pid = built(store, fake, per_leaf=2, samples_per_call=2)
    first = batch.export_requests(store, pid, tmp_path / "r1.jsonl")
    batch_api.submit(store, pid, fake.endpoint())
    with pytest.raises(ConfigError, match="is running at the provider"):
        batch_api.cancel(store, pid, first.batch_ids[0])
    assert "9 pending request line(s) released" in batch_api.cancel(store, pid, first.batch_ids[0], fake.endpoint())
    assert next(iter(fake.batches.values()))["status"] == "cancelled"
    assert store.batch(first.batch_ids[0])["state"] == "cancelled" and store.pending_batch_samples(pid) == {}
    assert batch_api.poll(store, pid, fake.endpoint()).lines == []


def test_submit_to_an_endpoint_without_the_batch_api_says_what_to_do(fake, store, tmp_path):
    class NotFound(BaseHTTPRequestHandler):
        def do_GET(self):
            self._nothing()

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self._nothing()

        def _nothing(self):
            data = b'{"error": {"message": "Not Found", "type": "invalid_request_error"}}'
            self.send_response(404)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    pid = built(store, fake, per_leaf=1)
    batch.export_requests(store, pid, tmp_path / "req.jsonl")
    server = ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        endpoint = fake.endpoint(base_url=f"http://127.0.0.1:{server.server_address[1]}/v1")
        with pytest.raises(EndpointError, match="has no Files API") as caught:
            batch_api.submit(store, pid, endpoint)
        assert "vllm run-batch" in caught.value.hint
    finally:
        server.shutdown()
        server.server_close()


def test_cost_uses_the_batch_price_factor(fake, store, tmp_path):
    pid = built(store, fake, per_leaf=2, samples_per_call=2, price_input_per_m=1.0, price_output_per_m=4.0,
                batch_price_factor=0.5)
    plan_cost = batch.export_requests(store, pid, tmp_path / "req.jsonl", model=FAKE_MODEL)
    assert plan_cost.cost == pytest.approx((plan_cost.prompt_tokens + 4 * plan_cost.completion_tokens) / 1e6 * 0.5)
    run_file(tmp_path / "req.jsonl", tmp_path / "res.jsonl")
    batch.import_file(store, pid, tmp_path / "res.jsonl")
    everything, batched = store.usage(pid), store.batch_usage(pid)
    live_in = everything["prompt_tokens"] - batched["prompt_tokens"]
    live_out = everything["completion_tokens"] - batched["completion_tokens"]
    expected = (live_in + 4 * live_out) / 1e6 + (batched["prompt_tokens"] + 4 * batched["completion_tokens"]) / 2e6
    assert batched["calls"] == 9 and batch.project_cost(store, pid) == pytest.approx(expected)
    batch.set_price_factor(store, pid, 0.25)
    assert store.project(pid).settings.batch_price_factor == 0.25
    with pytest.raises(Exception, match="less than or equal to 10"):
        batch.set_price_factor(store, pid, 11)
    assert batch.project_cost(store, make_project(store)) is None  # no prices: unknown, never guessed


# ----------------------------------------------------------------------------- the run-batch script and the CLI


def test_failure_reasons_are_read_from_every_shape_of_error_line(fake, store, tmp_path):
    pid = built(store, fake, per_leaf=4, samples_per_call=1)
    batch.export_requests(store, pid, tmp_path / "req.jsonl")
    ids = [line["custom_id"] for line in read_lines(tmp_path / "req.jsonl")]
    shapes = [  # OpenAI's error file, vLLM's ErrorResponse (flat and nested), an engine error with no response
        {"response": {"status_code": 500, "body": {"error": {"message": "openai said no", "type": "server_error"}}}},
        {"response": {"status_code": 400, "body": None},
         "error": {"object": "error", "message": "vllm flat", "type": "BadRequestError", "code": 400}},
        {"response": {"status_code": 400, "body": None}, "error": {"error": {"message": "vllm nested", "code": 400}}},
        {"response": None, "error": {"code": "batch_expired", "message": "expired before it ran"}},
        {"response": {"status_code": 200, "body": {"choices": [{"message": {"content": '{"samples": []}'},
                                                                "finish_reason": "stop"}]}}},
        {"response": {"status_code": 200, "body": {"choices": [{"message": {"content": "{}"},
                                                                "finish_reason": "length"}]}}},
    ]
    lines = [json.dumps({"id": f"r{i}", "custom_id": ids[i], **shape}) for i, shape in enumerate(shapes)]
    report = batch.import_lines(store, pid, lines)
    assert (report.failed, report.invalid, report.done) == (4, 2, 0) and report.outcome is Outcome.FAILED
    notes = [store.batch_request(i)["note"] for i in ids[:6]]
    assert notes[:4] == ["HTTP 500: openai said no", "HTTP 400: vllm flat", "HTTP 400: vllm nested",
                         "HTTP -: expired before it ran"]
    assert "expected shape" in notes[4] and notes[5] == "the reply was cut off at max_tokens"
    failed = store.failed_calls(pid)
    assert len(failed) == 6 and {c["purpose"] for c in failed} == {"samples"}  # in the call log with the reason


def test_the_fake_run_batch_script_keeps_vllms_contract(tmp_path):
    model = FakeModel()
    body = {"model": "m", "messages": [
        {"role": "system", "content": "Each sample is a JSON object with these string fields:\n- q: x\nStep: samples"},
        {"role": "user", "content": "Subspace: the whole task\n\nCount: 2\n"}]}
    requests = [{"custom_id": f"c{i}", "method": "POST", "url": "/v1/chat/completions",
                 "body": {**body, "model": "m" if i else "other"}} for i in range(3)]
    (tmp_path / "req.jsonl").write_text("".join(json.dumps(r) + "\n" for r in requests))
    run_file(tmp_path / "req.jsonl", tmp_path / "res.jsonl", model="m", process=True)
    lines = read_lines(tmp_path / "res.jsonl")
    assert [line["custom_id"] for line in lines] == ["c0", "c1", "c2"]  # input order, one line each
    assert lines[0]["response"]["status_code"] == 404 and "does not exist" in lines[0]["error"]
    content = json.loads(lines[1]["response"]["body"]["choices"][0]["message"]["content"])
    assert len(content["samples"]) == 2 and set(content["samples"][0]) == {"q"}
    assert lines[1]["response"]["body"]["usage"]["completion_tokens"] > 0
    assert len(run_batch([json.dumps(r) for r in requests], model.default_reply,
                         BatchFaults(duplicate=True))) == 4


def test_cli_export_import_and_exit_codes(fake, store, tmp_path, capsys, monkeypatch):
    pid = built(store, fake, per_leaf=2, samples_per_call=2)
    db = store.path
    use_env(monkeypatch, fake.base_url)
    assert run_main(capsys, "batch", "list", "--db", db)[:2] == (
        0, "no batch files yet: `batch export` writes the first round\n")
    code, out, _ = run_main(capsys, "batch", "export", "--db", db)
    assert code == 0 and "round 1: 9 request line(s)" in out
    request = batch.request_path(batch.default_folder(db), pid, 1)
    assert request.is_file() and request.parent.name == "test-batches"
    run_file(request, tmp_path / "bad.jsonl", "--server-error-every", "1")
    code, _, err = run_main(capsys, "batch", "import", "--db", db, "--file", tmp_path / "bad.jsonl")
    assert code == 2 and "\nerror: import failed: 9 result line(s): 0 used, 9 failed" in err
    code, out, _ = run_main(capsys, "batch", "list", "--db", db)
    assert code == 0 and "#1 round 1 part 1: imported, 9 lines: 0 used, 9 failed, 0 pending" in out
    code, _, _ = run_main(capsys, "batch", "export", "--db", db, "--out", tmp_path / "r2.jsonl")
    run_file(tmp_path / "r2.jsonl", tmp_path / "mixed.jsonl", "--server-error-every", "3")
    code, out, err = run_main(capsys, "batch", "import", "--db", db, "--file", tmp_path / "mixed.jsonl")
    assert code == 3 and "6 used, 3 failed" in out and "warning: partial import" in err
    batch.export_requests(store, pid, tmp_path / "r3.jsonl", model=FAKE_MODEL)
    run_file(tmp_path / "r3.jsonl", tmp_path / "good.jsonl")
    code, out, _ = run_main(capsys, "batch", "import", "--db", db, "--file", tmp_path / "good.jsonl")
    assert code == 0 and "3 used, 0 failed" in out
    with open(tmp_path / "junk.jsonl", "w") as junk:
        junk.write('not json\n{"custom_id": "9:x:0:1", "response": null}\n')
    code, _, err = run_main(capsys, "batch", "import", "--db", db, "--file", tmp_path / "junk.jsonl")
    assert code == 2 and "1 not of this project, 1 unreadable" in err
    assert set(leaf_counts(store, pid).values()) == {2}


def test_a_request_file_is_refused_as_results_and_nothing_changes(fake, store, tmp_path, capsys, monkeypatch):
    pid = built(store, fake, per_leaf=2, samples_per_call=2)
    use_env(monkeypatch, fake.base_url)
    request = tmp_path / "req.jsonl"
    batch.export_requests(store, pid, request, model=FAKE_MODEL)
    calls = store.usage(pid)["calls"]
    code, out, err = run_main(capsys, "batch", "import", "--db", store.path, "--file", request)
    assert code == 2 and out == "" and len(err.splitlines()) == 1
    assert err.startswith("error: this is a request file, not a results file (import the results")
    assert [r["state"] for r in batch.records(store, pid)] == ["exported"]
    assert store.pending_batch_samples(pid) == dict.fromkeys(leaf_counts(store, pid), 2)
    assert store.usage(pid)["calls"] == calls
    with pytest.raises(ConfigError, match="this is a request file"):
        batch.import_lines(store, pid, [b"\n"] + request.read_bytes().splitlines(keepends=True))
    # a stray request line among results is skipped: its request stays out, it is not marked failed
    run_file(request, tmp_path / "res.jsonl")
    lines = (tmp_path / "res.jsonl").read_text().splitlines()
    stray = request.read_text().splitlines()[0]
    others = [line for line in lines if json.loads(line)["custom_id"] != json.loads(stray)["custom_id"]]
    mixed = others[:1] + [stray] + others[1:]
    report = batch.import_lines(store, pid, mixed)
    assert report.unreadable == 1 and report.failed == 0 and "is a request line, not a result" in report.errors[0]
    assert sum(store.pending_batch_samples(pid).values()) == 2  # the stray line's request: still out


def test_cli_refuses_bad_batch_options_in_one_line(fake, store, tmp_path, capsys, monkeypatch):
    built(store, fake)
    db = store.path
    refused(cli("batch", "import", "--db", db, "--file", tmp_path / "nope.jsonl", env=cli_env(fake.base_url),
                cwd=tmp_path), "does not exist")  # one real process; the rest in this one
    use_env(monkeypatch, fake.base_url)
    for args, message in [(("export", "--out", tmp_path), "is a directory"),
                          (("export", "--out", db), "is the database itself"),
                          (("export", "--response-format", "xml"), "invalid choice"),
                          (("export", "--max-lines", "50001"), "--max-lines"),
                          (("cancel", "--batch", "7"), "batch 7 does not exist"),
                          (("poll", "--interval", "0"), "--interval")]:
        code, _, err = run_main(capsys, "batch", args[0], "--db", db, *args[1:])
        assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
    use_env(monkeypatch)
    code, _, err = run_main(capsys, "batch", "submit", "--db", db)
    assert code == 2 and "no endpoint is configured" in err
    assert store.batches(store.only_project_id()) == []
