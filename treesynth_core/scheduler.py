"""One scheduler for long work: node expansions (stage 1) and generation calls (stage 2) in one queue.

``partition.build``, ``generate.generate`` and the pipelined ``generate.run`` (build and generate in one pass:
a leaf's generation is queued the moment the leaf exists) are thin users of it.

The threading contract:

- **The caller's thread owns the schedule.** It draws units from the queue, hands them to worker threads,
  collects every result from one results queue, updates the reports, calls ``on_progress`` and
  ``should_stop``, applies the abort rule and queues what a result leads to (a node's children, a new leaf's
  generation, a leaf's next round). Nothing else reads or writes the queue, the leaf states or the reports.
- **A worker runs one unit** and returns a :class:`Result`; it never raises. It makes the unit's LLM calls
  (each holds a slot of the client's adaptive window only while it talks to the server) and commits the
  unit's own writes (a node's split, a call's samples), so an interrupted run loses only what was in flight.
  It reads only what its unit names: a node's path and whether it has children, a leaf's few newest
  samples; never the whole tree.
- **One concurrency window.** The LLM client's adaptive window bounds the requests in flight. The scheduler
  keeps that many units in flight plus a quarter more (a unit between two calls, parsing or storing, leaves
  its slot to another), and never more than ``concurrency`` when the caller sets it. Queued units are data,
  not threads: a million queued calls cost a counter per leaf.
- **Stragglers.** The scheduler turns on the client's hedged requests (``hedge.py``): a request that runs far
  past the recent median of its kind gets one identical copy, within a budget of about 5% more requests; the
  first answer counts and both are logged. The tree's steps take free window slots before leaf samples.
- **Stopping.** Once ``should_stop`` turns true (cancelled) or the abort rule trips (``outcome.AbortRule``,
  one per kind of work: a model that can split but never writes a usable sample still stops early), no
  unit starts; the ones in flight finish and are counted.

Order: expansions go first (they are on the critical path: each unlocks a subtree), then generation calls,
leaf by leaf in the order the leaves became known, ``samples_per_call`` samples per call. A leaf is filled
in rounds: when its calls are back, samples dropped as duplicates or invalid (and calls that failed) are
asked for again, for at most ``max_rounds`` rounds, and a leaf whose last two rounds added nothing is left
short (the report says so) rather than paid for in a loop. A leaf is retried only once some generation call
of the run has succeeded: until then a failure may be the endpoint's, and the abort rule decides.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from .errors import EndpointError, LeafGone
from .outcome import AbortRule, failure_reason
from .tree import Node

if TYPE_CHECKING:  # the reports live with the work they describe; the scheduler only fills them in
    from .generate import GenerationReport
    from .partition import BuildReport

Progress = Callable[[int, int], None]


@dataclass
class Expansion:
    """What expanding one node did: its new children (none when it already had some) and its review note."""

    children: list[str]
    note: str | None = None


@dataclass
class Leaf:
    """A leaf being filled. Owned by the scheduler's thread; a worker reads only ``id``, ``path``, ``quota``."""

    id: str
    path: list[Node]  # root first: the attributes every prompt of this leaf carries
    quota: int
    live: int  # live samples when the current round started
    rounds: int = 0
    stalled: int = 0  # rounds in a row that added nothing
    undrawn: int = 0  # samples of the current round not yet handed to a call
    outstanding: int = 0  # its calls in flight
    gone: bool = False  # pruned or deleted during the run (a call's samples were refused): no more calls


@dataclass(frozen=True)
class Expand:
    node_id: str
    depth: int


@dataclass(frozen=True)
class Fill:
    leaf: Leaf
    count: int


@dataclass
class Result:
    unit: Expand | Fill
    error: BaseException | None = None
    expansion: Expansion | None = None
    paths: dict[str, list[Node]] = field(default_factory=dict)  # new leaves' paths, read by the worker
    filled: tuple[int, int, int] = (0, 0, 0)  # inserted, duplicates, invalid


@dataclass
class Counts:
    nodes_done: int = 0
    nodes_total: int = 0
    samples_done: int = 0
    samples_total: int = 0
    leaves: dict[str, Leaf] = field(default_factory=dict)


