"""Stage 2: leaf-wise generation, with a cost plan before it starts.

Each leaf gets its quota (the node's own quota or the uniform one). Calls ask for a few samples that
satisfy every attribute on the leaf's path (an infinite node contributes a fresh random value per call).
Each call's samples are committed when it returns, capped at the quota inside the transaction, so a
killed run resumes and generates exactly what is missing.
"""

from __future__ import annotations

import concurrent.futures as cf
import math
import random
import threading
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

from .errors import Cancelled, ConfigError, EndpointError
from .llm import LLM
from .outcome import AbortRule, Outcome, failure_reason
from .prompts import SamplesReply, samples_messages, samples_schema
from .samples import clean_samples, fingerprint
from .spec import Settings, bounds
from .store import Store
from .tree import Node, Tree

CHARS_PER_TOKEN = 4
DEFAULT_TOKENS_PER_SAMPLE = 150


@dataclass
class LeafPlan:
    node_id: str
    path: str
    quota: int
    have: int

    @property
    def missing(self) -> int:
        return max(0, self.quota - self.have)


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
    failed_nodes: list[str] = field(default_factory=list)  # failed nodes in the selection: no samples there
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

    def summary(self) -> str:
        if self.no_leaves:
            return self.no_leaves
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
        return text + (" (cancelled)" if self.cancelled else "")


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
    counts = store.sample_counts(project_id)
    leaves = []
    for leaf in generation_targets(tree, s, under, approved_only, leaf_ids)[0]:
        have = sum(n for status, n in counts.get(leaf.id, {}).items() if status != "rejected")
        quota = per_leaf if leaf.quota is None else leaf.quota  # 0 is a real quota: generate nothing
        leaves.append(LeafPlan(leaf.id, tree.path_text(leaf.id), quota, have))
    sample_prompt = samples_messages(spec, tree.labelled_path(leaves[0].node_id) if leaves else [], spc)
    prompt_tokens = sum(len(m["content"]) for m in sample_prompt) // CHARS_PER_TOKEN + 20
    existing = store.samples(project_id, statuses=["generated", "accepted"])[:200]
    if existing:
        chars = sum(len(" ".join(r["data"].values())) for r in existing) / len(existing)
        per_sample = int(chars / CHARS_PER_TOKEN) + 15
    else:
        per_sample = DEFAULT_TOKENS_PER_SAMPLE
    return Plan(leaves, spc, prompt_tokens, per_sample, s)


