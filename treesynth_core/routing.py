"""Route samples down the tree with the LLM (issue 11): one classification per level, several rows per call.

A row at a node with a split is shown to the model with the node's dimension and its children's values (and
the attributes of the path above it); the model answers, per row, one of those values or "none of these". The
reply (``RouteReply``) is validated by pydantic and by ``check_reply``: every row exactly once, every value one
of the offered ones. A reply naming a value that does not exist is re-asked with the allowed values, like every
other step (bounded by the project's ``reasks``); when the last try still names one, the rows with a valid value
are routed and the others are recorded as "none of these" with the model's answer kept verbatim, so nothing is
dropped silently. "None of these" is stored and shown per split: it is evidence that the split is not
exhaustive. Rows whose call failed stay where they are and are routed by the next run.

Rows at an open-ended node (a split whose child stands for any value of an open dimension) pass into it without
a call: no finite list can classify them. Pruned children are not offered.

**Resume.** Each call's decisions are committed in one transaction (``Store.record_routes``) when it returns; a
decision is keyed by (sample, node) and a row moves only while it is still at that node, so a killed run loses
only the calls in flight and no row is routed twice. Replies are cached by the LLM client (model, messages,
parameters; temperature 0), so a call repeated after a kill with the same rows costs nothing.

The threading contract is the scheduler's: the caller's thread owns the queue, the report and the progress; a
worker runs one call and commits its own writes. Rows of a node are batched ``rows_per_call`` at a time; a call's
rows go on to their children's batches as soon as it returns (pipelined level by level, no barrier).

``route_samples`` works for any samples starting at any node: an import (rows at the root) and samples stranded on
a node that was split after they were made alike.
"""

from __future__ import annotations

import math
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Callable

from pydantic import BaseModel, ConfigDict, Field

from .errors import Cancelled, ConfigError, LLMOutputError
from .history import barrier
from .llm import LLM
from .outcome import AbortRule, Outcome, RunReport, failure_reason
from .prompts import describe_subspace, format_sample, system_prompt
from .spec import ProjectSpec
from .store import Store
from .tree import Node, Tree, normalise, path_labels

ROWS_PER_CALL = 10
ROWS_RANGE = (1, 50)
NONE = "none of these"
ROUTE_TEMPERATURE = 0.0
ROW_CHARS = 600  # of each row shown to the router
PROMPT_TOKENS = 220  # the routing prompt without its rows and values
ANSWER_TOKENS = 14  # one row's entry in the reply


# ----------------------------------------------------------------------------- prompt and reply


class RouteItem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    row: int
    value: str = Field(max_length=200)


class RouteReply(BaseModel):
    model_config = ConfigDict(extra="forbid")
    routes: list[RouteItem] = Field(min_length=1)


def route_messages(spec: ProjectSpec, attributes: list[tuple[str, str]], dimension: str, values: list[str],
                   rows: list[dict]) -> list[dict]:
    listing = "\n".join(format_sample(i + 1, row, ROW_CHARS) for i, row in enumerate(rows))
    choices = "\n".join(f"- {v}" for v in values)
    n = len(rows)
    user = (
        f"{describe_subspace(attributes)}\n\n"
        f"Classify each row below by one dimension: {dimension}\n"
        f"Values (answer exactly one of these for each row, spelled as written, or \"{NONE}\" when no value fits):\n"
        f"{choices}\n\n"
        f"Rows:\n{listing}\n\n"
        f"Count: {n}\n"
        f'Reply as JSON: an object with the key "routes" holding a list of exactly {n} objects, one per row in order, '
        f'each {{"row": <the row number>, "value": <one of the values above, or "{NONE}">}}.'
    )
    return [{"role": "system", "content": system_prompt(spec, "route")}, {"role": "user", "content": user}]


def route_schema(n: int, values: list[str]) -> dict:
    item = {"type": "object", "properties": {"row": {"type": "integer", "minimum": 1, "maximum": n},
                                             "value": {"type": "string", "enum": values + [NONE]}},
            "required": ["row", "value"]}
    return {"type": "object", "properties": {"routes": {"type": "array", "items": item, "minItems": n,
                                                        "maxItems": n}}, "required": ["routes"]}


