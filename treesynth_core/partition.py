"""Stage 1: partition the data space into a tree (pivots -> criterion -> coverage -> children).

Scheduling (``scheduler.py``): every node's expansion is a chain of dependent calls; a child is queued the
moment its parent's expansion is stored, so there is no per-level barrier and one slow call only stalls its
own subtree. An expansion reads only its node's path and whether the node has children (O(depth), whatever
the tree's size). Each finished node is committed at once; a build that is interrupted continues from the
store, and the call cache means a half-expanded node does not pay again for the calls it already made.

Honesty: a node that fails, for whatever reason, is marked failed with its reason and its siblings go on; a
split that cannot be shown exhaustive (coverage replies that broke the rules after their re-asks, or a
coverage call that failed) is kept with a ``note``, the "needs review" mark. The BuildReport's ``outcome``
(complete / partial / failed) counts both. ``outcome.AbortRule`` (shared with generate) stops a run that
fails ``ABORT_AFTER`` times before its first success.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Callable

from . import edits
from .edits import Split
from .errors import Cancelled, EndpointError, LLMOutputError, TreeSynthError
from .llm import LLM
from .outcome import REASON_CHARS, Outcome, failure_reason, judge, short_reason
from .prompts import (COVERAGE_SCHEMA, GENERIC_DIMENSIONS, CoverageReply, CriterionReply, SamplesReply,
                      coverage_messages, criterion_messages, criterion_schema, pivots_messages, samples_schema)
from .samples import clean_samples
from .scheduler import Expansion, Scheduler
from .seeds import style_examples
from .spec import ProjectSpec
from .store import Store
from .tree import (Node, Tree, dedupe_values, dimension_key, dimension_problem, path_attributes,
                   path_used_dimensions, refuse_pruned, value_problem)

Progress = Callable[[int, int], None]


@dataclass
class BuildReport:
    expanded: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # node id -> why it failed (also on the node)
    flagged: dict[str, str] = field(default_factory=dict)  # expanded node id -> its note (split may miss values)
    skipped_locked: list[str] = field(default_factory=list)
    stranded: dict[str, int] = field(default_factory=dict)  # expanded node id -> samples left on it (edits.stranded)
    endpoint_failed: list[str] = field(default_factory=list)  # failed nodes whose cause was the endpoint
    root_id: str | None = None
    aborted: bool = False  # stopped by the abort rule
    cancelled: bool = False  # stopped by the user

    @property
    def outcome(self) -> Outcome:
        """complete: every attempted node expanded and no split flagged; failed: nothing expanded although
        something was attempted, or the root failed; partial otherwise."""
        if self.cancelled:
            return Outcome.CANCELLED
        if self.root_id is not None and self.root_id in self.failed:
            return Outcome.FAILED
        result = judge(len(self.expanded), len(self.failed))
        return Outcome.PARTIAL if result is Outcome.COMPLETE and self.flagged else result

    @property
    def failed_count(self) -> int:
        return len(self.failed)

    def summary(self, for_cli: bool = True) -> str:
        """What the build did, in one line. ``for_cli``: the fuller text the CLI prints and the job row keeps,
        with the commands that show and retry what failed; else the app's, counts and the first failure's reason
        cut short (the page lists the failed nodes and says what to do)."""
        text = f"expanded {len(self.expanded)} node(s), {len(self.failed)} failed"
        if self.flagged:
            text += f", {len(self.flagged)} split(s) flagged for review"
        if self.stranded:
            text += (f", {sum(self.stranded.values())} sample(s) left on {len(self.stranded)} node(s) it split "
                     "(stranded: move them to a child or route them)")
        first = next(iter(self.failed.values()), "")
        if not for_cli:
            if self.aborted:
                text += "; stopped early: " + ("the endpoint failed on every node" if self.failed and len(
                    self.endpoint_failed) == len(self.failed) else "nothing succeeded")
            elif self.root_id in self.failed:
                text += "; the root's split failed"
            return text + (f"; first failure: {short_reason(first)}" if first else "") + (
                " (cancelled)" if self.cancelled else "")
        if self.aborted and self.failed and len(self.endpoint_failed) == len(self.failed):
            text = f"the endpoint failed on every node ({first}); " + text
        elif self.aborted:
            text += f"; stopped after {len(self.failed)} failures and no success ({first})"
        elif self.root_id in self.failed:
            text += f"; the root's split failed ({first})"
        elif self.failed:
            text += f" (see `calls --failed`; first: {first})"
        if self.flagged:
            text += "; flagged splits may miss values: read their notes (`show`, the Tree page) and fix or re-propose"
        if self.failed:
            text += "; run build again to retry the failed nodes: it resumes"
        return text + (" (cancelled)" if self.cancelled else "")


# ----------------------------------------------------------------------------- checks


def check_criterion(reply: CriterionReply, pivot_count: int, used_dimensions: list[str]) -> None:
    """Raise ValueError with the reason when a proposed split breaks the method's rules."""
    problem = dimension_problem(reply.dimension.strip())
    if problem:
        raise ValueError(problem)
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
    if dimension_problem(reply.dimension.strip()) or len(values) < 2:
        return None
    return CriterionReply(dimension=reply.dimension.strip(), labels=values)


