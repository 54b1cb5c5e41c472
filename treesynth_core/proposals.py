"""Replace as a diff, and stored proposals.

``diff_split`` compares a proposed split with a node's current children, one ``ValueChange`` per value:

- kept: a new value equal to an old one once normalised (case, accents, punctuation, spacing folded);
- renamed: an old and a new value that are not equal but close: the same words once singular, one's words all in
  the other's ("algebra" / "basic algebra"), a word overlap (Jaccard) of at least one half, or a character
  similarity (difflib ratio) of at least 0.85 ("geometery" / "geometry"). Pairs are taken best first, each value
  in one pair at most;
- added: a new value with no old match; removed: an old value with no new match.

An open-ended (infinite) child is matched as a whole: an infinite proposal keeps an infinite child (its value list
replaced) and removes the finite ones, and the other way round.

``replace_split`` applies per-value choices (``ValueChange.apply``): a kept child always stays; a renamed one
keeps its subtree and samples and takes the new value (or its old one when not applied); an added value becomes a
child when applied; a removed child goes, with its subtree and samples, only when applied. One event.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field

from .errors import TreeEditError
from .history import Scope, change, event, one_transaction
from .store import Store
from .tree import Node, _singular, dedupe_values, normalise

KINDS = ("kept", "renamed", "added", "removed")
RENAME_JACCARD = 0.5
RENAME_RATIO = 0.85


@dataclass
class ValueChange:
    kind: str  # kept / renamed / added / removed
    old: str | None  # the current child's value (None for added)
    new: str | None  # the proposed value (None for removed)
    child_id: str | None = None  # the current child (None for added)
    nodes_below: int = 0  # nodes below the child (its subtree without it: what the outline calls "N below")
    samples_below: int = 0  # samples on the child and the nodes below it
    values: list[str] = field(default_factory=list)  # an open-ended child's proposed value list
    pivots: list[dict] = field(default_factory=list)  # the proposal's pivot samples labelled with this value
    apply: bool = True  # the curator's choice: take this change (see the module docstring)


@dataclass
class SplitDiff:
    node_id: str
    old_dimension: str | None
    new_dimension: str
    changes: list[ValueChange]

    def count(self, kind: str) -> int:
        return sum(c.kind == kind for c in self.changes)

    @property
    def identical(self) -> bool:
        return all(c.kind == "kept" for c in self.changes) and self.old_dimension == self.new_dimension

    def removal(self):
        """What applying every chosen removal deletes (nodes and samples): each removed child and the nodes below."""
        from .edits import Removal
        gone = [c for c in self.changes if c.kind == "removed" and c.apply]
        return Removal(sum(1 + c.nodes_below for c in gone), sum(c.samples_below for c in gone))


@dataclass
class Proposal:
    id: int
    project_id: int
    node_id: str
    split: "Split"  # noqa: F821 (edits.Split)
    job_id: int | None
    state: str  # new, applied, dismissed
    created_at: str


def _words(text: str) -> set[str]:
    return {_singular(w) for w in normalise(text).split()}


def similarity(old: str, new: str) -> float:
    """How alike two values are, 0..1 (1: equal once normalised). Above 0 only when the rename rule holds."""
    a, b = normalise(old), normalise(new)
    if a == b:
        return 1.0
    wa, wb = _words(old), _words(new)
    if wa == wb:
        return 0.99
    ratio = difflib.SequenceMatcher(None, a, b).ratio()
    jaccard = len(wa & wb) / len(wa | wb) if wa | wb else 0.0
    if (wa and wb and (wa <= wb or wb <= wa)) or jaccard >= RENAME_JACCARD or ratio >= RENAME_RATIO:
        return max(jaccard, ratio, 0.5)
    return 0.0


def _counts(store: Store, child_id: str) -> tuple[int, int]:
    ids = store.subtree_ids([child_id])
    return len(ids) - 1, store.samples_on_count(ids)  # the nodes below the child; the samples on it and below


def pivots_by_value(pivots: list[dict], labels: list[str]) -> dict[str, list[dict]]:
    """The pivot samples the criterion gave each value (by normalised value): the evidence behind each value."""
    out: dict[str, list[dict]] = {}
    if len(labels) == len(pivots):
        for pivot, label in zip(pivots, labels):
            out.setdefault(normalise(label), []).append(pivot)
    return out


def diff_split(store: Store, node_id: str, dimension: str, values: list[str], infinite: bool = False,
               pivots: list[dict] | None = None, labels: list[str] | None = None) -> SplitDiff:
    """The proposed split against the node's current children, one change per value (rule: module docstring).
    With the proposal's ``pivots`` and ``labels``, each change lists the pivots labelled with its new value."""
    node = store.node(node_id)
    kids = store.tree(node.project_id).kids(node_id)
    values = dedupe_values([" ".join(v.split()) for v in values if v and v.strip()])
    changes: list[ValueChange] = []

    def gone(kid: Node, kind: str = "removed", new: str | None = None, vals=()) -> ValueChange:
        n, s = _counts(store, kid.id)
        return ValueChange(kind, kid.label if kid.infinite else kid.value, new, kid.id, n, s, list(vals))

    open_kids = [k for k in kids if k.infinite]
    finite = [k for k in kids if not k.infinite]
    if infinite:
        if open_kids:
            changes.append(gone(open_kids[0], "kept", f"any of {len(values)} values", values))
            finite += open_kids[1:]
        else:
            changes.append(ValueChange("added", None, f"any of {len(values)} values", values=values))
        changes += [gone(k) for k in finite]
        return SplitDiff(node_id, node.dimension, dimension, changes)
    by_norm = {normalise(k.value or ""): k for k in finite}
    matched: dict[str, Node] = {}
    for v in values:
        kid = by_norm.get(normalise(v))
        if kid is not None and kid.id not in {m.id for m in matched.values()}:
            matched[v] = kid
    rest_new = [v for v in values if v not in matched]
    rest_old = [k for k in finite if k.id not in {m.id for m in matched.values()}]
    pairs = sorted(((similarity(k.value or "", v), i, j)
                    for i, k in enumerate(rest_old) for j, v in enumerate(rest_new)),
                   key=lambda t: (-t[0], t[1], t[2]))
    renamed: dict[str, Node] = {}
    used_old: set[int] = set()
    for score, i, j in pairs:
        if score <= 0 or i in used_old or rest_new[j] in renamed:
            continue
        used_old.add(i)
        renamed[rest_new[j]] = rest_old[i]
    for v in values:
        if v in matched:
            changes.append(gone(matched[v], "kept", v))
        elif v in renamed:
            changes.append(gone(renamed[v], "renamed", v))
        else:
            changes.append(ValueChange("added", None, v))
    changes += [gone(k) for i, k in enumerate(rest_old) if i not in used_old]
    changes += [gone(k) for k in open_kids]
    evidence = pivots_by_value(pivots or [], labels or [])
    for c in changes:
        c.pivots = evidence.get(normalise(c.new or ""), []) if c.new else []
    return SplitDiff(node_id, node.dimension, dimension, changes)


