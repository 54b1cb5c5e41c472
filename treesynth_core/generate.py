"""Stage 2: leaf-wise generation, with a cost plan before it starts; and ``run``, build and generate in one
pipelined pass.

Each leaf gets its quota (the node's own quota or the uniform one). Calls ask for a few samples that
satisfy every attribute on the leaf's path (an infinite node contributes a fresh random value per call).
Each call's samples are committed when it returns, capped at the quota inside the transaction, so a
killed run resumes and generates exactly what is missing. The calls go through ``scheduler.py``; ``run``
queues a leaf's calls the moment the build stores the leaf, so no leaf waits for the rest of the tree.

Per call, the client's work is kept small: the reply is cleaned once (fields, cap and fingerprints in one
pass), the "do not repeat" list is the leaf's few newest samples (not a read of the whole leaf), and the
samples are stored with one duplicate query and one multi-row insert.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, field
from typing import Callable, Iterator

from . import edits
from .errors import Cancelled, ConfigError, LeafGone, TreeSynthError
from .llm import LLM
from .outcome import Outcome, short_reason
from .partition import BuildReport, Partitioner, expandable
from .prompts import SamplesReply, samples_messages, samples_schema
from .samples import NOT_CONTENT, clean_reply, near_copies
from .scheduler import Leaf, Scheduler
from .seeds import style_examples
from .spec import Settings, bounds
from .store import Store
from .tree import Node, Tree, path_attributes

CHARS_PER_TOKEN = 4
DEFAULT_TOKENS_PER_SAMPLE = 150
AVOID = 3  # a leaf's newest samples that a generation prompt asks not to repeat
NEAR_WINDOW = 48  # a leaf's newest samples a call's samples are checked against for near-duplicates (copies)


def avoid_style(setting: str, is_local: bool) -> str:
    """The avoid list a call's prompt carries: "samples", "topics" or "off". ``auto`` is off for the bundled
    local model, which copies the list into its reply (issue 9: 28/35 to 43/54 calls came back as duplicates),
    and the samples themselves for any other endpoint."""
    if setting == "auto":
        return "off" if is_local else "samples"
    return setting


@dataclass
class LeafPlan:
    node_id: str
    path: str
    quota: int
    have: int
    out: int = 0  # samples asked for by batch lines still out (exported, results not imported, not released)

    @property
    def missing(self) -> int:
        """What to ask for: the quota less what the leaf has and what batch files will bring."""
        return max(0, self.quota - self.have - self.out)

    @property
    def awaited(self) -> int:
        """Of what the leaf lacks, the samples out in batch files (not asked for again)."""
        return min(self.out, max(0, self.quota - self.have))


@dataclass
class Plan:
    leaves: list[LeafPlan]
    samples_per_call: int
    prompt_tokens_per_call: int
    tokens_per_sample: int
    settings: Settings

    @property
    def missing(self) -> int:
        return sum(leaf.missing for leaf in self.leaves)

    @property
    def awaited(self) -> int:
        return sum(leaf.awaited for leaf in self.leaves)

    @property
    def calls(self) -> int:
        return sum(math.ceil(leaf.missing / self.samples_per_call) for leaf in self.leaves)

    @property
    def prompt_tokens(self) -> int:
        return self.calls * self.prompt_tokens_per_call

    @property
    def completion_tokens(self) -> int:
        return self.missing * self.tokens_per_sample

    @property
    def cost(self) -> float | None:
        """Estimated USD, or None when a price is unknown (we never guess prices)."""
        return self.settings.cost(self.prompt_tokens, self.completion_tokens)


@dataclass
class GenerationReport:
    inserted: int = 0
    duplicates: int = 0
    invalid: int = 0
    failed_calls: int = 0
    errors: list[str] = field(default_factory=list)  # why each failed call failed
    short: dict[str, int] = field(default_factory=dict)  # leaf id -> samples still missing
    missing: int = 0  # samples missing when the run started
    awaited: int = 0  # samples the leaves lack that batch files still out will bring: not asked for again
    failed_nodes: list[str] = field(default_factory=list)  # failed nodes in the selection: no samples there
    gone: list[str] = field(default_factory=list)  # leaves pruned or deleted during the run: no longer asked for
    no_leaves: str | None = None  # why there was nothing to fill (a failed or unsplit root...)
    endpoint_failures: int = 0
    aborted: bool = False  # stopped by the abort rule
    cancelled: bool = False

    @property
    def outcome(self) -> Outcome:
        """complete: every selected leaf reached its quota, no call failed and no failed node was skipped;
        failed: no leaf to fill, or nothing stored although samples were missing; partial otherwise."""
        if self.cancelled:
            return Outcome.CANCELLED
        if self.no_leaves:
            return Outcome.FAILED
        if self.missing and not self.inserted:
            return Outcome.FAILED
        if self.failed_calls or self.short or self.failed_nodes:
            return Outcome.PARTIAL
        return Outcome.COMPLETE

    @property
    def failed_count(self) -> int:
        return self.failed_calls

    def summary(self, for_cli: bool = True) -> str:
        """What the run did, in one line. ``for_cli``: the fuller text the CLI prints and the job row keeps,
        with the commands that show and retry what failed; else the app's, counts and the first failure's reason
        cut short (the page lists the failed calls and says what to do)."""
        if self.no_leaves:
            return self.no_leaves
        if not for_cli:
            return _app_summary(self, self.aborted, self.errors[0] if self.errors else "")
        text = (f"{self.inserted} new sample(s), {self.duplicates} duplicate(s) and {self.invalid} invalid "
                f"dropped, {self.failed_calls} failed call(s)")
        first = self.errors[0] if self.errors else ""
        if self.aborted and self.endpoint_failures == self.failed_calls:
            text = f"the endpoint failed repeatedly ({first}); " + text
        elif self.aborted:
            text += f"; stopped after {self.failed_calls} failed calls and no success ({first})"
        elif self.failed_calls:
            text += f" (see `calls --failed`; first: {first})"
        if self.short:
            text += f"; {len(self.short)} leaf/leaves still short of quota ({sum(self.short.values())} samples)"
        if self.failed_nodes:
            text += (f"; {len(self.failed_nodes)} failed node(s) have no samples: run build again to retry them, "
                     "or prune them")
        if self.failed_calls or self.short:
            text += "; run generate again to retry: it resumes and only makes what is missing"
        if self.awaited:
            text += (f"; {self.awaited} sample(s) out in batch files were not asked for again (`batch import` "
                     "their results, or `batch cancel` them)")
        if self.gone:
            text += f"; {len(self.gone)} leaf/leaves pruned or deleted during the run were no longer filled"
        return text + (" (cancelled)" if self.cancelled else "")


def _app_summary(g: GenerationReport, aborted: bool, first: str, prefix: str = "") -> str:
    """The app's one line for a generation (after ``prefix``, a build's counts): the counts and the first
    failure's reason, cut short; no CLI commands (the page says what to do)."""
    text = prefix + f"{g.inserted} new sample(s)"
    if g.duplicates or g.invalid:
        text += f" ({g.duplicates} duplicate(s) and {g.invalid} invalid dropped)"
    text += f", {g.failed_calls} call(s) failed"
    if aborted:
        text += "; stopped early: nothing succeeded"
    if g.short:
        text += f"; {len(g.short)} leaf/leaves still short ({sum(g.short.values())} samples)"
    if g.failed_nodes:
        text += f"; {len(g.failed_nodes)} failed node(s) have no samples"
    if g.awaited:
        text += f"; {g.awaited} out in batch files, not asked for again"
    if g.gone:
        text += f"; {len(g.gone)} leaf/leaves pruned or deleted meanwhile, no longer filled"
    if first:
        text += f"; first failure: {short_reason(first)}"
    return text + (" (cancelled)" if g.cancelled else "")


