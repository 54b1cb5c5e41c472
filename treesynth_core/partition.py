"""Stage 1: partition the data space into a tree (pivots -> criterion -> coverage -> children).

Scheduling: every node's expansion is a chain of dependent calls; a child is queued the moment its
parent's expansion is stored, so there is no per-level barrier and one slow call only stalls its own
subtree. Each finished node is committed at once; a build that is interrupted continues from the store,
and the call cache means a half-expanded node does not pay again for the calls it already made.
"""

from __future__ import annotations

import concurrent.futures as cf
import random
from dataclasses import dataclass, field
from typing import Callable

from .errors import Cancelled, EndpointError, LLMOutputError, TreeSynthError
from .llm import LLM
from .prompts import (COVERAGE_SCHEMA, GENERIC_DIMENSIONS, CoverageReply, CriterionReply, SamplesReply,
                      coverage_messages, criterion_messages, criterion_schema, pivots_messages, samples_schema)
from .samples import clean_samples
from .spec import ProjectSpec
from .store import Store
from .tree import Node, Tree, dedupe_values, dimension_key, normalise, value_problem

Progress = Callable[[int, int], None]


@dataclass
class BuildReport:
    expanded: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped_locked: list[str] = field(default_factory=list)
    cancelled: bool = False

    def summary(self) -> str:
        text = f"expanded {len(self.expanded)} node(s), {len(self.failed)} failed"
        return text + (" (cancelled)" if self.cancelled else "")


# ----------------------------------------------------------------------------- checks


def check_criterion(reply: CriterionReply, pivot_count: int, used_dimensions: list[str]) -> None:
    """Raise ValueError with the reason when a proposed split breaks the method's rules."""
    if not reply.dimension.strip():
        raise ValueError("the dimension is empty")
    used = {dimension_key(d): d for d in used_dimensions}
    if dimension_key(reply.dimension) in used:
        raise ValueError(f"dimension {reply.dimension!r} was already used by an ancestor "
                         f"({used[dimension_key(reply.dimension)]!r}); choose a different dimension")
    if len(reply.labels) != pivot_count:
        raise ValueError(f"give exactly {pivot_count} labels, one per sample in order (got {len(reply.labels)})")
    for label in reply.labels:
        problem = value_problem(label)
        if problem:
            raise ValueError(problem)
    if len(dedupe_values(reply.labels)) < 2:
        raise ValueError("every sample got the same value; choose a dimension on which these samples differ")


def salvage_criterion(reply: CriterionReply | None, used_dimensions: list[str]) -> CriterionReply | None:
    """A split that broke only a labelling rule (count, a catch-all or combined label), with the bad labels
    dropped; None if unusable. A new dimension and at least two clean, distinct values are still required.
    The caller records a note so the curator reviews it: better a flagged split than none from a weak model.
    """
    if reply is None or dimension_key(reply.dimension) in {dimension_key(d) for d in used_dimensions}:
        return None
    values = [v for v in dedupe_values(reply.labels) if value_problem(v) is None]
    if not reply.dimension.strip() or len(values) < 2:
        return None
    return CriterionReply(dimension=reply.dimension.strip(), labels=values)


# ----------------------------------------------------------------------------- one node


