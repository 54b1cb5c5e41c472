"""Every change to the tree and to samples: human edits, the LLM's splits, reviews. Each public function is one
transaction recorded as one history event (``history.py``: who, what, the rows before and after), with the
project's last change touched; ``undo`` / ``redo`` / ``history`` are re-exported here. Pages, the CLI and the
core's jobs call this module; none composes transactions of its own.

Edits mark what they touched as human-made ("edited", provenance human), refuse what would break the partition
(duplicate or empty sibling values, a dimension an ancestor uses), and leave locked nodes to the human:
automation never overwrites them. Approving keeps the provenance: a node edited by a human stays marked so.

A node's ``note`` is the "needs review" mark the build leaves on a split it could not show exhaustive. A human
clears it by approving that node, by replacing or clearing its split, or explicitly with ``resolve_note``.

Changes to samples (review, notes, text edits, moves, stranded samples) live in ``review.py``, re-exported here;
Replace as a diff and stored proposals in ``proposals.py``, also re-exported.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

from .errors import TreeEditError
from .history import (Event, Scope, barrier, can_redo, can_undo, change, event, history,  # noqa: F401
                      one_transaction, redo, undo, undo_barrier)
from .spec import bounds
from .store import Store
from .tree import (Node, dedupe_values, dimension_key, dimension_problem, normalise, path_labels, path_pruned,
                   path_used_dimensions, value_problem)

from .review import (NOTE_CHARS, REASON_CHARS, SAMPLE_STATUSES, add_samples, edit_sample,  # noqa: F401 (re-exported)
                     move_samples, move_stranded, original_data, revert_sample, set_sample_note, set_sample_status,
                     stranded, stranded_route_params)


@dataclass
class Split:
    """A node's split: its dimension and values (one open-ended child holding them all when ``infinite``), with
    the evidence behind it: the pivot samples, the criterion's label of each pivot, a "needs review" note."""
    dimension: str
    values: list[str]
    infinite: bool = False
    pivots: list[dict] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)  # the criterion's value for each pivot, in order (or empty)
    note: str | None = None

    def as_json(self) -> dict:
        return asdict(self)

    def state(self) -> dict:
        """The split as a history event keeps it: without the pivots, which the node's row in the same event
        holds (``restore_split`` reads them there)."""
        return {k: v for k, v in asdict(self).items() if k != "pivots"}


@dataclass
class Removal:
    """What a destructive action removes: nodes (the subtree roots included) and the samples on them."""
    nodes: int
    samples: int

    def text(self) -> str:
        return f"{self.nodes} node(s) and {self.samples} sample(s)"


# ----------------------------------------------------------------------------- checks


def _sibling_clash(store: Store, parent_id: str, value: str, except_id: str | None = None) -> None:
    for sibling in store.children(parent_id):
        if sibling.id != except_id and not sibling.infinite and normalise(sibling.value or "") == normalise(value):
            raise TreeEditError(f"a sibling already has the value {sibling.value!r}",
                                "choose a different value or rename the other one")


def _check_value(value: str) -> str:
    value = " ".join(value.split())
    problem = value_problem(value)
    if problem:
        raise TreeEditError(problem, "values must be concrete, distinct and not combined")
    return value


def _check_dimension(dimension: str) -> str:
    """A human-entered dimension name, spacing folded, refused when empty or when it breaks the content rules
    that values follow (a formula, markup, a catch-all, two dimensions in one, too long)."""
    dimension = " ".join(dimension.split())
    if not dimension:
        raise TreeEditError("the dimension name is empty", "type a name such as 'difficulty'")
    problem = dimension_problem(dimension)
    if problem:
        raise TreeEditError(problem, "name one concrete dimension in a few plain words, e.g. 'difficulty'")
    return dimension


