"""The naive baseline (issue 9): a linked max_depth-0 project, its cost plan, generation on the real fake server,
the side-by-side table, and the `baseline` command."""

from __future__ import annotations

import math
import os

import pytest

from treesynth_core import baseline, quality
from treesynth_core.cli import main
from treesynth_core.embed import default_encoder
from treesynth_core.errors import ConfigError
from treesynth_core.fakellm import FakeLLM
from treesynth_core.generate import DEFAULT_TOKENS_PER_SAMPLE, generate, plan_generation
from treesynth_core.llm import LLM
from treesynth_core.partition import build
from treesynth_core.spec import ProjectSpec, Settings, parse_fields
from treesynth_core.store import Store


@pytest.fixture(scope="module")
def encoder():
    return default_encoder()


def tree_project(store: Store, fake: FakeLLM, *, per_leaf: int = 2) -> int:
    spec = ProjectSpec(name="math", task="GSM8K-style grade-school math word problems",
                       fields=parse_fields("question: the problem, answer: the worked solution"),
                       constraints="use whole numbers", settings=Settings(
                           pivots=3, max_depth=1, per_leaf=per_leaf, samples_per_call=2, generation_temperature=1.1,
                           model="fake-model", price_input_per_m=1.0, price_output_per_m=2.0))
    pid = store.create_project(spec)
    llm = LLM(fake.endpoint(max_retries=0, timeout=5), store, pid)
    build(store, pid, llm)
    assert generate(store, pid, llm).outcome.value == "complete"
    return pid


def test_the_baseline_copies_the_task_without_the_tree(store, fake):
    pid = tree_project(store, fake)  # 3 leaves x 2
    bid = baseline.create_baseline(store, pid)
    tree_spec, spec = store.project(pid), store.project(bid)
    assert spec.task == tree_spec.task and spec.fields == tree_spec.fields and spec.constraints == tree_spec.constraints
    assert spec.settings.max_depth == 0 and spec.settings.per_leaf == 6 and spec.root_split is None
    same = {k: v for k, v in tree_spec.settings.model_dump().items() if k not in ("max_depth", "per_leaf")}
    assert {k: v for k, v in spec.settings.model_dump().items() if k in same} == same  # model, temperatures, prices
    assert spec.name == "math (naive baseline)"
    assert baseline.baseline_of(store, pid) == bid and baseline.source_of(store, bid) == pid
    assert baseline.baseline_of(store, bid) is None
    # again: the same project; a size given (or a grown tree) sets its quota
    assert baseline.create_baseline(store, pid) == bid and len(store.projects()) == 2
    assert baseline.create_baseline(store, pid, samples=4) == bid and store.project(bid).settings.per_leaf == 4
    with pytest.raises(ConfigError, match="itself a naive baseline"):
        baseline.create_baseline(store, bid)
    for bad in (0, -1, 10_001, 2.5, True):
        with pytest.raises(ConfigError, match="whole number"):
            baseline.create_baseline(store, pid, samples=bad)
    empty = store.create_project(ProjectSpec(name="e", task="anything at all", fields=parse_fields("text")))
    with pytest.raises(ConfigError, match="no samples yet"):
        baseline.create_baseline(store, empty)
    store.delete_project(bid)  # the link goes with it
    assert baseline.baseline_of(store, pid) is None


def test_plan_generate_and_compare(store, fake, encoder):
    pid = tree_project(store, fake)
    plan = baseline.plan_baseline(store, pid)
    bid = baseline.baseline_of(store, pid)
    assert [leaf.node_id for leaf in plan.leaves] == [store.tree(bid).root.id]  # no tree: the root is the leaf
    assert plan.missing == 6 and plan.calls == 3 and plan.cost is not None and plan.cost > 0
    before = len(fake.requests)
    assert baseline.plan_baseline(store, pid).missing == 6 and len(fake.requests) == before  # planning is free
    report = generate(store, bid, LLM(fake.endpoint(max_retries=0, timeout=5), store, bid))
    assert report.outcome.value == "complete" and store.sample_total(bid) == 6
    sent = fake.requests[before:]
    assert {r["temperature"] for r in sent} == {1.1} and {r["model"] for r in sent} == {"fake-model"}
    assert all("use whole numbers" in r["messages"][0]["content"] + r["messages"][-1]["content"] for r in sent)
    assert baseline.plan_baseline(store, pid).missing == 0
    tree = quality.quality_report(store, pid, encoder=encoder)
    naive = quality.quality_report(store, bid, encoder=encoder)
    assert tree.dataset.n == naive.dataset.n == 6 and naive.has_tree is False and naive.dataset.coverage is None
    table = quality.compare(naive, tree)
    assert table.loc["n", "relative difference"] == 0
    assert table.loc["coverage", "a"] is None and table.loc["coverage", "relative difference"] is None
    rel = table.loc["mean_cosine", "relative difference"]
    assert rel == pytest.approx((tree.dataset.mean_cosine - naive.dataset.mean_cosine) / naive.dataset.mean_cosine)
    assert all(v is None or math.isfinite(v) for v in table["relative difference"])


