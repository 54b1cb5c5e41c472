"""History of a project's tree and samples: every change is an event, written in the change's own transaction,
holding the full rows (every column) of each node and sample it touched, before and after. Undo writes the
"before" rows back, redo the "after" rows, so both are exact to the byte; they work across restarts because the
events live in the project's SQLite file.

Undo takes the newest event not undone; redo the one undone last; a new change drops what was undone (the redo
stack). Undo and redo refuse, changing nothing, when a row they would write back changed since without an event
(e.g. samples generated under a node that undo would delete): they never drop what they do not know about.

Generated samples (generation, batch import) are not events: they are the jobs' output, logged with their calls.
A tree import is a barrier: undo stops there. ``edits`` is the module that calls ``change``; pages and the CLI
call ``edits``.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

from .errors import TreeEditError
from .store import Store

ACTORS = ("human", "llm")


@dataclass
class Event:
    id: int
    project_id: int
    node_id: str | None
    actor: str  # "human" or "llm"
    action: str  # e.g. rename_value, delete_subtree, apply_split, replace_split, sample_status, edit_sample
    summary: str  # one line a curator reads
    created_at: str
    undone: bool
    undoable: bool = True
    before: dict | None = None  # {"nodes": {id: row or None}, "samples": {id: row or None}, "split": ...}
    after: dict | None = None

    @property
    def counts(self) -> tuple[int, int]:
        """(nodes, samples) this event touched."""
        payload = self.after or self.before or {}
        return len(payload.get("nodes", {})), len(payload.get("samples", {}))


@dataclass
class Scope:
    """What a change may touch: nodes by id or by parent, samples by id or by node. Rows the change creates must
    fall in it too (children of a node in ``parents``, samples on a node in ``sample_nodes``) or be named later
    through ``Recording.add``."""
    node_ids: list[str] = field(default_factory=list)
    parents: list[str] = field(default_factory=list)
    sample_ids: list[int] = field(default_factory=list)
    sample_nodes: list[str] = field(default_factory=list)

    def read(self, store: Store) -> tuple[dict, dict]:
        return store.snapshot(node_ids=self.node_ids, parents=self.parents, sample_ids=self.sample_ids,
                              sample_nodes=self.sample_nodes)


@dataclass
class Recording:
    """Handed to the body of a ``change``: set the summary once the outcome is known, widen the scope with rows
    created under ids not known beforehand, attach the split set (for restore_split)."""
    scope: Scope
    summary: str
    split_before: dict | None = None
    split_after: dict | None = None
    event_id: int | None = None

    def add(self, *, node_ids=(), sample_ids=(), sample_nodes=(), parents=()) -> None:
        self.scope.node_ids += list(node_ids)
        self.scope.sample_ids += list(sample_ids)
        self.scope.sample_nodes += list(sample_nodes)
        self.scope.parents += list(parents)


def one_transaction(fn):
    """Run an edit whole in one write transaction (BEGIN IMMEDIATE): what it reads to check and to pick the rows
    it changes cannot change under it before its write and its event commit, even from another process."""
    @functools.wraps(fn)
    def run(store: Store, *args, **kwargs):
        with store.atomic():
            return fn(store, *args, **kwargs)
    return run


def _active(store: Store) -> bool:
    return getattr(store, "_history_depth", 0) > 0


@contextmanager
def change(store: Store, *, project_id: int, action: str, summary: str, scope: Scope, node_id: str | None = None,
           actor: str = "human", undoable: bool = True) -> Iterator[Recording]:
    """Run the body as one transaction recorded as one event. Nested in another change, it records nothing:
    the outer change's scope covers it (one user action, one event). A body that changes nothing records none."""
    if actor not in ACTORS:
        raise ValueError(f"unknown actor {actor!r}")
    with store.atomic():
        recording = Recording(scope=scope, summary=summary)
        if _active(store):
            yield recording
            return
        if store.in_trash(project_id):  # Restore gives a deleted project back as it was: nothing changes it meanwhile
            raise TreeEditError(f"project {project_id} is in Recently deleted",
                                "restore it first (Home page, Recently deleted), then change it")
        before_nodes, before_samples = scope.read(store)
        store._history_depth = 1
        try:
            yield recording
        finally:
            store._history_depth = 0
        after_nodes, after_samples = scope.read(store)
        nodes = {k for k in before_nodes.keys() | after_nodes.keys() if before_nodes.get(k) != after_nodes.get(k)}
        samples = {k for k in before_samples.keys() | after_samples.keys()
                   if before_samples.get(k) != after_samples.get(k)}
        if not nodes and not samples:
            return
        before = {"nodes": {k: before_nodes.get(k) for k in nodes},
                  "samples": {str(k): before_samples.get(k) for k in samples}, "split": recording.split_before}
        after = {"nodes": {k: after_nodes.get(k) for k in nodes},
                 "samples": {str(k): after_samples.get(k) for k in samples}, "split": recording.split_after}
        store.drop_undone_events(project_id)
        recording.event_id = store.add_event({
            "project_id": project_id, "node_id": node_id, "actor": actor, "action": action,
            "summary": recording.summary, "before": json.dumps(before, ensure_ascii=False),
            "after": json.dumps(after, ensure_ascii=False), "undone": 0, "undoable": int(undoable),
            "created_at": _now()})
        store.touch(project_id)