def _check_new_dimension(store: Store, node: Node, dimension: str, below: list[Node] | None = None) -> None:
    """Refuse a dimension an ancestor uses, or one a node kept below (``below``, default: the subtree) uses.
    Reads the node's path and subtree only, never the whole tree."""
    for used in path_used_dimensions(store.node_path(node.id)):
        if dimension_key(used) == dimension_key(dimension):
            raise TreeEditError(f"an ancestor already splits on {used!r}", "each level needs its own dimension")
    if below is None:
        below = store.nodes_by_id(_below(store, node.id))
    for n in below:
        if n.dimension and dimension_key(n.dimension) == dimension_key(dimension):
            where = " > ".join(f"{d}={v}" for d, v in path_labels(store.node_path(n.id))) or "(root)"
            raise TreeEditError(f"a node below ({where}) already splits on {n.dimension!r}",
                                "each level needs its own dimension")


def _label(store: Store, node: Node) -> str:
    return "the root" if node.parent_id is None else repr(node.label)


def _below(store: Store, node_id: str) -> list[str]:
    """The ids of the nodes under ``node_id`` (not itself)."""
    return [i for i in store.subtree_ids([node_id]) if i != node_id]


# ----------------------------------------------------------------------------- the tree


@one_transaction
def rename_dimension(store: Store, node_id: str, dimension: str) -> None:
    dimension = _check_dimension(dimension)
    node = store.node(node_id)
    _check_new_dimension(store, node, dimension)
    with change(store, project_id=node.project_id, node_id=node_id, action="rename_dimension",
                summary=f"renamed the criterion of {_label(store, node)} {node.dimension!r} -> {dimension!r}",
                scope=Scope(node_ids=[node_id])):
        store.update_node(node_id, dimension=dimension, provenance="human", status="edited")


@one_transaction
def add_value(store: Store, node_id: str, value: str) -> str:
    """Add a child with this value under a node that has a dimension."""
    node = store.node(node_id)
    if not node.dimension:
        raise TreeEditError("this node has no dimension yet", "name its dimension (criterion) first")
    value = _check_value(value)
    _sibling_clash(store, node_id, value)
    with change(store, project_id=node.project_id, node_id=node_id, action="add_value",
                summary=f"added the value {value!r} under {_label(store, node)}", scope=Scope(parents=[node_id])):
        (child_id,) = store.add_children(node, [{"value": value}], provenance="human")
    return child_id


@one_transaction
def rename_value(store: Store, node_id: str, value: str) -> None:
    node = store.node(node_id)
    if node.parent_id is None:
        raise TreeEditError("the root has no value", "rename the task in the project settings instead")
    value = _check_value(value)
    _sibling_clash(store, node.parent_id, value, except_id=node_id)
    with change(store, project_id=node.project_id, node_id=node_id, action="rename_value",
                summary=f"renamed {node.value!r} -> {value!r}", scope=Scope(node_ids=[node_id])):
        store.update_node(node_id, value=value, provenance="human", status="edited")


@one_transaction
def set_values(store: Store, node_id: str, values: list[str]) -> None:
    """Replace an infinite node's value list (deduplicated, each value checked)."""
    node = store.node(node_id)
    if not node.infinite:
        raise TreeEditError("only an open-ended (infinite) node holds a value list", "rename the value instead")
    clean = dedupe_values([_check_value(v) for v in values if v.strip()])
    if len(clean) < 2:
        raise TreeEditError("an open-ended node needs at least two values", "add values")
    with change(store, project_id=node.project_id, node_id=node_id, action="set_values",
                summary=f"set the {len(clean)} values of an open-ended node", scope=Scope(node_ids=[node_id])):
        store.update_node(node_id, values=clean, provenance="human", status="edited")


def removal_counts(store: Store, node_ids: list[str]) -> Removal:
    """What deleting these nodes (and everything below them) removes, for a confirmation before it runs."""
    ids = store.subtree_ids(list(node_ids))
    return Removal(len(ids), store.samples_on_count(ids))


@one_transaction
def delete_subtree(store: Store, node_id: str) -> int:
    """Delete a node, its descendants and their samples. Returns the number of nodes removed."""
    node = store.node(node_id)
    if node.parent_id is None:
        raise TreeEditError("the root cannot be deleted", "delete the project instead")
    ids = store.subtree_ids([node_id])
    gone = Removal(len(ids), store.samples_on_count(ids))
    with change(store, project_id=node.project_id, node_id=node.parent_id, action="delete_subtree",
                summary=f"deleted {_label(store, node)} ({gone.text()})",
                scope=Scope(node_ids=ids, sample_nodes=ids)):
        store.delete_nodes(ids)
    return len(ids)