def test_the_baseline_plan_sizes_its_samples_by_the_tree_projects(store, fake):
    """Before its first sample a baseline has nothing of its own to measure: its output is estimated from the tree
    project's samples (same task and fields), not the generic 150 tokens (about 3x too many on short samples)."""
    pid = tree_project(store, fake)
    tree_estimate = plan_generation(store, pid).tokens_per_sample
    assert tree_estimate < DEFAULT_TOKENS_PER_SAMPLE / 2
    plan = baseline.plan_baseline(store, pid)
    bid = baseline.baseline_of(store, pid)
    assert store.sample_total(bid) == 0
    assert plan.tokens_per_sample == tree_estimate and plan.completion_tokens == 6 * tree_estimate
    assert plan_generation(store, bid).tokens_per_sample == tree_estimate  # every planner of the baseline
    # a project with no samples that is no baseline keeps the default
    empty = store.create_project(ProjectSpec(name="e", task="anything at all", fields=parse_fields("text")))
    assert plan_generation(store, empty).tokens_per_sample == DEFAULT_TOKENS_PER_SAMPLE
    # once the baseline has samples, they are its own measure
    generate(store, bid, LLM(fake.endpoint(max_retries=0, timeout=5), store, bid))
    store.add_samples(bid, store.tree(bid).root.id, [{"data": {"question": "x" * 4000, "answer": "y"},
                                                      "norm_hash": "long"}], cap=None, call_id=None)
    assert plan_generation(store, bid).tokens_per_sample > tree_estimate


def use_fake(monkeypatch, fake: FakeLLM) -> None:
    for name in list(os.environ):
        if name.startswith(("OPENAI_", "TREESYNTH_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-fake-test-key-123456")
    monkeypatch.setenv("TREESYNTH_MODEL", "fake-model")
    monkeypatch.setenv("TREESYNTH_MAX_RETRIES", "0")


def test_baseline_command_needs_yes_then_generates_and_compares(tmp_path, fake, monkeypatch, capsys, encoder):
    db = tmp_path / "b.db"
    with Store(db) as store:
        pid = tree_project(store, fake)
    use_fake(monkeypatch, fake)
    monkeypatch.delenv("OPENAI_BASE_URL")
    monkeypatch.delenv("OPENAI_API_KEY")
    assert main(["baseline", "--db", str(db), "--yes"]) == 2  # no endpoint: refused before anything changes
    assert "no LLM endpoint" in capsys.readouterr().err
    with Store(db) as store:
        assert len(store.projects()) == 1
    use_fake(monkeypatch, fake)
    before = len(fake.requests)
    assert main(["baseline", "--db", str(db)]) == 0
    out, err = capsys.readouterr()
    assert "naive baseline: project 2" in out and "plan: 6 samples missing, 3 calls" in out and "cost $" in out
    assert "--yes" in err and len(fake.requests) == before
    with Store(db) as store:
        assert store.sample_total(2) == 0
    # the file now holds two projects: the commands still find the tree project alone
    assert main(["baseline", "--db", str(db), "--yes"]) == 0
    out, err = capsys.readouterr()
    assert "tree vs naive" in out and "mean_cosine" in out and "lower is more diverse" in out
    assert "Traceback" not in err
    with Store(db) as store:
        assert store.sample_total(2) == 6 and baseline.baseline_of(store, pid) == 2
    assert main(["baseline", "--db", str(db)]) == 0  # nothing missing: the table without asking
    assert "plan: 0 samples missing" in capsys.readouterr().out
    assert main(["quality", "--db", str(db)]) == 0 and "project 1 " in capsys.readouterr().out
    for argv, message in ((["--project", "2"], "is a naive baseline"), (["--samples", "0"], "--samples"),
                          (["--project", "7"], "does not exist")):
        assert main(["baseline", "--db", str(db), *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