def generation_targets(tree: Tree, settings: Settings, under: str | None = None, approved_only: bool = False,
                       leaf_ids: list[str] | None = None) -> tuple[list[Node], list[Node]]:
    """(leaves to fill, failed nodes skipped). A failed node is never a target; the root is one only when
    the project has no tree on purpose (``max_depth`` 0), never because its split failed or never ran."""
    whole_task = settings.max_depth == 0
    leaves, failed = [], []
    for node in select_leaves(tree, under, approved_only, leaf_ids):
        if node.status == "failed":
            failed.append(node)
        elif node.parent_id is not None or whole_task:
            leaves.append(node)
    return leaves, failed


def no_leaves_reason(tree: Tree, failed: list[Node]) -> str:
    """One line saying why there is nothing to fill, and what to do."""
    root = tree.root
    if root is not None and any(n.id == root.id for n in failed):
        return (f"the tree has no leaves: the root's split failed ({root.failure or 'see `calls --failed`'}); "
                "run build again")
    if root is not None and not tree.kids(root.id):
        return "the tree has no leaves: the root has not been split yet; run build first"
    if root is not None and not tree.kids(root.id, include_pruned=False):
        return "the tree has no leaves: every child of the root is pruned; restore one or run build"
    if failed:
        return (f"no leaf to fill: the {len(failed)} selected node(s) failed ({failed[0].failure}); run build "
                "again to retry them")
    return "no leaf to fill: none matches the selection (approved only, under, or leaf ids)"