@one_transaction
def clear_split(store: Store, node_id: str) -> int:
    """Remove a node's dimension and all its children (to re-propose or hand-set the split). The split is
    gone, so its "needs review" note goes with it."""
    node = store.node(node_id)
    ids = _below(store, node_id)
    gone = Removal(len(ids), store.samples_on_count(ids))
    with change(store, project_id=node.project_id, node_id=node_id, action="clear_split",
                summary=f"cleared the split {node.dimension!r} of {_label(store, node)} ({gone.text()} removed)",
                scope=Scope(node_ids=[node_id, *ids], sample_nodes=ids)) as rec:
        rec.split_before = _current_split(store, node)
        store.delete_nodes(ids)
        store.update_node(node_id, dimension=None, pivots=[], failure=None, note=None)
    return len(ids)


@one_transaction
def set_split(store: Store, node_id: str, dimension: str, values: list[str]) -> list[str]:
    """Hand-set a node's split, replacing any existing children (and clearing its "needs review" note)."""
    dimension = _check_dimension(dimension)
    clean = dedupe_values([_check_value(v) for v in values if v.strip()])
    if len(clean) < 2:
        raise TreeEditError("a split needs at least two distinct values", "add values")
    node = store.node(node_id)
    _check_new_dimension(store, node, dimension, below=[])
    ids = _below(store, node_id)
    with change(store, project_id=node.project_id, node_id=node_id, action="set_split",
                summary=f"set the split of {_label(store, node)}: {dimension} = {', '.join(clean)}"
                        + (f" (replacing {len(ids)} node(s) below)" if ids else ""),
                scope=Scope(node_ids=[node_id, *ids], parents=[node_id], sample_nodes=ids)) as rec:
        rec.split_before = _current_split(store, node)
        rec.split_after = Split(dimension, clean).state()
        store.delete_nodes(ids)
        store.update_node(node_id, dimension=dimension, pivots=[], failure=None, note=None, provenance="human",
                          status="edited")
        return store.add_children(node, [{"value": v} for v in clean], provenance="human")


def _current_split(store: Store, node: Node) -> dict | None:
    if not node.dimension:
        return None
    kids = store.children(node.id)
    infinite = [k for k in kids if k.infinite]
    values = infinite[0].values if infinite else [k.value for k in kids]
    return Split(node.dimension, values, bool(infinite), [], [], node.note).state()


@one_transaction
def apply_split(store: Store, node_id: str, split: Split, actor: str = "llm") -> list[str]:
    """Store a split on a node that has no children yet: its dimension, evidence and children, one event.
    Samples already on the node stay there, flagged as stranded (see ``stranded``), never moved silently."""
    node = store.node(node_id)
    if store.has_children(node_id):
        raise TreeEditError(f"{_label(store, node)} is already split", "replace its split instead")
    children = [{"infinite": True, "values": split.values}] if split.infinite else [{"value": v} for v in split.values]
    on_it = len(store.sample_ids_on(node_id))
    summary = (f"split {_label(store, node)} by {split.dimension}: " +
               (f"any of {len(split.values)} values" if split.infinite else ", ".join(split.values)))
    if on_it:
        summary += f"; {on_it} sample(s) left on it (stranded: move them to a child)"
    with change(store, project_id=node.project_id, node_id=node_id, action="apply_split", actor=actor,
                summary=summary, scope=Scope(node_ids=[node_id], parents=[node_id])) as rec:
        rec.split_after = split.state()
        store.update_node(node_id, dimension=split.dimension, pivots=split.pivots, failure=None, note=split.note,
                          status="proposed" if node.status == "failed" else node.status)
        return store.add_children(node, children, provenance=actor)


