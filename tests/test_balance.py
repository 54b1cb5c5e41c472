"""Balancing leaves to a target (issue 11 part 4), and the whole bring-your-own-data loop on the fake server:
import a lopsided 1,000-row dataset, route it, balance it, export it, and check the counts per leaf."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from treesynth_core.balance import balance, plan_balance
from treesynth_core.cli import main
from treesynth_core.errors import ConfigError
from treesynth_core.outcome import Outcome
from treesynth_core.routing import route_samples

from .test_routing import at_leaves, built, import_rows, leaf_of, rows_for

# 1,000 rows over 9 leaves, lopsided: one leaf holds 520, three hold none
LOPSIDED = [("A", "A", 520), ("A", "B", 210), ("B", "A", 120), ("B", "B", 80), ("C", "A", 45), ("C", "B", 25)]


@pytest.fixture
def routed(store, fake, tmp_path):
    project, llm = built(store, fake)
    report = import_rows(store, project, tmp_path, rows_for(LOPSIDED))
    assert report.imported == 1000
    assert route_samples(store, llm, project).outcome is Outcome.COMPLETE
    return project, llm


def live_by_leaf(store, project) -> dict[str, int]:
    return {leaf.id: store.live_count(leaf.id) for leaf in store.tree(project).leaves()}


def test_import_route_balance_export_a_lopsided_1000_rows(store, fake, routed, tmp_path, capsys):
    project, llm = routed
    before = at_leaves(store, project)
    assert sorted(before.values()) == [0, 0, 0, 25, 45, 80, 120, 210, 520]
    plan = plan_balance(store, project, target=100)
    assert (plan.drop, plan.restore, plan.add) == (420 + 110 + 20, 0, 100 * 3 + 75 + 55 + 20)
    report = balance(store, project, llm, target=100, seed=7)
    assert report.outcome is Outcome.COMPLETE, report.summary()
    assert report.excluded == 550 and report.generated == 450 and not report.short
    assert set(live_by_leaf(store, project).values()) == {100}  # every leaf at its target
    counts = store.provenance_counts(project)
    big = leaf_of(store, project, "A", "A")
    assert counts[big] == {"imported": 100, "generated": 0, "excluded": 420}  # excluded, never deleted
    small = leaf_of(store, project, "C", "B")
    assert counts[small] == {"imported": 25, "generated": 75, "excluded": 0}
    assert store.sample_total(project) == 1000 + 450
    out = tmp_path / "balanced.jsonl"
    assert main(["export", "--db", store.path, "--out", str(out), "--status", "generated,accepted"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 900
    per_leaf: dict[str, int] = {}
    for row in rows:
        per_leaf[row["leaf_id"]] = per_leaf.get(row["leaf_id"], 0) + 1
    assert set(per_leaf.values()) == {100}
    assert sum(r["provenance"] == "imported" for r in rows) == 450  # provenance per row
    assert sum(r["provenance"] == "generated" for r in rows) == 450
    print(f"\nbefore: {sorted(before.values(), reverse=True)}; after: {sorted(per_leaf.values())}")


def test_top_up_offers_the_leafs_imported_rows_as_examples(store, fake, routed):
    project, llm = routed
    small = leaf_of(store, project, "C", "B")
    before = len(fake.requests)
    balance(store, project, llm, targets={small: 30})
    asked = [r for r in fake.requests[before:] if "Step: samples" in r["messages"][0]["content"]]
    assert asked, "the leaf was not topped up"
    prompt = asked[0]["messages"][1]["content"]
    imported = [s["data"]["question"] for s in store.samples(project, node_ids=[small])
                if s["provenance"] == "imported"]
    assert any(text in prompt for text in imported[:3])  # its own rows, as style examples
    assert store.live_count(small) == 30


def test_random_downsampling_is_seeded_and_spares_accepted_samples(store, fake, routed):
    project, llm = routed
    big = leaf_of(store, project, "A", "A")
    ids = [s["id"] for s in store.samples(project, node_ids=[big])]
    store.set_sample_status(ids[:5], "accepted")
    balance(store, project, None, targets={big: 50}, top_up=False, seed=3)
    kept_first = {s["id"] for s in store.samples(project, node_ids=[big], statuses=["generated", "accepted"])}
    assert len(kept_first) == 50 and set(ids[:5]) <= kept_first
    balance(store, project, None, targets={big: 600}, top_up=False)  # a higher target restores them all
    assert store.live_count(big) == 520
    balance(store, project, None, targets={big: 50}, top_up=False, seed=3)
    again = {s["id"] for s in store.samples(project, node_ids=[big], statuses=["generated", "accepted"])}
    assert again == kept_first  # the same seed keeps the same samples
    balance(store, project, None, targets={big: 600}, top_up=False)
    balance(store, project, None, targets={big: 50}, top_up=False, seed=4)
    assert {s["id"] for s in store.samples(project, node_ids=[big], statuses=["generated", "accepted"])} != kept_first
    report = balance(store, project, None, targets={big: 3}, top_up=False)
    assert report.over == {big: 2} and report.outcome is Outcome.PARTIAL  # 5 accepted ones stay


class WordEncoder:
    """A small deterministic encoder (hashed bag of words, normalised): enough to tell templated texts apart."""

    name = "words"
    dim = 64

    def encode(self, texts):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in text.lower().split():
                out[i, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def test_diversity_downsampling_keeps_the_most_different(store, fake, tmp_path):
    project, llm = built(store, fake)
    near = [[f"topic A difficulty A: how many apples does Tom have {i}", "x"] for i in range(20)]
    odd = [["topic A difficulty A: integrate the function over the unit circle", "y"],
           ["topic A difficulty A: name the capital city of Peru", "z"]]
    import_rows(store, project, tmp_path, near + odd)
    route_samples(store, llm, project)
    leaf = leaf_of(store, project, "A", "A")
    balance(store, project, None, targets={leaf: 4}, top_up=False, method="diversity", encoder=WordEncoder())
    kept = [s["data"]["question"] for s in store.samples(project, node_ids=[leaf], statuses=["generated"])]
    assert len(kept) == 4
    assert all(o[0] in kept for o in odd)  # the two unlike the rest are kept


def test_bad_targets_are_refused(store, fake, routed, capsys):
    project, _ = routed
    with pytest.raises(ConfigError, match="no target"):
        plan_balance(store, project)
    with pytest.raises(ConfigError, match="not a leaf"):
        plan_balance(store, project, targets={store.tree(project).root.id: 3})
    with pytest.raises(ConfigError, match="whole number"):
        plan_balance(store, project, target=-1)
    assert main(["balance", "--db", store.path, "--leaf-target", "oops"]) == 2
    assert main(["balance", "--db", store.path, "--target", "10"]) == 0  # the plan only
    assert "nothing done: run again with --yes" in capsys.readouterr().err
    assert store.query("select count(*) as n from samples where status = 'excluded'")[0]["n"] == 0
    assert main(["balance", "--db", store.path, "--target", "10", "--no-top-up", "--yes"]) == 0
    assert "excluded 940" in capsys.readouterr().out  # 1,000 rows in 6 leaves, 10 kept in each


def test_balancing_is_one_history_event_that_undo_takes_back(store, fake, routed):
    from treesynth_core import edits

    project, _ = routed
    before = live_by_leaf(store, project)
    balance(store, project, None, target=50, top_up=False)
    events = edits.history(store, project, limit=5)
    assert events[0].action == "balance" and "excluded" in events[0].summary
    assert [e.action for e in events[1:3]] == ["route", "import"]  # each run of those is one event too
    assert edits.undo(store, project).action == "balance"
    assert live_by_leaf(store, project) == before


def test_a_leaf_with_its_own_quota_is_balanced_to_it(store, fake, routed):
    from treesynth_core import edits

    project, llm = routed
    small = leaf_of(store, project, "C", "B")
    edits.set_quota(store, small, 40)
    with pytest.raises(ConfigError, match="its own quota 40"):
        plan_balance(store, project, targets={small: 30})
    report = balance(store, project, llm, target=60)
    assert report.outcome is Outcome.COMPLETE
    live = live_by_leaf(store, project)
    assert live.pop(small) == 40 and set(live.values()) == {60}


def test_exclusion_never_overwrites_a_status_changed_meanwhile(store, fake, routed):
    project, _ = routed
    big = leaf_of(store, project, "A", "A")
    ids = [s["id"] for s in store.samples(project, node_ids=[big])][:4]
    store.set_sample_status(ids[:1], "accepted")  # a curator accepts one while a balance is deciding
    assert store.change_status_from(ids, "generated", "excluded") == 3
    assert [s["status"] for s in store.samples(project, node_ids=[big])][:4] == ["accepted"] + ["excluded"] * 3


def test_excluded_rows_are_not_dataset_content(store, fake, routed, tmp_path):
    """After balancing, the excluded rows (issue 11) are in no default export, no live figure of the quality report
    and no hub file; the card counts them apart; `export --status excluded` takes exactly them."""
    from treesynth_core import hub, quality
    from treesynth_core.export import count_rows, export_rows

    project, llm = routed
    report = balance(store, project, None, target=100, seed=7, top_up=False)
    assert report.excluded == 550
    excluded = {s["id"] for s in store.samples(project, statuses=["excluded"])}
    assert len(excluded) == 550
    assert count_rows(store, project) == 450 and not excluded & {r["sample_id"] for r in export_rows(store, project)}
    out = tmp_path / "excluded.jsonl"
    assert main(["export", "--db", store.path, "--out", str(out), "--status", "excluded"]) == 0
    assert {json.loads(line)["sample_id"] for line in out.read_text().splitlines()} == excluded
    assert "excluded" not in quality.LIVE_STATUSES and "excluded" not in quality.DEFAULT_STATUSES
    options = hub.PushOptions(repo_id="me/balanced")
    facts = hub.gather(store, project, options)
    assert facts.rows == 450 and facts.statuses["excluded"] == 550
    card = hub.card_text(store, project, options, facts)
    assert "| excluded | 550 |" in card and "The 550 `excluded` samples were set aside by balancing" in card
    files = tmp_path / "upload"
    rows, _ = hub.write_upload_set(store, project, options, files)
    assert rows == 450