def select_leaves(tree: Tree, under: str | None = None, approved_only: bool = False,
                  leaf_ids: list[str] | None = None):
    leaves = tree.leaves(under)
    if leaf_ids is not None:
        wanted = set(leaf_ids)
        leaves = [n for n in leaves if n.id in wanted]
    if approved_only:
        leaves = [n for n in leaves if n.status in ("approved", "edited")]
    return leaves


def plan_generation(store: Store, project_id: int, *, per_leaf: int | None = None, under: str | None = None,
                    approved_only: bool = False, leaf_ids: list[str] | None = None,
                    samples_per_call: int | None = None) -> Plan:
    spec = store.project(project_id)
    s = spec.settings
    tree = store.tree(project_id)
    per_leaf = _argument("per_leaf", per_leaf, s.per_leaf, lowest=0)
    spc = _argument("samples_per_call", samples_per_call, s.samples_per_call)
    counts, out = store.sample_counts(project_id), store.pending_batch_samples(project_id)
    leaves = []
    for leaf in generation_targets(tree, s, under, approved_only, leaf_ids)[0]:
        have = sum(n for status, n in counts.get(leaf.id, {}).items() if status not in NOT_CONTENT)
        quota = per_leaf if leaf.quota is None else leaf.quota  # 0 is a real quota: generate nothing
        leaves.append(LeafPlan(leaf.id, tree.path_text(leaf.id), quota, have, out.get(leaf.id, 0)))
    sample_prompt = samples_messages(spec, tree.labelled_path(leaves[0].node_id) if leaves else [], spc, examples=(
        style_examples(store, project_id, tree.path(leaves[0].node_id)) if leaves else []))  # seeds cost tokens
    prompt_tokens = sum(len(m["content"]) for m in sample_prompt) // CHARS_PER_TOKEN + 20
    existing = store.sample_data(project_id, statuses=["generated", "accepted"], limit=200)
    source = None if existing else store.baseline_source(project_id)
    if source is not None:  # a naive baseline before its first sample: its tree project's are the same task and fields
        existing = store.sample_data(source, statuses=["generated", "accepted"], limit=200)
    if existing:
        chars = sum(len(" ".join(data.values())) for data in existing) / len(existing)
        per_sample = int(chars / CHARS_PER_TOKEN) + 15
    else:
        per_sample = DEFAULT_TOKENS_PER_SAMPLE
    return Plan(leaves, spc, prompt_tokens, per_sample, s)


# --- duplicates per call (issue 9): a call's note says "k of n sample(s) were duplicates"; the Generate page and
# the CLI read the rate back from the call log (Store.sample_call_notes).
_DUPLICATE_NOTE = re.compile(r"\b(\d+) of (\d+) sample\(s\) were duplicates")