@one_transaction
def mark_failed(store: Store, node_id: str, reason: str, actor: str = "llm") -> None:
    """Record why a node's split failed (status failed): the build goes on with its siblings."""
    node = store.node(node_id)
    with change(store, project_id=node.project_id, node_id=node_id, action="split_failed", actor=actor,
                summary=f"splitting {_label(store, node)} failed: {reason[:200]}", scope=Scope(node_ids=[node_id])):
        store.update_node(node_id, status="failed", failure=reason)


def _set_subtree(store: Store, node_id: str, action: str, summary: str, **values) -> list[str]:
    node = store.node(node_id)
    ids = store.subtree_ids([node_id])
    with change(store, project_id=node.project_id, node_id=node_id, action=action, summary=summary,
                scope=Scope(node_ids=ids)):
        store.update_nodes(ids, **values)
    return ids


@one_transaction
def prune(store: Store, node_id: str) -> int:
    """Mark a subtree pruned: kept in the file, excluded from building, generation and export."""
    node = store.node(node_id)
    if node.parent_id is None:
        raise TreeEditError("the root cannot be pruned", "prune its children instead")
    return len(_set_subtree(store, node_id, "prune", f"pruned {_label(store, node)} and its subtree",
                            status="pruned"))


@one_transaction
def restore(store: Store, node_id: str) -> int:
    """Bring a pruned subtree back: its pruned nodes become live ("edited": a human decided). Returns how many.
    Refused, changing nothing, when nothing there is pruned (approvals would be lost for nothing) or when an
    ancestor is still pruned (the node would stay excluded: the ancestor is the one to restore)."""
    node = store.node(node_id)
    above = next((n for n in store.node_path(node_id)[:-1] if n.status == "pruned"), None)
    if above is not None:
        raise TreeEditError(f"{_label(store, node)} is under the pruned {_label(store, above)}: restoring it alone "
                            "would leave it excluded", f"restore {_label(store, above)} instead")
    ids = [n.id for n in store.nodes_by_id(store.subtree_ids([node_id])) if n.status == "pruned"]
    if not ids:
        raise TreeEditError(f"{_label(store, node)} is not pruned", "nothing to restore")
    with change(store, project_id=node.project_id, node_id=node_id, action="restore",
                summary=f"restored {_label(store, node)} and its subtree", scope=Scope(node_ids=ids)):
        store.update_nodes(ids, status="edited")
    return len(ids)


@one_transaction
def approve(store: Store, node_id: str, subtree: bool = False) -> int:
    """Mark a node (or its live subtree) approved. Approving a node is reviewing it: its own "needs review"
    note is cleared. Approving a subtree clears only that node's note: the notes below were not looked at.
    The provenance stays: a node a human edited is still marked "by human" once approved."""
    node = store.node(node_id)
    if path_pruned(store.node_path(node_id)):
        raise TreeEditError("this node is pruned (or under a pruned node)", "restore the subtree first")
    nodes = [n for n in store.nodes_by_id(store.subtree_ids([node_id])) if n.status != "pruned"] if subtree else [node]
    with change(store, project_id=node.project_id, node_id=node_id, action="approve",
                summary=f"approved {_label(store, node)}" + (
                    f" and its subtree ({len(nodes)} node{'' if len(nodes) == 1 else 's'})" if subtree else ""),
                scope=Scope(node_ids=[n.id for n in nodes])):
        store.update_nodes([n.id for n in nodes if n.status != "approved" and n.id != node_id], status="approved")
        if node.status != "approved" or node.note:
            store.update_node(node_id, status="approved", note=None)
    return len(nodes)


@one_transaction
def resolve_note(store: Store, node_id: str) -> bool:
    """"Mark reviewed": clear a node's "needs review" note, leaving its split and status as they are.
    Returns whether there was a note."""
    node = store.node(node_id)
    if not node.note:
        return False
    with change(store, project_id=node.project_id, node_id=node_id, action="resolve_note",
                summary=f"marked the split of {_label(store, node)} reviewed", scope=Scope(node_ids=[node_id])):
        store.update_node(node_id, note=None)
    return True