def check_coverage(reply: CoverageReply, values: list[str]) -> None:
    """Raise ValueError with the reason when a coverage reply cannot be taken as the missing values. An
    explicit empty list is the only way to say "nothing is missing" (the prompt asks for exactly that)."""
    if reply.open_ended and not reply.new_values:
        raise ValueError('"open_ended" is true but "new_values" is empty; list up to 10 more values')
    problems = [p for p in (value_problem(v) for v in reply.new_values) if p]
    if problems:
        raise ValueError("; ".join(problems[:3]) + "; list only concrete missing values (an empty list if none "
                         "is missing)")
    if reply.new_values and not dedupe_values(reply.new_values, existing=values):
        raise ValueError("every proposed value repeats one already listed; list only values that are missing, "
                         "or an empty list if nothing is missing")


def coverage_note(detail: str) -> str:
    note = f"coverage incomplete: {detail}"
    note = note if len(note) <= REASON_CHARS else note[: REASON_CHARS - 3] + "..."
    return note + ": check that the values cover the space"


# ----------------------------------------------------------------------------- pivots from the dataset's rows

IMPORTED_MARK = "imported sample"  # key of a stored pivot that is a real imported row: its sample id (a key no
# field can have, since field names have no spaces)
MIN_DATA_PIVOTS = 2  # a node with fewer usable imported rows has its pivots written by the LLM, as without data


def data_pivots(store: Store, node_id: str, count: int, field_names: list[str], cap: int, *,
                fresh: bool = False) -> list[dict]:
    """Up to ``count`` of the imported rows sitting on ``node_id`` (the root after an import, or a node a routing
    run moved them to; not rejected or excluded), drawn with a seed of the node's id so a resumed or repeated build
    draws the same rows (and the criterion call's cache holds), in id order, each with its sample id under
    ``IMPORTED_MARK``. ``fresh`` (a re-proposal): an unseeded draw, so proposals compared side by side rest on
    different rows. Empty when fewer than ``MIN_DATA_PIVOTS`` usable rows are there."""
    ids = store.imported_ids_on(node_id)
    if len(ids) < MIN_DATA_PIVOTS:
        return []
    rng = random.Random() if fresh else random.Random(f"pivots-from-data:{node_id}")
    chosen = sorted(rng.sample(ids, min(len(ids), count * 2)))  # a few spare rows, in case one no longer passes
    stored = store.snapshot(sample_ids=chosen)[1]
    out = []
    for sample_id in chosen:
        data = json.loads(stored[sample_id]["data"]) if sample_id in stored else None
        good, _ = clean_samples([data], field_names, cap) if isinstance(data, dict) else ([], [])
        if good:
            out.append({**good[0], IMPORTED_MARK: sample_id})
        if len(out) == count:
            break
    return out if len(out) >= MIN_DATA_PIVOTS else []


# ----------------------------------------------------------------------------- one node