def duplicate_note(duplicates: int, returned: int, near: int) -> str:
    """The call log's note of a call's duplicates: of the usable samples it returned, how many were copies."""
    text = f"{duplicates} of {returned} sample(s) were duplicates"
    return text + (f" ({near} near: cut-off or prefixed copies)" if near else "")


@dataclass
class DuplicateRate:
    """Duplicates among the usable samples that generation calls returned; ``all_duplicates``: calls whose every
    usable sample was a duplicate."""

    calls: int = 0
    returned: int = 0
    duplicates: int = 0
    all_duplicates: int = 0

    @property
    def rate(self) -> float | None:
        return self.duplicates / self.returned if self.returned else None

    def text(self) -> str:
        if not self.returned:
            return "no usable sample returned"
        return (f"{self.duplicates} of {self.returned} returned sample(s) were duplicates ({self.rate:.0%}); "
                f"{self.all_duplicates} of {self.calls} call(s) returned only duplicates")


def duplicate_rate(rows: list[dict]) -> DuplicateRate:
    """Aggregate ``Store.sample_call_notes`` rows (a successful samples call's ``dropped`` note and the samples
    it stored): a call without a duplicate note returned what it stored plus what went beyond the quota."""
    out = DuplicateRate()
    for row in rows:
        out.calls += 1
        match = _DUPLICATE_NOTE.search(row["dropped"] or "")
        if match:
            duplicates, returned = int(match[1]), int(match[2])
        else:
            over = re.search(r"\b(\d+) beyond the leaf's quota", row["dropped"] or "")
            duplicates, returned = 0, row["inserted"] + (int(over[1]) if over else 0)
        out.duplicates += duplicates
        out.returned += returned
        out.all_duplicates += bool(returned) and duplicates == returned
    return out


def reply_tokens(max_tokens: int, count: int, recent: list[dict]) -> int:
    """``max_tokens`` for a call asking ``count`` samples: the setting, raised to 1.5 x what ``count`` samples
    like the leaf's recent ones take (``DEFAULT_TOKENS_PER_SAMPLE`` each before the leaf has any), so a
    reply of ten long samples is not cut off and re-asked whole. A cap, not a charge: a reply costs the
    tokens it has."""
    if recent:
        per_sample = sum(len(" ".join(map(str, data.values()))) for data in recent) / len(recent) / CHARS_PER_TOKEN + 15
    else:
        per_sample = DEFAULT_TOKENS_PER_SAMPLE
    return max(max_tokens, min(16_000, int(1.5 * count * per_sample) + 64))


