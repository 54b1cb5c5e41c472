"""Diversity metrics over texts and their embeddings: pure functions, numpy only.

Embeddings are rows of an ``[n, dim]`` array, L2-normalised (as :mod:`treesynth_core.embed` returns them; rows
are normalised again here, an all-zero row stays zero and has cosine 0 with everything). Every metric is a
number or ``None`` when there is not enough data (no pair to compare, no bigram to count): never NaN.

- :func:`mean_pairwise_cosine`: paper-style diversity (lower = more diverse), exact, O(n * dim).
- :func:`near_duplicates`: pairs at or above a cosine threshold, plus truncated / prefixed copies found
  lexically, grouped into clusters (union-find); blocked, so 100k items never hold an n x n matrix.
- :func:`nearest_neighbours`: top-k most similar other items per row, same blocked scan.
- :func:`distinct_n`, :func:`compression_ratio`: model-free cross-checks.
- :func:`summarize`, :func:`summarize_groups`, :func:`sibling_overlap`: a dataset, per leaf/subtree, per split.
- :func:`tokenise`: the texts' tokens for the lexical metrics, once, for a caller that measures many subsets of
  the same texts (a quality report's dataset, subtrees and leaves) and passes ``Tokens.subset`` to summarize.
"""

from __future__ import annotations

import re
import sys
import unicodedata
import zlib
from collections.abc import Hashable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

# Measured on 20 hand-labelled duplicate pairs (paraphrases, truncated, prefixed and suffixed copies: cosine
# 0.872-0.991 with all-MiniLM-L6-v2 int8) against 20 same-task different-sample pairs (0.354-0.790, plus three
# same-template variants at 0.899-0.961, e.g. "Tom has 3 apples..." vs "Tom has 4 apples...", which a
# diversity review should see). 0.85 sits in the gap; see bench/bench_diversity.py --calibrate.
DEFAULT_THRESHOLD = 0.85
TILE = 2048  # rows and columns of one block of the similarity matrix: 2048 x 2048 float32 = 16 MB
MAX_PAIRS = 100_000  # pairs kept (the most similar); clusters always use every pair
COPY_MIN_TOKENS = 4  # a lexical copy shares a beginning or an ending of at least this many words ...
COPY_MIN_SHARE = 0.9  # ... and at least this share of the shorter text's words
COPY_WINDOW = 8  # neighbours compared in sorted order (copies of one text sort next to each other)
COPY_KEY_TOKENS = 256
COMPRESSION_MIN_BYTES = 100


# ---------------------------------------------------------------------------------------------------- helpers
def _unit_rows(embeddings) -> np.ndarray:
    """float32 rows of unit length; the input itself when it already is (no copy of a 150 MB matrix)."""
    e = np.asarray(embeddings, dtype=np.float32)
    if e.ndim != 2:
        if e.size == 0:
            return np.zeros((0, 0), dtype=np.float32)
        raise ValueError(f"embeddings must be a 2-D array [n, dim], got shape {e.shape}")
    norms = np.sqrt(np.einsum("ij,ij->i", e, e))
    if not np.isfinite(norms).all():
        raise ValueError("embeddings contain NaN or infinite values")
    if np.all((np.abs(norms - 1) < 1e-4) | (norms == 0)):
        return e
    return e / np.maximum(norms, 1e-12)[:, None]


def _check_aligned(texts: Sequence[str] | None, e: np.ndarray) -> None:
    if texts is not None and len(texts) != len(e):
        raise ValueError(f"{len(texts)} texts but {len(e)} embeddings")


def _clip(x: float) -> float:
    return float(min(1.0, max(-1.0, x)))