class Scheduler:
    """Build with ``expand_with``, generate with ``fill_with``, or both (``fill_new_leaves``), then ``run``."""

    def __init__(self, llm, *, concurrency: int | None = None, should_stop: Callable[[], bool] | None = None,
                 on_progress: Progress | None = None, max_rounds: int = 3, hedge: bool = True):
        self.llm = llm
        if hedge:  # a straggling request gets a twin (llm.py, hedge.py): one hung call no longer stalls a subtree
            llm.hedge_stragglers()
        self.cap = concurrency
        self.should_stop = should_stop
        self.on_progress = on_progress
        self.max_rounds = max_rounds
        self.cancelled = False
        self.rules = {"expand": AbortRule(), "fill": AbortRule()}
        self.counts = Counts()
        self._expansions: deque[Expand] = deque()
        self._leaves: deque[Leaf] = deque()  # leaves with samples of their current round still to hand out
        self._deferred: list[Leaf] = []  # leaves to retry once some generation call has succeeded
        self._expand: Callable[[str], Expansion] | None = None
        self._build: BuildReport | None = None
        self._depth = 0
        self._fill: Callable[[Leaf, int], tuple[int, int, int]] | None = None
        self._generation: GenerationReport | None = None
        self._per_call = 1
        self._quota: Callable[[], int] | None = None  # a new leaf's quota when it appears mid-run
        self._path: Callable[[str], list[Node]] | None = None
        self._live: Callable[[str], int] | None = None

    # ----------------------------------------------------------------- set-up
    def expand_with(self, expand: Callable[[str], Expansion], report: "BuildReport", depth: int) -> None:
        """Expansions run ``expand(node_id)``; a child above ``depth`` is expanded in turn."""
        self._expand, self._build, self._depth = expand, report, depth

    def fill_with(self, fill: Callable[[Leaf, int], tuple[int, int, int]], report: "GenerationReport", *,
                  per_call: int, live: Callable[[str], int]) -> None:
        """Generation calls run ``fill(leaf, count)`` -> (inserted, duplicates, invalid); ``live(leaf_id)`` is
        a leaf's count of samples towards its quota, read at the start of each round."""
        self._fill, self._generation, self._per_call, self._live = fill, report, per_call, live

    def fill_new_leaves(self, quota: int, path: Callable[[str], list[Node]]) -> None:
        """Queue the generation of every leaf the build makes, with this quota, as soon as it is stored."""
        self._quota, self._path = (lambda: quota), path

    def add_expansion(self, node_id: str, depth: int) -> None:
        self._expansions.append(Expand(node_id, depth))
        self.counts.nodes_total += 1

    def add_leaf(self, node_id: str, path: list[Node], quota: int, live: int) -> None:
        leaf = Leaf(node_id, path, quota, live)
        self.counts.leaves[node_id] = leaf
        missing = max(0, quota - live)
        self.counts.samples_total += missing
        self._generation.missing += missing
        if missing:
            self._start_round(leaf, missing)

    # ----------------------------------------------------------------- the loop (the caller's thread)
    def run(self) -> None:
        """Run every queued unit and all they lead to. Returns when nothing is queued or in flight, or when a
        cancel or the abort rule stopped new units and the ones in flight are back."""
        results: queue.SimpleQueue[Result] = queue.SimpleQueue()
        work: queue.SimpleQueue[Expand | Fill | None] = queue.SimpleQueue()
        workers: list[threading.Thread] = []
        in_flight = 0
        try:
            self._progress()
            while True:
                while in_flight < self._limit() and not self.stopping():
                    unit = self._next_unit()
                    if unit is None:
                        break
                    if in_flight == len(workers):  # a worker per unit in flight (most made while the first calls wait)
                        workers.append(self._spawn(work, results, len(workers)))
                    work.put(unit)
                    in_flight += 1
                if not in_flight:
                    break
                try:
                    result = results.get_nowait()
                except queue.Empty:
                    if self._prestart(workers, work, results):
                        continue
                    result = results.get()
                in_flight -= 1
                self._collect(result)
                self._progress()
        finally:
            for _ in workers:
                work.put(None)
            if in_flight:  # left by an exception: wait for the units still in a call, so none outlives the run
                for worker in workers:
                    worker.join()
            # otherwise every worker is idle and ends as soon as it reads its None: joining them one by one
            # cost a run's end about 6 ms (issue 10), after the last sample was stored

    def _prestart(self, workers: list[threading.Thread], work: queue.SimpleQueue, results: queue.SimpleQueue) -> bool:
        """While a build waits for answers, start one thread its next wave will need (a unit worker, else a
        request thread), up to the window; True when it started one. A tree's last level makes all its leaves
        at once, and starting their threads then put a thread start per leaf on the run's critical path.
        Generation alone needs none: its first dispatch fills the window at once."""
        if self._expand is None:
            return False
        if len(workers) < self._limit():
            workers.append(self._spawn(work, results, len(workers)))
            return True
        return self.llm.prestart(self._limit())

    def _spawn(self, work: queue.SimpleQueue, results: queue.SimpleQueue, number: int) -> threading.Thread:
        thread = threading.Thread(target=self._worker, args=(work, results), daemon=True, name=f"treesynth-unit-{number}")
        thread.start()
        return thread

    def _worker(self, work: queue.SimpleQueue, results: queue.SimpleQueue) -> None:
        while (unit := work.get()) is not None:
            self._work(unit, results)

    def stopping(self) -> bool:
        if not self.cancelled and self.should_stop is not None and self.should_stop():
            self.cancelled = True
        return self.cancelled or any(rule.tripped for rule in self.rules.values())

    def _limit(self) -> int:
        size = self.llm.window.size
        limit = size + max(1, size // 4)
        return limit if self.cap is None else min(self.cap, limit)

    def _next_unit(self) -> Expand | Fill | None:
        if self._expansions:
            return self._expansions.popleft()
        if self._leaves:
            leaf = self._leaves[0]
            count = min(self._per_call, leaf.undrawn)
            leaf.undrawn -= count
            leaf.outstanding += 1
            if not leaf.undrawn:
                self._leaves.popleft()
            return Fill(leaf, count)
        return None

    def _work(self, unit: Expand | Fill, results: queue.SimpleQueue) -> None:
        """A worker: run one unit, put its result. Whatever happens, exactly one result is put."""
        result = Result(unit)
        try:
            if isinstance(unit, Expand):
                result.expansion = self._expand(unit.node_id)
                if self._quota is not None and unit.depth + 1 >= self._depth:  # its children are leaves to fill:
                    # their paths are read here, not on the caller's thread, which the last wave waits for
                    result.paths = {child: self._path(child) for child in result.expansion.children}
            else:
                result.filled = self._fill(unit.leaf, unit.count)
        except BaseException as exc:  # one unit's failure, whatever it is, is its own: the caller counts it
            result.error = exc
        finally:
            results.put(result)

    def _collect(self, result: Result) -> None:
        if isinstance(result.unit, Expand):
            self._expanded(result.unit, result)
        else:
            self._filled(result.unit.leaf, result)

    def _expanded(self, unit: Expand, result: Result) -> None:
        report, rule = self._build, self.rules["expand"]
        self.counts.nodes_done += 1
        if result.error is not None:
            report.failed[unit.node_id] = failure_reason(result.error)
            if isinstance(result.error, EndpointError):
                report.endpoint_failed.append(unit.node_id)
            report.aborted |= rule.failure()
            return
        rule.success()
        report.expanded.append(unit.node_id)
        if result.expansion.note:
            report.flagged[unit.node_id] = result.expansion.note
        if self.stopping():
            return
        for child_id in result.expansion.children:
            if unit.depth + 1 < self._depth:
                self.add_expansion(child_id, unit.depth + 1)
            elif self._quota is not None:
                path = result.paths.get(child_id) or self._path(child_id)
                self.add_leaf(child_id, path, self._quota(), 0)

    def _filled(self, leaf: Leaf, result: Result) -> None:
        report, rule = self._generation, self.rules["fill"]
        leaf.outstanding -= 1
        if isinstance(result.error, LeafGone):  # not a failure of the call: the leaf is no longer a target
            if not leaf.gone:
                leaf.gone, leaf.undrawn = True, 0
                report.gone.append(leaf.id)
                self._leaves = deque(other for other in self._leaves if other is not leaf)
            return
        if result.error is not None:
            report.failed_calls += 1
            report.errors.append(failure_reason(result.error))
            report.endpoint_failures += isinstance(result.error, EndpointError)
            report.aborted |= rule.failure()
        else:
            rule.success()
            while self._deferred:
                retry = self._deferred.pop(0)
                self._start_round(retry, retry.quota - retry.live)
            inserted, duplicates, invalid = result.filled
            report.inserted += inserted
            report.duplicates += duplicates
            report.invalid += invalid
            self.counts.samples_done += inserted
        if not leaf.outstanding and not leaf.undrawn and not self.stopping():
            self._end_round(leaf)

    def _start_round(self, leaf: Leaf, missing: int) -> None:
        leaf.rounds += 1
        leaf.undrawn = missing
        self._leaves.append(leaf)

    def _end_round(self, leaf: Leaf) -> None:
        if leaf.gone:
            return
        live = self._live(leaf.id)
        leaf.stalled = 0 if live > leaf.live else leaf.stalled + 1
        leaf.live = live
        if live >= leaf.quota or leaf.rounds >= self.max_rounds or leaf.stalled >= 2:
            return
        if self.rules["fill"].successes:
            self._start_round(leaf, leaf.quota - live)
        else:  # nothing has worked yet: retrying now is what the abort rule is there to prevent
            self._deferred.append(leaf)

    def _progress(self) -> None:
        if self.on_progress is None:
            return
        c = self.counts
        if self._generation is None:
            self.on_progress(c.nodes_done, c.nodes_total)
        elif self._build is None:
            self.on_progress(min(c.samples_done, c.samples_total), c.samples_total)
        else:
            done = c.nodes_done + min(c.samples_done, c.samples_total)
            self.on_progress(done, c.nodes_total + c.samples_total)

    # ----------------------------------------------------------------- after the run
    def short(self) -> dict[str, int]:
        """Leaf id -> samples it still misses (read from the store, so edits made meanwhile count)."""
        out = {}
        for leaf in self.counts.leaves.values():
            if leaf.gone:
                continue
            live = self._live(leaf.id)
            if live < leaf.quota:
                out[leaf.id] = leaf.quota - live
        return out