def _is_none(text: str) -> bool:
    return normalise(text) in {normalise(NONE), "none", "none of the above", "no value fits"}


def read_reply(reply: RouteReply, n: int, values: dict[str, str]) -> tuple[dict[int, str | None], dict[int, str]]:
    """(row -> the value's key, or None for "none of these"; row -> an answer that is not a value). Raises
    ValueError when a row is missing or repeated."""
    seen: dict[int, str] = {}
    for item in reply.routes:
        if not 1 <= item.row <= n:
            raise ValueError(f"row {item.row} does not exist; rows are numbered 1 to {n}")
        if item.row in seen:
            raise ValueError(f"row {item.row} is answered twice; answer each row exactly once")
        seen[item.row] = item.value
    missing = [i for i in range(1, n + 1) if i not in seen]
    if missing:
        raise ValueError(f"row(s) {', '.join(map(str, missing[:10]))} have no answer; answer all {n} rows")
    chosen: dict[int, str | None] = {}
    invalid: dict[int, str] = {}
    for row, answer in seen.items():
        key = normalise(answer)
        if key in values:
            chosen[row] = key
        elif _is_none(answer):
            chosen[row] = None
        else:
            invalid[row] = answer
    return chosen, invalid


def check_reply(reply: RouteReply, n: int, values: dict[str, str]) -> None:
    _, invalid = read_reply(reply, n, values)
    if invalid:
        shown = "; ".join(f"row {r}: {a!r}" for r, a in list(invalid.items())[:5])
        raise ValueError(f"these answers are not one of the values ({shown}); use exactly one of: "
                         f"{'; '.join(values.values())}, or \"{NONE}\"")


# ----------------------------------------------------------------------------- plan and report


@dataclass
class RoutePlan:
    rows: int  # rows to route now
    levels: int  # the deepest split below the rows
    calls: int  # at least one call per batch of rows per level (worst case: one per level per node)
    prompt_tokens: int
    completion_tokens: int
    rows_per_call: int
    reasks: int
    cost: float | None


@dataclass
class RouteReport(RunReport):
    failed_field = "failed_calls"
    rows: int = 0  # rows to route when the run started
    decisions: int = 0  # classifications stored (one per row and level)
    to_leaf: int = 0  # rows that reached a leaf
    none: int = 0  # rows answered "none of these" (they stay at that node)
    invalid: int = 0  # of those, rows whose answer was not a value even after the re-asks (kept as the answer)
    open_ended: int = 0  # rows passed into an open-ended node without a call
    calls: int = 0
    failed_calls: int = 0
    unrouted: int = 0  # rows left where they were because their call failed (the next run retries them)
    cached: int = 0
    errors: list[str] = field(default_factory=list)
    aborted: bool = False

    def verdict(self) -> Outcome:
        """complete: every row reached a leaf or a recorded "none of these" from a valid answer; partial: some
        calls failed (rows left to retry) or answers were not values (recorded as none); failed: rows were to
        route and none got a decision."""
        if not self.unrouted and not self.invalid:
            return Outcome.COMPLETE
        return Outcome.PARTIAL if self.decisions else Outcome.FAILED

    def summary(self, for_cli: bool = True) -> str:
        if not self.rows:
            return "nothing to route: every row is at a leaf or has a decision at its node"
        text = (f"routed {self.rows} row(s): {self.to_leaf} reached a leaf, {self.none} answered \"{NONE}\""
                + (f" ({self.invalid} because the answer was not a value after re-asks)" if self.invalid else "")
                + (f", {self.open_ended} passed into an open-ended node" if self.open_ended else "")
                + f"; {self.decisions} decision(s) in {self.calls} call(s)"
                + (f" ({self.cached} from the cache)" if self.cached else ""))
        if self.failed_calls:
            text += f"; {self.failed_calls} call(s) failed, {self.unrouted} row(s) not routed yet"
            if self.errors:
                text += f" (first: {self.errors[0]})"
        if self.aborted:
            text += "; stopped: routing failed repeatedly before any success"
        if self.outcome is not Outcome.COMPLETE and not self.cancelled:
            text += "; route again to continue" + (" (see `calls --failed`)" if for_cli and self.failed_calls else "")
        return text + (" (cancelled)" if self.cancelled else "")


