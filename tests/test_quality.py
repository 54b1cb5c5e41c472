"""Quality reports (issue 9): the embedding cache in the store, metrics per dataset / subtree / leaf, sibling
overlap per split, the 2-D map and the comparison, with the real offline encoder (no mocks) and the real fake
HTTP server for generated data."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from treesynth_core import edits, quality
from treesynth_core.cli import main
from treesynth_core.embed import default_encoder
from treesynth_core.errors import Cancelled, ConfigError, NotFoundError
from treesynth_core.fakellm import FakeLLM
from treesynth_core.generate import generate
from treesynth_core.llm import LLM
from treesynth_core.partition import build
from treesynth_core.spec import ProjectSpec, Settings, parse_fields
from treesynth_core.store import Store

# a split whose two values are the same kind of sample (paraphrases across the two), and one that separates
PERCENTAGES = ["A shirt costs $25 and is on sale for 20% off. What is the sale price?",
               "A $40 jacket is discounted by 25%. What does it cost now?",
               "A pair of shoes costs $60 with 10% off. What is the price after the discount?"]
DISCOUNTS = ["A $25 shirt is reduced by 20%. How much does it cost after the sale?",
             "A jacket priced at $40 has a 25% discount. What is its new price?",
             "Shoes that cost $60 are 10% off. How much do they cost now?"]
REFUND = ["My order #1234 arrived broken and I would like my money back.",
          "I was charged twice for my subscription this month; please refund one charge.",
          "The headphones I returned two weeks ago still have not been refunded."]
PASSWORD = ["I forgot my password and the reset email never arrives.",
            "How do I change my password in the mobile app?",
            "My account is locked after too many wrong password attempts."]


@pytest.fixture(scope="module")
def encoder():
    return default_encoder()  # loaded once per process


def new_project(store: Store, depth: int = 1, **settings) -> int:
    spec = ProjectSpec(name="q", task="word problems and support emails", fields=parse_fields("question,answer"),
                       settings=Settings(**{"max_depth": depth, "per_leaf": 3, **settings}))
    return store.create_project(spec)


def add(store: Store, project_id: int, node_id: str, questions: list[str]) -> list[int]:
    """Store samples as they are (distinct fingerprints even for equal texts): the metrics see the texts."""
    start = store.sample_total(project_id)
    rows = [{"data": {"question": q, "answer": f"answer {start + i}"}, "norm_hash": f"h{node_id}-{start + i}"}
            for i, q in enumerate(questions)]
    inserted, _ = store.add_samples(project_id, node_id, rows, cap=None, call_id=None)
    assert inserted == len(questions)
    return [r["id"] for r in store.samples(project_id)][-len(questions):]


@pytest.fixture
def two_level(store):
    """root [domain] -> math [topic] -> percentages, discounts (overlapping); support [issue] -> refund,
    password (separate)."""
    pid = new_project(store, depth=2)
    root = store.tree(pid).root.id
    math_id, support_id = edits.set_split(store, root, "domain", ["math", "support"])
    pct, disc = edits.set_split(store, math_id, "topic", ["percentages", "discounts"])
    refund, password = edits.set_split(store, support_id, "issue", ["refund", "password"])
    for node, texts in ((pct, PERCENTAGES), (disc, DISCOUNTS), (refund, REFUND), (password, PASSWORD)):
        add(store, pid, node, texts)
    return pid, dict(math=math_id, support=support_id, pct=pct, disc=disc, refund=refund, password=password)


def finite(obj) -> bool:
    """No NaN or infinity anywhere in a JSON-able structure."""
    json.dumps(obj, allow_nan=False)
    return True


# ------------------------------------------------------------------------------------------ known answers
def test_identical_texts_are_one_cluster(store, encoder):
    pid = new_project(store, depth=0)
    add(store, pid, store.tree(pid).root.id, ["What is the capital of France?"] * 5)
    report = quality.quality_report(store, pid, encoder=encoder)
    d = report.dataset
    assert d.n == 5 and d.mean_cosine == pytest.approx(1.0, abs=1e-5)
    assert d.near_dup_clusters == 1 and d.near_dup_pairs == 10 and d.near_dup_rate == pytest.approx(4 / 5)
    assert report.clusters == [report.sample_ids] and len(report.pairs) == 10
    assert not report.has_tree and d.coverage is None and (d.leaves, d.leaves_at_quota) == (1, 1)
    assert report.by_node == {} and list(report.by_leaf) == [store.tree(pid).root.id]


def test_templated_and_varied_data_from_the_fake_are_ranked(store, encoder):
    """The fake server in its two sample styles, through build and generate: the report ranks them."""
    reports = {}
    for style in ("templated", "varied"):
        with FakeLLM(sample_style=style) as fake:
            pid = new_project(store, depth=1, pivots=3, per_leaf=6, samples_per_call=3)
            llm = LLM(fake.endpoint(max_retries=0, timeout=5), store, pid)
            build(store, pid, llm)
            assert generate(store, pid, llm).outcome.value == "complete"
        reports[style] = quality.quality_report(store, pid, encoder=encoder)
    t, v = reports["templated"].dataset, reports["varied"].dataset
    assert t.n == v.n == 18 and t.coverage == v.coverage == 1.0 and t.leaves == 3
    assert t.mean_cosine > v.mean_cosine + 0.3
    assert t.near_dup_rate > 0.5 > v.near_dup_rate
    assert t.distinct_2 < v.distinct_2 and t.compression_ratio > v.compression_ratio
    table = quality.compare(reports["templated"], reports["varied"])
    assert list(table.columns[:3]) == ["a", "b", "relative difference"]
    assert table.loc["mean_cosine", "relative difference"] < -0.3
    assert table.loc["mean_cosine", "more diverse"] == "lower is more diverse"
    assert table.loc["distinct_2", "more diverse"] == "higher is more diverse"
    assert table.loc["n", "relative difference"] == 0
    # the templated tree's split: every pair of its values overlaps, with cross near-duplicates
    worst = reports["templated"].splits[0]
    assert worst.centroid_cosine > 0.9 and worst.cross_pairs
    assert max(reports["varied"].split_overlap.values()) < worst.centroid_cosine


def test_every_compared_direction_points_to_the_more_diverse_dataset(store, encoder):
    """Six copies of one question (one cluster) against six questions with two pairs of paraphrases (two
    clusters): every metric with a direction says the second is more diverse; the cluster count, which is higher
    there, has no direction. Rows carry readable labels."""
    copies = new_project(store, depth=0)
    add(store, copies, store.tree(copies).root.id, [PERCENTAGES[0]] * 6)
    varied = new_project(store, depth=0)
    add(store, varied, store.tree(varied).root.id, [PERCENTAGES[0], DISCOUNTS[0], PERCENTAGES[1], DISCOUNTS[1],
                                                    REFUND[0], PASSWORD[0]])
    a, b = (quality.quality_report(store, pid, encoder=encoder) for pid in (copies, varied))
    assert (a.dataset.near_dup_clusters, b.dataset.near_dup_clusters) == (1, 2)
    table = quality.compare(a, b)
    assert table.loc["near_dup_clusters", "more diverse"] == ""
    directed = 0
    for name in table.index:
        va, vb, better = (table.loc[name, column] for column in ("a", "b", "more diverse"))
        if better and va is not None and vb is not None:  # (coverage: neither has a tree)
            directed += 1
            assert (vb < va) if better.startswith("lower") else (vb > va), name
    assert directed == 6  # mean cosine, nearest, pairs, redundant share, distinct-2, compression
    labels = dict(zip(table.index, table["label"]))
    assert labels["mean_cosine"] == "mean pairwise cosine" and labels["distinct_2"] == "distinct-2"
    assert not any("_" in label for label in labels.values())


def test_sibling_overlap_flags_the_split_whose_values_overlap(store, encoder, two_level):
    pid, n = two_level
    report = quality.quality_report(store, pid, encoder=encoder)
    worst = report.splits[0]
    assert (worst.node_id, {worst.child_a, worst.child_b}) == (n["math"], {n["pct"], n["disc"]})
    assert worst.dimension == "topic" and {worst.value_a, worst.value_b} == {"percentages", "discounts"}
    assert worst.separation > 0.9 and len(worst.cross_pairs) >= 3
    pct_ids = {s for s, leaf in report.leaf_of.items() if leaf == n["pct"]}
    assert all((a in pct_ids) != (b in pct_ids) for a, b, _ in worst.cross_pairs)  # one on each side
    assert all(cos >= report.threshold for _, _, cos in worst.cross_pairs)
    support = next(s for s in report.splits if s.node_id == n["support"])
    assert support.cross_pairs == [] and support.separation < worst.separation
    assert report.split_overlap[n["math"]] > report.split_overlap[n["support"]]
    assert all(report.snippets[i] for a, b, _ in worst.cross_pairs for i in (a, b))
    # metrics per subtree and per leaf
    assert set(report.by_node) == {store.tree(pid).root.id, n["math"], n["support"]}
    assert report.by_node[n["math"]].n == 6 and report.by_node[n["math"]].near_dup_pairs >= 3
    assert report.by_node[n["support"]].near_dup_pairs == 0
    assert report.by_node[n["math"]].mean_cosine > report.by_node[n["support"]].mean_cosine
    assert set(report.by_leaf) == {n["pct"], n["disc"], n["refund"], n["password"]}
    assert all(m.n == 3 and m.leaves == 1 and m.coverage == 1.0 for m in report.by_leaf.values())
    assert report.dataset.coverage == 1.0 and report.dataset.leaves == 4
    assert report.labels[n["pct"]] == "domain=math > topic=percentages"
    assert finite(report.to_json())


def test_capped_pairs_keep_their_true_counts(store, encoder, two_level, monkeypatch):
    """The report keeps the most similar pairs (``max_pairs``, ``MAX_SPLIT_PAIRS`` per sibling pair) and says how
    many there are in all: ``pair_count``, ``SplitOverlap.cross_pair_count``."""
    monkeypatch.setattr(quality, "MAX_SPLIT_PAIRS", 1)
    pid, n = two_level
    report = quality.quality_report(store, pid, encoder=encoder, max_pairs=2)
    assert report.dataset.near_dup_pairs >= 3 and len(report.pairs) == 2
    assert report.pair_count == report.dataset.near_dup_pairs
    worst = report.splits[0]
    assert worst.node_id == n["math"] and len(worst.cross_pairs) == 1
    # every pair in the math subtree that is not inside one of its two leaves crosses them
    by_node, by_leaf = report.by_node, report.by_leaf
    across = by_node[n["math"]].near_dup_pairs - by_leaf[n["pct"]].near_dup_pairs - by_leaf[n["disc"]].near_dup_pairs
    assert worst.cross_pair_count == across >= 3
    support = next(s for s in report.splits if s.node_id == n["support"])
    assert support.cross_pair_count == 0
    data = report.to_json()
    assert data["pair_count"] == report.pair_count and len(data["pairs"]) == 2
    assert data["splits"][0]["cross_pair_count"] == across and len(data["splits"][0]["cross_pairs"]) == 1
    uncapped = quality.quality_report(store, pid, encoder=encoder)
    assert uncapped.pair_count == len(uncapped.pairs) == report.pair_count


def test_a_report_tokenises_each_text_once_for_every_scope(store, encoder, two_level, monkeypatch):
    """The lexical metrics (copies, distinct-2) of the dataset, each subtree and each leaf read tokens computed once
    per report, with the same results as tokenising per scope."""
    from treesynth_core import diversity as dv

    pid, n = two_level
    expected = quality.quality_report(store, pid, encoder=encoder)
    calls = {"copy": 0, "words": 0}
    copy_tokens, words = dv._copy_tokens, dv.words
    monkeypatch.setattr(dv, "_copy_tokens", lambda t: calls.__setitem__("copy", calls["copy"] + 1) or copy_tokens(t))
    monkeypatch.setattr(dv, "words", lambda t: calls.__setitem__("words", calls["words"] + 1) or words(t))
    report = quality.quality_report(store, pid, encoder=encoder)
    assert calls == {"copy": 12, "words": 12}  # 12 samples, each in 3 scopes (dataset, subtree, leaf)
    assert report.dataset == expected.dataset and report.by_node == expected.by_node
    assert report.by_leaf == expected.by_leaf and report.pairs == expected.pairs and report.splits == expected.splits
    texts = ["What is 2+2?", "What is 2+2? reply:", "A train leaves at noon.", "北京是中国的首都。"]
    e = encoder.encode(texts)
    assert dv.summarize(texts, e, tokens=dv.tokenise(texts)) == dv.summarize(texts, e)
    with pytest.raises(ValueError, match="tokens of 3 texts"):
        dv.summarize(texts, e, tokens=dv.tokenise(texts[:3]))


def test_scope_statuses_and_quota(store, encoder, two_level):
    pid, n = two_level
    under = quality.quality_report(store, pid, under=n["support"], encoder=encoder)
    assert under.dataset.n == 6 and set(under.by_leaf) == {n["refund"], n["password"]}
    assert [s.node_id for s in under.splits] == [n["support"]]
    refund_ids = [s for s, leaf in under.leaf_of.items() if leaf == n["refund"]]
    edits.set_sample_status(store, refund_ids[:2], "rejected")
    after = quality.quality_report(store, pid, under=n["support"], encoder=encoder)
    assert after.dataset.n == 4 and after.by_leaf[n["refund"]].n == 1
    assert after.by_leaf[n["refund"]].mean_cosine is None  # one sample: not enough data
    assert after.by_leaf[n["refund"]].coverage == 0.0 and after.dataset.coverage == 0.5  # 1 of 3 live
    rejected = quality.quality_report(store, pid, statuses=["rejected"], encoder=encoder)
    assert sorted(rejected.sample_ids) == sorted(refund_ids[:2])
    edits.prune(store, n["math"])  # a pruned subtree is out of scope, as for export
    assert quality.quality_report(store, pid, encoder=encoder).dataset.n == 4
    with pytest.raises(NotFoundError):
        quality.quality_report(store, pid, under="no-such-node", encoder=encoder)
    with pytest.raises(ConfigError):
        quality.quality_report(store, pid, statuses=["bogus"], encoder=encoder)
    with pytest.raises(ConfigError):
        quality.quality_report(store, pid, threshold=1.5, encoder=encoder)


# ------------------------------------------------------------------------------------ the embedding cache
def test_embeddings_are_cached_per_sample_and_text(store, encoder, two_level):
    pid, n = two_level
    first = quality.quality_report(store, pid, encoder=encoder)
    assert first.computed == 12 and store.embedding_count(pid, encoder.name) == 12
    again = quality.quality_report(store, pid, encoder=encoder)
    assert again.computed == 0 and again.dataset == first.dataset
    assert quality.embed_samples(store, pid, encoder=encoder) == 0
    # an edited sample is embedded again, and only it
    sample_id = first.sample_ids[0]
    old = store.embedding_vectors(pid, encoder.name)[sample_id]
    edits.edit_sample(store, sample_id, {"question": "Write a haiku about autumn leaves.", "answer": "..."})
    edited = quality.quality_report(store, pid, encoder=encoder)
    assert edited.computed == 1 and store.embedding_count(pid, encoder.name) == 12
    new = store.embedding_vectors(pid, encoder.name)[sample_id]
    assert new[0] != old[0] and new[1] != old[1]
    vector = np.frombuffer(new[1], dtype="<f4")
    assert np.allclose(vector, encoder.encode(["Write a haiku about autumn leaves."])[0], atol=1e-5)
    # deleting samples (with their node) deletes their vectors; so does deleting the project
    edits.delete_subtree(store, n["support"])
    assert store.embedding_count(pid, encoder.name) == 6
    assert quality.quality_report(store, pid, encoder=encoder).computed == 0
    store.delete_project(pid)
    assert store.embedding_count(pid) == 0


def test_embedding_is_resumable_chunk_by_chunk(store, encoder, monkeypatch):
    monkeypatch.setattr(quality, "EMBED_CHUNK", 4)
    pid = new_project(store, depth=0)
    add(store, pid, store.tree(pid).root.id, [f"Sample number {i} is about {w}." for i, w in
                                              enumerate(["trains", "cats", "taxes", "rain", "chess"] * 2)])
    progress, calls = [], {"n": 0}

    def stop_after_two_chunks() -> bool:
        calls["n"] += 1
        return calls["n"] > 2

    with pytest.raises(Cancelled):
        quality.embed_samples(store, pid, encoder=encoder, on_progress=lambda d, t: progress.append((d, t)),
                              should_stop=stop_after_two_chunks)
    assert progress == [(0, 10), (4, 10), (8, 10)] and store.embedding_count(pid) == 8
    assert quality.embed_samples(store, pid, encoder=encoder) == 2  # only what was missing
    assert quality.embed_samples(store, pid, encoder=encoder) == 0
    # rejected samples are not live: never embedded by embed_samples
    edits.set_sample_status(store, [r["id"] for r in store.samples(pid)][:1], "rejected")
    assert quality.embed_samples(store, pid, encoder=encoder) == 0


def test_a_report_without_embedding_leaves_out_what_is_not_cached(store, encoder):
    pid = new_project(store, depth=0)
    root = store.tree(pid).root.id
    add(store, pid, root, ["How tall is Mount Everest?", "Bake the bread for thirty minutes."])
    cold = quality.quality_report(store, pid, encoder=encoder, embed_missing=False)
    assert cold.dataset.n == 0 and cold.missing_embeddings == 2 and cold.computed == 0
    quality.embed_samples(store, pid, encoder=encoder)
    add(store, pid, root, ["Quantum computers use qubits."])
    warm = quality.quality_report(store, pid, encoder=encoder, embed_missing=False)
    assert warm.dataset.n == 2 and warm.missing_embeddings == 1


# ---------------------------------------------------------------------------------------------- edge cases
def test_an_empty_project_is_not_enough_data(store, encoder):
    pid = new_project(store, depth=0)
    report = quality.quality_report(store, pid, encoder=encoder)
    d = report.dataset
    assert (d.n, d.mean_cosine, d.near_dup_pairs, d.distinct_2, d.compression_ratio) == (0, None, 0, None, None)
    assert (d.leaves, d.leaves_at_quota, d.coverage) == (1, 0, None)
    assert report.splits == [] and report.pairs == [] and finite(report.to_json())
    table = quality.compare(report, report)
    assert table["relative difference"].isna().all()  # 0 vs 0 and not-enough-data: no number
    assert all(v is None or isinstance(v, (int, float)) for v in table["a"])
    frame = quality.projection_2d(store, [pid], encoder=encoder)
    assert list(frame.columns) == ["sample_id", "project_id", "x", "y", "top_value", "text"] and frame.empty
    tree_pid = new_project(store, depth=1)  # a tree project not built yet: no leaf to fill (its root is not one)
    unbuilt = quality.quality_report(store, tree_pid, encoder=encoder)
    assert unbuilt.dataset.n == 0 and (unbuilt.dataset.leaves, unbuilt.dataset.coverage) == (0, None)
    assert unbuilt.by_leaf == {} and finite(unbuilt.to_json())


def test_empty_long_and_non_latin_samples(store, encoder):
    pid = new_project(store, depth=1)
    root = store.tree(pid).root.id
    a, b, c = edits.set_split(store, root, "script", ["latin", "cjk", "cyrillic"])
    add(store, pid, a, ["", "The quick brown fox jumps over the lazy dog. " * 450])
    add(store, pid, b, ["北京是中国的首都。", "東京は日本の首都です。" * 1900])
    add(store, pid, c, ["Привет, как дела?"])  # a one-sample leaf
    report = quality.quality_report(store, pid, encoder=encoder)
    assert report.dataset.n == 5 and 0 < report.dataset.mean_cosine < 1
    assert report.by_leaf[c].n == 1 and report.by_leaf[c].mean_cosine is None
    assert report.by_leaf[c].distinct_2 is not None
    assert {s.separation is None for s in report.splits} == {False, True}  # pairs with the one-sample leaf
    assert finite(report.to_json())
    for metrics in [report.dataset, *report.by_leaf.values(), *report.by_node.values()]:
        assert all(not (isinstance(v, float) and math.isnan(v)) for v in metrics.as_row().values())


# -------------------------------------------------------------------------------------- the 2-D map, CLI
def test_projection_puts_two_projects_on_one_plane(store, encoder, two_level):
    pid, n = two_level
    flat = new_project(store, depth=0)
    add(store, flat, store.tree(flat).root.id, PERCENTAGES + REFUND)
    frame = quality.projection_2d(store, [pid, flat], encoder=encoder)
    assert len(frame) == 18 and set(frame["project_id"]) == {pid, flat}
    assert set(frame[frame.project_id == pid]["top_value"]) == {"math", "support"}
    assert set(frame[frame.project_id == flat]["top_value"]) == {"(no tree)"}
    assert np.isfinite(frame[["x", "y"]].to_numpy()).all() and frame["x"].std() > 0
    assert frame["text"].str.len().max() <= 200
    # math and support fall apart on the first axis
    xs = frame[frame.project_id == pid].set_index("top_value")["x"]
    assert (xs["math"].mean() > 0) != (xs["support"].mean() > 0)
    assert quality.pca_2d(np.ones((1, 4))).tolist() == [[0.0, 0.0]]


def test_quality_command(tmp_path, capsys):
    db = tmp_path / "q.db"
    with Store(db) as store:
        pid = new_project(store, depth=2)
        root = store.tree(pid).root.id
        math_id, support_id = edits.set_split(store, root, "domain", ["math", "support"])
        pct, disc = edits.set_split(store, math_id, "topic", ["percentages", "discounts"])
        add(store, pid, pct, PERCENTAGES)
        add(store, pid, disc, DISCOUNTS)
        add(store, pid, support_id, REFUND)
    assert main(["quality", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "mean pairwise cosine" in out and "worst splits" in out and "[topic] at domain=math" in out
    assert "'percentages' (3) vs 'discounts' (3)" in out or "'discounts' (3) vs 'percentages' (3)" in out
    assert "leaves, least diverse first" in out
    report_file = tmp_path / "report.json"
    assert main(["quality", "--db", str(db), "--format", "json", "--out", str(report_file)]) == 0
    assert capsys.readouterr().out.startswith(f"wrote the json report of 9 samples to {report_file}")
    data = json.loads(report_file.read_text())
    assert data["dataset"]["n"] == 9 and data["splits"][0]["node_id"] == math_id and data["computed"] == 0
    assert main(["quality", "--db", str(db), "--format", "csv", "--under", math_id]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("dataset,") and sum(ln.startswith("leaf,") for ln in lines) == 2
    for argv, message in (
            (["--status", "bogus"], "unknown sample status"), (["--threshold", "0"], "above 0"),
            (["--under", "nope"], "not in project"), (["--project", "99"], "does not exist"),
            (["--out", str(tmp_path)], "is a directory"), (["--out", str(db)], "the database itself")):
        assert main(["quality", "--db", str(db), *argv]) == 2, argv
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert main(["quality", "--db", str(tmp_path / "absent.db")]) == 2


def test_redundant_samples_keeps_the_end_of_a_chain_whose_middle_goes():
    """A~B and B~C with A and C unlike: B goes (an earlier kept sample is like it), C stays (only B, gone, was)."""
    from treesynth_core.quality import redundant_samples

    assert redundant_samples([(1, 2, 0.9), (2, 3, 0.9)]) == [2]
    assert redundant_samples([(3, 1, 0.95), (1, 2, 0.9), (2, 3, 0.9)]) == [2, 3]  # a triangle keeps only the first
    assert redundant_samples([(5, 7, 0.9), (1, 2, 0.99)]) == [2, 7]
    assert redundant_samples([]) == []


def test_quality_command_can_embed_through_the_endpoint(tmp_path, capsys, monkeypatch):
    """`quality --embedding-model M` sends the texts to the endpoint's /v1/embeddings (a real local server) and
    caches those vectors under that model, beside (never mixed with) the offline ones."""
    from tests.test_embed import EmbeddingsServer
    from treesynth_core.cli import main

    db = tmp_path / "q.db"
    with Store(db) as store:
        pid = new_project(store)
        add(store, pid, store.tree(pid).root.id, ["How many apples?", "Reset my password", "Refund my order"])
    with EmbeddingsServer() as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.endpoint().base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "test-key")
        code = main(["quality", "--db", str(db), "--embedding-model", "emb-1", "--format", "json"])
        out = capsys.readouterr().out
        assert code == 0 and server.requests and {r["model"] for r in server.requests} == {"emb-1"}
    report = json.loads(out)
    assert report["model"].startswith("emb-1@") and report["dataset"]["n"] == 3
    monkeypatch.delenv("OPENAI_BASE_URL")
    monkeypatch.delenv("OPENAI_API_KEY")
    code = main(["quality", "--db", str(db), "--embedding-model", "emb-1"])
    assert code == 2 and "needs an endpoint" in capsys.readouterr().err
