"""The leaf-fit judge (issue 9): does each sample have every attribute on its leaf's path?

One batched call per leaf judges the leaf's unjudged live samples (``JUDGE_CHUNK`` at a time), each against the
task itself and every (dimension, value) on its path: an infinite node's value is the one drawn for the sample.
The reply (``prompts.JudgeReply``: per sample, per attribute, ``fits`` and a short ``reason``) is validated by
pydantic and by ``check_reply`` (every sample once, every attribute once) and re-asked like every other step.
Verdicts are stored per sample and attribute with the call's id; a sample *fits* when every attribute fits. A
verdict is current only while the sample's text and its attributes are what was judged (an edit or a renamed
value makes the sample unjudged again).

``judge_samples`` judges what is unjudged. ``judge_until`` fills leaves "until N fit": it judges, rejects the
misfits (through ``edits.set_sample_status``), generates what is missing with ``generate.generate`` (rejected
samples do not count towards a quota, so it refills and never exceeds one) and repeats until every leaf has N
fitting live samples (a sample a human accepted counts as fitting and is never rejected by the judge), a
leaf stalls (``MAX_STALLED`` rounds without a new fitting sample), or the budget is spent.

**The budget** is a hard cap on the calls of the run as the call log counts them: every attempt, re-asks
included, generation and judge alike. A call starts only when the calls logged since the run began, plus the
worst case of every call in flight (``reasks + 1`` attempts each), plus its own worst case fit in the budget;
so the cap holds even when every reply has to be re-asked. (Calls another process logs for the same project
meanwhile count too: the cap errs on the safe side.) The default is ``BUDGET_FACTOR`` times the plan's calls.

**Resume.** A judge call's verdicts and the rejections they lead to are one transaction, committed when the call
returns; samples are committed per generation call. A killed run loses only the calls in flight; running it
again judges what is unjudged and fills what is missing.

The threading contract is the scheduler's: the caller's thread owns the schedule, the budget and the report;
a worker runs one judge call and commits its own writes.

This module is the run (its report, budget and loops); the verdicts and the reply check are in ``verdicts.py``,
the plan and the state of the selected leaves in ``judge_plan.py``. Their public names are re-exported here.
"""

from __future__ import annotations

import math
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Callable, Iterable

from . import edits
from .errors import Cancelled
from .generate import generate
from .judge_plan import (BUDGET_FACTOR, BUDGET_RANGE, CHUNK_RANGE, JUDGE_CHUNK, JUDGE_PROMPT_TOKENS, LIVE,  # noqa: F401
                         MIN_BUDGET, VERDICT_TOKENS, JudgePlan, LeafTarget, _check_count, _Snapshot, _snapshot,
                         plan_judge)
from .llm import LLM
from .outcome import AbortRule, Outcome, RunReport, failure_reason
from .prompts import JUDGE_REASON_CHARS, JudgeReply, judge_messages, judge_schema
from .store import Store
from .verdicts import (NOT_JUDGED, TASK, Attributes, Verdict, check_reply, current_verdict,  # noqa: F401
                       sample_attributes, sample_verdicts)

JUDGE_TEMPERATURE = 0.0  # a verdict should not depend on the dice
MAX_STALLED = 5  # rounds in a row without a new fitting sample before a leaf is left short


# ----------------------------------------------------------------------------- the report


