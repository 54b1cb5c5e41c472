"""Human edits of the tree. Each edit marks what it touched as human-made ("edited"), refuses edits that
would break the partition (duplicate or empty sibling values, a dimension an ancestor uses), and leaves
locked nodes to the human: automation never overwrites them.

A node's ``note`` is the "needs review" mark the build leaves on a split it could not show exhaustive. A human
clears it by approving that node, by replacing or clearing its split, or explicitly with ``resolve_note``.
"""

from __future__ import annotations

import json

from .errors import TreeEditError
from .samples import fingerprint
from .spec import bounds
from .store import Store
from .tree import Node, dedupe_values, dimension_key, dimension_problem, normalise, value_problem

SAMPLE_STATUSES = ("generated", "accepted", "rejected")


def _sibling_clash(store: Store, parent_id: str, value: str, except_id: str | None = None) -> None:
    for sibling in store.tree(store.node(parent_id).project_id).kids(parent_id):
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


def rename_dimension(store: Store, node_id: str, dimension: str) -> None:
    dimension = _check_dimension(dimension)
    node = store.node(node_id)
    tree = store.tree(node.project_id)
    for used in tree.used_dimensions(node_id):
        if dimension_key(used) == dimension_key(dimension):
            raise TreeEditError(f"an ancestor already splits on {used!r}", "each level needs its own dimension")
    for below in tree.subtree(node_id)[1:]:
        if below.dimension and dimension_key(below.dimension) == dimension_key(dimension):
            raise TreeEditError(f"a node below ({tree.path_text(below.id)}) already splits on {below.dimension!r}",
                                "each level needs its own dimension")
    store.update_node(node_id, dimension=dimension, provenance="human", status="edited")


def add_value(store: Store, node_id: str, value: str) -> str:
    """Add a child with this value under a node that has a dimension."""
    node = store.node(node_id)
    if not node.dimension:
        raise TreeEditError("this node has no dimension yet", "name its dimension (criterion) first")
    value = _check_value(value)
    _sibling_clash(store, node_id, value)
    (child_id,) = store.add_children(node, [{"value": value}], provenance="human")
    return child_id


def rename_value(store: Store, node_id: str, value: str) -> None:
    node = store.node(node_id)
    if node.parent_id is None:
        raise TreeEditError("the root has no value", "rename the task in the project settings instead")
    value = _check_value(value)
    _sibling_clash(store, node.parent_id, value, except_id=node_id)
    store.update_node(node_id, value=value, provenance="human", status="edited")


def set_values(store: Store, node_id: str, values: list[str]) -> None:
    """Replace an infinite node's value list (deduplicated, each value checked)."""
    node = store.node(node_id)
    if not node.infinite:
        raise TreeEditError("only an open-ended (infinite) node holds a value list", "rename the value instead")
    clean = dedupe_values([_check_value(v) for v in values if v.strip()])
    if len(clean) < 2:
        raise TreeEditError("an open-ended node needs at least two values", "add values")
    store.update_node(node_id, values=clean, provenance="human", status="edited")


def delete_subtree(store: Store, node_id: str) -> int:
    """Delete a node, its descendants and their samples. Returns the number of nodes removed."""
    node = store.node(node_id)
    if node.parent_id is None:
        raise TreeEditError("the root cannot be deleted", "delete the project instead")
    ids = [n.id for n in store.tree(node.project_id).subtree(node_id)]
    store.delete_nodes(ids)
    return len(ids)


def clear_split(store: Store, node_id: str) -> int:
    """Remove a node's dimension and all its children (to re-propose or hand-set the split). The split is
    gone, so its "needs review" note goes with it."""
    node = store.node(node_id)
    tree = store.tree(node.project_id)
    ids = [n.id for kid in tree.kids(node_id) for n in tree.subtree(kid.id)]
    with store.atomic():
        store.delete_nodes(ids)
        store.update_node(node_id, dimension=None, pivots=[], failure=None, note=None)
    return len(ids)


