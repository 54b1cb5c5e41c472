"""Changes to samples: review status with a reject reason, notes, text edits that keep the original, moves (e.g.
stranded samples to a child). Each public function is one transaction recorded as one history event
(``history.change``). ``edits`` re-exports every name here: callers use ``edits.set_sample_status`` and so on.

A sample left on a node that got children ("stranded": its leaf was expanded after it got samples) counts towards no
leaf's quota and is not generated for; ``stranded`` lists them by node, ``move_samples`` / ``move_stranded`` put
them on a child, and ``stranded_route_params`` starts the LLM router (routing.py) on them.
"""

from __future__ import annotations

import json

from .errors import LeafGone, NotFoundError, TreeEditError
from .history import Scope, change, one_transaction
from .samples import NOT_CONTENT, SAMPLE_STATUSES, fingerprint  # noqa: F401 (re-exported)
from .store import Store
from .tree import Node

REASON_CHARS = 500  # a reject reason or a note is a line or two, not a document
NOTE_CHARS = 2000


def _label(node: Node) -> str:
    return "the root" if node.parent_id is None else repr(node.label)


def _sample_rows(store: Store, sample_ids: list[int]) -> dict[int, dict]:
    return store.snapshot(sample_ids=list(sample_ids))[1]


def _one_node(rows: dict[int, dict]) -> str | None:
    nodes = {r["node_id"] for r in rows.values()}
    return nodes.pop() if len(nodes) == 1 else None


@one_transaction
def set_sample_status(store: Store, sample_ids: list[int], status: str, reason: str | None = None,
                      actor: str = "human") -> int:
    """Set the review status of these samples; ``reason`` is kept when rejecting (cleared otherwise)."""
    if status not in SAMPLE_STATUSES:
        raise TreeEditError(f"unknown sample status {status!r}", f"use one of {', '.join(SAMPLE_STATUSES)}")
    ids = list(dict.fromkeys(sample_ids))
    if not ids:
        return 0
    reason = (" ".join(reason.split())[:REASON_CHARS] or None) if reason and status == "rejected" else None
    rows = _sample_rows(store, ids)
    if not rows:
        raise TreeEditError("none of these samples exists", "reload the samples")
    project_id = next(iter(rows.values()))["project_id"]
    with change(store, project_id=project_id, node_id=_one_node(rows), action="sample_status", actor=actor,
                summary=f"marked {len(rows)} sample(s) {status}" + (f": {reason}" if reason else ""),
                scope=Scope(sample_ids=list(rows))):
        store.update_samples(list(rows), status=status, reason=reason)
    return len(ids)


@one_transaction
def set_sample_note(store: Store, sample_id: int, note: str | None) -> None:
    """A reviewer's free note on a sample (None or blank clears it)."""
    rows = _sample_rows(store, [sample_id])
    if not rows:
        raise TreeEditError(f"sample {sample_id} does not exist", "reload the samples")
    note = (note or "").strip()[:NOTE_CHARS] or None
    row = rows[sample_id]
    with change(store, project_id=row["project_id"], node_id=row["node_id"], action="sample_note",
                summary=f"{'noted' if note else 'cleared the note of'} sample {sample_id}",
                scope=Scope(sample_ids=[sample_id])):
        store.update_samples([sample_id], note=note)


def _check_data(store: Store, project_id: int, data: dict) -> str:
    spec = store.project(project_id)
    fields = spec.field_names
    if set(data) != set(fields):
        raise TreeEditError(f"a sample has exactly the fields {', '.join(fields)}; got {', '.join(sorted(data))}",
                            "edit the values, not the field names")
    if not all(isinstance(v, str) and v.strip() for v in data.values()):
        raise TreeEditError("every field of a sample needs text", "fill in each field")
    cap = spec.settings.max_field_chars
    for name, value in data.items():
        if len(value) > cap:
            raise TreeEditError(f"field {name!r} has {len(value):,} characters; the project allows {cap:,}",
                                "shorten it, or raise max_field_chars in the project settings")
    return fingerprint(data, spec.dedup_fields)


def _write_data(store: Store, row: dict, data: dict, action: str, summary: str) -> None:
    norm_hash = _check_data(store, row["project_id"], data)
    original = row["original"] if row["original"] is not None else row["data"]
    text = json.dumps(data, ensure_ascii=False)
    back = json.loads(original) == data  # edited back to what was generated: no longer edited
    with change(store, project_id=row["project_id"], node_id=row["node_id"], action=action, summary=summary,
                scope=Scope(sample_ids=[row["id"]])):
        twin = store.sample_with_hash(row["project_id"], norm_hash, except_id=row["id"])
        if twin is not None:
            raise TreeEditError(f"the edit makes this sample a duplicate of sample {twin}",
                                "change it further or reject one of them")
        store.update_samples([row["id"]], data=text, norm_hash=norm_hash, original=None if back else original,
                             edited=int(not back))


@one_transaction
def edit_sample(store: Store, sample_id: int, data: dict) -> None:
    """Change a sample's text. The text as generated is kept the first time (``original``) and the sample marked
    ``edited``; its judge verdicts go (they judged the old text)."""
    rows = _sample_rows(store, [sample_id])
    if not rows:
        raise TreeEditError(f"sample {sample_id} does not exist", "reload the samples")
    _write_data(store, rows[sample_id], data, "edit_sample", f"edited sample {sample_id}")