def _check_rows(rows_per_call) -> int:
    if isinstance(rows_per_call, bool) or not isinstance(rows_per_call, int) or not (
            ROWS_RANGE[0] <= rows_per_call <= ROWS_RANGE[1]):
        raise ConfigError(f"rows per call must be a whole number from {ROWS_RANGE[0]} to {ROWS_RANGE[1]}, "
                          f"not {rows_per_call!r}", f"pass {ROWS_RANGE[0]} to {ROWS_RANGE[1]}")
    return rows_per_call


def _splits(tree: Tree) -> dict[str, list[Node]]:
    """node id -> the children a row there can go to (not pruned), for nodes that have any."""
    out = {}
    for node_id in tree.nodes:
        if tree.is_pruned(node_id):
            continue
        kids = tree.kids(node_id, include_pruned=False)
        if kids:
            out[node_id] = kids
    return out


def _scope(tree: Tree, start: str | None) -> list[str]:
    if start is not None and start not in tree.nodes:
        raise ConfigError(f"node {start!r} is not in this project", "pass a node id from `show`")
    if tree.root is None or not tree.kids(tree.root.id):
        raise ConfigError("the tree has no split yet: there is nowhere to route the rows",
                          "build the tree first (build, or the Tree page); the imported rows are shown to it as "
                          "style examples")
    root = start or (tree.root.id if tree.root else None)
    return [n.id for n in tree.subtree(root)] if root else []


def plan_routing(store: Store, project_id: int, *, sample_ids: list[int] | None = None,
                 start_node_id: str | None = None, rows_per_call: int = ROWS_PER_CALL,
                 retry_none: bool = False) -> RoutePlan:
    """What routing the rows waiting at a split costs: one call per ``rows_per_call`` rows per level, plus one
    per node reached for its last, partial batch (an upper bound); tokens from the rows' own length."""
    _check_rows(rows_per_call)
    spec = store.project(project_id)
    tree = store.tree(project_id)
    splits = _splits(tree)
    scope = [n for n in _scope(tree, start_node_id) if n in splits]
    pending = store.unrouted_samples(project_id, scope, sample_ids=sample_ids)
    if retry_none:
        known = {r["id"] for r in pending}
        pending += [{"id": r["sample_id"], "node_id": r["node_id"], "data": r["data"]}
                    for r in store.none_rows(project_id, limit=10**9) if r["node_id"] in scope
                    and r["sample_id"] not in known and r["status"] not in ("rejected", "excluded")
                    and (sample_ids is None or r["sample_id"] in sample_ids)]
    calls = prompt = completion = levels = 0
    by_depth: dict[int, int] = {}
    for row in pending:
        by_depth[tree.nodes[row["node_id"]].depth] = by_depth.get(tree.nodes[row["node_id"]].depth, 0) + 1
    deepest = max((tree.nodes[n].depth for n in splits), default=0)
    chars = sum(min(ROW_CHARS * len(r["data"]), len(str(r["data"]))) for r in pending[:2000])
    per_row = (chars / min(len(pending), 2000) / 4) if pending else 0
    carried = 0
    for depth in range(min(by_depth, default=0), deepest + 1):
        rows = carried + by_depth.get(depth, 0)
        if not rows:
            continue
        levels += 1
        nodes_here = sum(1 for n in splits if tree.nodes[n].depth == depth and n in scope)
        level_calls = min(rows, math.ceil(rows / rows_per_call) + max(0, min(nodes_here, rows) - 1))
        calls += level_calls
        value_tokens = sum(len(" ".join(k.value or "" for k in splits[n])) for n in splits
                           if tree.nodes[n].depth == depth) // 4 // max(1, nodes_here)
        prompt += level_calls * (PROMPT_TOKENS + value_tokens) + int(rows * per_row)
        completion += rows * ANSWER_TOKENS
        carried = rows
    s = spec.settings
    return RoutePlan(len(pending), levels, calls, prompt, completion, rows_per_call, s.reasks,
                     s.cost(prompt, completion))