class Partitioner:
    """Expands nodes of one project. Thread-safe: one instance serves the whole build."""

    def __init__(self, store: Store, project_id: int, llm: LLM):
        self.store = store
        self.project_id = project_id
        self.llm = llm
        self.spec: ProjectSpec = store.project(project_id)
        self.settings = self.spec.settings

    def propose(self, node: Node, tree: Tree | list[Node], *, fresh: bool = False) -> Split:
        """Ask the LLM for the node's split without storing it (a ``Split``: dimension, values, infinite, pivots,
        the criterion's label of each pivot when it gave one per pivot, note).
        ``tree`` is the tree or just the node's path (root first). ``note`` (or None) says why the split needs
        review: labels or coverage values had to be dropped, or the coverage step never confirmed the values."""
        s = self.settings
        path = tree.path(node.id) if isinstance(tree, Tree) else tree
        attributes = path_attributes(path, rng=random.Random(node.id))  # a stable draw: cacheable
        used = path_used_dimensions(path)
        ask = dict(node_id=node.id, reasks=s.reasks, max_tokens=s.max_tokens, cache=not fresh, model=s.model)
        field_names, cap = self.spec.field_names, s.max_field_chars

        def enough_pivots(reply: SamplesReply) -> None:
            good, problems = clean_samples(reply.samples, field_names, cap)
            if len(good) < 2:
                raise ValueError("fewer than 2 usable samples: " + "; ".join(problems[:3]))

        rows = data_pivots(self.store, node.id, s.pivots, field_names, cap, fresh=fresh) if s.pivots_from_data else []
        if rows:  # the dataset's own rows on this node are its pivots: no pivots call (issue 11 part 2)
            pivots = [{k: v for k, v in row.items() if k != IMPORTED_MARK} for row in rows]
        else:
            pivots_reply = self.llm.ask(
                pivots_messages(self.spec, attributes, s.pivots, style_examples(self.store, self.project_id, path)),
                schema=SamplesReply, purpose="pivots",
                temperature=s.pivot_temperature, check=enough_pivots, json_schema=samples_schema(self.spec, s.pivots),
                **ask)
            pivots, dropped = clean_samples(pivots_reply.value.samples, field_names, cap)
            if dropped and pivots_reply.call_id:
                self.store.note_call(pivots_reply.call_id, "; ".join(dropped))
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
        labels = list(criterion.labels) if len(criterion.labels) == len(pivots) else []
        values = dedupe_values(criterion.labels)

        notes = [note] if note else []
        for _ in range(s.coverage_rounds):
            try:
                reply = self.llm.ask(
                    coverage_messages(self.spec, attributes, dimension, values, s.max_values),
                    schema=CoverageReply, purpose="coverage", temperature=s.coverage_temperature,
                    json_schema=COVERAGE_SCHEMA, check=lambda r: check_coverage(r, values), **ask).value
            except LLMOutputError as exc:
                # keep what the last well-shaped reply offered that passes the rules; flag the split either way
                offered = dedupe_values(exc.last_value.new_values, existing=values) if exc.last_value else []
                dropped = [(v, value_problem(v)) for v in offered if value_problem(v)]
                values += [v for v in offered if not value_problem(v)]
                if dropped:
                    detail = f"{len(dropped)} proposed value(s) dropped ({'; '.join(p for _, p in dropped[:3])})"
                else:
                    detail = f"no usable coverage reply after {s.reasks + 1} tries ({exc.reason or exc.message})"
                notes.append(coverage_note(detail))
                break
            except EndpointError as exc:
                notes.append(coverage_note(f"the coverage call failed ({exc.message})"))
                break
            new = dedupe_values(reply.new_values, existing=values)
            values += new
            if not new or (not reply.open_ended and len(values) <= s.max_values):
                break
        infinite = len(values) > s.max_values
        # stored pivots that are real rows carry their sample's id (IMPORTED_MARK): the marker that they were not
        # written by the LLM; the prompts saw the fields only
        return Split(dimension, values, infinite, rows or pivots, labels, "; ".join(notes) or None)

    def apply(self, node: Node, proposal: Split, *, provenance: str = "llm") -> list[str]:
        """Store a split: the node's dimension and its children, one transaction and one history event."""
        return edits.apply_split(self.store, node.id, proposal, actor=provenance)

    def expand(self, node_id: str) -> list[str]:
        """Expand one node (no-op for a node that already has children). Returns the new child ids."""
        return self.expansion(node_id).children

    def expansion(self, node_id: str) -> Expansion:
        """Expand one node, reading only its path and whether it has children: its new children and its note.
        A failure of any kind is recorded on the node (status failed, the reason) and raised."""
        path = self.store.node_path(node_id)
        node = path[-1]
        if self.store.has_children(node_id):
            return Expansion([], node.note)
        if node.parent_id is None and self.spec.root_split:
            split = self.spec.root_split
            return Expansion(self.apply(node, Split(split.dimension, dedupe_values(split.values)), provenance="human"))
        try:
            proposal = self.propose(node, path)
            return Expansion(self.apply(node, proposal), proposal.note)
        except Exception as exc:  # any failure is this node's: record it on the node, the build goes on
            edits.mark_failed(self.store, node_id, failure_reason(exc))
            raise


# ----------------------------------------------------------------------------- the build


