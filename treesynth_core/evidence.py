"""The evidence behind a split: the pivot samples the LLM wrote for the node, the value the criterion step gave
each pivot (when its reply is in the call log and still matches the split), the salvage or "needs review" note,
a failure, and the LLM calls that made the current split (one run: pivots, criterion, coverage) with their
tokens and cost, the node's other calls (re-proposals, earlier splits, routing, generation) listed apart.

The Tree page, the sunburst's hover, the page's outline and the CLI's ``show`` all read it from here, so they
say the same thing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from .spec import Settings
from .store import Store
from .tree import Node, Tree, normalise


@dataclass(frozen=True)
class Pivot:
    """One pivot sample and the value of the node's dimension the criterion step gave it (None: unknown)."""

    sample: dict
    label: str | None = None

    def text(self, limit: int = 160) -> str:
        """The sample's fields in one line, cut to ``limit`` characters."""
        body = " | ".join(f"{k}: {' '.join(str(v).split())}" for k, v in self.sample.items()) \
            if isinstance(self.sample, dict) else str(self.sample)
        return body if len(body) <= limit else body[: limit - 1] + "…"


@dataclass(frozen=True)
class Calls:
    """LLM calls logged for a node (every attempt) and what they cost; ``cost`` is None without prices. ``what``
    names them ("this split", "re-proposals and earlier splits", "routing", ...)."""

    calls: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    cost: float | None = None
    rows: list[dict] = field(default_factory=list)
    what: str = ""

    def text(self) -> str:
        if not self.calls:
            return f"{self.what}: no LLM call" if self.what else "no LLM calls logged for this node"
        cost = "cost unknown (no prices set)" if self.cost is None else f"${self.cost:,.4f}"
        return ((f"{self.what}: " if self.what else "")
                + f"{self.calls} LLM call(s), {self.failed} failed · {self.prompt_tokens:,} prompt + "
                f"{self.completion_tokens:,} completion tokens · {self.seconds:,.1f} s · {cost}")


@dataclass(frozen=True)
class Evidence:
    node_id: str
    dimension: str | None
    pivots: list[Pivot]
    note: str | None
    failure: str | None
    calls: Calls  # the calls that made the current split (pivots, criterion, coverage of one run)
    labels_known: bool = False
    other_calls: list[Calls] = field(default_factory=list)  # the node's other calls, by kind (none empty)

    def lines(self, indent: str = "", pivot_chars: int = 120, notes: bool = True) -> list[str]:
        """Plain-text lines for the outline and the CLI: pivots (with their value), the note and failure
        (unless ``notes`` is false: the caller prints them already), the calls."""
        out = []
        for i, pivot in enumerate(self.pivots, 1):
            label = f" -> {pivot.label}" if pivot.label else ""
            out.append(f"{indent}pivot {i}{label}: {pivot.text(pivot_chars)}")
        if self.note and notes:
            out.append(f"{indent}needs review: {self.note}")
        if self.failure and notes:
            out.append(f"{indent}failure: {self.failure}")
        if self.calls.calls:
            out.append(f"{indent}{self.calls.text()}")
        out += [f"{indent}{other.text()}" for other in self.other_calls]
        return out


def pivot_labels(reply: str | None, node: Node, kids: list[Node]) -> list[str | None]:
    """The criterion reply's value for each pivot, when the reply still fits the node: the same dimension,
    one label per pivot, each label one of the node's current values. Otherwise no labels (None each): a
    label from another proposal would be evidence for a split that is not there."""
    none: list[str | None] = [None] * len(node.pivots)
    if not reply or not node.pivots or not node.dimension:
        return none
    try:
        data = json.loads(reply, strict=False)
    except (ValueError, TypeError):
        return none
    if not isinstance(data, dict):
        return none
    labels = data.get("labels")
    if (normalise(str(data.get("dimension", ""))) != normalise(node.dimension) or not isinstance(labels, list)
            or len(labels) != len(node.pivots)):
        return none
    values = {normalise(k.value or ""): k.value for k in kids if not k.infinite}
    if any(k.infinite for k in kids):
        values.update({normalise(v): v for k in kids if k.infinite for v in k.values})
    mapped = [values.get(normalise(str(label))) for label in labels]
    return mapped if all(mapped) else none


SPLIT_PURPOSES = ("pivots", "criterion", "coverage")
SPLIT = "this split"
OTHER_SPLITS = "re-proposals and earlier splits"
OTHER_KINDS = {"route": "routing", "samples": "generation", "judge": "judging"}