@dataclass
class JudgeReport(RunReport):
    """What a judge run did. ``until`` is None for a plain judge run (judge what is unjudged)."""

    failed_field = "judge_failed"  # and generation_failed: failed_count is their sum
    until: int | None = None
    budget: int = 0
    calls: int = 0  # calls logged by the run: every attempt of generation and judge calls
    leaves: int = 0
    to_judge: int = 0  # samples without a current verdict when the run started
    judged: int = 0  # samples given a verdict
    misfits: int = 0  # of those, samples that miss an attribute
    rejected: int = 0  # misfits rejected by the run (until N only), including those judged before it
    rejected_before: int = 0  # of those, misfits judged before the run (e.g. by a plain judge run)
    judge_calls: int = 0
    judge_failed: int = 0
    generated: int = 0  # samples generated to refill (until N only)
    generation_calls: int = 0  # generation calls asked for
    generation_failed: int = 0
    dropped: int = 0  # generated samples dropped as duplicates or invalid
    errors: list[str] = field(default_factory=list)
    target: int = 0  # fitting samples wanted over all leaves (until N)
    fitting: int = 0  # fitting live samples over all leaves at the end (each leaf counted up to its target)
    short: dict[str, int] = field(default_factory=dict)  # leaf id -> fitting samples it still misses
    stalled: list[str] = field(default_factory=list)  # leaves given up after MAX_STALLED rounds without progress
    unjudged: int = 0  # live samples in scope still without a verdict at the end
    budget_spent: bool = False  # stopped because the next call would not fit in the budget
    aborted: bool = False  # stopped by the abort rule (the judge failed repeatedly before any success)
    no_leaves: str | None = None

    @property
    def failed_count(self) -> int:
        return self.judge_failed + self.generation_failed

    def verdict(self) -> Outcome:
        """until N: complete when every leaf has its N fitting samples; failed when there was something to do and
        no sample was judged or made; partial otherwise. Plain: complete when every live sample in scope has a
        verdict; failed when none of those to judge got one; partial otherwise."""
        if self.no_leaves:
            return Outcome.FAILED
        if self.until is not None:
            if not self.short:
                return Outcome.COMPLETE
            return Outcome.PARTIAL if (self.judged or self.generated or self.fitting) else Outcome.FAILED
        if not self.unjudged:
            return Outcome.COMPLETE
        return Outcome.PARTIAL if self.judged else Outcome.FAILED

    def summary(self) -> str:
        if self.no_leaves:
            return self.no_leaves
        text = f"judged {self.judged} sample(s) in {self.judge_calls} call(s): {self.misfits} misfit(s)"
        if self.until is not None:
            text += f"; {self.rejected} misfit(s) rejected" + (
                f" ({self.rejected_before} judged before this run)" if self.rejected_before else "")
        if self.judge_failed:
            text += f"; {self.judge_failed} judge call(s) failed"
        if self.until is not None:
            text += (f"; generated {self.generated} sample(s) in {self.generation_calls} call(s)"
                     + (f" ({self.generation_failed} failed)" if self.generation_failed else "")
                     + (f", {self.dropped} dropped as duplicates or invalid" if self.dropped else "")
                     + f"; {self.fitting}/{self.target} fitting samples in {self.leaves} leaf/leaves")
            if self.short:
                text += (f"; {len(self.short)} leaf/leaves short of {self.until} fitting "
                         f"({sum(self.short.values())} sample(s))")
        elif self.unjudged:
            text += f"; {self.unjudged} sample(s) still not judged"
        text += f"; {self.calls} of a budget of {self.budget} call(s) used"
        if self.aborted:
            text += f"; stopped: the judge failed repeatedly before any success ({self.errors[0]})"
        elif self.budget_spent:
            text += "; stopped: the budget is spent (raise --budget, or run again: a new run has a new budget)"
        if self.stalled:
            text += f"; {len(self.stalled)} leaf/leaves gave no new fitting sample in {MAX_STALLED} rounds"
        if self.errors and not self.aborted:
            text += f" (see `calls --failed`; first: {self.errors[0]})"
        if self.outcome is not Outcome.COMPLETE and not self.cancelled:
            text += "; judge again to continue: it resumes where this run stopped"
        return text + (" (cancelled)" if self.cancelled else "")


# ----------------------------------------------------------------------------- the budget