class Filler:
    """One generation call for a leaf: ask for ``count`` samples that satisfy the leaf's path, clean the reply
    once, store what is new up to the leaf's quota, and note on the call what was dropped and why. Returns
    (inserted, duplicates, invalid). Thread-safe: one instance serves every worker of a run."""

    def __init__(self, store: Store, project_id: int, llm: LLM, *, temperature: float | None = None):
        self.store, self.project_id, self.llm = store, project_id, llm
        self.spec = store.project(project_id)
        self.settings = self.spec.settings
        self.temperature = self.settings.generation_temperature if temperature is None else temperature
        self.rng = random.Random()
        self.avoid_style = avoid_style(self.settings.avoid_list, llm.endpoint.is_local)
        self._examples: dict[str, list[dict]] = {}  # a leaf's style examples (seeds, imported rows), read once a run

    def __call__(self, leaf: Leaf, count: int) -> tuple[int, int, int]:
        s, spec = self.settings, self.spec
        attributes = path_attributes(leaf.path, self.rng)
        recent = self.store.recent_samples(leaf.id, NEAR_WINDOW)  # one bounded read: the avoid list and the
        avoid = recent[-AVOID:] if self.avoid_style != "off" else []  # near-duplicate check's window
        cleaned: dict = {}

        def check(reply: SamplesReply) -> None:  # the reply check cleans it, once: the result is kept
            kept, problems = clean_reply(reply.samples, spec.field_names, s.max_field_chars, spec.dedup_fields)
            cleaned.update(value=reply, kept=kept, problems=problems)
            if not kept:
                raise ValueError("no usable sample: " + "; ".join(problems[:3]))

        examples = self._examples.get(leaf.id)
        if examples is None:
            examples = self._examples[leaf.id] = style_examples(self.store, self.project_id, leaf.path)
        reply = self.llm.ask(
            samples_messages(spec, attributes, count, avoid, self.avoid_style, examples=examples), schema=SamplesReply,
            purpose="samples",
            node_id=leaf.id, temperature=self.temperature, max_tokens=reply_tokens(s.max_tokens, count, recent),
            reasks=s.reasks, check=check,
            json_schema=samples_schema(spec, count), cache=False, model=s.model)
        if cleaned.get("value") is not reply.value:
            check(reply.value)
        kept, problems = cleaned["kept"], cleaned["problems"]
        copies = near_copies([sample for sample, _ in kept], recent, spec.dedup_fields)
        rows = [{"data": sample, "drawn": attributes, "norm_hash": norm_hash}
                for i, (sample, norm_hash) in enumerate(kept) if i not in copies]
        try:
            inserted, exact = edits.add_samples(self.store, self.project_id, leaf.id, rows, cap=leaf.quota,
                                                call_id=reply.call_id, live_only=True)
        except LeafGone as gone:  # pruned or deleted since the run started: the call's reply says why it was kept out
            if reply.call_id:
                self.store.note_call(reply.call_id, f"not stored: {gone.message}")
            raise
        duplicates = exact + len(copies)
        over = len(rows) - inserted - exact
        near = sum(how != "exact" for how in copies.values())
        notes = problems + ([duplicate_note(duplicates, len(kept), near)] if duplicates else []) + (
            [f"{over} beyond the leaf's quota"] if over > 0 else [])
        if notes and reply.call_id:
            self.store.note_call(reply.call_id, "; ".join(notes))
        return inserted, duplicates, len(problems)


def generate(store: Store, project_id: int, llm: LLM, *, per_leaf: int | None = None, under: str | None = None,
             approved_only: bool = False, leaf_ids: list[str] | None = None, samples_per_call: int | None = None,
             temperature: float | None = None, concurrency: int | None = None,
             on_progress: Callable[[int, int], None] | None = None,
             should_stop: Callable[[], bool] | None = None, max_rounds: int = 3) -> GenerationReport:
    """Fill every selected leaf up to its quota. Safe to call again: it only makes what is missing.

    ``per_leaf`` and ``samples_per_call`` default to the project's settings when None; 0 is a value
    (``per_leaf=0``: only leaves with their own quota get samples), and a value outside the setting's range is
    refused with a ConfigError before any call. ``concurrency`` caps the calls at once (default: what the LLM
    client's adaptive window allows). Calls are made lazily through the scheduler, a window of them in flight.
    A call that fails (for any reason) is counted with its reason and the rest go on; a leaf left short is
    asked again in a next round (at most ``max_rounds``); the report's ``outcome`` says how it went. Raises
    Cancelled (with the report as ``.report``) when ``should_stop`` turns true.
    """
    spec = store.project(project_id)
    s = spec.settings
    per_leaf = _argument("per_leaf", per_leaf, s.per_leaf, lowest=0)
    spc = _argument("samples_per_call", samples_per_call, s.samples_per_call)
    if concurrency is not None:
        _argument("concurrency", concurrency, s.concurrency)
    tree = store.tree(project_id)
    targets, failed_nodes = generation_targets(tree, s, under, approved_only, leaf_ids)
    report = GenerationReport(failed_nodes=[n.id for n in failed_nodes])
    if not targets:
        report.no_leaves = no_leaves_reason(tree, failed_nodes)
        return report
    scheduler = Scheduler(llm, concurrency=concurrency, should_stop=should_stop, on_progress=on_progress,
                          max_rounds=max_rounds)
    scheduler.fill_with(Filler(store, project_id, llm, temperature=temperature), report, per_call=spc,
                        live=store.live_count)
    _add_leaves(scheduler, store, project_id, tree, targets, per_leaf, report)
    scheduler.run()
    report.short = scheduler.short()
    if scheduler.cancelled:
        report.cancelled = True
        raise Cancelled(f"generation cancelled: {report.summary()}", "generate again to continue", report=report)
    return report