@one_transaction
def replace_split(store: Store, node_id: str, dimension: str, decisions: list[ValueChange], *,
                  pivots: list[dict] | None = None, note: str | None = None, actor: str = "human",
                  proposal_id: int | None = None, action: str = "replace_split") -> list[str]:
    """Apply a diff's per-value choices (see the module docstring) and set the node's dimension (and, when
    given, its pivots; its "needs review" note becomes ``note``). Returns the ids of the node's children after.
    One transaction, one event; a refused replace changes nothing."""
    from .edits import _check_dimension, _check_new_dimension, _check_value, _current_split, _label

    dimension = _check_dimension(dimension)
    node = store.node(node_id)
    if node.locked and actor == "llm":
        raise TreeEditError("this node is locked", "unlock it to let the LLM change it")
    tree = store.tree(node.project_id)
    kids = {k.id: k for k in tree.kids(node_id)}
    for c in decisions:
        if c.kind not in KINDS:
            raise TreeEditError(f"unknown change {c.kind!r}", f"use one of {', '.join(KINDS)}")
        if c.kind != "added" and c.child_id not in kids:
            raise TreeEditError(f"{c.old!r} is no longer a child of this node", "compare again: the tree changed")
    removed = {c.child_id for c in decisions if c.kind == "removed" and c.apply}
    staying = [k for k in kids.values() if k.id not in removed]
    _check_new_dimension(store, node, dimension, below=[n for k in staying for n in tree.subtree(k.id)])
    final: list[str] = []  # the finite values the node keeps or gets
    infinite_values: list[str] = []  # an open-ended child's new value list
    open_children = 0  # open-ended children after the replace
    for c in decisions:
        kid = kids.get(c.child_id)
        if c.values and (c.kind == "kept" or (c.kind == "added" and c.apply)):
            infinite_values = dedupe_values([_check_value(v) for v in c.values])
            open_children += 1
        elif c.kind == "added" and c.apply:
            final.append(_check_value(c.new))
        elif c.kind == "renamed":
            final.append(_check_value(c.new) if c.apply else kid.value)
        elif c.kind == "kept" or (c.kind == "removed" and not c.apply):
            if kid.infinite:
                open_children += 1
            else:
                final.append(kid.value)
    listed = {c.child_id for c in decisions}
    for k in staying:
        if k.id not in listed:
            open_children += k.infinite
            final += [] if k.infinite else [k.value]
    if len({normalise(v) for v in final}) != len(final):
        raise TreeEditError("two children would have the same value", "rename or remove one of them")
    if open_children and (final or open_children > 1):
        raise TreeEditError("an open-ended split has one child holding all its values, and no other child",
                            "remove the other values, or keep a split with a fixed list")
    if (not open_children and len(final) < 2) or (infinite_values and len(infinite_values) < 2):
        raise TreeEditError("a split needs at least two distinct values", "keep or add more values")
    gone_ids = store.subtree_ids(sorted(removed))
    below = [i for i in store.subtree_ids([node_id]) if i != node_id]
    gone_samples = store.samples_on_count(gone_ids)
    summary = (f"replaced the split of {_label(store, node)} {node.dimension!r} -> {dimension!r}: "
               + ", ".join(f"{sum(c.kind == k and (c.apply or k == 'kept') for c in decisions)} {k}" for k in KINDS)
               + (f" ({len(gone_ids)} node(s), {gone_samples} sample(s) removed)" if gone_ids else ""))
    with change(store, project_id=node.project_id, node_id=node_id, action=action, actor=actor, summary=summary,
                scope=Scope(node_ids=[node_id, *below], parents=[node_id], sample_nodes=below)) as rec:
        rec.split_before = _current_split(store, node)
        store.delete_nodes(gone_ids)
        for c in decisions:
            if c.kind == "renamed" and c.apply:
                store.update_node(c.child_id, value=_check_value(c.new), provenance=actor,
                                  status="edited" if actor == "human" else kids[c.child_id].status)
            elif c.kind == "kept" and c.values:
                store.update_node(c.child_id, values=infinite_values)
            elif c.kind == "added" and c.apply:
                store.add_children(node, [{"infinite": True, "values": infinite_values}] if c.values
                                   else [{"value": _check_value(c.new)}], provenance=actor)
        values = {"dimension": dimension, "failure": None, "note": note}
        if pivots is not None:
            values["pivots"] = pivots
        if node.dimension != dimension and actor == "human":
            values.update(provenance="human", status="edited")
        elif node.status == "failed":
            values["status"] = "proposed"
        store.update_node(node_id, **values)
        if proposal_id is not None:
            store.set_proposal_state(proposal_id, "applied")
        rec.split_after = _current_split(store, store.node(node_id))
    return [k.id for k in store.tree(node.project_id).kids(node_id)]


