"""The evidence behind a split: the pivot samples the LLM wrote for the node, the value the criterion step gave
each pivot (when its reply is in the call log and still matches the split), the salvage or "needs review" note,
a failure, and the LLM calls made for the node with their tokens and cost. Read-only; no Streamlit.

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
    """The LLM calls logged for a node (every attempt) and what they cost; ``cost`` is None without prices."""

    calls: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    cost: float | None = None
    rows: list[dict] = field(default_factory=list)

    def text(self) -> str:
        if not self.calls:
            return "no LLM calls logged for this node"
        cost = "cost unknown (no prices set)" if self.cost is None else f"${self.cost:,.4f}"
        return (f"{self.calls} LLM call(s), {self.failed} failed · {self.prompt_tokens:,} prompt + "
                f"{self.completion_tokens:,} completion tokens · {self.seconds:,.1f} s · {cost}")


@dataclass(frozen=True)
class Evidence:
    node_id: str
    dimension: str | None
    pivots: list[Pivot]
    note: str | None
    failure: str | None
    calls: Calls
    labels_known: bool = False

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


def call_summary(store: Store, node_id: str, settings: Settings | None = None, limit: int = 30) -> Calls:
    use = store.usage(store.node(node_id).project_id, node_id)
    prompt, completion = int(use["prompt_tokens"]), int(use["completion_tokens"])
    return Calls(calls=int(use["calls"]), failed=int(use["failed_calls"]), prompt_tokens=prompt,
                 completion_tokens=completion, seconds=float(use["seconds"] or 0.0),
                 cost=settings.cost(prompt, completion) if settings is not None else None,
                 rows=store.node_calls(node_id, limit) if limit else [])


def evidence(store: Store, tree: Tree, node_id: str, settings: Settings | None = None,
             call_rows: int = 30) -> Evidence:
    """Everything the store knows about why ``node_id`` is split the way it is."""
    node = tree.nodes[node_id]
    labels = pivot_labels(store.criterion_reply(node_id), node, tree.kids(node_id))
    pivots = [Pivot(p if isinstance(p, dict) else {"text": str(p)}, label) for p, label in zip(node.pivots, labels)]
    return Evidence(node_id=node_id, dimension=node.dimension, pivots=pivots, note=node.note, failure=node.failure,
                    calls=call_summary(store, node_id, settings, call_rows),
                    labels_known=any(label for label in labels))