def _add_leaves(scheduler: Scheduler, store: Store, project_id: int, tree: Tree, leaves: list[Node], per_leaf: int,
                report: GenerationReport) -> None:
    """Queue the leaves' missing samples: each quota less what the leaf has and what batch lines still out will
    bring (``report.awaited``), so they are not paid for twice. The store's cap is that lower quota too, which
    leaves room for the batch results; releasing the lines makes those samples missing again."""
    out = store.pending_batch_samples(project_id)
    for leaf in leaves:
        quota, live = per_leaf if leaf.quota is None else leaf.quota, store.live_count(leaf.id)
        awaited = min(out.get(leaf.id, 0), max(0, quota - live))
        report.awaited += awaited
        scheduler.add_leaf(leaf.id, tree.path(leaf.id), quota - awaited, live)


# ----------------------------------------------------------------------------- build and generate, pipelined


@dataclass
class RunReport:
    """A pipelined build and generate: what each part did, and one outcome for the whole run."""

    build: BuildReport
    generation: GenerationReport
    cancelled: bool = False

    @property
    def outcome(self) -> Outcome:
        """failed: no leaf to fill, or samples were missing and none was stored, or the build failed and no
        sample was stored; complete: both parts complete (no node or call failed, no split flagged, no leaf
        short); partial otherwise."""
        b, g = self.build, self.generation
        if self.cancelled:
            return Outcome.CANCELLED
        if g.no_leaves or (g.missing and not g.inserted) or (b.outcome is Outcome.FAILED and not g.inserted):
            return Outcome.FAILED
        if b.outcome is Outcome.COMPLETE and g.outcome is Outcome.COMPLETE:
            return Outcome.COMPLETE
        return Outcome.PARTIAL

    @property
    def failed_count(self) -> int:
        """Failed nodes plus failed calls."""
        return len(self.build.failed) + self.generation.failed_calls

    def summary(self, for_cli: bool = True) -> str:
        """What the run did, in one line: ``for_cli`` as GenerationReport.summary."""
        b, g = self.build, self.generation
        text = f"expanded {len(b.expanded)} node(s), {len(b.failed)} failed"
        if b.flagged:
            text += f", {len(b.flagged)} split(s) flagged for review"
        if not for_cli:
            first = next(iter(b.failed.values()), None) or (g.errors[0] if g.errors else "")
            text = _app_summary(g, b.aborted or g.aborted, first, text + "; ")
            return f"{g.no_leaves} ({text})" if g.no_leaves else text
        text += (f"; {g.inserted} new sample(s), {g.duplicates} duplicate(s) and {g.invalid} invalid dropped, "
                 f"{g.failed_calls} failed call(s)")
        first = next(iter(b.failed.values()), None) or (g.errors[0] if g.errors else "")
        failures = len(b.failed) + g.failed_calls
        if (b.aborted or g.aborted) and failures == len(b.endpoint_failed) + g.endpoint_failures:
            text = f"the endpoint failed repeatedly ({first}); " + text
        elif b.aborted or g.aborted:
            text += f"; stopped after {failures} failures and no success ({first})"
        elif failures:
            text += f" (see `calls --failed`; first: {first})"
        if g.short:
            text += f"; {len(g.short)} leaf/leaves still short of quota ({sum(g.short.values())} samples)"
        if g.failed_nodes:
            text += f"; {len(g.failed_nodes)} failed node(s) outside the build have no samples: prune or rebuild them"
        if b.flagged:
            text += "; flagged splits may miss values: read their notes (`show`, the Tree page)"
        if failures or g.short:
            text += "; run the same command again to retry: it resumes"
        if g.awaited:
            text += f"; {g.awaited} sample(s) out in batch files were not asked for again"
        if g.no_leaves:
            text = f"{g.no_leaves} ({text})"
        return text + (" (cancelled)" if self.cancelled else "")