@one_transaction
def replace_with(store: Store, node_id: str, split, actor: str = "human", proposal_id: int | None = None,
                 action: str = "replace_split") -> list[str]:
    """Replace a node's split by ``split`` taking every change of the diff: kept and renamed children keep their
    subtree and samples, only the values the split lacks are removed."""
    diff = diff_split(store, node_id, split.dimension, split.values, split.infinite, split.pivots, split.labels)
    return replace_split(store, node_id, split.dimension, diff.changes, pivots=split.pivots, note=split.note,
                         actor=actor, proposal_id=proposal_id, action=action)


@one_transaction
def restore_split(store: Store, node_id: str, event_id: int) -> list[str]:
    """Give a node back the split it had right after event ``event_id`` (one of its split events), as a diff:
    children whose value comes back keep their subtree and samples."""
    from .edits import Split

    ev = event(store, event_id)
    state = (ev.after or {}).get("split") if ev.node_id == node_id else None
    if state is None:
        raise TreeEditError(f"event {event_id} did not set a split of this node", "pick one of its split events")
    row = ev.after["nodes"].get(node_id) or {}
    pivots = json.loads(row["pivots"]) if row.get("pivots") else []  # the evidence, kept in the node's row
    return replace_with(store, node_id, Split(**{**state, "pivots": pivots}), action="restore_split")


# ----------------------------------------------------------------------------- stored proposals


def save_proposal(store: Store, node_id: str, split, job_id: int | None = None) -> int:
    """Keep a re-proposed split until it is applied or dismissed; returns its id."""
    node = store.node(node_id)
    return store.add_proposal({"project_id": node.project_id, "node_id": node_id, "job_id": job_id,
                               "dimension": split.dimension, "value_list": json.dumps(split.values, ensure_ascii=False),
                               "infinite": int(split.infinite), "pivots": json.dumps(split.pivots, ensure_ascii=False),
                               "labels": json.dumps(split.labels, ensure_ascii=False), "note": split.note,
                               "state": "new"})


def _proposal(row: dict) -> Proposal:
    from .edits import Split
    split = Split(row["dimension"], json.loads(row["value_list"]), bool(row["infinite"]),
                  json.loads(row["pivots"] or "[]"), json.loads(row["labels"] or "[]"), row["note"])
    return Proposal(row["id"], row["project_id"], row["node_id"], split, row["job_id"], row["state"],
                    row["created_at"])


def proposals(store: Store, node_id: str, include_done: bool = False) -> list[Proposal]:
    """A node's stored proposals, newest first (only those not applied or dismissed, unless ``include_done``)."""
    states = ("new", "applied", "dismissed") if include_done else ("new",)
    return [_proposal(r) for r in store.proposal_rows(node_id, states)]


def proposal(store: Store, proposal_id: int) -> Proposal:
    row = store.proposal_row(proposal_id)
    if row is None:
        raise TreeEditError(f"proposal {proposal_id} does not exist", "re-propose the split")
    return _proposal(row)


def dismiss_proposal(store: Store, proposal_id: int) -> None:
    proposal(store, proposal_id)
    store.set_proposal_state(proposal_id, "dismissed")
