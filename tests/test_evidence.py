"""The evidence behind a split: pivots with the value the criterion gave each, the note, the node's calls and
their cost; the same lines in the CLI's ``show --evidence``."""

from __future__ import annotations

from treesynth_core.cli import main
from treesynth_core.evidence import evidence, pivot_labels
from treesynth_core.partition import build
from treesynth_core.spec import Settings
from treesynth_core.tree import Node


def test_a_built_split_carries_its_pivots_labels_and_calls(fake, store, project, llm):
    build(store, project, llm, depth=1)
    tree = store.tree(project)
    root = tree.root
    ev = evidence(store, tree, root.id, Settings(price_input_per_m=1.0, price_output_per_m=2.0))
    values = {k.value for k in tree.kids(root.id)}
    assert len(ev.pivots) == 4 and ev.labels_known
    assert all(p.label in values for p in ev.pivots)
    assert [p.sample for p in ev.pivots] == root.pivots
    use = store.usage(project, root.id)
    assert ev.calls.calls == use["calls"] >= 3 and ev.calls.failed == 0
    assert ev.calls.cost == (use["prompt_tokens"] * 1.0 + use["completion_tokens"] * 2.0) / 1e6 > 0
    assert {r["purpose"] for r in ev.calls.rows} >= {"pivots", "criterion"}
    lines = ev.lines()
    assert lines[0].startswith(f"pivot 1 -> {ev.pivots[0].label}: ") and "LLM call(s)" in lines[-1]
    assert evidence(store, tree, root.id).calls.cost is None  # no prices: unknown, never guessed
    assert "cost unknown" in evidence(store, tree, root.id).calls.text()


def test_labels_from_a_reply_that_no_longer_fits_are_not_shown():
    node = Node(id="n", project_id=1, parent_id=None, depth=0, dimension="topic",
                pivots=[{"q": "a"}, {"q": "b"}])
    kids = [Node(id=f"k{i}", project_id=1, parent_id="n", depth=1, value=v) for i, v in enumerate(["farm", "shop"])]
    good = '{"dimension": "Topic", "labels": ["Farm", "shop"]}'
    assert pivot_labels(good, node, kids) == ["farm", "shop"]
    for stale in ('{"dimension": "setting", "labels": ["farm", "shop"]}',  # another dimension
                  '{"dimension": "topic", "labels": ["farm", "zoo"]}',  # a value that is not a child any more
                  '{"dimension": "topic", "labels": ["farm"]}',  # not one per pivot
                  "not json", None):
        assert pivot_labels(stale, node, kids) == [None, None]


def test_show_evidence_prints_pivots_and_calls(fake, store, project, llm, capsys):
    build(store, project, llm, depth=1)
    tree = store.tree(project)
    ev = evidence(store, tree, tree.root.id)
    code = main(["show", "--db", store.path])
    plain = capsys.readouterr().out
    assert code == 0 and "pivot 1" not in plain
    code = main(["show", "--db", store.path, "--evidence"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    pivots = [line for line in out if line.lstrip().startswith("pivot ")]
    assert len(pivots) == 4 and pivots[0] == "  " + ev.lines()[0]
    assert any(line.strip() == ev.calls.text() for line in out)


def test_evidence_counts_the_calls_of_the_current_split_and_lists_the_others_apart(fake, store, project, llm):
    """Re-proposals do not grow the split's count; applying one makes its calls the split's; generation calls
    on a leaf are listed as such, not as the evidence of a split."""
    from treesynth_core import edits, jobs
    from treesynth_core.generate import generate

    build(store, project, llm, depth=1)
    root = store.tree(project).root
    built = evidence(store, store.tree(project), root.id)
    assert built.calls.what == "this split" and built.calls.calls == store.usage(project, root.id)["calls"] >= 3
    assert built.other_calls == [] and built.labels_known
    job_ids = []
    for _ in range(2):
        job_ids.append(jobs.start_job(store.path, project, "propose", {"node_id": root.id},
                                      fake.endpoint(max_retries=1, timeout=5)))
        jobs.wait(store.path, job_ids[-1], timeout=60)
        assert jobs.get_job(store, job_ids[-1])["status"] == "complete"
    total = store.usage(project, root.id)["calls"]
    ev = evidence(store, store.tree(project), root.id)
    assert ev.calls.calls == built.calls.calls < total  # the same split, the same evidence
    (other,) = ev.other_calls
    assert other.what == "re-proposals and earlier splits" and other.calls == total - built.calls.calls
    assert any(line.strip().startswith("re-proposals and earlier splits: ") for line in ev.lines())

    newest = edits.proposals(store, root.id)[0]
    edits.replace_with(store, root.id, newest.split, proposal_id=newest.id)
    applied = evidence(store, store.tree(project), root.id)
    mine = [r for r in store.node_call_log(root.id) if r["job_id"] == newest.job_id]
    assert applied.calls.calls == len(mine) and {r["job_id"] for r in applied.calls.rows} == {newest.job_id}
    assert applied.other_calls[0].calls == total - len(mine)
    assert applied.labels_known == bool(store.node(root.id).pivots)

    generate(store, project, llm, per_leaf=2)
    leaf = store.tree(project).leaves()[0]
    at_leaf = evidence(store, store.tree(project), leaf.id)
    assert at_leaf.calls.calls == 0 and [c.what for c in at_leaf.other_calls] == ["generation"]
    assert at_leaf.other_calls[0].calls == store.usage(project, leaf.id)["calls"] > 0
