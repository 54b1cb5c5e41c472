"""Every kind of malformed reply (tests/malformations.py) at 10%, 30% and 100% of the requests it can hit, through
a whole build (depth 2) and generate run as jobs on the fake server. Whatever comes out, the job rows tell the
truth: never "complete" when something failed, "failed" when nothing usable came out, every failed node with
its reason, no split that lost values without a note, and failed counts that match the store.

The table of outcomes is written to test-artifacts/malformation.md (and printed with -s).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from treesynth_core import jobs
from treesynth_core.fakellm import FakeLLM
from treesynth_core.outcome import Outcome
from treesynth_core.replies import load_json
from treesynth_core.store import Store
from treesynth_core.tree import dedupe_values, normalise

from .conftest import make_project
from .malformations import CATALOGUE, Injector

RATES = [0.1, 0.3, 1.0]
REASKS = 2
PER_LEAF = 2
ARTIFACT = Path(__file__).resolve().parent.parent / "test-artifacts" / "malformation.md"
RESULTS: dict[tuple[str, float], dict] = {}
GOOD_TREE: dict[str, dict] = {}  # kind -> generate on a clean tree with every samples reply spoiled


@pytest.fixture(scope="module", autouse=True)
def table():
    yield
    if not RESULTS:
        return
    head = ("| kind | rate | build | exit | generate | exit | nodes | failed nodes | notes | samples | "
            "failed calls |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
    rows = []
    for kind in CATALOGUE:
        for rate in RATES:
            r = RESULTS.get((kind.name, rate))
            if r:
                rows.append(f"| {kind.name} | {rate:.0%} | {r['build']} | {Outcome(r['build']).exit_code} | "
                            f"{r['generate']} | {Outcome(r['generate']).exit_code} | {r['nodes']} | "
                            f"{r['failed_nodes']} | {r['notes']} | {r['samples']} | {r['failed_calls']} |")
    if GOOD_TREE:
        rows.append("\n\nGenerate on a clean 13-node tree with every samples reply spoiled (the abort rule: 3 "
                    "failed calls before any success stop the run):\n\n| kind | generate | exit | samples | failed "
                    "calls | requests |\n|---|---|---|---|---|---|")
        for name, r in GOOD_TREE.items():
            rows.append(f"| {name} | {r['generate']} | {Outcome(r['generate']).exit_code} | {r['samples']} | "
                        f"{r['failed_calls']} | {r['requests']} |")
    text = ("# Malformation suite\n\nbuild --depth 2 (4 pivots, 3 values per split: 13 nodes when all goes well) "
            f"then generate --per-leaf {PER_LEAF} (9 leaves, 18 samples), as jobs, on the fake server with one "
            "kind of malformed reply served at the rate shown to the requests it can hit (seeded). Exit codes "
            "are the CLI's for that outcome (0 complete, 3 partial, 2 failed).\n\n" + head + "\n".join(rows) + "\n")
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    ARTIFACT.write_text(text)
    print("\n" + text)


def run_job(store: Store, project: int, kind: str, params: dict, endpoint) -> dict:
    job_id = jobs.create_job(store, project, kind, params)
    return jobs.run_job(store.path, job_id, endpoint)


def valid_replies(store: Store, node_id: str, purpose: str) -> list[dict]:
    rows = store.query("select response from calls where node_id = ? and purpose = ? and valid = 1 order by id",
                       [node_id, purpose])
    return [load_json(r["response"])[0] for r in rows]


def last_call_failed(store: Store, node_id: str, purpose: str) -> bool:
    rows = store.query("select valid from calls where node_id = ? and purpose = ? order by id desc limit 1",
                       [node_id, purpose])
    return bool(rows) and not rows[0]["valid"]


def failed_units(store: Store, job_id: int) -> int:
    """Generation calls that ended without a usable reply: a refused request ends its call at once; a
    malformed reply ends it on the last try."""
    return store.query(
        "select count(*) as n from calls where job_id = ? and purpose = 'samples' and valid = 0 "
        "and (response is null or attempt = ?)", [job_id, REASKS + 1])[0]["n"]


def check_splits(store: Store, project: int) -> None:
    """No split lost values without a note: an unflagged split has exactly the values of its valid criterion
    reply plus its valid coverage replies; a split whose criterion or coverage never got a valid reply is
    flagged."""
    tree = store.tree(project)
    for node in tree.nodes.values():
        kids = tree.kids(node.id)
        if not kids:
            continue
        criterion = valid_replies(store, node.id, "criterion")
        coverage_failed = last_call_failed(store, node.id, "coverage")
        if not criterion or coverage_failed:
            assert node.note, f"split of {tree.path_text(node.id)} lost its rule checks without a note"
            continue
        if node.note:
            continue
        expected = dedupe_values(criterion[-1]["labels"])
        for reply in valid_replies(store, node.id, "coverage"):
            expected += dedupe_values(reply["new_values"], existing=expected)
        assert [normalise(k.value) for k in kids] == [normalise(v) for v in expected], tree.path_text(node.id)


@pytest.mark.parametrize("rate", RATES, ids=lambda r: f"{r:.0%}")
@pytest.mark.parametrize("kind", CATALOGUE, ids=lambda k: k.name.replace(" ", "-"))
def test_malformed_replies_never_pass_for_success(tmp_path, kind, rate):
    with FakeLLM() as fake, Store(tmp_path / "m.db") as store:
        project = make_project(store, pivots=4, max_depth=2, reasks=REASKS)
        injector = Injector(fake, kind, rate, seed=f"{kind.name}@{rate}")
        fake.fault_fn = injector
        endpoint = fake.endpoint(max_retries=2, timeout=5)  # the SDK retries a 500 (the fake says: after 10 ms)
        built = run_job(store, project, "build", {"depth": 2, "concurrency": 1}, endpoint)
        made = run_job(store, project, "generate", {"per_leaf": PER_LEAF, "samples_per_call": 2,
                                                    "concurrency": 1}, endpoint)

        tree = store.tree(project)
        nodes = list(tree.nodes.values())
        failed = [n for n in nodes if n.status == "failed"]
        noted = [n for n in nodes if n.note]
        samples = store.samples(project)
        units = failed_units(store, made["id"])
        RESULTS[(kind.name, rate)] = {"build": built["status"], "generate": made["status"], "nodes": len(nodes),
                                      "failed_nodes": len(failed), "notes": len(noted), "samples": len(samples),
                                      "failed_calls": units}
        where = f"{kind.name} at {rate:.0%}: build {built['status']} ({built['message']}); generate " \
                f"{made['status']} ({made['message']})"

        # the outcomes are ones the CLI and the pages know, and failed counts match the store
        assert built["status"] in ("complete", "partial", "failed") and made["status"] in ("complete", "partial",
                                                                                           "failed"), where
        assert built["failed"] == len(failed), where
        assert made["failed"] == units, where
        # every failed node says why; every split that may miss values says so
        assert all(n.failure for n in failed), where
        check_splits(store, project)
        # never complete when something failed or was flagged
        if failed or noted:
            assert built["status"] != "complete", where
        if units or any(store.live_count(leaf.id) < PER_LEAF for leaf in tree.leaves() if leaf.parent_id):
            assert made["status"] != "complete", where
        # failed when nothing usable came out
        if tree.root.status == "failed" or not tree.kids(tree.root.id):
            assert built["status"] == "failed" and made["status"] == "failed", where
            assert "the tree has no leaves" in made["message"] and not samples, where
        if not samples:
            assert made["status"] == "failed", where
        if rate == 1.0 and kind.fatal:
            assert built["status"] == "failed" and made["status"] == "failed" and not samples, where
        if rate == 1.0 and not kind.fatal:  # every split flagged, the samples themselves unharmed
            assert built["status"] == "partial" and len(noted) == 4 and made["status"] == "complete", where
        # the samples stored are clean: every field text, no invalid Unicode
        for sample in samples:
            assert set(sample["data"]) == {"question", "answer"}, where
            json.dumps(sample["data"]).encode("utf-8")
            assert "\\ud" not in json.dumps(sample["data"]), where
        assert sum(injector.hits.values()) > 0 or rate < 1.0, where


@pytest.mark.parametrize("kind", [k for k in CATALOGUE if k.spoils_samples], ids=lambda k: k.name.replace(" ", "-"))
def test_generate_on_a_good_tree_with_every_reply_malformed_is_failed_and_stops_early(tmp_path, kind):
    with FakeLLM() as fake, Store(tmp_path / "m.db") as store:
        project = make_project(store, pivots=4, max_depth=2, reasks=REASKS)
        endpoint = fake.endpoint(max_retries=2, timeout=5)
        assert run_job(store, project, "build", {"depth": 2}, endpoint)["status"] == "complete"
        fake.fault_fn = Injector(fake, kind, 1.0, seed=kind.name, only=frozenset({"samples"}))
        before = len(fake.requests)
        made = run_job(store, project, "generate", {"per_leaf": PER_LEAF, "samples_per_call": 2,
                                                    "concurrency": 1}, endpoint)
        requests = len(fake.requests) - before
        GOOD_TREE[kind.name] = {"generate": made["status"], "samples": len(store.samples(project)),
                                "failed_calls": made["failed"], "requests": requests}
        assert made["status"] == "failed" and made["failed"] == 3 == failed_units(store, made["id"]), made["message"]
        assert not store.samples(project), made["message"]
        assert "stopped after 3 failed calls and no success" in made["message"] or (
            kind.name == "HTTP 500" and made["message"].startswith("the endpoint failed repeatedly")), made["message"]
        assert requests <= 3 * 3  # three calls of at most three tries (or three HTTP attempts): nine leaves not paid