class CallBudget:
    """The run's hard cap on calls (see the module docstring). Used by the caller's thread only."""

    def __init__(self, store: Store, project_id: int, limit: int, per_call: int):
        self.store, self.project_id = store, project_id
        self.limit, self.per_call = limit, per_call
        self.start = store.last_call_id()
        self.reserved = 0

    def spent(self) -> int:
        return self.store.calls_since(self.project_id, self.start)

    def affordable(self) -> int:
        """How many more calls may start now, each counted at its worst case."""
        return max(0, (self.limit - self.spent() - self.reserved) // self.per_call)

    def reserve(self, calls: int = 1) -> bool:
        if calls > self.affordable():
            return False
        self.reserved += calls * self.per_call
        return True

    def release(self, calls: int = 1) -> None:
        self.reserved -= calls * self.per_call


# ----------------------------------------------------------------------------- the runs


class _Run:
    """One run over a selection of leaves: its snapshots, its judge calls (a window of them on worker threads,
    the results collected on the caller's thread), its budget, abort rule and report."""

    def __init__(self, store: Store, project_id: int, llm: LLM, report: JudgeReport, leaves: list[LeafTarget], *,
                 chunk: int, concurrency: int | None, should_stop: Callable[[], bool] | None):
        self.store, self.project_id, self.llm, self.report = store, project_id, llm, report
        self.spec = store.project(project_id)
        tree = store.tree(project_id)
        self.paths = {leaf.node_id: tree.path(leaf.node_id) for leaf in leaves}
        self.chunk = chunk
        self.concurrency = concurrency or self.spec.settings.concurrency
        self.should_stop = should_stop
        self.budget = CallBudget(store, project_id, report.budget, self.spec.settings.reasks + 1)
        self.rule = AbortRule()

    def snapshot(self) -> _Snapshot:
        return _snapshot(self.store, self.project_id, self.spec, self.paths)

    def judge_call(self, leaf_id: str, attributes: Attributes, samples: list[dict], reject: bool
                   ) -> tuple[int, int, int]:
        """A worker: one judge call. Ask, check, then store the verdicts and (``reject``) reject the misfits
        among the "generated" samples, in one transaction. Returns (judged, misfits, rejected)."""
        s = self.spec.settings
        n, k = len(samples), len(attributes)
        reply = self.llm.ask(
            judge_messages(self.spec, list(attributes), [x["data"] for x in samples]), schema=JudgeReply,
            purpose="judge", node_id=leaf_id, temperature=JUDGE_TEMPERATURE,
            max_tokens=min(16_000, max(s.max_tokens, 100 + n * (15 + k * 45))), reasks=s.reasks,
            check=lambda value: check_reply(value, n, k), json_schema=judge_schema(n, k), cache=False,
            model=s.model)
        by_number = {v.sample: v for v in reply.value.verdicts}
        verdicts = {x["id"]: [(dim, value, a.fits, " ".join(a.reason.split())[:JUDGE_REASON_CHARS])
                              for (dim, value), a in zip(attributes, by_number[i].attributes)]
                    for i, x in enumerate(samples, 1)}
        misfits = [x for x in samples if not all(row[2] for row in verdicts[x["id"]])]
        doomed = [x["id"] for x in misfits if x["status"] == "generated"] if reject else []
        with self.store.atomic():  # the verdicts and the rejections they lead to: one commit
            judged = self.store.save_verdicts(reply.call_id, verdicts)
            if doomed:
                edits.set_sample_status(self.store, doomed, "rejected", reason="the judge: does not fit", actor="llm")
        return judged, len(misfits), len(doomed)

    def stopping(self) -> bool:
        if not self.report.cancelled and self.should_stop is not None and self.should_stop():
            self.report.cancelled = True
        return self.report.cancelled or self.report.aborted

    def judge_pending(self, snapshot: _Snapshot, leaf_ids: Iterable[str], reject: bool,
                      progress: Callable[[], None]) -> None:
        """Judge every unjudged sample of these leaves, a window of calls at a time, while the budget allows."""
        units = [(leaf_id, attributes, group[i:i + self.chunk])
                 for leaf_id in leaf_ids for attributes, group in snapshot.leaf(leaf_id).groups.items()
                 for i in range(0, len(group), self.chunk)]
        if not units:
            return
        queue = list(reversed(units))
        in_flight: dict[Future, tuple] = {}
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(units)),
                                thread_name_prefix="treesynth-judge") as pool:
            while queue or in_flight:
                while queue and len(in_flight) < self.concurrency and not self.stopping():
                    if not self.budget.reserve():  # calls in flight may free some: their worst case is reserved
                        if not in_flight:
                            self.report.budget_spent = True
                            queue.clear()
                        break
                    unit = queue.pop()
                    in_flight[pool.submit(self.judge_call, *unit, reject)] = unit
                if not in_flight:
                    break
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in done:
                    in_flight.pop(future)
                    self.budget.release()
                    self._collect(future)
                progress()

    def _collect(self, future: Future) -> None:
        r = self.report
        r.judge_calls += 1
        try:
            judged, misfits, rejected = future.result()
        except Exception as exc:  # one call's failure is its own: counted with its reason
            r.judge_failed += 1
            r.errors.append(failure_reason(exc))
            if self.rule.failure():
                r.aborted = True
            return
        self.rule.success()
        r.judged += judged
        r.misfits += misfits
        r.rejected += rejected

    def finish(self, snapshot: _Snapshot, targets: dict[str, int] | None) -> None:
        r = self.report
        r.calls = self.budget.spent()
        r.unjudged = sum(snapshot.leaf(leaf_id).unjudged for leaf_id in self.paths)
        if targets is not None:
            states = {leaf_id: snapshot.leaf(leaf_id) for leaf_id in targets}
            r.fitting = sum(min(states[i].fitting, t) for i, t in targets.items())
            r.short = {i: t - states[i].fitting for i, t in targets.items() if states[i].fitting < t}