def barrier(store: Store, project_id: int, action: str, summary: str, actor: str = "human") -> int:
    """Record a change that cannot be undone (a tree import): undo stops there. Its rows are not kept."""
    with store.atomic():
        store.drop_undone_events(project_id)
        return store.add_event({"project_id": project_id, "node_id": None, "actor": actor, "action": action,
                                "summary": summary, "before": None, "after": None, "undone": 0, "undoable": 0,
                                "created_at": _now()})


def _now() -> str:
    from .store import now
    return now()


def _event(row: dict) -> Event:
    return Event(id=row["id"], project_id=row["project_id"], node_id=row["node_id"], actor=row["actor"],
                 action=row["action"], summary=row["summary"], created_at=row["created_at"],
                 undone=bool(row["undone"]), undoable=bool(row["undoable"]),
                 before=json.loads(row["before"]) if row["before"] else None,
                 after=json.loads(row["after"]) if row["after"] else None)


def history(store: Store, project_id: int, node_id: str | None = None, limit: int = 50,
            payloads: bool = True) -> list[Event]:
    """The project's events (or one node's), newest first. ``payloads=False`` leaves before/after out (cheap)."""
    return [_event(r) for r in store.event_rows(project_id, node_id=node_id, limit=limit, payloads=payloads)]


def event(store: Store, event_id: int) -> Event:
    row = store.event_row(event_id)
    if row is None:
        raise TreeEditError(f"event {event_id} does not exist", "see the history for the event ids")
    return _event(row)


def _rows(payload: dict) -> tuple[dict, dict]:
    return payload["nodes"], {int(k): v for k, v in payload["samples"].items()}


def _put(store: Store, ev: Event, target: dict, current_state: dict, verb: str) -> None:
    """Write ``target`` rows back after checking that the rows now are ``current_state`` (what the event left),
    and that no row outside the event hangs on a node about to be deleted."""
    want_nodes, want_samples = _rows(target)
    now_nodes, now_samples = _rows(current_state)
    found_nodes, found_samples = store.snapshot(node_ids=list(now_nodes), sample_ids=list(now_samples))
    changed = [k for k in now_nodes if found_nodes.get(k) != now_nodes[k]]
    changed_samples = [k for k in now_samples if found_samples.get(k) != now_samples[k]]
    going = [k for k, v in want_nodes.items() if v is None]
    kids, hanging = store.snapshot(parents=going, sample_nodes=going)
    extra_nodes = [k for k in kids if k not in want_nodes]
    extra_samples = [k for k in hanging if k not in want_samples]
    if changed or changed_samples or extra_nodes or extra_samples:
        what = []
        if changed or extra_nodes:
            what.append(f"{len(changed) + len(extra_nodes)} node(s)")
        if changed_samples or extra_samples:
            what.append(f"{len(changed_samples) + len(extra_samples)} sample(s)")
        raise TreeEditError(f"cannot {verb} '{ev.summary}': {' and '.join(what)} changed since without a history "
                            "entry, e.g. samples generated there",
                            "nothing was changed; edit the tree by hand instead")
    try:
        store.put_rows(want_nodes, want_samples)
    except sqlite3.IntegrityError as exc:
        raise TreeEditError(f"cannot {verb} '{ev.summary}': a sample it would bring back duplicates one added "
                            f"since ({exc})", "reject or delete the newer duplicate first") from None


def undo(store: Store, project_id: int) -> Event | None:
    """Undo the project's newest change not undone (None when there is nothing to undo). Exact: every node and
    sample row it touched is written back as it was. An import or routing run cannot be undone: TreeEditError."""
    with store.atomic():
        row = store.undo_candidate(project_id)
        if row is None:
            live = store.newest_live_event(project_id)  # undone edits above it do not hide the barrier
            if live is not None and not live["undoable"]:
                raise TreeEditError(f"undo stops at a change that cannot be undone: {live['summary']}",
                                    "an import or a routing run starts a new history; edit by hand instead")
            return None
        ev = _event(row)
        _put(store, ev, ev.before, ev.after, "undo")
        store.mark_event(ev.id, True)
        store.touch(project_id)
        ev.undone = True
        return ev


def can_undo(store: Store, project_id: int) -> bool:
    """Whether undo has a change to take back (False when nothing is left or an import/routing run stops it)."""
    live = store.newest_live_event(project_id)
    return live is not None and bool(live["undoable"])


def undo_barrier(store: Store, project_id: int) -> str | None:
    """The summary of the import or routing run undo stops at, when that is what stops it (else None)."""
    live = store.newest_live_event(project_id)
    return live["summary"] if live is not None and not live["undoable"] else None


def can_redo(store: Store, project_id: int) -> bool:
    """Whether redo has an undone change to apply again."""
    return store.has_undone_event(project_id)


def redo(store: Store, project_id: int) -> Event | None:
    """Apply again the change undone last (None when nothing was undone since the last change)."""
    with store.atomic():
        row = store.redo_candidate(project_id)
        if row is None:
            return None
        ev = _event(row)
        _put(store, ev, ev.after, ev.before, "redo")
        store.mark_event(ev.id, False)
        store.touch(project_id)
        ev.undone = False
        return ev
