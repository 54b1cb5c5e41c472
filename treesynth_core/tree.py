"""The partition tree as plain data, and pure functions over it (no database, no LLM).

A node is defined by ``value`` (its value of the parent's dimension) and split by ``dimension`` into
children. An *infinite* node stands for an open-ended dimension: it holds the whole value list in
``values`` and a value is drawn at random each time a prompt is built beneath it.
"""

from __future__ import annotations

import functools
import random
import re
import unicodedata
from dataclasses import dataclass, field

from .errors import ConfigError

STATUSES = ("proposed", "approved", "edited", "pruned", "failed")

CATCH_ALL = re.compile(
    r"^(others?|other \w+|misc\.?|miscellaneous|etc\.?|general|various|mixed|n/?a|none|unknown|"
    r"anything else|everything else|all others?|rest|the rest|remaining|not applicable|none of the above)$"
)
# "A and B", "A or B", "A/B", "A & B", "A + B", "A vs B": two values in one. Only short word pairs count, so a
# value such as "between 1 and 5" or "questions about supply and demand in markets" is not taken for a pair, and
# a "+" counts only between two words ("C++" is one value).
COMBINED_SYMBOL = re.compile(r"[/&;]|\w\s*\+\s*\w|\band/or\b|\bvs\b\.?")
COMBINED_WORDS = re.compile(r"^[^\W\d]+(?: [^\W\d]+)? (?:and|or) [^\W\d]+(?: [^\W\d]+)?$")


@dataclass
class Node:
    id: str
    project_id: int
    parent_id: str | None
    depth: int
    value: str | None = None
    dimension: str | None = None
    infinite: bool = False
    values: list[str] = field(default_factory=list)  # the value list of an infinite node
    status: str = "proposed"
    provenance: str = "llm"
    locked: bool = False
    failure: str | None = None
    quota: int | None = None
    position: int = 0
    pivots: list[dict] = field(default_factory=list)
    note: str | None = None

    @property
    def label(self) -> str:
        if self.parent_id is None:
            return "(root)"
        if self.infinite:
            return f"any of {len(self.values)} values"
        return self.value or ""


NOT_WORD = re.compile(r"[^\w\s]+")


@functools.lru_cache(maxsize=1)
def _combining_marks() -> re.Pattern:
    """Every code point with a non-zero combining class, as one character class (built once, on first use)."""
    marks = [c for c in range(0x110000) if unicodedata.combining(chr(c))]
    ranges, start = [], marks[0]
    for prev, cur in zip(marks, marks[1:] + [None]):
        if cur != prev + 1:
            ranges.append(f"{re.escape(chr(start))}-{re.escape(chr(prev))}" if prev > start else re.escape(chr(start)))
            start = cur
    return re.compile("[" + "".join(ranges) + "]+")


def normalise(text: str) -> str:
    """Case, accents, punctuation and spacing folded away: the form used for duplicate checks.

    NFKD, combining marks dropped, lower case, every character that is neither a word character nor space
    made a space, runs of space folded to one and the ends stripped. Done with C-level string methods and
    regexes (ASCII text skips the Unicode steps, which cannot change it), never a Python loop per character:
    it runs for every field of every sample."""
    text = text or ""
    if not text.isascii():
        text = _combining_marks().sub("", unicodedata.normalize("NFKD", text))
    return " ".join(NOT_WORD.sub(" ", text.lower()).split())


def dimension_key(text: str) -> str:
    """Normalised form of a dimension name, ignoring a plural 's' and filler words."""
    words = [w for w in normalise(text).split() if w not in {"the", "a", "an", "of", "type", "kind"}]
    return " ".join(_singular(w) for w in words)


def _singular(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


# Content that must never become a label: a spreadsheet formula (=HYPERLINK(...), @SUM, +cmd(...)), markup
# (<img ...>, </b>, <!-- -->), control characters and lone surrogates (invalid Unicode that breaks encoders).
FORMULA = re.compile(r"^\s*(?:[=@]|[+\-]\s*[^\W\d_]+\s*\()")
MARKUP = re.compile(r"<\s*[/!?]?\s*[A-Za-z!][^>]*>|<!--|javascript\s*:", re.I)
BAD_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\ud800-\udfff]")
LABEL_CAPS = {"value": 120, "dimension": 80}


def label_problem(text: str, kind: str = "value") -> str | None:
    """Why ``text`` cannot be a split's ``kind`` ("value" or "dimension"), or None. One rule for both: the
    LLM's dimension names reach the same pages, exports and prompts as its values."""
    cap = LABEL_CAPS[kind]
    if not isinstance(text, str) or not text.strip():
        return f"a {kind} is empty"
    shown = text[:40].encode("utf-8", "backslashreplace").decode("utf-8")
    if BAD_CHARS.search(text):
        return f"{kind} {shown!r} contains control characters or invalid Unicode; write plain text"
    if len(text) > cap:
        return f"{kind} {shown!r}... is longer than {cap} characters; name it in a few words"
    if FORMULA.match(text):
        return f"{kind} {shown!r} looks like a spreadsheet formula; write a plain name"
    if MARKUP.search(text):
        return f"{kind} {shown!r} contains HTML or markup; write a plain name"
    if CATCH_ALL.match(normalise(text)):
        return f"{text!r} is a vague catch-all; name a concrete {kind} instead"
    plain = " ".join(text.lower().split())
    if COMBINED_SYMBOL.search(plain) or COMBINED_WORDS.match(plain):
        what = "values; give each its own value" if kind == "value" else "dimensions; name ONE dimension"
        return f"{text!r} combines several {what}"
    return None