def judge_samples(store: Store, project_id: int, llm: LLM, *, under: str | None = None,
                  leaf_ids: list[str] | None = None, budget: int | None = None, chunk: int = JUDGE_CHUNK,
                  concurrency: int | None = None, on_progress: Callable[[int, int], None] | None = None,
                  should_stop: Callable[[], bool] | None = None) -> JudgeReport:
    """Judge every live sample of the selected leaves that has no current verdict; reject nothing (the Samples
    page filters and rejects misfits). ``budget`` defaults to the worst case of the plan, so it binds only when
    given. Raises Cancelled (with the report) when ``should_stop`` turns true."""
    plan = plan_judge(store, project_id, under=under, leaf_ids=leaf_ids, chunk=chunk)
    limit = plan.default_budget if budget is None else budget
    report = JudgeReport(budget=_check_count("budget", limit, *BUDGET_RANGE), leaves=len(plan.leaves),
                         to_judge=plan.unjudged)
    if not plan.leaves:
        report.no_leaves = "no leaf to judge: none matches the selection (or the tree has no leaves yet)"
        return report
    run = _Run(store, project_id, llm, report, plan.leaves, chunk=chunk, concurrency=concurrency,
               should_stop=should_stop)

    def progress() -> None:
        if on_progress is not None:
            on_progress(min(report.judged, report.to_judge), report.to_judge)

    progress()
    run.judge_pending(run.snapshot(), [leaf.node_id for leaf in plan.leaves], reject=False, progress=progress)
    run.finish(run.snapshot(), None)
    if report.cancelled:
        raise Cancelled(f"judging cancelled: {report.summary()}", "judge again to continue", report=report)
    return report


def judge_until(store: Store, project_id: int, llm: LLM, *, per_leaf: int, under: str | None = None,
                leaf_ids: list[str] | None = None, budget: int | None = None, chunk: int = JUDGE_CHUNK,
                samples_per_call: int | None = None, concurrency: int | None = None,
                on_progress: Callable[[int, int], None] | None = None,
                should_stop: Callable[[], bool] | None = None) -> JudgeReport:
    """Fill each selected leaf until it has ``per_leaf`` fitting live samples (a leaf with its own quota: that
    many), never more: judge, reject misfits, generate what is missing, repeat, within ``budget`` calls
    (default: the plan's ``default_budget``). Resumes: run it again after an interruption. Progress counts
    fitting samples. Raises Cancelled (with the report) when ``should_stop`` turns true."""
    plan = plan_judge(store, project_id, until=per_leaf, under=under, leaf_ids=leaf_ids, chunk=chunk,
                      samples_per_call=samples_per_call)
    limit = plan.default_budget if budget is None else budget
    report = JudgeReport(until=per_leaf, budget=_check_count("budget", limit, *BUDGET_RANGE),
                         leaves=len(plan.leaves), to_judge=plan.unjudged)
    if not plan.leaves:
        report.no_leaves = "no leaf to fill: none matches the selection (or the tree has no leaves yet)"
        return report
    s = store.project(project_id).settings
    spc = samples_per_call or s.samples_per_call
    targets = {leaf.node_id: leaf.target for leaf in plan.leaves}
    own_quota = {leaf.node_id for leaf in plan.leaves if leaf.own_quota}
    report.target = sum(targets.values())
    run = _Run(store, project_id, llm, report, plan.leaves, chunk=chunk, concurrency=concurrency,
               should_stop=should_stop)
    stalled = dict.fromkeys(targets, 0)
    before: dict[str, int] | None = None
    attempted: set[str] = set()

    def fitting_now(snapshot: _Snapshot) -> int:
        return sum(min(snapshot.leaf(i).fitting, t) for i, t in targets.items())

    def progress(snapshot: _Snapshot | None = None) -> None:
        if on_progress is not None and snapshot is not None:
            on_progress(fitting_now(snapshot), report.target)

    snapshot = run.snapshot()
    progress(snapshot)
    while not run.stopping():
        _reject(store, snapshot, targets, report)  # misfits judged earlier (a plain judge run) are rejected first
        active = [i for i in targets if stalled[i] < MAX_STALLED]
        run.judge_pending(snapshot, active, reject=True, progress=lambda: None)
        snapshot = run.snapshot()
        progress(snapshot)
        now = {i: snapshot.leaf(i).fitting for i in targets}
        if before is not None:
            for i in attempted:
                stalled[i] = 0 if now[i] > before[i] else stalled[i] + 1
        before, attempted = now, set()
        short = [i for i, t in targets.items() if now[i] < t]
        active = [i for i in short if stalled[i] < MAX_STALLED]
        if not short or not active or run.stopping() or report.budget_spent:
            break
        attempted.update(i for i in active if snapshot.leaf(i).unjudged)  # a failed judge call: tried again
        fill = {i: targets[i] - snapshot.leaf(i).live for i in active if snapshot.leaf(i).live < targets[i]}
        chosen, tail = _within_budget(fill, run.budget.affordable(), spc, chunk, own_quota)
        if fill and not chosen and tail is None:
            report.budget_spent = True
            break
        if not fill and not attempted:
            break  # nothing to generate and nothing left to judge: what is short stays short
        rounds = [(chosen, per_leaf, sum(math.ceil(fill[i] / spc) for i in chosen))] if chosen else []
        if tail is not None:  # the budget's last calls: part of one leaf (per_leaf = what it has + what fits)
            rounds.append(([tail[0]], snapshot.leaf(tail[0]).live + tail[1], math.ceil(tail[1] / spc)))
        for ids, quota, calls in rounds:
            if run.stopping() or not run.budget.reserve(calls):
                break
            try:
                _generate(store, project_id, llm, report, per_leaf=quota, leaf_ids=ids, samples_per_call=spc,
                          concurrency=run.concurrency, should_stop=run.should_stop)
            finally:
                run.budget.release(calls)
            report.generation_calls += calls
            attempted.update(ids)
        snapshot = run.snapshot()
    run.finish(snapshot, targets)
    report.stalled = [i for i in report.short if stalled[i] >= MAX_STALLED]
    if report.cancelled:
        raise Cancelled(f"judge --until cancelled: {report.summary()}", "run it again to continue", report=report)
    return report