class _UnionFind:
    """Connected components over 0..n-1, edges added in numpy batches (hook roots to smaller roots, then
    pointer-jump), so a block with millions of pairs costs a few vector operations, not a Python loop."""

    def __init__(self, n: int):
        self.parent = np.arange(n, dtype=np.int64)

    def _compress(self) -> None:
        p = self.parent
        while True:
            pp = p[p]
            if np.array_equal(pp, p):
                return
            p[:] = pp

    def union(self, u: np.ndarray, v: np.ndarray) -> None:
        u, v = np.asarray(u, dtype=np.int64), np.asarray(v, dtype=np.int64)
        while len(u):
            self._compress()
            ru, rv = self.parent[u], self.parent[v]
            open_ = ru != rv
            if not open_.any():
                return
            u, v, ru, rv = u[open_], v[open_], ru[open_], rv[open_]
            np.minimum.at(self.parent, np.maximum(ru, rv), np.minimum(ru, rv))

    def groups(self) -> list[list[int]]:
        """Components with two or more members, largest first (ties: lowest first index)."""
        self._compress()
        roots = self.parent
        counts = np.bincount(roots, minlength=len(roots))
        multi = np.flatnonzero(counts >= 2)
        if not len(multi):
            return []
        members = np.flatnonzero(np.isin(roots, multi))
        order = np.argsort(roots[members], kind="stable")
        members = members[order]
        splits = np.flatnonzero(np.diff(roots[members])) + 1
        clusters = [c.tolist() for c in np.split(members, splits)]
        return sorted(clusters, key=lambda c: (-len(c), c[0]))


# ------------------------------------------------------------------------------------------------ mean cosine
def mean_pairwise_cosine(embeddings) -> float | None:
    """Mean cosine similarity over all pairs of distinct items (lower = more diverse); ``None`` below 2 items.

    Paper-style: consistent with the "Diversity" score reported by TreeSynth (Wang et al., 2025), where lower
    is more diverse, but not its exact metric (their embedding model and text fields may differ): compare
    numbers from the same encoder and the same fields only. Exact and O(n * dim): for unit rows, the sum of
    all pairwise cosines is ``|sum of rows|^2 - sum of |row|^2``.
    """
    e = _unit_rows(embeddings)
    n = len(e)
    if n < 2:
        return None
    total = e.sum(axis=0, dtype=np.float64)
    self_sim = float(np.einsum("ij,ij->i", e, e).sum(dtype=np.float64))
    return _clip((float(total @ total) - self_sim) / (n * (n - 1)))


# ------------------------------------------------------------------------------------------ near-duplicates
@dataclass(frozen=True)
class Pair:
    """Items ``i < j`` (row indices) that look like copies. ``how``: "cosine" (at or above the threshold),
    "prefix" (one is a truncated copy of the other, or shares most of its beginning) or "suffix" (one is the
    other with something put in front)."""

    i: int
    j: int
    cosine: float
    how: str


@dataclass(frozen=True)
class NearDuplicates:
    n: int
    threshold: float
    pairs: list[Pair]  # most similar first; at most ``max_pairs`` of them
    total_pairs: int  # all pairs found (cosine and lexical, each pair once)
    clusters: list[list[int]]  # connected groups of two or more items, largest first

    @property
    def truncated(self) -> bool:
        return self.total_pairs > len(self.pairs)

    @property
    def redundant(self) -> int:
        """Items that keeping one per cluster would drop."""
        return sum(len(c) - 1 for c in self.clusters)

    @property
    def rate(self) -> float | None:
        """Share of items that are redundant copies (``redundant / n``); ``None`` for an empty set."""
        return self.redundant / self.n if self.n else None

    @property
    def in_cluster(self) -> set[int]:
        return {i for c in self.clusters for i in c}


_COPY_TOKEN = re.compile(r"\w+|[+\-*/=<>%^$€£#@&|~]")


def _copy_tokens(text: str) -> tuple[str, ...]:
    """Words and math/money symbols, case-folded; sentence punctuation is dropped (a copy's "; reply:" tail
    then costs one word). At most the first and last ``COPY_KEY_TOKENS`` count: the encoder sees 256 tokens."""
    return tuple(_COPY_TOKEN.findall(unicodedata.normalize("NFKC", text).casefold()))