def generate(store: Store, project_id: int, llm: LLM, *, per_leaf: int | None = None, under: str | None = None,
             approved_only: bool = False, leaf_ids: list[str] | None = None, samples_per_call: int | None = None,
             temperature: float | None = None, concurrency: int | None = None,
             on_progress: Callable[[int, int], None] | None = None,
             should_stop: Callable[[], bool] | None = None, max_rounds: int = 3) -> GenerationReport:
    """Fill every selected leaf up to its quota. Safe to call again: it only makes what is missing.

    ``per_leaf``, ``samples_per_call`` and ``concurrency`` default to the project's settings when None; 0 is a
    value (``per_leaf=0``: only leaves with their own quota get samples), and a value outside the setting's
    range is refused with a ConfigError before any call. Calls are made lazily, a window of them in flight.
    A call that fails (for any reason) is counted with its reason and the rest go on; the report's ``outcome``
    says how it went. Raises Cancelled (with the report as ``.report``) when ``should_stop`` turns true.
    """
    spec = store.project(project_id)
    s = spec.settings
    tree = store.tree(project_id)
    per_leaf = _argument("per_leaf", per_leaf, s.per_leaf, lowest=0)
    spc = _argument("samples_per_call", samples_per_call, s.samples_per_call)
    workers = _argument("concurrency", concurrency, s.concurrency)
    temperature = s.generation_temperature if temperature is None else temperature
    targets, failed_nodes = generation_targets(tree, s, under, approved_only, leaf_ids)
    leaves = {n.id: n for n in targets}
    quota = {leaf_id: (per_leaf if node.quota is None else node.quota) for leaf_id, node in leaves.items()}
    fields, cap = spec.field_names, s.max_field_chars
    report = GenerationReport(failed_nodes=[n.id for n in failed_nodes])
    if not leaves:
        report.no_leaves = no_leaves_reason(tree, failed_nodes)
        return report
    lock = threading.Lock()
    rule = AbortRule()
    state = {"done": 0}
    total = report.missing = sum(max(0, quota[i] - store.live_count(i)) for i in leaves)
    rng = random.Random()

    def stopping() -> bool:
        return rule.tripped or bool(should_stop and should_stop())

    def one_call(leaf_id: str, count: int) -> None:
        if stopping():
            return
        try:
            attributes = tree.attributes(leaf_id, rng)
            avoid = [r["data"] for r in store.samples(project_id, node_ids=[leaf_id])[-3:]]
            reply = llm.ask(
                samples_messages(spec, attributes, count, avoid), schema=SamplesReply, purpose="samples",
                node_id=leaf_id, temperature=temperature, max_tokens=s.max_tokens, reasks=s.reasks,
                check=lambda r: _at_least_one(r, fields, cap), json_schema=samples_schema(spec, count), cache=False,
                model=s.model)
            good, problems = clean_samples(reply.value.samples, fields, cap)
            rows = [{"data": g, "drawn": attributes, "norm_hash": fingerprint(g, spec.dedup_fields)} for g in good]
            inserted, duplicates = store.add_samples(project_id, leaf_id, rows, cap=quota[leaf_id],
                                                     call_id=reply.call_id)
            over = len(rows) - inserted - duplicates
            notes = problems + ([f"{duplicates} duplicate(s)"] if duplicates else []) + (
                [f"{over} beyond the leaf's quota"] if over > 0 else [])
            if notes and reply.call_id:
                store.note_call(reply.call_id, "; ".join(notes))
        except Exception as exc:  # one call's failure, whatever it is, never sinks the run
            with lock:
                report.failed_calls += 1
                report.errors.append(failure_reason(exc))
                report.endpoint_failures += isinstance(exc, EndpointError)
                report.aborted |= rule.failure()
            return
        rule.success()
        with lock:
            report.inserted += inserted
            report.duplicates += duplicates
            report.invalid += len(problems)
            state["done"] += inserted
            if on_progress:
                on_progress(min(state["done"], total), total)

    if on_progress:
        on_progress(0, total)
    with cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="generate") as pool:
        for _ in range(max_rounds):
            missing = {i: quota[i] - store.live_count(i) for i in leaves}
            if not any(m > 0 for m in missing.values()) or stopping():
                break
            before = sum(missing.values())
            run_bounded(pool, one_call, call_units(missing, spc), window=2 * workers, stop=stopping)
            after = sum(max(0, quota[i] - store.live_count(i)) for i in leaves)
            if after >= before:
                break  # no progress this round: stop rather than loop; failures are in the call log
    report.short = {i: quota[i] - store.live_count(i) for i in leaves if store.live_count(i) < quota[i]}
    if should_stop and should_stop():
        report.cancelled = True
        raise Cancelled(f"generation cancelled: {report.summary()}", "generate again to continue", report=report)
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
    10,000 samples per leaf over thousands of leaves is millions of calls, made one at a time as needed."""
    for leaf_id, count in missing.items():
        for start in range(0, count, per_call):
            yield leaf_id, min(per_call, count - start)


def run_bounded(pool: cf.Executor, fn: Callable, units: Iterable[tuple], *, window: int,
                stop: Callable[[], bool]) -> None:
    """Run ``fn(*unit)`` for every unit on the pool with at most ``window`` submitted and unfinished, in the
    order given. Units are drawn only as calls finish, and none after ``stop()`` turns true. An exception
    raised by ``fn`` is re-raised here, as ``pool.map`` would."""
    running: set[cf.Future] = set()
    for unit in units:
        if stop():
            break
        if len(running) >= window:
            finished, running = cf.wait(running, return_when=cf.FIRST_COMPLETED)
            for future in finished:
                future.result()
        running.add(pool.submit(fn, *unit))
    for future in cf.as_completed(running):
        future.result()


def _at_least_one(reply: SamplesReply, fields: list[str], max_chars: int) -> None:
    """The reply check: at least one sample is usable, else a re-ask that says why none was."""
    good, problems = clean_samples(reply.samples, fields, max_chars)
    if not good:
        raise ValueError("no usable sample: " + "; ".join(problems[:3]))