def _reject(store: Store, snapshot: _Snapshot, targets: dict[str, int], report: JudgeReport) -> None:
    doomed = [sid for i in targets for sid in snapshot.leaf(i).misfit_ids]
    if doomed:
        edits.set_sample_status(store, doomed, "rejected")
        report.rejected += len(doomed)
        report.rejected_before += len(doomed)
        for i in targets:
            state = snapshot.leaf(i)
            state.live -= len(state.misfit_ids)
            state.misfit_ids = []


def _within_budget(fill: dict[str, int], affordable: int, spc: int, chunk: int, own_quota: set[str]
                   ) -> tuple[list[str], tuple[str, int] | None]:
    """The leaves whose missing samples (and judging them) fit in ``affordable`` calls, in order; then, when the
    next leaf does not fit whole and has no quota of its own, (that leaf, how many samples do fit)."""
    chosen = []
    for leaf_id, missing in fill.items():
        calls = math.ceil(missing / spc) + math.ceil(missing / chunk)
        if calls <= affordable:
            chosen.append(leaf_id)
            affordable -= calls
            continue
        if leaf_id in own_quota:
            return chosen, None
        fits = max((m for m in range(1, missing) if math.ceil(m / spc) + math.ceil(m / chunk) <= affordable),
                   default=0)
        return chosen, ((leaf_id, fits) if fits else None)
    return chosen, None


def _generate(store: Store, project_id: int, llm: LLM, report: JudgeReport, **kwargs) -> None:
    """One round of generation (no rounds of its own: this loop refills), its counts added to the report.
    No hedged copies: the judge's budget is a hard count of calls, and a hedge would be a call it did not plan."""
    llm.may_hedge = False
    try:
        gen = generate(store, project_id, llm, max_rounds=1, **kwargs)
    except Cancelled as exc:
        report.cancelled = True
        gen = exc.report
    if gen is None:
        return
    report.generated += gen.inserted
    report.generation_failed += gen.failed_calls
    report.dropped += gen.duplicates + gen.invalid
    report.errors += gen.errors


__all__ = ["JUDGE_CHUNK", "BUDGET_FACTOR", "MAX_STALLED", "Verdict", "NOT_JUDGED", "JudgeReport", "JudgePlan",
           "CallBudget", "plan_judge", "judge_samples", "judge_until", "sample_verdicts", "sample_attributes",
           "check_reply"]