# ----------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class _Unit:
    node_id: str
    rows: tuple  # of row dicts (id, node_id, data)


@dataclass
class _Outcome:
    moved: dict[str, list[dict]]  # child id -> rows that went there
    none: int = 0
    invalid: int = 0
    decisions: int = 0
    cached: bool = False


class _Router:
    def __init__(self, store: Store, project_id: int, llm: LLM, tree: Tree, splits: dict[str, list[Node]]):
        self.store, self.project_id, self.llm = store, project_id, llm
        self.spec = store.project(project_id)
        self.tree, self.splits = tree, splits

    def open_ended(self, node_id: str) -> Node | None:
        kids = self.splits[node_id]
        return kids[0] if all(k.infinite for k in kids) else None

    def __call__(self, unit: _Unit) -> _Outcome:
        """A worker: one routing call for ``unit``'s rows at its node, its decisions committed."""
        s = self.spec.settings
        node = self.tree.nodes[unit.node_id]
        kids = [k for k in self.splits[unit.node_id] if not k.infinite]
        values = {normalise(k.value or ""): k.value or "" for k in kids}
        child_of = {normalise(k.value or ""): k.id for k in kids}
        rows = list(unit.rows)
        n = len(rows)
        messages = route_messages(self.spec, path_labels(self.tree.path(unit.node_id)), node.dimension or "",
                                  list(values.values()), [r["data"] for r in rows])
        try:
            reply = self.llm.ask(messages, schema=RouteReply, purpose="route", node_id=unit.node_id,
                                 temperature=ROUTE_TEMPERATURE, max_tokens=min(16_000, max(256, 60 + n * 40)),
                                 reasks=s.reasks, check=lambda value: check_reply(value, n, values),
                                 json_schema=route_schema(n, list(values.values())), cache=True, model=s.model)
            value, call_id, cached = reply.value, reply.call_id, reply.cached
        except LLMOutputError as exc:
            if not isinstance(exc.last_value, RouteReply):
                raise
            value, call_id, cached = exc.last_value, None, False  # the last try: rows right, some values not
        chosen, invalid = read_reply(value, n, values)
        decisions = []
        out = _Outcome(moved={})
        for i, row in enumerate(rows, 1):
            if i in invalid:
                decisions.append((row["id"], None, invalid[i]))
                out.invalid += 1
            elif chosen[i] is None:
                decisions.append((row["id"], None, NONE))
            else:
                child = child_of[chosen[i]]
                decisions.append((row["id"], child, values[chosen[i]]))
                out.moved.setdefault(child, []).append({**row, "node_id": child})
        out.decisions = self.store.record_routes(self.project_id, unit.node_id, decisions, call_id)
        out.none = sum(1 for _, child, _ in decisions if child is None)
        out.cached = cached
        return out