def _shared(a: tuple, b: tuple) -> int:
    return next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def lexical_copies(texts: Sequence[str], *, min_tokens: int = COPY_MIN_TOKENS, min_share: float = COPY_MIN_SHARE,
                   window: int = COPY_WINDOW, tokens: Sequence[tuple[str, ...]] | None = None
                   ) -> list[tuple[int, int, str]]:
    """Pairs ``(i, j, how)``, ``i < j``, where one text is a truncated or prefixed copy of the other.

    Texts are compared as word sequences (case-folded; ``+ - * / = < > % $`` and the like kept, sentence
    punctuation dropped). A pair shares a beginning ("prefix") or an ending ("suffix") of at least
    ``min_tokens`` words and at least ``min_share`` of the shorter text's words: "What is 2+2?" and
    "What is 2+2? reply:" are a pair, and so is a question cut off mid-sentence with "; reply:" appended, but
    not "What is 2+2?" and "What is 2+3?". Two texts that differ only in their last tenth are a pair too
    (e.g. the same long template with another final word): review them as templated. Only the first (or last)
    256 words count, as the encoder also reads 256 tokens. Sorting puts such texts next to each other; each
    is compared with the next ``window`` ones (O(n log n)), and clusters join what the window misses.
    ``tokens``: the texts' ``Tokens.copy``, when already computed (:func:`tokenise`).
    """
    found: dict[tuple[int, int], str] = {}
    tokens = [_copy_tokens(t) for t in texts] if tokens is None else tokens
    for how, keys in (("prefix", [t[:COPY_KEY_TOKENS] for t in tokens]),
                      ("suffix", [t[::-1][:COPY_KEY_TOKENS] for t in tokens])):
        order = sorted((i for i in range(len(keys)) if len(keys[i]) >= min_tokens), key=keys.__getitem__)
        for pos, a in enumerate(order):
            for b in order[pos + 1 : pos + 1 + window]:
                shared = _shared(keys[a], keys[b])
                if shared < min_tokens:
                    break  # sorted order: later texts share even less with this one
                if shared >= min_share * min(len(keys[a]), len(keys[b])):
                    found.setdefault((min(a, b), max(a, b)), how)
    return [(i, j, how) for (i, j), how in sorted(found.items())]


def _scan(e: np.ndarray, tile: int, new_from: int, *collectors) -> None:
    """Feed each upper-triangle block of ``e @ e.T`` (row block <= column block) that holds a pair ``i < j``
    with ``j >= new_from`` to the collectors, its diagonal set to -inf."""
    n = len(e)
    for r0 in range(0, n, tile):
        for c0 in range(r0, n, tile):
            if min(n, c0 + tile) <= new_from:
                continue
            block = e[r0 : r0 + tile] @ e[c0 : c0 + tile].T
            if r0 == c0:
                np.fill_diagonal(block, -np.inf)
            for collector in collectors:
                collector.add(r0, c0, block)