def value_problem(value: str) -> str | None:
    """Why a proposed value is not acceptable, or None."""
    return label_problem(value, "value")


def dimension_problem(dimension: str) -> str | None:
    """Why a proposed dimension name is not acceptable, or None (the same rules as values)."""
    return label_problem(dimension, "dimension")


# ----------------------------------------------------------------------------- a path alone
# What a prompt needs of the tree is one path, the nodes from the root down to a node: an expansion or a
# generation call reads that (O(depth), ``Store.node_path``), never the whole tree.


def path_attributes(path: list[Node], rng: random.Random | None = None) -> list[tuple[str, str]]:
    """(dimension, value) pairs along ``path`` (root first). An infinite node contributes a random draw."""
    rng = rng or random.Random()
    pairs = []
    for parent, child in zip(path, path[1:]):
        value = rng.choice(child.values) if child.infinite and child.values else child.value
        pairs.append((parent.dimension or "", value or ""))
    return pairs


def path_used_dimensions(path: list[Node]) -> list[str]:
    """Dimensions used by the ancestors of the path's last node (its own excluded)."""
    return [n.dimension for n in path[:-1] if n.dimension]


def path_labels(path: list[Node]) -> list[tuple[str, str]]:
    """Like path_attributes(), but an infinite node shows its label instead of a random draw."""
    return [(p.dimension or "", c.label) for p, c in zip(path, path[1:])]


def path_pruned(path: list[Node]) -> bool:
    return any(n.status == "pruned" for n in path)


def refuse_pruned(path: list[Node], consequence: str) -> None:
    """Refuse work at the end of ``path`` (root first) when a node on it is pruned, saying what the work would
    come to there; building, balancing, importing and seed examples share this one rule and its hint."""
    if path_pruned(path):
        raise ConfigError(f"that node is pruned (or under a pruned node): {consequence}",
                          "restore it first (`edit restore`, or Restore subtree on the Tree page)")


class Tree:
    """An in-memory view of one project's nodes, with parent/child indexes."""

    def __init__(self, nodes: list[Node]):
        self.nodes: dict[str, Node] = {n.id: n for n in nodes}
        self.children: dict[str | None, list[Node]] = {}
        for n in sorted(nodes, key=lambda n: (n.depth, n.position, n.id)):
            self.children.setdefault(n.parent_id, []).append(n)
        roots = self.children.get(None, [])
        self.root: Node | None = roots[0] if roots else None

    def __len__(self) -> int:
        return len(self.nodes)

    def kids(self, node_id: str, include_pruned: bool = True) -> list[Node]:
        kids = self.children.get(node_id, [])
        return kids if include_pruned else [k for k in kids if k.status != "pruned"]

    def path(self, node_id: str) -> list[Node]:
        """Nodes from the root down to ``node_id`` inclusive."""
        out = []
        node = self.nodes.get(node_id)
        while node is not None:
            out.append(node)
            node = self.nodes.get(node.parent_id) if node.parent_id else None
        return out[::-1]

    def attributes(self, node_id: str, rng: random.Random | None = None) -> list[tuple[str, str]]:
        """(dimension, value) pairs on the path. An infinite node contributes a random draw."""
        return path_attributes(self.path(node_id), rng)

    def used_dimensions(self, node_id: str) -> list[str]:
        """Dimensions used by the ancestors of ``node_id`` (the node's own excluded)."""
        return path_used_dimensions(self.path(node_id))

    def subtree(self, node_id: str) -> list[Node]:
        out, stack = [], [node_id]
        while stack:
            nid = stack.pop()
            if nid in self.nodes:
                out.append(self.nodes[nid])
                stack.extend(k.id for k in reversed(self.children.get(nid, [])))
        return out

    def is_pruned(self, node_id: str) -> bool:
        return any(n.status == "pruned" for n in self.path(node_id))

    def leaves(self, under: str | None = None, include_pruned: bool = False) -> list[Node]:
        """Nodes with no live children: where samples are generated."""
        start = under or (self.root.id if self.root else None)
        if start is None:
            return []
        out = []
        for n in self.subtree(start):
            if not include_pruned and self.is_pruned(n.id):
                continue
            if not self.kids(n.id, include_pruned=include_pruned):
                out.append(n)
        return out

    def path_text(self, node_id: str) -> str:
        pairs = [f"{d}={v}" for d, v in self.labelled_path(node_id)]
        return " > ".join(pairs) if pairs else "(root)"

    def labelled_path(self, node_id: str) -> list[tuple[str, str]]:
        """Like attributes(), but an infinite node shows its label instead of a random draw."""
        return path_labels(self.path(node_id))

    def max_depth(self) -> int:
        return max((n.depth for n in self.nodes.values()), default=0)


def dedupe_values(values: list[str], existing: list[str] = ()) -> list[str]:
    """Drop values equal to an earlier or existing one after normalisation; keep first spelling."""
    seen = {normalise(v) for v in existing}
    out = []
    for v in values:
        v = re.sub(r"\s+", " ", str(v)).strip().strip(".")
        key = normalise(v)
        if key and key not in seen:
            seen.add(key)
            out.append(v)
    return out