def run(store: Store, project_id: int, llm: LLM, *, depth: int | None = None, under: str | None = None,
        approved_only: bool = False, per_leaf: int | None = None, samples_per_call: int | None = None,
        temperature: float | None = None, concurrency: int | None = None,
        on_progress: Callable[[int, int], None] | None = None, should_stop: Callable[[], bool] | None = None,
        max_rounds: int = 3) -> RunReport:
    """Build the tree under ``under`` (default: the root) down to ``depth`` and fill its leaves, in one pass:
    a leaf's generation is queued the moment its parent's split is stored, so a slow call stalls only its own
    subtree and leaves. Leaves that exist already (and will not be split) are filled from the start.

    The options are build's (``depth``, ``under``, ``approved_only``: start only from approved nodes, and fill
    only approved leaves and the leaves grown from them) and generate's (``per_leaf``, ``samples_per_call``,
    ``temperature``). Resumes like both: run it again and only what failed or is missing is done. Raises
    Cancelled (with the report as ``.report``) when ``should_stop`` turns true.
    """
    spec = store.project(project_id)
    s = spec.settings
    depth = s.max_depth if depth is None else depth
    per_leaf = _argument("per_leaf", per_leaf, s.per_leaf, lowest=0)
    spc = _argument("samples_per_call", samples_per_call, s.samples_per_call)
    if concurrency is not None:
        _argument("concurrency", concurrency, s.concurrency)
    tree = store.tree(project_id)
    start = under or (tree.root.id if tree.root else None)
    if start is None:
        raise TreeSynthError("the project has no root node", "recreate the project")
    frontier = [n for n in tree.subtree(start) if expandable(tree, n, depth)
                and (not approved_only or n.status in ("approved", "edited"))]
    expanding = {n.id for n in frontier}
    targets, failed = generation_targets(tree, s, under, approved_only)
    report = RunReport(
        BuildReport(skipped_locked=[n.id for n in tree.subtree(start) if n.locked and not tree.kids(n.id)],
                    root_id=tree.root.id if tree.root else None),
        GenerationReport(failed_nodes=[n.id for n in failed if n.id not in expanding]))
    scheduler = Scheduler(llm, concurrency=concurrency, should_stop=should_stop, on_progress=on_progress,
                          max_rounds=max_rounds)
    scheduler.expand_with(Partitioner(store, project_id, llm).expansion, report.build, depth)
    scheduler.fill_with(Filler(store, project_id, llm, temperature=temperature), report.generation, per_call=spc,
                        live=store.live_count)
    scheduler.fill_new_leaves(per_leaf, store.node_path)
    for node in frontier:
        scheduler.add_expansion(node.id, node.depth)
    _add_leaves(scheduler, store, project_id, tree, [n for n in targets if n.id not in expanding], per_leaf,
                report.generation)
    scheduler.run()
    report.generation.short = scheduler.short()
    if scheduler.cancelled:
        report.cancelled = report.build.cancelled = report.generation.cancelled = True
        raise Cancelled(f"run cancelled: {report.summary()}", "run again to continue", report=report)
    if not scheduler.counts.leaves:
        after = store.tree(project_id)
        report.generation.no_leaves = no_leaves_reason(after, generation_targets(after, s, under, approved_only)[1])
    return report


def _argument(name: str, value: int | None, default: int, lowest: int | None = None) -> int:
    """A run's argument, or the project's setting when it is None (0 is a value, not "unset"), refused
    outside the setting's range (``lowest`` lowers the floor: a quota of 0 means "generate nothing")."""
    value = default if value is None else value
    low, high = bounds(name)
    low = low if lowest is None else lowest
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{name} must be a whole number from {int(low)} to {int(high)}, not {value!r}",
                          f"pass {name} from {int(low)} to {int(high)}")
    return value


def call_units(missing: dict[str, int], per_call: int) -> Iterator[tuple[str, int]]:
    """One round's calls, (leaf id, samples to ask for), leaf by leaf in chunks of ``per_call``. A generator:
    10,000 samples per leaf over thousands of leaves is millions of calls, made one at a time as needed (the
    batch files' export; live runs hand their calls out the same way, in the scheduler)."""
    for leaf_id, count in missing.items():
        for start in range(0, count, per_call):
            yield leaf_id, min(per_call, count - start)