def _dimension(reply: str | None) -> str | None:
    try:
        data = json.loads(reply or "", strict=False)
    except (ValueError, TypeError):
        return None
    return normalise(str(data.get("dimension", ""))) if isinstance(data, dict) else None


def split_job(store: Store, node: Node, log: list[dict]) -> tuple[bool, int | None]:
    """Which run's calls made the node's current split: (found, its job id; None for calls outside a job). The
    job of the newest applied proposal with the node's dimension; else the newest run that is not a re-proposal
    whose criterion reply named that dimension; else, when the node keeps LLM pivots (its dimension renamed by
    hand), the newest such run. A split set by hand or imported has none."""
    split_rows = [r for r in log if r["purpose"] in SPLIT_PURPOSES]
    if not node.dimension or not split_rows:
        return False, None
    want = normalise(node.dimension)
    for p in store.proposal_rows(node.id, ("applied",)):
        if normalise(p["dimension"] or "") == want and any(r["job_id"] == p["job_id"] for r in split_rows):
            return True, p["job_id"]
    own = [r for r in split_rows if r["job_kind"] != "propose"]
    for r in reversed(own):
        if r["response"] and _dimension(r["response"]) == want:
            return True, r["job_id"]
    if node.pivots and own:
        return True, own[-1]["job_id"]
    return False, None


def _calls(rows: list[dict], what: str, settings: Settings | None, limit: int) -> Calls:
    prompt = sum(int(r["prompt_tokens"] or 0) for r in rows)
    completion = sum(int(r["completion_tokens"] or 0) for r in rows)
    return Calls(calls=len(rows), failed=sum(r["error"] is not None for r in rows), prompt_tokens=prompt,
                 completion_tokens=completion, seconds=float(sum(r["duration_s"] or 0.0 for r in rows)),
                 cost=settings.cost(prompt, completion) if settings is not None else None,
                 rows=[{**r, "for": what} for r in reversed(rows)][:limit] if limit else [], what=what)


def grouped_calls(store: Store, node: Node, settings: Settings | None = None,
                  limit: int = 30) -> tuple[Calls, list[Calls], str | None]:
    """The node's calls split into those that made its current split and the others by kind (re-proposals and
    earlier splits, routing, generation, judging, ...), with the current split's criterion reply."""
    log = store.node_call_log(node.id)
    found, job = split_job(store, node, log)
    mine = [r for r in log if found and r["purpose"] in SPLIT_PURPOSES and r["job_id"] == job]
    taken = {r["id"] for r in mine}
    groups: dict[str, list[dict]] = {}
    for r in log:
        if r["id"] not in taken:
            what = OTHER_SPLITS if r["purpose"] in SPLIT_PURPOSES else OTHER_KINDS.get(r["purpose"], r["purpose"])
            groups.setdefault(what, []).append(r)
    reply = next((r["response"] for r in reversed(mine) if r["response"]), None)
    return _calls(mine, SPLIT, settings, limit), [_calls(v, k, settings, limit) for k, v in groups.items()], reply


def call_summary(store: Store, node_id: str, settings: Settings | None = None, limit: int = 30) -> Calls:
    """Every call logged for the node, whatever it was for."""
    use = store.usage(store.node(node_id).project_id, node_id)
    prompt, completion = int(use["prompt_tokens"]), int(use["completion_tokens"])
    return Calls(calls=int(use["calls"]), failed=int(use["failed_calls"]), prompt_tokens=prompt,
                 completion_tokens=completion, seconds=float(use["seconds"] or 0.0),
                 cost=settings.cost(prompt, completion) if settings is not None else None,
                 rows=store.node_calls(node_id, limit) if limit else [])


def evidence(store: Store, tree: Tree, node_id: str, settings: Settings | None = None,
             call_rows: int = 30) -> Evidence:
    """Everything the store knows about why ``node_id`` is split the way it is. ``calls`` counts the run that
    made this split; re-proposals, earlier splits, routing and generation calls are listed apart."""
    node = tree.nodes[node_id]
    split, others, reply = grouped_calls(store, node, settings, call_rows)
    labels = pivot_labels(reply or store.criterion_reply(node_id), node, tree.kids(node_id))
    pivots = [Pivot(p if isinstance(p, dict) else {"text": str(p)}, label) for p, label in zip(node.pivots, labels)]
    return Evidence(node_id=node_id, dimension=node.dimension, pivots=pivots, note=node.note, failure=node.failure,
                    calls=split, labels_known=any(label for label in labels), other_calls=others)