@one_transaction
def revert_sample(store: Store, sample_id: int) -> bool:
    """Put an edited sample's original text back. Returns False when it was never edited."""
    rows = _sample_rows(store, [sample_id])
    if not rows:
        raise TreeEditError(f"sample {sample_id} does not exist", "reload the samples")
    row = rows[sample_id]
    if row["original"] is None:
        return False
    _write_data(store, row, json.loads(row["original"]), "revert_sample",
                f"reverted sample {sample_id} to its original")
    return True


def original_data(store: Store, sample_id: int) -> dict | None:
    """The text a sample had before its first edit (None when never edited)."""
    row = _sample_rows(store, [sample_id]).get(sample_id)
    return json.loads(row["original"]) if row and row["original"] is not None else None


def add_samples(store: Store, project_id: int, node_id: str, rows: list[dict], *, cap: int | None,
                call_id: int | None, record: str | None = None, actor: str = "llm",
                live_only: bool = False) -> tuple[int, int]:
    """Store generated samples on a leaf (``Store.add_samples``: duplicates skipped, the cap held). Generation is
    not a history event (its calls are logged); ``record`` (an action name such as "import") makes it one. A leaf
    deleted meanwhile (by an edit or an undo while a job fills it) gets nothing: LeafGone (a NotFoundError), never
    orphan rows; with ``live_only`` (generation), so does a leaf pruned meanwhile, or one under a node pruned since."""
    if record is None:
        try:
            return store.add_samples(project_id, node_id, rows, cap=cap, call_id=call_id, leaf_must_exist=True,
                                     leaf_must_be_live=live_only)
        except NotFoundError:
            raise LeafGone(f"leaf {node_id} was deleted while its samples were being made",
                           "nothing was stored for it; generate again to fill the current leaves") from None
        except TreeEditError:  # live_only: it, or a node above it, was pruned since the run started
            raise LeafGone(f"leaf {node_id} was pruned while its samples were being made",
                           "nothing was stored for it; restore it and generate again to fill it") from None
    with change(store, project_id=project_id, node_id=node_id, action=record, actor=actor,
                summary=f"{record}: samples added", scope=Scope(sample_nodes=[node_id])) as rec:
        inserted, duplicates = store.add_samples(project_id, node_id, rows, cap=cap, call_id=call_id)
        rec.summary = f"{record}: {inserted} sample(s) added" + (f", {duplicates} duplicate(s) skipped" if duplicates
                                                                  else "")
    return inserted, duplicates


def stranded(store: Store, project_id: int) -> dict[str, int]:
    """Samples sitting on a node that has children (it was a leaf when they were made), by node: they count
    toward no leaf's quota and are not generated for; move them to a child (``move_samples``)."""
    return store.stranded_counts(project_id)


@one_transaction
def move_samples(store: Store, sample_ids: list[int], child_id: str) -> int:
    """Move samples to a leaf (e.g. stranded samples to the child they belong to). Returns how many moved."""
    target = store.node(child_id)
    if store.has_children(child_id):
        raise TreeEditError(f"{_label(target)} has children", "move samples to a leaf")
    rows = _sample_rows(store, list(sample_ids))
    if not rows:
        return 0
    if any(r["project_id"] != target.project_id for r in rows.values()):
        raise TreeEditError("these samples belong to another project", "move samples within one project")
    moving = [i for i, r in rows.items() if r["node_id"] != child_id]
    if not moving:
        return 0
    with change(store, project_id=target.project_id, node_id=child_id, action="move_samples",
                summary=f"moved {len(moving)} sample(s) to {_label(target)}", scope=Scope(sample_ids=moving)):
        store.update_samples(moving, node_id=child_id)
    return len(moving)


def stranded_route_params(store: Store, node_id: str) -> dict:
    """The parameters of a "route" job (routing.py) that asks the LLM which child each stranded sample of this
    node belongs to, batched: ``jobs.start_job(db, project_id, "route", edits.stranded_route_params(...), ...)``."""
    return {"start_node_id": node_id, "sample_ids": store.sample_ids_on(node_id)}


@one_transaction
def move_stranded(store: Store, node_id: str, assignments: dict[int, str]) -> int:
    """Move a node's stranded samples, each to the child named in ``assignments`` (sample id -> child id), in one
    event (a router's answer, or the curator's picks)."""
    node = store.node(node_id)
    kids = {k.id for k in store.children(node_id)}
    wrong = {c for c in assignments.values() if c not in kids}
    if wrong:
        raise TreeEditError(f"{len(wrong)} target(s) are not children of {_label(node)}", "pick its children")
    on_it = set(store.sample_ids_on(node_id))
    moves = {s: c for s, c in assignments.items() if s in on_it}
    with change(store, project_id=node.project_id, node_id=node_id, action="move_samples",
                summary=f"moved {len(moves)} stranded sample(s) of {_label(node)} to its children",
                scope=Scope(sample_ids=list(moves))):
        for child in set(moves.values()):
            store.update_samples([s for s, c in moves.items() if c == child], node_id=child)
    return len(moves)