def route_samples(store: Store, llm: LLM, project_id: int, sample_ids: list[int] | None = None,
                  start_node_id: str | None = None, on_progress: Callable[[int, int], None] | None = None,
                  should_stop: Callable[[], bool] | None = None, *, rows_per_call: int = ROWS_PER_CALL,
                  concurrency: int | None = None, retry_none: bool = False) -> RouteReport:
    """Route the live samples waiting at a split under ``start_node_id`` (default: the root) down to leaves:
    all of them, or these ``sample_ids``. ``retry_none``: ask again for the rows answered "none of these" in
    scope (after a value was added to their split). Progress counts rows that reached a leaf or a "none of
    these". Raises Cancelled (with the report) when ``should_stop`` turns true; what was routed is kept."""
    _check_rows(rows_per_call)
    tree = store.tree(project_id)
    splits = _splits(tree)
    scope = [n for n in _scope(tree, start_node_id) if n in splits]
    if retry_none:
        store.clear_none_routes(project_id, scope)
    pending = store.unrouted_samples(project_id, scope, sample_ids=sample_ids)
    report = RouteReport(rows=len(pending))
    if not pending:
        return report
    router = _Router(store, project_id, llm, tree, splits)
    limit = concurrency or store.project(project_id).settings.concurrency
    buffers: dict[str, list[dict]] = {}
    ready: deque[_Unit] = deque()
    rule = AbortRule()
    finished = 0

    def progress() -> None:
        if on_progress is not None:
            on_progress(finished, report.rows)

    def arrive(node_id: str, rows: list[dict]) -> None:
        """Rows now at ``node_id``: done at a leaf; passed on at an open-ended node; else batched for a call."""
        nonlocal finished
        while node_id in splits and (passed := router.open_ended(node_id)) is not None:
            report.open_ended += len(rows)
            report.decisions += store.record_routes(project_id, node_id,
                                                    [(r["id"], passed.id, passed.label) for r in rows], None)
            node_id = passed.id
        if node_id not in splits:
            report.to_leaf += len(rows)
            finished += len(rows)
            return
        buffer = buffers.setdefault(node_id, [])
        buffer.extend(rows)
        while len(buffer) >= rows_per_call:
            ready.append(_Unit(node_id, tuple(buffer[:rows_per_call])))
            del buffer[:rows_per_call]

    def next_unit() -> _Unit | None:
        """A full batch first; else a partial one that nothing in flight or waiting above it can still add to
        (so a level's last rows are asked in as few calls as the tree allows, and never wait for nothing)."""
        if ready:
            return ready.popleft()
        active = {u.node_id for u in in_flight.values()} | {k for k, rows in buffers.items() if rows}
        for node_id in sorted((k for k, rows in buffers.items() if rows), key=lambda k: -len(buffers[k])):
            if not any(n.id in active for n in tree.path(node_id)[:-1]):
                return _Unit(node_id, tuple(buffers.pop(node_id)))
        return None

    def stopping() -> bool:
        if not report.cancelled and should_stop is not None and should_stop():
            report.cancelled = True
        return report.cancelled or report.aborted

    by_node: dict[str, list[dict]] = {}
    for row in pending:
        by_node.setdefault(row["node_id"], []).append(row)
    for node_id, rows in by_node.items():
        arrive(node_id, rows)
    progress()
    in_flight: dict[Future, _Unit] = {}
    with ThreadPoolExecutor(max_workers=limit, thread_name_prefix="treesynth-route") as pool:
        while True:
            while len(in_flight) < limit and not stopping():
                unit = next_unit()
                if unit is None:
                    break
                in_flight[pool.submit(router, unit)] = unit
            if not in_flight:
                break
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                unit = in_flight.pop(future)
                report.calls += 1
                try:
                    result = future.result()
                except Exception as exc:  # one call's failure is its own: its rows stay, to be retried
                    report.failed_calls += 1
                    report.unrouted += len(unit.rows)
                    report.errors.append(failure_reason(exc))
                    report.aborted |= rule.failure()
                    continue
                rule.success()
                report.decisions += result.decisions
                report.cached += result.cached
                report.none += result.none
                report.invalid += result.invalid
                finished += result.none
                for child, rows in result.moved.items():
                    arrive(child, rows)
            progress()
    if stopping():
        report.unrouted += sum(len(b) for b in buffers.values()) + sum(len(u.rows) for u in ready)
    if report.decisions:  # one event in the project's history: rows moved by a run, like generated rows, are the
        barrier(store, project_id, "route", report.summary(), actor="llm")  # job's output (logged per call); undo stops here
    if report.cancelled:
        raise Cancelled(f"routing cancelled: {report.summary()}", "route again to continue", report=report)
    return report


def route(store: Store, project_id: int, llm: LLM, *, on_progress=None, should_stop=None, sample_ids=None,
          start_node_id: str | None = None, rows_per_call: int = ROWS_PER_CALL, concurrency: int | None = None,
          retry_none: bool = False) -> RouteReport:
    """``route_samples`` with the job runner's argument order (jobs.ACTIONS["route"])."""
    return route_samples(store, llm, project_id, sample_ids, start_node_id, on_progress, should_stop,
                         rows_per_call=rows_per_call, concurrency=concurrency, retry_none=retry_none)


__all__ = ["ROWS_PER_CALL", "NONE", "RouteReply", "RoutePlan", "RouteReport", "route_messages", "plan_routing",
           "route_samples", "route", "check_reply"]
