"""Diversity you can see: embeddings cached per sample, metrics per dataset, subtree and leaf, sibling overlap per
split, a 2-D map and a side-by-side comparison of two datasets (issue 9).

- :func:`embed_samples` embeds what has no current vector (a vector is current while its sample's text hash
  matches), chunk by chunk, each chunk saved as it comes: an interrupted run keeps what it finished, nothing
  is embedded twice, an edited sample is embedded again and a deleted one takes its vector with it.
- :func:`quality_report` measures the samples of one project (a subtree with ``under``; statuses as export
  takes them) with :mod:`treesynth_core.diversity`: the dataset, every leaf, every internal node's subtree,
  and every split's sibling overlap (worst first).
- :func:`projection_2d` puts the samples of several projects on one plane (PCA with numpy);
  :func:`compare` sets two reports side by side.

The text of a sample is its ``dedup_fields`` (the input side) joined by newlines: what makes two samples
duplicates is also what their diversity is measured on. Every number is a float or ``None`` ("not enough
data"), never NaN. The mean pairwise cosine is paper-style (lower = more diverse), not the paper's exact metric:
compare numbers from the same encoder and fields only.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import numpy as np

from . import diversity as dv
from .edits import SAMPLE_STATUSES
from .embed import Encoder, default_encoder, text_hash
from .errors import Cancelled, ConfigError, NotFoundError
from .export import scope_paths
from .review import NOT_CONTENT
from .spec import ProjectSpec
from .store import Store
from .tree import Tree

DEFAULT_STATUSES = ("generated", "accepted")
LIVE_STATUSES = tuple(s for s in SAMPLE_STATUSES if s not in NOT_CONTENT)
DEFAULT_THRESHOLD = dv.DEFAULT_THRESHOLD
EMBED_CHUNK = 256  # texts encoded and saved per transaction (about 0.3 s on 2 cores)
MAX_REPORT_PAIRS = 2000  # near-duplicate pairs kept in a report (the most similar)
MAX_SPLIT_PAIRS = 50  # cross-sibling pairs kept per sibling pair
SNIPPET = 200  # characters of a sample's text kept for the pairs a report names
NO_TREE = "(no tree)"


# ------------------------------------------------------------------------------------------------ data
@dataclass
class Metrics:
    """The metrics of one set of samples (the dataset, a subtree or a leaf). ``None`` = not enough data.

    ``coverage`` is the share of leaves at their quota (a leaf's own quota, else the project's per_leaf; live
    samples count, as for generation), only where there is a tree; ``leaves_at_quota`` and ``leaves`` are
    counted in every scope."""

    n: int
    mean_cosine: float | None  # paper-style diversity: lower = more diverse
    near_dup_pairs: int
    near_dup_clusters: int
    distinct_2: float | None  # higher = more varied wording
    compression_ratio: float | None  # higher = more repetitive
    coverage: float | None
    leaves_at_quota: int
    leaves: int
    mean_nearest_cosine: float | None = None  # each sample's most similar other sample, averaged
    near_dup_rate: float | None = None  # samples that keeping one per cluster would drop, over n

    def as_row(self) -> dict:
        return asdict(self)


@dataclass
class SplitOverlap:
    """Two sibling values of one split and how much their samples overlap: ``centroid_cosine`` of the two
    groups' mean vectors (near 1: the same kind of sample), ``separation`` = mean cross cosine over the mean of
    the two groups' own mean cosines (near or above 1: the values do not separate the samples; None when a
    group has fewer than 2 samples), ``cross_pairs`` the near-duplicates across the two, most similar first (at
    most ``MAX_SPLIT_PAIRS`` kept), ``cross_pair_count`` how many there are (counted among the subtree's
    ``diversity.MAX_PAIRS`` most similar pairs: exact below that)."""

    node_id: str
    dimension: str
    value_a: str
    value_b: str
    child_a: str
    child_b: str
    centroid_cosine: float
    separation: float | None
    cross_pairs: list[tuple[int, int, float]]
    n_a: int = 0
    n_b: int = 0
    mean_cross_cosine: float | None = None
    cross_pair_count: int = 0  # all cross-sibling near-duplicate pairs; ``cross_pairs`` keeps the most similar

    def as_row(self) -> dict:
        row = asdict(self)
        row["cross_pairs"] = len(self.cross_pairs)
        return row


@dataclass
class QualityReport:
    project_id: int
    model: str
    threshold: float
    statuses: tuple[str, ...]
    under: str | None
    dataset: Metrics
    by_leaf: dict[str, Metrics]  # every live leaf in scope (and any other node holding samples in scope)
    by_node: dict[str, Metrics]  # every internal node's subtree
    splits: list[SplitOverlap]  # every pair of sibling values with samples, most overlapping first
    pairs: list[tuple[int, int, float]]  # near-duplicate pairs (sample ids, cosine), most similar first, capped
    # (``max_pairs``); ``pair_count`` below is how many there are in all
    sample_ids: list[int]
    leaf_of: dict[int, str]  # sample id -> the node holding it
    labels: dict[str, str] = field(default_factory=dict)  # node id -> its path ("dim=value > ...")
    clusters: list[list[int]] = field(default_factory=list)  # near-duplicate clusters (sample ids), largest first
    snippets: dict[int, str] = field(default_factory=dict)  # text of the samples named in pairs and splits
    computed: int = 0  # vectors computed for this report (0: all came from the cache)
    missing_embeddings: int = 0  # samples left out because they had no current vector (embed_missing=False)
    has_tree: bool = True
    pair_count: int = 0  # all near-duplicate pairs in scope (``pairs`` keeps the most similar of them)

    @property
    def split_overlap(self) -> dict[str, float]:
        """Per split node: its worst (highest) sibling centroid cosine, e.g. to colour the sunburst."""
        out: dict[str, float] = {}
        for s in self.splits:
            out[s.node_id] = max(out.get(s.node_id, -1.0), s.centroid_cosine)
        return out

    @property
    def near_duplicate_ids(self) -> set[int]:
        """Samples in a near-duplicate cluster."""
        return {i for c in self.clusters for i in c}

    def to_json(self) -> dict:
        return {
            "project_id": self.project_id, "model": self.model, "threshold": self.threshold,
            "statuses": list(self.statuses), "under": self.under, "has_tree": self.has_tree,
            "computed": self.computed, "missing_embeddings": self.missing_embeddings,
            "pair_count": self.pair_count, "dataset": self.dataset.as_row(),
            "by_leaf": {k: {"path": self.labels.get(k, ""), **m.as_row()} for k, m in self.by_leaf.items()},
            "by_node": {k: {"path": self.labels.get(k, ""), **m.as_row()} for k, m in self.by_node.items()},
            "splits": [{**asdict(s), "cross_pairs": [list(p) for p in s.cross_pairs]} for s in self.splits],
            "pairs": [list(p) for p in self.pairs],
            "clusters": self.clusters,
            "sample_ids": self.sample_ids,
            "leaf_of": {str(k): v for k, v in self.leaf_of.items()},
            "snippets": {str(k): v for k, v in self.snippets.items()},
        }


# ------------------------------------------------------------------------------------------ embeddings
def sample_text(data: dict, fields: Sequence[str]) -> str:
    """The text a sample is embedded and measured by: its ``fields`` (the spec's dedup_fields), one per line."""
    return "\n".join("" if data.get(f) is None else str(data.get(f)) for f in fields)


def _check_statuses(statuses) -> tuple[str, ...]:
    if isinstance(statuses, str):
        statuses = (statuses,)
    statuses = tuple(statuses or ())
    unknown = [s for s in statuses if s not in SAMPLE_STATUSES]
    if unknown or not statuses:
        raise ConfigError(f"unknown sample status {', '.join(map(repr, unknown)) or '(none given)'}",
                          f"use one or more of {', '.join(SAMPLE_STATUSES)}")
    return statuses


def _read_samples(store: Store, project_id: int, spec: ProjectSpec, statuses: Sequence[str],
                  nodes=None) -> list[tuple[int, str, str]]:
    """``(sample id, node id, text)`` in id order."""
    fields = spec.dedup_fields
    return [(r["id"], r["node_id"], sample_text(r["data"], fields))
            for r in store.iter_samples(project_id, statuses=list(statuses), nodes=nodes)]


def _embed(store: Store, project_id: int, samples: list[tuple[int, str, str]], encoder: Encoder,
           on_progress: Callable[[int, int], None] | None, should_stop: Callable[[], bool] | None) -> int:
    """Embed those of ``samples`` whose cached vector is missing or stale; each chunk is saved as it comes."""
    cached = store.embedding_hashes(project_id, encoder.name)
    todo: dict[str, list[int]] = {}  # text hash -> samples with that text (one vector serves them all)
    texts: dict[str, str] = {}
    for sample_id, _, text in samples:
        key = text_hash(text)
        if cached.get(sample_id) != key:
            todo.setdefault(key, []).append(sample_id)
            texts[key] = text
    keys = list(todo)
    total, done = sum(len(v) for v in todo.values()), 0
    if on_progress:
        on_progress(0, total)
    for start in range(0, len(keys), EMBED_CHUNK):
        if should_stop and should_stop():
            raise Cancelled(f"embedding stopped after {done} of {total} samples; what finished is saved",
                            "run it again to embed the rest")
        chunk = keys[start : start + EMBED_CHUNK]
        vectors = np.asarray(encoder.encode([texts[k] for k in chunk]), dtype="<f4")
        rows = [(sid, k, vectors[i].tobytes()) for i, k in enumerate(chunk) for sid in todo[k]]
        store.save_embeddings(project_id, encoder.name, rows, int(vectors.shape[1]))
        done += len(rows)
        if on_progress:
            on_progress(done, total)
    return total


def embed_samples(store: Store, project_id: int, *, encoder: Encoder | None = None,
                  on_progress: Callable[[int, int], None] | None = None,
                  should_stop: Callable[[], bool] | None = None, statuses: Sequence[str] = LIVE_STATUSES) -> int:
    """Embed every live (not rejected or excluded) sample of the project that has no current vector under the encoder's
    name; returns how many were computed (0 when all were cached). Resumable: each chunk is committed as it is
    encoded; ``should_stop`` is read between chunks and raises Cancelled. Default encoder: the offline MiniLM."""
    spec = store.project(project_id)
    encoder = encoder or default_encoder()
    samples = _read_samples(store, project_id, spec, _check_statuses(statuses))
    return _embed(store, project_id, samples, encoder, on_progress, should_stop)


def _vectors(store: Store, project_id: int, samples: list[tuple[int, str, str]], model: str
             ) -> tuple[list[tuple[int, str, str]], np.ndarray]:
    """The samples that have a current vector, and their vectors in the same order."""
    cached = store.embedding_vectors(project_id, model)
    kept, rows = [], []
    for sample in samples:
        hit = cached.get(sample[0])
        if hit is not None and hit[0] == text_hash(sample[2]):
            kept.append(sample)
            rows.append(hit[1])
    if not rows:
        return kept, np.zeros((0, 0), dtype=np.float32)
    dims = {len(r) for r in rows}
    if len(dims) != 1:
        raise ConfigError(f"the cached vectors of model {model} have different sizes",
                          "give the encoder another name when its model changes")
    return kept, np.frombuffer(b"".join(rows), dtype="<f4").reshape(len(rows), -1).astype(np.float32)


# --------------------------------------------------------------------------------------------- metrics
def _metrics(summary: dv.Summary, leaves: int, at_quota: int, has_tree: bool) -> Metrics:
    return Metrics(n=summary.n, mean_cosine=_finite(summary.mean_cosine),
                   near_dup_pairs=summary.near_duplicate_pairs, near_dup_clusters=summary.near_duplicate_clusters,
                   distinct_2=_finite(summary.distinct_2), compression_ratio=_finite(summary.compression_ratio),
                   coverage=(at_quota / leaves if leaves else None) if has_tree else None,
                   leaves_at_quota=at_quota, leaves=leaves,
                   mean_nearest_cosine=_finite(summary.mean_nearest_cosine),
                   near_dup_rate=_finite(summary.near_duplicate_rate))


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _summary(e: np.ndarray, texts: list[str], ix: np.ndarray, threshold: float, dim: int,
             tokens: dv.Tokens) -> dv.Summary:
    if not len(ix):
        return dv.summarize([], np.zeros((0, dim), dtype=np.float32), threshold=threshold)
    return dv.summarize([texts[i] for i in ix], e[ix], threshold=threshold, tokens=tokens.subset(ix))


def quality_report(store: Store, project_id: int, *, under: str | None = None,
                   statuses: Sequence[str] = DEFAULT_STATUSES, threshold: float = DEFAULT_THRESHOLD,
                   encoder: Encoder | None = None, embed_missing: bool = True, per_leaf: int | None = None,
                   max_pairs: int = MAX_REPORT_PAIRS,
                   on_progress: Callable[[int, int], None] | None = None,
                   should_stop: Callable[[], bool] | None = None) -> QualityReport:
    """Measure the project's samples with these ``statuses`` in the live (not pruned) nodes at or under
    ``under`` (the scope export uses). With ``embed_missing`` the samples without a current vector are embedded
    first (``on_progress``/``should_stop`` as in :func:`embed_samples`); without it they are left out and
    counted in ``missing_embeddings``. ``per_leaf``: the quota coverage is measured against (default: the
    project's per_leaf; a leaf's own quota wins)."""
    statuses = _check_statuses(statuses)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
        raise ConfigError(f"the near-duplicate threshold must be a cosine above 0 and at most 1, not {threshold!r}",
                          f"e.g. {DEFAULT_THRESHOLD}")
    spec = store.project(project_id)
    tree = store.tree(project_id)
    if under is not None and under not in tree.nodes:
        raise NotFoundError(f"node {under!r} is not in project {project_id}", "pick a node of this project's tree")
    encoder = encoder or default_encoder()
    scope = scope_paths(tree, under)  # live nodes in scope
    samples = _read_samples(store, project_id, spec, statuses, nodes=scope)
    computed = _embed(store, project_id, samples, encoder, on_progress, should_stop) if embed_missing else 0
    kept, e = _vectors(store, project_id, samples, encoder.name)
    missing = len(samples) - len(kept)
    dim = e.shape[1] if e.size else 1
    ids = [s[0] for s in kept]
    texts = [s[2] for s in kept]
    node_of = [s[1] for s in kept]
    threshold = float(threshold)

    # the tree in scope: leaves, their quotas and live counts, each node's ancestors within the scope
    root = tree.root
    has_tree = bool(root and (spec.settings.max_depth > 0 or tree.kids(root.id, include_pruned=False)))
    quota_default = spec.settings.per_leaf if per_leaf is None else per_leaf
    live = {node: sum(n for status, n in by_status.items() if status not in NOT_CONTENT)
            for node, by_status in store.sample_counts(project_id).items()}
    # the leaves generation fills: never an unsplit root of a tree project (as generate.generation_targets)
    live_leaves = {n.id for n in tree.leaves(under) if n.parent_id is not None or not has_tree} & set(scope)
    at_quota = {leaf for leaf in live_leaves
                if live.get(leaf, 0) >= (tree.nodes[leaf].quota if tree.nodes[leaf].quota is not None
                                         else quota_default)}
    up: dict[str, list[str]] = {}  # node -> itself and its ancestors in scope
    for node_id in scope:
        up[node_id] = [n.id for n in tree.path(node_id) if n.id in scope]
    members: dict[str, list[int]] = {}  # node -> indices of the samples in its subtree
    for index, node_id in enumerate(node_of):
        for anc in up[node_id]:
            members.setdefault(anc, []).append(index)
    leaves_under: dict[str, list[str]] = {}
    for leaf in live_leaves:
        for anc in up[leaf]:
            leaves_under.setdefault(anc, []).append(leaf)

    def counts(node_id: str) -> tuple[int, int]:
        below = leaves_under.get(node_id, [])
        return len(below), sum(1 for leaf in below if leaf in at_quota)

    all_ix = np.arange(len(ids))
    tokens = dv.tokenise(texts)  # once: every scope below measures a subset of these texts
    data_summary = _summary(e, texts, all_ix, threshold, dim, tokens)
    scope_root = under or (root.id if root else None)
    n_leaves, n_at = (counts(scope_root) if scope_root in scope else (0, 0))
    dataset = _metrics(data_summary, n_leaves, n_at, has_tree)

    by_leaf: dict[str, Metrics] = {}
    own: dict[str, list[int]] = {}  # node -> indices of the samples stored on it
    for index, node_id in enumerate(node_of):
        own.setdefault(node_id, []).append(index)
    for node_id in sorted(live_leaves | set(own), key=lambda n: (tree.nodes[n].depth, tree.nodes[n].position, n)):
        s = _summary(e, texts, np.array(own.get(node_id, []), dtype=np.int64), threshold, dim, tokens)
        leaves, at = (1, int(node_id in at_quota)) if node_id in live_leaves else (0, 0)
        by_leaf[node_id] = _metrics(s, leaves, at, has_tree)

    by_node: dict[str, Metrics] = {}
    splits: list[SplitOverlap] = []
    node_summaries: dict[str, dv.Summary] = {}
    internal = [n for n in scope if tree.kids(n, include_pruned=False)]
    for node_id in sorted(internal, key=lambda n: (tree.nodes[n].depth, n)):
        ix = np.array(members.get(node_id, []), dtype=np.int64)
        s = (data_summary if node_id == scope_root and len(ix) == len(ids)
             else _summary(e, texts, ix, threshold, dim, tokens))
        node_summaries[node_id] = s
        by_node[node_id] = _metrics(s, *counts(node_id), has_tree)
        splits += _split_overlap(tree, node_id, ix, s, e, texts, ids, node_of, up, threshold)
    splits.sort(key=lambda p: (-p.centroid_cosine, -len(p.cross_pairs), p.node_id, p.child_a, p.child_b))

    dups = data_summary.near_duplicates
    pairs = [(ids[p.i], ids[p.j], p.cosine) for p in (dups.pairs if dups else [])[:max_pairs]]
    clusters = [[ids[i] for i in c] for c in (dups.clusters if dups else [])]
    named = {i for p in pairs[:200] for i in p[:2]} | {i for s in splits for p in s.cross_pairs for i in p[:2]}
    text_of = dict(zip(ids, texts))
    labels = {node_id: tree.path_text(node_id) for node_id in scope}
    return QualityReport(
        project_id=project_id, model=encoder.name, threshold=threshold, statuses=statuses, under=under,
        dataset=dataset, by_leaf=by_leaf, by_node=by_node, splits=splits, pairs=pairs, sample_ids=ids,
        leaf_of=dict(zip(ids, node_of)), labels=labels, clusters=clusters,
        snippets={i: text_of[i][:SNIPPET] for i in sorted(named)}, computed=computed, missing_embeddings=missing,
        has_tree=has_tree, pair_count=dups.total_pairs if dups else 0)


def _split_overlap(tree: Tree, node_id: str, ix: np.ndarray, summary: dv.Summary, e: np.ndarray,
                   texts: list[str], ids: list[int], node_of: list[str], up: dict[str, list[str]],
                   threshold: float) -> list[SplitOverlap]:
    """The sibling pairs of one split: each sample under ``node_id`` is labelled by the child it descends from
    (samples stored on the node itself belong to no child and are left out)."""
    node = tree.nodes[node_id]
    depth = node.depth
    child_of = []
    for i in ix:
        path = up[node_of[i]]
        child_of.append(next((n for n in path if tree.nodes[n].depth == depth + 1), None))
    keep = np.array([c is not None for c in child_of], dtype=bool)
    if keep.sum() < 2:
        return []
    local = ix[keep]
    labels = [c for c in child_of if c is not None]
    if len(set(labels)) < 2:
        return []
    dups = summary.near_duplicates if keep.all() else None  # the subtree's pairs, when they are these items
    result = dv.sibling_overlap(e[local], labels, [texts[i] for i in local], threshold=threshold, duplicates=dups)
    cross: dict[frozenset, list[tuple[int, int, float]]] = {}
    for p in result.cross_duplicates:
        key = frozenset((labels[p.i], labels[p.j]))
        bucket = cross.setdefault(key, [])
        if len(bucket) < MAX_SPLIT_PAIRS:
            bucket.append((ids[local[p.i]], ids[local[p.j]], p.cosine))
    out = []
    for p in result.pairs:
        out.append(SplitOverlap(
            node_id=node_id, dimension=node.dimension or "", value_a=tree.nodes[p.a].label,
            value_b=tree.nodes[p.b].label, child_a=p.a, child_b=p.b, centroid_cosine=p.centroid_cosine,
            separation=_finite(p.separation), cross_pairs=cross.get(frozenset((p.a, p.b)), []), n_a=p.n_a,
            n_b=p.n_b, mean_cross_cosine=_finite(p.mean_cross_cosine), cross_pair_count=p.near_duplicate_pairs))
    return out


# ------------------------------------------------------------------------------------ map, comparison
def _top_values(tree: Tree) -> dict[str, str]:
    """Each node's root-level value (the label of its depth-1 ancestor), ``(no tree)`` for the root."""
    out = {}
    for node_id in tree.nodes:
        path = tree.path(node_id)
        out[node_id] = path[1].label if len(path) > 1 else NO_TREE
    return out


def pca_2d(e: np.ndarray) -> np.ndarray:
    """The rows of ``e`` on their two principal axes (numpy only: the eigenvectors of the dim x dim covariance,
    so 100k rows cost one 384 x 384 matrix); signs fixed so the result is deterministic. Fewer than two
    rows or no variance give zeros."""
    e = np.asarray(e, dtype=np.float64)
    out = np.zeros((len(e), 2))
    if len(e) < 2 or e.ndim != 2 or e.shape[1] == 0:
        return out
    centred = e - e.mean(axis=0)
    values, vectors = np.linalg.eigh(centred.T @ centred)
    top = vectors[:, np.argsort(values)[::-1][:2]]
    top *= np.where(top[np.abs(top).argmax(axis=0), range(top.shape[1])] < 0, -1.0, 1.0)
    projected = centred @ top
    projected[:, values[np.argsort(values)[::-1][:2]] <= 1e-12] = 0.0
    out[:, : projected.shape[1]] = projected
    return out


def projection_2d(store: Store, project_ids: list[int], *, encoder: Encoder | None = None,
                  statuses: Sequence[str] = DEFAULT_STATUSES):
    """Every sample (these statuses, live nodes) of the projects on one plane: a pandas DataFrame with
    sample_id, project_id, x, y, top_value (the sample's root-level value, or "(no tree)") and text (its first
    200 characters). Missing vectors are computed first; the PCA is over the combined vectors."""
    import pandas as pd

    statuses = _check_statuses(statuses)
    encoder = encoder or default_encoder()
    rows, blocks = [], []
    for project_id in project_ids:
        spec, tree = store.project(project_id), store.tree(project_id)
        samples = _read_samples(store, project_id, spec, statuses, nodes=scope_paths(tree))
        _embed(store, project_id, samples, encoder, None, None)
        kept, e = _vectors(store, project_id, samples, encoder.name)
        top = _top_values(tree)
        rows += [(sid, project_id, top.get(node_id, NO_TREE), text[:SNIPPET]) for sid, node_id, text in kept]
        if len(kept):
            blocks.append(e)
    xy = pca_2d(np.vstack(blocks)) if blocks else np.zeros((0, 2))
    return pd.DataFrame({"sample_id": [r[0] for r in rows], "project_id": [r[1] for r in rows],
                         "x": xy[:, 0], "y": xy[:, 1], "top_value": [r[2] for r in rows],
                         "text": [r[3] for r in rows]},
                        columns=["sample_id", "project_id", "x", "y", "top_value", "text"])


@dataclass(frozen=True)
class Compared:
    """One row of :func:`compare`: the :class:`Metrics` field, its readable label, the direction that is more
    diverse ("lower", "higher" or None: the number alone has no better side) and what it means."""

    name: str
    label: str
    direction: str | None
    meaning: str


COMPARED = [
    Compared("n", "samples", None, "samples measured"),
    Compared("mean_cosine", "mean pairwise cosine", "lower",
             "paper-style diversity: how similar two samples are on average"),
    Compared("mean_nearest_cosine", "mean nearest-neighbour cosine", "lower",
             "how similar each sample is to its most similar other sample, on average"),
    Compared("near_dup_pairs", "near-duplicate pairs", "lower",
             "pairs at or above the threshold (grows with the square of a cluster's size: compare at equal sizes)"),
    Compared("near_dup_clusters", "near-duplicate clusters", None,
             "groups of near-copies; no direction: one cluster holding every sample is worse than two small ones, "
             "read the redundant share"),
    Compared("near_dup_rate", "redundant share", "lower",
             "share of samples that keeping one per near-duplicate cluster would drop"),
    Compared("distinct_2", "distinct-2", "higher", "distinct word bigrams / all bigrams (varied wording)"),
    Compared("compression_ratio", "compression ratio", "lower", "zlib compression ratio (repetitiveness)"),
    Compared("coverage", "coverage", "higher", "share of leaves at quota (a tree only)"),
]


def compare(a: QualityReport, b: QualityReport):
    """The two datasets' metrics side by side: a pandas DataFrame indexed by metric (the :class:`Metrics` field)
    with columns ``a``, ``b``, ``relative difference`` ((b - a) / |a|; None when a is 0 or either is not enough
    data), ``more diverse`` ("lower is more diverse", "higher is more diverse", or empty for a number with no
    better side), ``meaning`` and ``label`` (the metric's readable name). Values stay None (object columns)
    where there is not enough data: never NaN."""
    import pandas as pd

    rows = []
    ra, rb = a.dataset.as_row(), b.dataset.as_row()
    for m in COMPARED:
        va, vb = ra.get(m.name), rb.get(m.name)
        rel = (vb - va) / abs(va) if va not in (None, 0) and vb is not None else None
        better = "" if m.direction is None else (
            "higher is better" if m.name == "coverage" else f"{m.direction} is more diverse")
        rows.append({"metric": m.name, "a": va, "b": vb, "relative difference": rel, "more diverse": better,
                     "meaning": m.meaning, "label": m.label})
    frame = pd.DataFrame(rows, columns=["metric", "a", "b", "relative difference", "more diverse", "meaning",
                                        "label"], dtype=object).set_index("metric")
    frame.attrs.update(a=a.project_id, b=b.project_id, model=a.model, threshold=a.threshold)
    return frame


def redundant_samples(pairs: list[tuple[int, int, float]]) -> list[int]:
    """The samples to reject: in the order they were written (id), a sample goes only when an earlier sample that
    is kept pairs with it. In a chain A~B~C where A and C differ, B goes and C stays: rejecting every "later of a
    pair" would drop C although nothing kept is like it."""
    earlier: dict[int, set[int]] = {}
    for a, b, _ in pairs:
        earlier.setdefault(max(a, b), set()).add(min(a, b))
        earlier.setdefault(min(a, b), set())
    kept: set[int] = set()
    rejected = []
    for sample in sorted(earlier):
        (rejected.append if earlier[sample] & kept else kept.add)(sample)
    return rejected