class _Pairs:
    """Pairs at or above ``threshold`` in the blocks: all of them into the union-find, the ``max_pairs`` most
    similar kept."""

    def __init__(self, n: int, threshold: float, max_pairs: int, new_from: int):
        self.threshold, self.max_pairs, self.new_from = np.float32(threshold), max_pairs, new_from
        self.uf = _UnionFind(n)
        self.kept: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.held, self.total, self.floor = 0, 0, -np.inf  # below floor a pair can no longer make the top

    def add(self, r0: int, c0: int, block: np.ndarray) -> None:
        hits = block >= self.threshold  # the diagonal is -inf; the lower triangle of a diagonal block repeats
        if c0 < self.new_from:
            hits[:, : self.new_from - c0] = False
        flat = np.flatnonzero(hits)  # much faster than a 2-D nonzero
        if r0 == c0:
            flat = flat[flat % block.shape[1] > flat // block.shape[1]]
        if not len(flat):
            return
        ii, jj = np.divmod(flat, block.shape[1])
        sims = block.reshape(-1)[flat]
        ii, jj = ii + r0, jj + c0
        self.total += len(ii)
        self.uf.union(ii, jj)
        keep = sims >= self.floor
        self.kept.append((ii[keep], jj[keep], sims[keep]))
        self.held += int(keep.sum())
        if self.held > 2 * self.max_pairs:
            self._prune()

    def _prune(self) -> None:
        i, j, s = (np.concatenate(parts) for parts in zip(*self.kept))
        if len(s) > self.max_pairs:
            top = np.argpartition(-s, self.max_pairs - 1)[: self.max_pairs]
            i, j, s = i[top], j[top], s[top]
            self.floor = float(s.min())
        self.kept, self.held = [(i, j, s)], len(s)

    def result(self, e: np.ndarray, texts: Sequence[str] | None, lexical: bool,
               tokens: Sequence[tuple[str, ...]] | None = None) -> NearDuplicates:
        pairs = []
        if self.kept:
            self._prune()
            pairs = [Pair(int(i), int(j), _clip(float(s)), "cosine") for i, j, s in zip(*self.kept[0])]
        total = self.total
        if texts is not None and lexical:
            copies = [(i, j, how) for i, j, how in lexical_copies(texts, tokens=tokens) if j >= self.new_from]
            if copies:
                ci = np.array([c[0] for c in copies], dtype=np.int64)
                cj = np.array([c[1] for c in copies], dtype=np.int64)
                sims = np.einsum("ij,ij->i", e[ci], e[cj])
                fresh = sims < self.threshold  # the others were found (and counted) by the cosine scan
                total += int(fresh.sum())
                self.uf.union(ci[fresh], cj[fresh])
                pairs += [Pair(i, j, _clip(float(s)), how) for (i, j, how), s, f in zip(copies, sims, fresh) if f]
        pairs.sort(key=lambda p: (-p.cosine, p.i, p.j))
        return NearDuplicates(n=len(e), threshold=float(self.threshold), pairs=pairs[: self.max_pairs],
                              total_pairs=total, clusters=self.uf.groups())


def near_duplicates(embeddings, texts: Sequence[str] | None = None, *, threshold: float = DEFAULT_THRESHOLD,
                    max_pairs: int = MAX_PAIRS, tile: int = TILE, new_from: int = 0,
                    lexical: bool = True) -> NearDuplicates:
    """Pairs of items whose cosine is at least ``threshold``, plus (given ``texts``) truncated and prefixed
    copies found lexically (:func:`lexical_copies`), and the clusters they form.

    The similarity matrix is scanned in ``tile`` x ``tile`` blocks of its upper triangle, so memory stays at
    about one block (16 MB at the default) whatever ``n``; time is O(n^2 * dim) (see bench/bench_diversity.py).
    Clusters use every pair found; only the ``max_pairs`` most similar are returned. ``new_from``: only pairs
    that involve an item at or after that index (items appended since the last scan), in O(new * n); clusters
    then cover those pairs only.
    """
    e = _unit_rows(embeddings)
    _check_aligned(texts, e)
    pairs = _Pairs(len(e), threshold, max_pairs, new_from)
    _scan(e, tile, new_from, pairs)
    return pairs.result(e, texts, lexical)


class _Nearest:
    """The ``k`` most similar other rows of every row; a block updates its rows and (off the diagonal) its
    columns, so each product is computed once."""

    def __init__(self, n: int, k: int):
        self.k = k
        self.sims = np.full((n, k), -np.inf, dtype=np.float32)
        self.index = np.full((n, k), -1, dtype=np.int64)

    def add(self, r0: int, c0: int, block: np.ndarray) -> None:
        if self.k == 0:
            return
        self._update(r0, block, c0, axis=1)
        if r0 != c0:
            self._update(c0, block, r0, axis=0)

    def _update(self, row0: int, block: np.ndarray, col0: int, axis: int) -> None:
        if self.k == 1:  # max along either axis is fast; argmax down the columns is not, so only where it helps
            top = block.max(axis=axis)
            rows = np.arange(row0, row0 + len(top))
            better = np.flatnonzero(top > self.sims[rows, 0])
            if len(better):
                arg = block[better].argmax(axis=1) if axis == 1 else block[:, better].argmax(axis=0)
                self.sims[rows[better], 0], self.index[rows[better], 0] = top[better], arg + col0
            return
        sims = block if axis == 1 else block.T
        rows = slice(row0, row0 + sims.shape[0])
        cand_s = np.concatenate([self.sims[rows], sims], axis=1)
        cand_i = np.concatenate([self.index[rows], np.broadcast_to(np.arange(col0, col0 + sims.shape[1]),
                                                                   sims.shape)], axis=1)
        top = np.argpartition(-cand_s, self.k - 1, axis=1)[:, : self.k]
        self.sims[rows] = np.take_along_axis(cand_s, top, axis=1)
        self.index[rows] = np.take_along_axis(cand_i, top, axis=1)

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        order = np.argsort(-self.sims, axis=1, kind="stable")
        sims = np.clip(np.take_along_axis(self.sims, order, axis=1), -1.0, 1.0)
        return np.take_along_axis(self.index, order, axis=1), sims


def nearest_neighbours(embeddings, k: int = 1, *, tile: int = TILE) -> tuple[np.ndarray, np.ndarray]:
    """For each row, the ``k`` most similar other rows: ``(indices int64 [n, k'], cosines float32 [n, k'])``,
    most similar first, with ``k' = min(k, n - 1)`` (no columns for a single item).

    Blocked like :func:`near_duplicates` (each block updates the rows of both its row and its column range),
    so memory stays at one block plus the ``n x k'`` answer.
    """
    e = _unit_rows(embeddings)
    nearest = _Nearest(len(e), max(0, min(int(k), len(e) - 1)))
    if nearest.k:
        _scan(e, tile, 0, nearest)
    return nearest.result()


# ---------------------------------------------------------------------------------------- model-free checks
_TOKEN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|\w+")


def words(text: str) -> list[str]:
    """Case-folded word tokens; each CJK ideograph or kana counts as one word (those scripts use no spaces)."""
    return _TOKEN.findall(unicodedata.normalize("NFKC", text).casefold())


def distinct_n(texts: Sequence[str], n: int = 2, *, tokens: Sequence[list[str]] | None = None) -> float | None:
    """Distinct word n-grams / all word n-grams, n-grams taken within each text (higher = more varied wording);
    ``None`` when no text has ``n`` words. ``tokens``: the texts' ``Tokens.words``, when already computed."""
    seen, total = set(), 0
    for w in (map(words, texts) if tokens is None else tokens):
        grams = list(zip(*(w[i:] for i in range(n))))
        seen.update(grams)
        total += len(grams)
    return len(seen) / total if total else None


def compression_ratio(texts: Sequence[str]) -> float | None:
    """Size of the texts (UTF-8, one per line) over their DEFLATE-compressed size (zlib level 9, raw stream):
    higher = more repetitive (as in Shaib et al., 2024, with gzip). DEFLATE sees repeats up to 32 KB apart only,
    so a large set is judged on its local redundancy: compare sets of similar size. ``None`` below
    ``COMPRESSION_MIN_BYTES`` bytes, where the format's fixed overhead, not the text, sets the ratio."""
    raw = "\n".join(texts).encode("utf-8")
    if len(raw) < COMPRESSION_MIN_BYTES:
        return None
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    return len(raw) / len(packer.compress(raw) + packer.flush())


@dataclass(frozen=True)
class Tokens:
    """Each text's tokens for the lexical metrics: ``copy`` for :func:`lexical_copies`, ``words`` for
    :func:`distinct_n`, in the texts' order."""

    copy: list[tuple[str, ...]]
    words: list[list[str]]

    def subset(self, ix) -> Tokens:
        """The tokens of the texts at these indices, in that order."""
        return Tokens([self.copy[i] for i in ix], [self.words[i] for i in ix])


def tokenise(texts: Sequence[str]) -> Tokens:
    """The texts' tokens, computed once for a caller that measures many subsets of them. Each distinct token is
    one shared string (``sys.intern``): 10k short samples hold 2.4 MB of tokens instead of 19 MB."""
    return Tokens([tuple(map(sys.intern, _copy_tokens(t))) for t in texts],
                  [list(map(sys.intern, words(t))) for t in texts])


# ---------------------------------------------------------------------------------------------- summaries
@dataclass(frozen=True)
class Summary:
    """The metrics of one set of samples (a dataset, a subtree or a leaf). ``None`` = not enough data."""

    n: int
    mean_cosine: float | None  # paper-style diversity: lower = more diverse
    mean_nearest_cosine: float | None  # each item's most similar other item, averaged
    near_duplicate_pairs: int
    near_duplicate_clusters: int
    near_duplicate_rate: float | None  # redundant items / n
    distinct_2: float | None
    compression_ratio: float | None
    threshold: float
    near_duplicates: NearDuplicates | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        """Plain numbers for JSON/CSV export (the pairs themselves are left out)."""
        d = asdict(self)
        d.pop("near_duplicates")
        return d


def summarize(texts: Sequence[str], embeddings, *, threshold: float = DEFAULT_THRESHOLD,
              tile: int = TILE, tokens: Tokens | None = None) -> Summary:
    """All metrics of one set; ``texts[i]`` is the text ``embeddings[i]`` was computed from. ``tokens``: the
    texts' :func:`tokenise` (or a subset of one), when already computed."""
    texts = list(texts)
    e = _unit_rows(embeddings)
    _check_aligned(texts, e)
    if tokens is not None and len(tokens.copy) != len(texts):
        raise ValueError(f"tokens of {len(tokens.copy)} texts given for {len(texts)} texts")
    pairs, nearest = _Pairs(len(e), threshold, MAX_PAIRS, 0), _Nearest(len(e), min(1, max(0, len(e) - 1)))
    _scan(e, tile, 0, pairs, nearest)  # one pass over the blocks serves both
    dups = pairs.result(e, texts, lexical=True, tokens=None if tokens is None else tokens.copy)
    _, nearest = nearest.result()
    return Summary(
        n=len(texts), mean_cosine=mean_pairwise_cosine(e),
        mean_nearest_cosine=_clip(float(nearest[:, 0].mean(dtype=np.float64))) if nearest.shape[1] else None,
        near_duplicate_pairs=dups.total_pairs, near_duplicate_clusters=len(dups.clusters),
        near_duplicate_rate=dups.rate, distinct_2=distinct_n(texts, 2, tokens=None if tokens is None else tokens.words),
        compression_ratio=compression_ratio(texts),
        threshold=threshold, near_duplicates=dups,
    )


def _group_indices(labels: Sequence[Hashable]) -> dict[Hashable, np.ndarray]:
    groups: dict[Hashable, list[int]] = {}
    for index, label in enumerate(labels):
        groups.setdefault(label, []).append(index)
    return {label: np.array(ix, dtype=np.int64) for label, ix in groups.items()}


def summarize_groups(texts: Sequence[str], embeddings, labels: Sequence[Hashable], *,
                     threshold: float = DEFAULT_THRESHOLD) -> dict[Hashable, Summary]:
    """:func:`summarize` per group: ``labels[i]`` is item i's group (its leaf id, or its ancestor at some depth
    for subtrees). Near-duplicates are counted within each group. Groups come in order of first appearance."""
    texts = list(texts)
    e = _unit_rows(embeddings)
    _check_aligned(texts, e)
    if len(labels) != len(texts):
        raise ValueError(f"{len(labels)} labels for {len(texts)} texts")
    return {label: summarize([texts[i] for i in ix], e[ix], threshold=threshold)
            for label, ix in _group_indices(labels).items()}


@dataclass(frozen=True)
class SiblingPair:
    """Two sibling groups (the values of one split). ``centroid_cosine``: cosine of the groups' mean vectors;
    ``mean_cross_cosine``: mean cosine over all cross pairs; ``separation``: mean_cross_cosine over the mean of
    the two groups' own mean pairwise cosines (near 1 or above = the values do not separate the samples;
    ``None`` when a group has fewer than 2 items)."""

    a: Hashable
    b: Hashable
    n_a: int
    n_b: int
    centroid_cosine: float
    mean_cross_cosine: float
    separation: float | None
    near_duplicate_pairs: int  # cross-sibling pairs (cosine or lexical) among the max_pairs most similar


@dataclass(frozen=True)
class SiblingOverlap:
    pairs: list[SiblingPair]  # most overlapping (highest centroid cosine) first
    cross_duplicates: list[Pair]  # near-duplicate pairs whose items are in different siblings, most similar first
    threshold: float

    @property
    def worst(self) -> SiblingPair | None:
        return self.pairs[0] if self.pairs else None

    @property
    def mean_centroid_cosine(self) -> float | None:
        return float(np.mean([p.centroid_cosine for p in self.pairs])) if self.pairs else None


def sibling_overlap(embeddings, labels: Sequence[Hashable], texts: Sequence[str] | None = None, *,
                    threshold: float = DEFAULT_THRESHOLD, max_pairs: int = MAX_PAIRS,
                    duplicates: NearDuplicates | None = None) -> SiblingOverlap:
    """How much the children of one split overlap. Give the samples under one parent, ``labels[i]`` being the
    child (sibling) that item i belongs to. A split whose values are mutually exclusive shows low centroid
    cosines, separation well below 1 and no cross-sibling near-duplicates; fewer than two non-empty siblings
    give no pairs. ``duplicates``: the near-duplicates of these same items, when already found (e.g. by
    :func:`summarize` of the parent's subtree), so the similarity matrix is not scanned twice."""
    e = _unit_rows(embeddings)
    _check_aligned(texts, e)
    if len(labels) != len(e):
        raise ValueError(f"{len(labels)} labels for {len(e)} embeddings")
    groups = _group_indices(labels)
    names = list(groups)
    sums = {g: e[ix].astype(np.float64).sum(axis=0) for g, ix in groups.items()}
    within = {g: mean_pairwise_cosine(e[ix]) for g, ix in groups.items()}
    if duplicates is not None and duplicates.n != len(e):
        raise ValueError(f"duplicates of {duplicates.n} items given for {len(e)} embeddings")
    dups = duplicates if duplicates is not None else near_duplicates(e, texts, threshold=threshold,
                                                                      max_pairs=max_pairs)
    label_of = list(labels)
    cross = [p for p in dups.pairs if label_of[p.i] != label_of[p.j]]
    counts: dict[tuple, int] = {}
    for p in cross:
        key = tuple(sorted((names.index(label_of[p.i]), names.index(label_of[p.j]))))
        counts[key] = counts.get(key, 0) + 1
    pairs = []
    for x in range(len(names)):
        for y in range(x + 1, len(names)):
            a, b = names[x], names[y]
            na, nb = len(groups[a]), len(groups[b])
            sa, sb = sums[a], sums[b]
            norm = float(np.linalg.norm(sa) * np.linalg.norm(sb))
            centroid = _clip(float(sa @ sb) / norm) if norm > 1e-12 else 0.0
            cross_mean = _clip(float(sa @ sb) / (na * nb))
            inner = [within[a], within[b]]
            separation = None
            if None not in inner and (mean_inner := (inner[0] + inner[1]) / 2) > 1e-6:
                separation = cross_mean / mean_inner
            pairs.append(SiblingPair(a, b, na, nb, centroid, cross_mean, separation, counts.get((x, y), 0)))
    pairs.sort(key=lambda p: -p.centroid_cosine)
    return SiblingOverlap(pairs=pairs, cross_duplicates=cross, threshold=threshold)