class Partitioner:
    """Expands nodes of one project. Thread-safe: one instance serves the whole build."""

    def __init__(self, store: Store, project_id: int, llm: LLM):
        self.store = store
        self.project_id = project_id
        self.llm = llm
        self.spec: ProjectSpec = store.project(project_id)
        self.settings = self.spec.settings

    def _tree(self) -> Tree:
        return self.store.tree(self.project_id)

    def propose(self, node: Node, tree: Tree, *, fresh: bool = False) -> dict:
        """Ask the LLM for the node's split without storing it: {dimension, values, infinite, pivots}."""
        s = self.settings
        attributes = tree.attributes(node.id, rng=random.Random(node.id))  # a stable draw: cacheable
        used = tree.used_dimensions(node.id)
        ask = dict(node_id=node.id, reasks=s.reasks, max_tokens=s.max_tokens, cache=not fresh, model=s.model)
        field_names = self.spec.field_names

        def enough_pivots(reply: SamplesReply) -> None:
            good, problems = clean_samples(reply.samples, field_names)
            if len(good) < 2:
                raise ValueError("fewer than 2 usable samples: " + "; ".join(problems[:3]))

        pivots_reply = self.llm.ask(
            pivots_messages(self.spec, attributes, s.pivots), schema=SamplesReply, purpose="pivots",
            temperature=s.pivot_temperature, check=enough_pivots, json_schema=samples_schema(self.spec, s.pivots),
            **ask)
        pivots, _ = clean_samples(pivots_reply.value.samples, field_names)
        pivots = pivots[: s.pivots]

        note = None
        candidates = [d for d in GENERIC_DIMENSIONS if dimension_key(d) not in {dimension_key(u) for u in used}]
        try:
            criterion = self.llm.ask(
                criterion_messages(self.spec, attributes, pivots, used), schema=CriterionReply,
                purpose="criterion", temperature=s.criterion_temperature,
                json_schema=criterion_schema(len(pivots), candidates), check=lambda r: check_criterion(
                    r, len(pivots), used), **ask).value
        except LLMOutputError as exc:
            criterion = salvage_criterion(exc.last_value, used)
            if criterion is None:
                raise
            note = (f"accepted after {s.reasks + 1} tries although: {exc.reason}; "
                    "check that these values do not overlap and cover the space")
        dimension = criterion.dimension.strip()
        values = dedupe_values(criterion.labels)

        for _ in range(s.coverage_rounds):
            try:
                reply = self.llm.ask(
                    coverage_messages(self.spec, attributes, dimension, values, s.max_values),
                    schema=CoverageReply, purpose="coverage", temperature=s.coverage_temperature,
                    json_schema=COVERAGE_SCHEMA, **ask).value
            except LLMOutputError:
                break  # the criterion's values already partition the pivots; the failure is in the call log
            new = [v for v in dedupe_values(reply.new_values, existing=values) if value_problem(v) is None]
            values += new
            if not new or (not reply.open_ended and len(values) <= s.max_values):
                break
        infinite = len(values) > s.max_values
        return {"dimension": dimension, "values": values, "infinite": infinite, "pivots": pivots, "note": note}

    def apply(self, node: Node, proposal: dict, *, provenance: str = "llm") -> list[str]:
        """Store a split: the node's dimension and its children, in one transaction."""
        if proposal["infinite"]:
            children = [{"infinite": True, "values": proposal["values"]}]
        else:
            children = [{"value": v} for v in proposal["values"]]
        with self.store.atomic():
            self.store.update_node(node.id, dimension=proposal["dimension"], pivots=proposal.get("pivots", []),
                                   failure=None, note=proposal.get("note"),
                                   status="proposed" if node.status == "failed" else node.status)
            return self.store.add_children(node, children, provenance=provenance)

    def expand(self, node_id: str) -> list[str]:
        """Expand one node (no-op for a node that already has children). Returns the new child ids."""
        tree = self._tree()
        node = tree.nodes[node_id]
        if tree.kids(node_id):
            return []
        if node.parent_id is None and self.spec.root_split:
            split = self.spec.root_split
            return self.apply(node, {"dimension": split.dimension, "values": dedupe_values(split.values),
                                     "infinite": False}, provenance="human")
        try:
            proposal = self.propose(node, tree)
        except (LLMOutputError, EndpointError) as exc:
            self.store.update_node(node_id, status="failed", failure=str(exc))
            raise
        return self.apply(node, proposal)


# ----------------------------------------------------------------------------- the build


def expandable(tree: Tree, node: Node, depth: int) -> bool:
    return node.depth < depth and not node.locked and not tree.kids(node.id) and not tree.is_pruned(node.id)


def build(store: Store, project_id: int, llm: LLM, *, depth: int | None = None, under: str | None = None,
          approved_only: bool = False, on_progress: Progress | None = None,
          should_stop: Callable[[], bool] | None = None, concurrency: int | None = None) -> BuildReport:
    """Expand every expandable node under ``under`` (default: the root) down to absolute ``depth``.

    Already-expanded nodes are walked through, not redone, so calling build again resumes.
    """
    spec = store.project(project_id)
    depth = spec.settings.max_depth if depth is None else depth
    tree = store.tree(project_id)
    start = under or (tree.root.id if tree.root else None)
    if start is None:
        raise TreeSynthError("the project has no root node", "recreate the project")
    frontier = [n.id for n in tree.subtree(start) if expandable(tree, n, depth)
                and (not approved_only or n.status in ("approved", "edited"))]
    report = BuildReport(skipped_locked=[n.id for n in tree.subtree(start) if n.locked and not tree.kids(n.id)])
    partitioner = Partitioner(store, project_id, llm)
    workers = concurrency or spec.settings.concurrency
    submitted = done = 0
    endpoint_failures = successes = 0

    with cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="expand") as pool:
        running: dict[cf.Future, str] = {}

        def submit(node_id: str) -> None:
            nonlocal submitted
            running[pool.submit(partitioner.expand, node_id)] = node_id
            submitted += 1

        for node_id in frontier:
            submit(node_id)
        if on_progress:
            on_progress(0, submitted)
        while running:
            finished, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
            for future in finished:
                node_id = running.pop(future)
                done += 1
                try:
                    child_ids = future.result()
                    successes += 1
                    report.expanded.append(node_id)
                except (LLMOutputError, EndpointError) as exc:
                    report.failed[node_id] = str(exc)
                    endpoint_failures += isinstance(exc, EndpointError)
                    child_ids = []
                stop = bool(should_stop and should_stop()) or (endpoint_failures >= 3 and successes == 0)
                if stop:
                    report.cancelled = True
                    continue
                child_depth = store.node(node_id).depth + 1
                if child_depth < depth:
                    for child_id in child_ids:
                        submit(child_id)
                if on_progress:  # called on this thread only, never from a worker
                    on_progress(done, submitted)
    if endpoint_failures and successes == 0 and endpoint_failures == len(report.failed):
        raise EndpointError(f"the endpoint failed on every node ({next(iter(report.failed.values()))})",
                            "check the endpoint, then run build again: it resumes")
    if report.cancelled and should_stop and should_stop():
        raise Cancelled(f"build cancelled: {report.summary()}", "run build again to continue")
    return report