def set_split(store: Store, node_id: str, dimension: str, values: list[str]) -> list[str]:
    """Hand-set a node's split, replacing any existing children (and clearing its "needs review" note)."""
    _check_dimension(dimension)
    clean = dedupe_values([_check_value(v) for v in values if v.strip()])
    if len(clean) < 2:
        raise TreeEditError("a split needs at least two distinct values", "add values")
    node = store.node(node_id)
    with store.atomic():
        clear_split(store, node_id)
        rename_dimension(store, node_id, dimension)
        return store.add_children(node, [{"value": v} for v in clean], provenance="human")


def _set_subtree(store: Store, node_id: str, **values) -> list[Node]:
    node = store.node(node_id)
    nodes = store.tree(node.project_id).subtree(node_id)
    with store.atomic():
        for n in nodes:
            store.update_node(n.id, **values)
    return nodes


def prune(store: Store, node_id: str) -> int:
    """Mark a subtree pruned: kept in the file, excluded from building, generation and export."""
    if store.node(node_id).parent_id is None:
        raise TreeEditError("the root cannot be pruned", "prune its children instead")
    return len(_set_subtree(store, node_id, status="pruned"))


def restore(store: Store, node_id: str) -> int:
    return len(_set_subtree(store, node_id, status="edited"))


def approve(store: Store, node_id: str, subtree: bool = False) -> int:
    """Mark a node (or its live subtree) approved. Approving a node is reviewing it: its own "needs review"
    note is cleared. Approving a subtree clears only that node's note: the notes below were not looked at."""
    node = store.node(node_id)
    if store.tree(node.project_id).is_pruned(node_id):
        raise TreeEditError("this node is pruned (or under a pruned node)", "restore the subtree first")
    if subtree:
        nodes = [n for n in store.tree(node.project_id).subtree(node_id) if n.status not in ("pruned",)]
        with store.atomic():
            for n in nodes:
                if n.status != "approved" or (n.id == node_id and n.note):
                    store.update_node(n.id, status="approved", **({"note": None} if n.id == node_id else {}))
        return len(nodes)
    store.update_node(node_id, status="approved", note=None)
    return 1


def resolve_note(store: Store, node_id: str) -> bool:
    """"Mark reviewed": clear a node's "needs review" note, leaving its split and status as they are.
    Returns whether there was a note."""
    node = store.node(node_id)
    if not node.note:
        return False
    store.update_node(node_id, note=None)
    return True


def lock(store: Store, node_id: str, locked: bool = True) -> None:
    store.update_node(node_id, locked=int(locked))


def set_quota(store: Store, node_id: str, quota: int | None) -> None:
    if quota is not None and quota < 0:
        raise TreeEditError("a quota cannot be negative", "use 0 to generate nothing for this leaf")
    highest = bounds("per_leaf")[1]
    if quota is not None and quota > highest:
        raise TreeEditError(f"a quota is at most {highest}", f"use a number from 0 to {highest}")
    store.update_node(node_id, quota=quota)


def set_sample_status(store: Store, sample_ids: list[int], status: str) -> int:
    if status not in SAMPLE_STATUSES:
        raise TreeEditError(f"unknown sample status {status!r}", f"use one of {', '.join(SAMPLE_STATUSES)}")
    store.set_sample_status(sample_ids, status)
    return len(sample_ids)


def edit_sample(store: Store, sample_id: int, data: dict) -> None:
    project_id = store.sample_project_id(sample_id)
    if project_id is None:
        raise TreeEditError(f"sample {sample_id} does not exist", "reload the samples")
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
    norm_hash = fingerprint(data, spec.dedup_fields)
    with store.atomic():
        twin = store.sample_with_hash(project_id, norm_hash, except_id=sample_id)
        if twin is not None:
            raise TreeEditError(f"the edit makes this sample a duplicate of sample {twin}",
                                "change it further or reject one of them")
        store.update_sample_data(sample_id, data, norm_hash)