@one_transaction
def lock(store: Store, node_id: str, locked: bool = True) -> None:
    node = store.node(node_id)
    with change(store, project_id=node.project_id, node_id=node_id, action="lock" if locked else "unlock",
                summary=f"{'locked' if locked else 'unlocked'} {_label(store, node)}", scope=Scope(node_ids=[node_id])):
        store.update_node(node_id, locked=int(locked))


@one_transaction
def set_quota(store: Store, node_id: str, quota: int | None) -> None:
    """A leaf's own quota (None: the project's samples per leaf). Refused on a node with live children: samples
    are generated on leaves only, so a quota there would mean nothing (clearing one, None, is allowed)."""
    if quota is not None and quota < 0:
        raise TreeEditError("a quota cannot be negative", "use 0 to generate nothing for this leaf")
    highest = bounds("per_leaf")[1]
    if quota is not None and quota > highest:
        raise TreeEditError(f"a quota is at most {highest}", f"use a number from 0 to {highest}")
    node = store.node(node_id)
    if quota is not None and any(k.status != "pruned" for k in store.children(node_id)):
        raise TreeEditError(f"{_label(store, node)} has children: quotas are per leaf",
                            "set the quota on the leaves below it, or the project's samples per leaf")
    with change(store, project_id=node.project_id, node_id=node_id, action="set_quota",
                summary=f"set the quota of {_label(store, node)} to "
                        + ("the project's default" if quota is None else str(quota)), scope=Scope(node_ids=[node_id])):
        store.update_node(node_id, quota=quota)


def project_removal(store: Store, project_id: int) -> Removal:
    """What deleting a whole project removes (for its confirmation)."""
    return Removal(len(store.subtree_ids([store.tree(project_id).root.id])), store.sample_total(project_id))


def trash_project(store: Store, project_id: int) -> Removal:
    """Delete a project the undoable way: it moves to Recently deleted with every row intact (``restore_project``
    brings it back; ``purge_project`` removes it for good). Returns what it holds, for the message."""
    held = project_removal(store, project_id)
    store.set_project_deleted(project_id, datetime.now(timezone.utc).isoformat(timespec="seconds"))
    return held


def restore_project(store: Store, project_id: int) -> None:
    """Bring a project back from Recently deleted, exactly as it was."""
    store.set_project_deleted(project_id, None)


def purge_project(store: Store, project_id: int) -> Removal:
    """Remove a project and everything in it (tree, samples, calls, jobs, history) for good."""
    held = project_removal(store, project_id)
    store.delete_project(project_id)
    return held


def import_tree_nodes(store: Store, project_id: int, root: dict, free) -> None:
    """Give a new project the tree of a tree file (``treefile.import_tree``, in its transaction): the root's split
    and every node below, with their ids when ``free(id)`` grants them. Recorded as an import, which undo does not
    cross (there is nothing before it to go back to)."""
    root_node = store.tree(project_id).root
    root_id = free(root.get("id")) or root_node.id
    if root_id != root_node.id:
        store.rename_node_id(root_node.id, root_id)
    store.update_node(root_id, dimension=root.get("dimension"), status=root.get("status", "proposed"),
                      locked=int(bool(root.get("locked"))))
    count = 1

    def add(parent, children):
        nonlocal count
        for child in children:
            payload = {"value": child.get("value"), "infinite": child.get("infinite", False),
                       "values": child.get("values", []), "status": child.get("status", "proposed"),
                       "id": free(child.get("id"))}
            (new_id,) = store.add_children(parent, [payload], provenance=child.get("provenance", "human"))
            store.update_node(new_id, dimension=child.get("dimension"), locked=int(bool(child.get("locked"))),
                              quota=child.get("quota"))
            count += 1
            if child.get("children"):
                add(store.node(new_id), child["children"])

    add(store.node(root_id), root.get("children", []))
    barrier(store, project_id, "import_tree", f"imported a tree of {count} node(s)")


# the split as a diff and stored proposals (proposals.py builds on the functions above)
from .proposals import (Proposal, SplitDiff, ValueChange, diff_split, dismiss_proposal, pivots_by_value,  # noqa
                        proposal, proposals, replace_split, replace_with, restore_split, save_proposal)