def expandable(tree: Tree, node: Node, depth: int) -> bool:
    return node.depth < depth and not node.locked and not tree.kids(node.id) and not tree.is_pruned(node.id)


def check_buildable(tree: Tree, under: str | None) -> None:
    """Refuse to build under a pruned node: nothing there would be built, and "complete" would mislead."""
    if under in tree.nodes:
        refuse_pruned(tree.path(under), "building skips pruned subtrees")


def build(store: Store, project_id: int, llm: LLM, *, depth: int | None = None, under: str | None = None,
          approved_only: bool = False, on_progress: Progress | None = None,
          should_stop: Callable[[], bool] | None = None, concurrency: int | None = None) -> BuildReport:
    """Expand every expandable node under ``under`` (default: the root) down to absolute ``depth``.

    Already-expanded nodes are walked through, not redone, so calling build again resumes. A node that fails
    (for any reason) is recorded on the node and its siblings go on; the report's ``outcome`` says how it went.
    Raises Cancelled (with the report as ``.report``) when ``should_stop`` turns true.
    """
    spec = store.project(project_id)
    depth = spec.settings.max_depth if depth is None else depth
    tree = store.tree(project_id)
    start = under or (tree.root.id if tree.root else None)
    if start is None:
        raise TreeSynthError("the project has no root node", "recreate the project")
    check_buildable(tree, under)
    frontier = [n.id for n in tree.subtree(start) if expandable(tree, n, depth)
                and (not approved_only or n.status in ("approved", "edited"))]
    report = BuildReport(skipped_locked=[n.id for n in tree.subtree(start) if n.locked and not tree.kids(n.id)],
                         root_id=tree.root.id if tree.root else None)
    scheduler = Scheduler(llm, concurrency=concurrency, should_stop=should_stop, on_progress=on_progress)
    scheduler.expand_with(Partitioner(store, project_id, llm).expansion, report, depth)
    for node_id in frontier:
        scheduler.add_expansion(node_id, tree.nodes[node_id].depth)
    scheduler.run()
    expanded = set(report.expanded)
    report.stranded = {n: c for n, c in store.stranded_counts(project_id).items() if n in expanded}
    if scheduler.cancelled:
        report.cancelled = True
        raise Cancelled(f"build cancelled: {report.summary()}", "run build again to continue", report=report)
    return report


# ----------------------------------------------------------------------------- re-propose (a job)


@dataclass
class ProposeReport:
    """A re-proposal of one node's split, stored as a proposal (``edits.proposals``) for the curator to compare."""
    node_id: str
    proposal_id: int | None = None
    error: str | None = None
    cancelled: bool = False

    @property
    def outcome(self) -> Outcome:
        if self.cancelled:
            return Outcome.CANCELLED
        return Outcome.COMPLETE if self.proposal_id is not None else Outcome.FAILED

    @property
    def failed_count(self) -> int:
        return int(self.proposal_id is None and not self.cancelled)

    def summary(self, for_cli: bool = True) -> str:
        if self.proposal_id is not None:
            return f"proposal {self.proposal_id} stored for node {self.node_id}: compare it and apply or dismiss it"
        return f"re-proposing node {self.node_id} failed: {self.error if for_cli else short_reason(self.error or '')}"


def repropose(store: Store, project_id: int, llm: LLM, *, node_id: str, job_id: int | None = None,
              on_progress: Progress | None = None, should_stop: Callable[[], bool] | None = None,
              **_ignored) -> ProposeReport:
    """Ask the LLM afresh for a node's split (no cache) and store it as a proposal; the tree is not changed.
    The job kind "propose" runs this, so the page neither blocks nor loses the proposal on a reload."""
    report = ProposeReport(node_id)
    if on_progress:
        on_progress(0, 1)
    path = store.node_path(node_id)
    if path[-1].project_id != project_id:
        raise TreeSynthError(f"node {node_id} is not in project {project_id}", "pick a node of this project")
    try:
        split = Partitioner(store, project_id, llm).propose(path[-1], path, fresh=True)
    except (EndpointError, LLMOutputError) as exc:
        report.error = failure_reason(exc)
        return report
    if should_stop is not None and should_stop():
        report.cancelled = True
        raise Cancelled("re-propose cancelled: nothing was stored", "re-propose again", report=report)
    report.proposal_id = edits.save_proposal(store, node_id, split, job_id=job_id or llm.job_id)
    if on_progress:
        on_progress(1, 1)
    return report
