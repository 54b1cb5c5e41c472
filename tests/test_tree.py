import random

from treesynth_core.tree import (Node, Tree, dedupe_values, dimension_key, dimension_problem, normalise,
                                 value_problem)


def make_tree():
    nodes = [
        Node("r", 1, None, 0, dimension="topic"),
        Node("a", 1, "r", 1, value="Algebra", dimension="difficulty", position=0),
        Node("b", 1, "r", 1, value="Geometry", position=1, status="pruned"),
        Node("a1", 1, "a", 2, value="easy", position=0),
        Node("a2", 1, "a", 2, infinite=True, values=["x", "y", "z"], position=1),
    ]
    return Tree(nodes)


def test_normalise_folds_case_accents_punctuation_and_space():
    assert normalise("  Café-Style,  PROBLEMS! ") == "cafe style problems"
    assert dimension_key("Topics") == dimension_key("the topic") == "topic"


def test_value_problem_rejects_catch_alls_and_combinations():
    assert value_problem("Other") and value_problem("misc.") and value_problem("")
    assert value_problem("addition and subtraction") and value_problem("cats/dogs")
    assert value_problem("Geometry") is None and value_problem("two-step problems") is None
    assert value_problem("rock or pop") and value_problem("A & B") and value_problem("cats vs dogs")
    assert value_problem("between 1 and 5") is None  # a range, not two values
    assert value_problem("questions about supply and demand in markets") is None


def test_dedupe_values_keeps_first_spelling():
    assert dedupe_values(["Easy", "easy.", "Hard", " hard "], existing=["Medium", "MEDIUM"]) == ["Easy", "Hard"]
    assert dedupe_values(["Medium"], existing=["medium"]) == []


def test_paths_leaves_and_pruning():
    tree = make_tree()
    assert [n.id for n in tree.path("a1")] == ["r", "a", "a1"]
    assert tree.used_dimensions("a1") == ["topic", "difficulty"]
    assert {n.id for n in tree.leaves()} == {"a1", "a2"}  # b is pruned
    assert {n.id for n in tree.leaves(include_pruned=True)} == {"a1", "a2", "b"}
    assert tree.is_pruned("b") and not tree.is_pruned("a1")
    assert [n.id for n in tree.subtree("a")] == ["a", "a1", "a2"]


def test_infinite_node_draws_a_value_per_prompt():
    tree = make_tree()
    draws = {tree.attributes("a2", random.Random(seed))[-1][1] for seed in range(30)}
    assert draws == {"x", "y", "z"}
    assert tree.attributes("a1") == [("topic", "Algebra"), ("difficulty", "easy")]
    assert tree.labelled_path("a2")[-1] == ("difficulty", "any of 3 values")


def test_dimensions_and_values_follow_one_content_rule():
    for bad, reason in [('=HYPERLINK("http://x.test")', "formula"), ("@SUM(A1)", "formula"),
                        ("+cmd(1)", "formula"), ("<img src=x onerror=alert(1)>", "HTML"), ("a</b>", "HTML"),
                        ("bad \ud800 text", "invalid Unicode"), ("tab\x00", "control"), ("Misc.", "catch-all")]:
        assert reason in value_problem(bad) and reason in dimension_problem(bad)
    assert "longer than 80" in dimension_problem("d" * 81) and value_problem("d" * 81) is None
    assert "ONE dimension" in dimension_problem("difficulty and setting")
    for good in ["-5 degrees", "x < 5 items", "reasoning type", "between 1 and 5", "C++"]:
        assert value_problem(good) is None and dimension_problem(good) is None, good


def _reference_normalise(text: str) -> str:
    """The former per-character implementation: fingerprints stored by it must stay equal."""
    import re
    import unicodedata

    text = unicodedata.normalize("NFKD", text or "")
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    text = re.sub(r"[^\w\s]", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def test_normalise_is_exactly_the_former_one():
    rng = random.Random(7)
    pool = ([chr(c) for c in range(0x20, 0x250)] + list(" \t\n\x1c\x85\xa0\u2028\u3000\u200b") +
            [chr(c) for c in (0x130, 0x300, 0x301, 0x345, 0x1E9E, 0xFB01, 0x2460, 0x2488, 0x3200, 0xFF21, 0x1D400)])
    for _ in range(20_000):
        text = "".join(rng.choice(pool) for _ in range(rng.randrange(0, 24)))
        assert normalise(text) == _reference_normalise(text), repr(text)
    for code in range(0, 0x30000, 3):  # every third code point of the first three planes, in a word
        if not 0xD800 <= code <= 0xDFFF:
            text = f"Ab{chr(code)}c {chr(code)}"
            assert normalise(text) == _reference_normalise(text), hex(code)
