"""Diversity metrics on hand-made sets with known answers, embedded by the real offline model (no mocks)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from treesynth_core import diversity as dv
from treesynth_core.embed import default_encoder

# Copies of one sample: paraphrases, truncated, prefixed and suffixed copies (the calibration set behind
# DEFAULT_THRESHOLD; bench/bench_diversity.py --calibrate prints their cosines).
DUPLICATES = [
    ("What is 2+2?", "What is 2+2? reply:"),
    ("What is 2+2?", "Question: What is 2+2?"),
    ("Tom has 3 apples and buys 5 more. How many apples does Tom have now?",
     "Tom has 3 apples and buys 5 more. How many; reply:"),
    ("Tom has 3 apples and buys 5 more. How many apples does Tom have now?",
     "Tom owns three apples and purchases five additional ones. What is his total number of apples?"),
    ("How do I reset my password?", "I forgot my password, how can I reset it?"),
    ("The cat sat on the mat.", "A cat was sitting on the mat."),
    ("Please refund my order #1234, it arrived broken.", "My order #1234 arrived damaged; I would like a refund."),
    ("A rectangle has length 8 cm and width 5 cm. What is its area?",
     "A rectangle is 8 cm long and 5 cm wide. Find its area."),
    ("Write a Python function that reverses a string.", "Write a Python function to reverse a given string."),
    ("If a car travels at 60 miles per hour, how far does it go in 3 hours?",
     "How far does a car go in 3 hours at a speed of 60 mph?"),
    ("A shirt costs $25 and is on sale for 20% off. What is the sale price?",
     "A $25 shirt is discounted by 20%. What does it cost now?"),
    ("Hi, my package has not arrived after two weeks. Can you check the tracking?",
     "Hello, it has been two weeks and my parcel still has not arrived. Could you look at the tracking?"),
]
UNRELATED = [
    "The cat sat on the mat.",
    "Quantum computers use qubits.",
    "Write a SQL query that counts the orders per customer.",
    "The French Revolution began in 1789.",
    "Photosynthesis turns light into chemical energy.",
    "How do I cancel my gym membership?",
    "A train travels 60 km in 1.5 hours. What is its average speed?",
    "Bake the bread at 220 degrees for thirty minutes.",
]
# what a model copying its "do not repeat these" list returns: one frame, other numbers and names
TEMPLATED = [f"{name} has {i + 3} apples and buys {2 * i + 1} more. How many apples does {name} have now?"
             for i, name in enumerate(["Tom", "Sara", "Tom", "Ali"] * 3)]
VARIED = [
    "Tom has 3 apples and buys 5 more. How many apples does Tom have now?",
    "A train leaves at 2 pm and travels 180 km at 90 km/h. When does it arrive?",
    "A rectangle is 8 cm long and 5 cm wide. What is its perimeter?",
    "Sara saves $15 a week. How many weeks until she can buy a $120 bike?",
    "A recipe needs 3/4 cup of sugar per cake. How much sugar do 6 cakes need?",
    "The temperature fell from 12 degrees to -5 degrees. By how much did it fall?",
    "A class of 28 students splits into teams of 4. How many teams are there?",
    "A shirt costs $25 and is on sale for 20% off. What is the sale price?",
    "Ali reads 35 pages a day. How long will a 420-page book take him?",
    "A tank holds 500 litres and leaks 12 litres an hour. How much is left after a day?",
    "Mei is twice as old as her brother, who is 7. How old will she be in 5 years?",
    "A farmer plants 9 rows of 14 tomato plants. How many plants is that?",
]


@pytest.fixture(scope="module")
def encoder():
    return default_encoder()


def no_nan(value) -> bool:
    if isinstance(value, dict):
        return all(no_nan(v) for v in value.values())
    return not (isinstance(value, float) and (math.isnan(value) or math.isinf(value)))


# ------------------------------------------------------------------------------------------ known answers
def test_identical_texts_have_cosine_one_and_one_cluster(encoder):
    texts = ["What is the capital of France?"] * 6
    s = dv.summarize(texts, encoder.encode(texts))
    assert s.mean_cosine == pytest.approx(1.0, abs=1e-5)
    assert s.near_duplicates.clusters == [list(range(6))]
    assert s.near_duplicate_pairs == 15 and s.near_duplicate_rate == pytest.approx(5 / 6)


def test_paraphrases_and_copies_are_caught_at_the_default_threshold(encoder):
    texts = [t for pair in DUPLICATES for t in pair]
    found = dv.near_duplicates(encoder.encode(texts), texts)
    pairs = {(p.i, p.j) for p in found.pairs}
    missed = [DUPLICATES[k] for k in range(len(DUPLICATES)) if (2 * k, 2 * k + 1) not in pairs]
    assert not missed
    for k in range(len(DUPLICATES)):
        assert any({2 * k, 2 * k + 1} <= set(c) for c in found.clusters)


def test_truncated_and_prefixed_copies_are_pairs(encoder):
    texts = ["What is 2+2?", "What is 2+2? reply:", "Question: What is 2+2?",
             "John has twice as many marbles as Peter. Peter has 7 marbles. How many marbles do they have "
             "together?", "John has twice as many marbles as Peter. Peter has 7 marbles. How many marbles do; reply:"]
    assert dv.lexical_copies(texts) == [(0, 1, "prefix"), (0, 2, "suffix"), (3, 4, "prefix")]
    found = dv.near_duplicates(encoder.encode(texts), texts)
    assert [sorted(c) for c in found.clusters] == [[0, 1, 2], [3, 4]]


def test_lexical_copies_need_most_of_the_shorter_text():
    assert dv.lexical_copies(["What is 2+2?", "What is 2+3?", "What is 2-2?"]) == []
    assert dv.lexical_copies(["Hi there", "Hi there friend"]) == []  # fewer than 4 shared words
    cut = "A baker made 48 cookies and sold 3/4 of them. How many cookies are left at the end of the day?"
    assert dv.lexical_copies([cut, cut[:40] + " ...; reply:"])[0][2] == "prefix"


def test_a_lexical_copy_is_caught_even_below_the_cosine_threshold(encoder):
    texts = ["Dear support, I was charged twice for my subscription this month and I would like one of the "
             "charges refunded to my card.", "Dear support, I was charged twice"]
    e = encoder.encode(texts)
    assert float(e[0] @ e[1]) < 0.95
    found = dv.near_duplicates(e, texts, threshold=0.95)
    assert [(p.i, p.j, p.how) for p in found.pairs] == [(0, 1, "prefix")]
    assert found.pairs[0].cosine == pytest.approx(float(e[0] @ e[1]), abs=1e-5)
    assert dv.near_duplicates(e, texts, threshold=0.95, lexical=False).pairs == []


def test_unrelated_texts_score_low(encoder):
    s = dv.summarize(UNRELATED, encoder.encode(UNRELATED))
    assert s.mean_cosine < 0.15
    assert s.near_duplicate_pairs == 0 and s.near_duplicates.clusters == [] and s.near_duplicate_rate == 0


def test_a_templated_set_ranks_less_diverse_than_a_varied_one(encoder):
    t = dv.summarize(TEMPLATED, encoder.encode(TEMPLATED))
    v = dv.summarize(VARIED, encoder.encode(VARIED))
    assert t.mean_cosine > v.mean_cosine + 0.2
    assert t.mean_nearest_cosine > v.mean_nearest_cosine
    assert t.near_duplicate_rate > v.near_duplicate_rate
    assert t.distinct_2 < v.distinct_2
    assert t.compression_ratio > v.compression_ratio


# ---------------------------------------------------------------------------------------------- edge cases
def test_empty_input_is_not_enough_data():
    s = dv.summarize([], np.zeros((0, 384), dtype=np.float32))
    assert (s.n, s.mean_cosine, s.mean_nearest_cosine, s.near_duplicate_rate, s.distinct_2,
            s.compression_ratio) == (0, None, None, None, None, None)
    assert s.near_duplicate_pairs == 0 and no_nan(s.to_dict())
    assert dv.mean_pairwise_cosine([]) is None
    assert dv.near_duplicates(np.zeros((0, 384))).clusters == []
    idx, sims = dv.nearest_neighbours(np.zeros((0, 384)), 3)
    assert idx.shape == (0, 0) and sims.shape == (0, 0)
    assert dv.sibling_overlap(np.zeros((0, 384)), []).pairs == []
    assert dv.summarize_groups([], np.zeros((0, 384)), []) == {}


def test_one_item(encoder):
    s = dv.summarize(["Only one sample here."], encoder.encode(["Only one sample here."]))
    assert s.mean_cosine is None and s.mean_nearest_cosine is None
    assert s.near_duplicate_rate == 0 and s.distinct_2 == pytest.approx(1.0)
    assert no_nan(s.to_dict())
    idx, sims = dv.nearest_neighbours(encoder.encode(["x"]), 5)
    assert idx.shape == (1, 0)


def test_empty_strings(encoder):
    texts = ["", "", "What is 2+2?"]
    s = dv.summarize(texts, encoder.encode(texts))
    assert no_nan(s.to_dict())
    assert s.near_duplicates.clusters == [[0, 1]]  # two empty samples are copies of each other
    assert s.distinct_2 == 1.0  # the bigrams of "What is 2+2?"
    assert s.compression_ratio is None  # too little text to say
    assert dv.distinct_n(["", ""]) is None  # no bigram at all


def test_long_and_non_latin_texts(encoder):
    texts = ["The quick brown fox jumps over the lazy dog. " * 450, "Lorem ipsum dolor sit amet, " * 750,
             "北京是中国的首都。", "中国的首都是北京。", "Привет, как дела?", "مرحبا كيف حالك", "東京は日本の首都です。" * 1900]
    assert len(texts[0]) > 20_000 and len(texts[-1]) > 20_000
    s = dv.summarize(texts, encoder.encode(texts))
    assert no_nan(s.to_dict()) and 0 < s.mean_cosine < 1
    assert s.distinct_2 is not None and s.compression_ratio > 1
    assert dv.words("北京是中国的首都") == list("北京是中国的首都")  # ideographs count as words


def test_zero_and_bad_vectors():
    e = np.array([[1.0, 0.0], [0.0, 0.0], [1.0, 0.0]])
    assert dv.mean_pairwise_cosine(e) == pytest.approx(1 / 3)  # the zero row has cosine 0 with both
    with pytest.raises(ValueError, match="NaN"):
        dv.mean_pairwise_cosine(np.array([[1.0, np.nan], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="3 texts but 2 embeddings"):
        dv.summarize(["a", "b", "c"], e[:2])


# --------------------------------------------------------------------------- exactness of the blocked scan
def test_blocked_scan_equals_the_full_matrix(encoder):
    texts = TEMPLATED + VARIED + UNRELATED + [t for pair in DUPLICATES for t in pair]
    e = encoder.encode(texts)
    full = e @ e.T
    n = len(texts)
    iu = np.triu_indices(n, 1)
    assert dv.mean_pairwise_cosine(e) == pytest.approx(float(full[iu].mean()), abs=1e-5)
    expected = {(int(i), int(j)) for i, j in zip(*iu) if full[i, j] >= dv.DEFAULT_THRESHOLD}
    for tile in (7, 16, 4096):
        found = dv.near_duplicates(e, threshold=dv.DEFAULT_THRESHOLD, tile=tile)
        assert {(p.i, p.j) for p in found.pairs} == expected and found.total_pairs == len(expected)
        idx, sims = dv.nearest_neighbours(e, 3, tile=tile)
        masked = full.copy()
        np.fill_diagonal(masked, -np.inf)
        best = -np.sort(-masked, axis=1)[:, :3]
        assert np.allclose(sims, best, atol=1e-5)
        assert np.allclose(np.take_along_axis(masked, idx, axis=1), best, atol=1e-5)


def test_new_items_only_and_pair_cap(encoder):
    texts = TEMPLATED + VARIED
    e = encoder.encode(texts)
    every = dv.near_duplicates(e, threshold=0.7, tile=5)
    assert every.total_pairs > 10
    new = dv.near_duplicates(e, threshold=0.7, tile=5, new_from=20)
    assert {(p.i, p.j) for p in new.pairs} == {(p.i, p.j) for p in every.pairs if p.j >= 20}
    capped = dv.near_duplicates(e, threshold=0.7, tile=5, max_pairs=3)
    assert capped.truncated and len(capped.pairs) == 3 and capped.total_pairs == every.total_pairs
    assert [p.cosine for p in capped.pairs] == [p.cosine for p in every.pairs[:3]]
    assert capped.clusters == every.clusters  # clusters use every pair, not just the kept ones


def test_clusters_join_through_a_bridge():
    # a~y, b~x, b~y: all four are one cluster although a and b, x and y are not similar
    uf = dv._UnionFind(6)
    uf.union(np.array([0, 1, 1]), np.array([3, 2, 3]))
    assert uf.groups() == [[0, 1, 2, 3]]


def test_distinct_n_and_compression_known_answers():
    assert dv.distinct_n(["a b c", "a b d"]) == pytest.approx(3 / 4)
    assert dv.distinct_n(["one", "two"]) is None
    assert dv.distinct_n(["a b c"], n=1) == 1.0
    same = dv.compression_ratio(["the same sentence again and again"] * 50)
    varied = dv.compression_ratio(VARIED)
    assert same > 10 > varied > 1


# ---------------------------------------------------------------------------------------- groups, siblings
def test_per_group_summaries(encoder):
    texts = TEMPLATED + VARIED + ["lone"]
    labels = ["templated"] * len(TEMPLATED) + ["varied"] * len(VARIED) + ["single"]
    groups = dv.summarize_groups(texts, encoder.encode(texts), labels)
    assert list(groups) == ["templated", "varied", "single"]
    assert groups["templated"].n == 12 and groups["templated"].mean_cosine > groups["varied"].mean_cosine
    assert groups["single"].mean_cosine is None and all(no_nan(g.to_dict()) for g in groups.values())


def test_sibling_overlap_finds_values_that_do_not_separate(encoder):
    math_a, math_b = VARIED[:6], VARIED[6:]  # two "values" that are the same kind of sample
    other = ["How do I reset my password?", "My order #1234 arrived damaged; I want a refund.",
             "Can I change the delivery address of my order?", "Why was I charged twice this month?",
             "How do I cancel my subscription?", "The app crashes when I upload a photo."]
    copy = "A shirt costs $25 and is on sale for 20% off. What is the sale price? reply:"  # a copy of VARIED[7]
    texts = math_a + math_b + other + [copy]
    labels = ["a"] * 6 + ["b"] * 6 + ["support"] * 6 + ["a"]
    result = dv.sibling_overlap(encoder.encode(texts), labels, texts)
    worst = result.worst
    assert {worst.a, worst.b} == {"a", "b"}
    by_key = {frozenset((p.a, p.b)): p for p in result.pairs}
    assert by_key[frozenset(("a", "b"))].centroid_cosine > by_key[frozenset(("a", "support"))].centroid_cosine + 0.2
    assert by_key[frozenset(("a", "support"))].separation < 0.5 < by_key[frozenset(("a", "b"))].separation
    assert by_key[frozenset(("a", "b"))].near_duplicate_pairs == 1
    assert [(p.i, p.j) for p in result.cross_duplicates] == [(7, 18)]
    assert by_key[frozenset(("a", "support"))].near_duplicate_pairs == 0
