"""The Store's tree: nodes, reads along the tree, the Tree page's stamp, and split proposals.

A mixin of ``Store`` (store.py), the one class callers use: SQL lives in store.py and its store_*.py modules
only."""

from __future__ import annotations

import json

from .errors import NotFoundError
from .store_base import new_id, node_from_row, now
from .tree import Node, Tree


class TreeMixin:
    """Nodes and split proposals. Owns the ``nodes`` and ``proposals`` tables; relies on the composed Store's
    ``db``, ``lock``, ``atomic``, ``query``, ``touch``, ``_update_many`` and ``snapshot``."""

    # ----------------------------------------------------------------- nodes
    def tree(self, project_id: int) -> Tree:
        rows = self.query("select * from nodes where project_id = ?", [project_id])
        return Tree([node_from_row(r) for r in rows])

    def node(self, node_id: str) -> Node:
        rows = self.query("select * from nodes where id = ?", [node_id])
        if not rows:
            raise NotFoundError(f"node {node_id} does not exist", "it may have been deleted; reload the tree")
        return node_from_row(rows[0])

    def node_ids(self) -> set[str]:
        """Every node id in the file (ids are unique across projects)."""
        return {r["id"] for r in self.query("select id from nodes")}

    def rename_node_id(self, old: str, new: str) -> None:
        """Give a node without children or samples another id (an import keeps the file's ids)."""
        with self.atomic():
            self.db.execute("update nodes set id = ? where id = ?", [new, old])

    def update_node(self, node_id: str, **values) -> None:
        if "values" in values:
            values["value_list"] = json.dumps(values.pop("values"))
        if "pivots" in values:
            values["pivots"] = json.dumps(values["pivots"])
        values["updated_at"] = now()
        with self.atomic():
            self.db["nodes"].update(node_id, values)
            self.db.execute("update projects set updated_at = ? where id = (select project_id from nodes where id = ?)",
                            [values["updated_at"], node_id])

    def add_children(self, parent: Node, children: list[dict], *, provenance: str) -> list[str]:
        """Insert children (dicts with value, or infinite + values); returns their ids."""
        with self.atomic():
            start = self.query(
                "select coalesce(max(position), -1) + 1 as p from nodes where parent_id = ?", [parent.id]
            )[0]["p"]
            rows = []
            for i, child in enumerate(children):
                rows.append(
                    {
                        "id": child.get("id") or new_id(),
                        "project_id": parent.project_id,
                        "parent_id": parent.id,
                        "depth": parent.depth + 1,
                        "position": start + i,
                        "value": child.get("value"),
                        "infinite": int(bool(child.get("infinite"))),
                        "value_list": json.dumps(child.get("values", [])),
                        "status": child.get("status", "proposed" if provenance == "llm" else "edited"),
                        "provenance": provenance,
                        "locked": 0,
                        "created_at": now(),
                        "updated_at": now(),
                    }
                )
            self.db["nodes"].insert_all(rows)
            self.touch(parent.project_id)
        return [r["id"] for r in rows]

    def delete_nodes(self, node_ids: list[str]) -> None:
        with self.atomic():
            for chunk in range(0, len(node_ids), 500):
                ids = node_ids[chunk : chunk + 500]
                marks = ",".join("?" * len(ids))
                self.db.execute(f"delete from samples where node_id in ({marks})", ids)
                self.db.execute(f"delete from nodes where id in ({marks})", ids)

    def update_nodes(self, node_ids: list[str], **values) -> None:
        """Set these columns on many nodes at once, and the project's last change."""
        self._update_many("nodes", node_ids, values)

    # --- tree reads for the scheduler and for edits (issue 10, issue 8 H1)
    def node_path(self, node_id: str) -> list[Node]:
        """The nodes from the root down to ``node_id`` (inclusive), by one recursive query up ``parent_id``:
        O(depth) rows whatever the tree's size. Raises NotFoundError when the node is gone."""
        rows = self.query(
            "with recursive up as (select nodes.*, 0 as hops from nodes where id = ? "
            "union all select nodes.*, up.hops + 1 from nodes join up on nodes.id = up.parent_id) "
            "select * from up order by hops desc", [node_id])
        if not rows:
            raise NotFoundError(f"node {node_id} does not exist", "it may have been deleted; reload the tree")
        return [node_from_row(r) for r in rows]

    def has_children(self, node_id: str) -> bool:
        with self.lock:
            return self.db.execute("select exists(select 1 from nodes where parent_id = ?)",
                                   [node_id]).fetchone()[0] == 1

    def children(self, node_id: str) -> list[Node]:
        """A node's children in their order (the parent_id index: never the whole tree)."""
        return [node_from_row(r) for r in self.query("select * from nodes where parent_id = ? order by position, id",
                                                      [node_id])]

    def nodes_by_id(self, node_ids: list[str]) -> list[Node]:
        """These nodes (those that exist), in no particular order."""
        return [node_from_row(r) for r in self.snapshot(node_ids=node_ids)[0].values()]

    def subtree_ids(self, node_ids: list[str]) -> list[str]:
        """These nodes and every node below them (ids, each once)."""
        out: list[str] = []
        for start in range(0, len(node_ids), 500):
            chunk = node_ids[start:start + 500]
            out += [r["id"] for r in self.query(
                f"with recursive down(id) as (select id from nodes where id in ({','.join('?' * len(chunk))}) "
                "union select nodes.id from nodes join down on nodes.parent_id = down.id) select id from down", chunk)]
        return list(dict.fromkeys(out))

    # --- the Tree page's change stamp (issue 8, H2)
    def tree_stamp(self, project_id: int) -> tuple:
        """A cheap fingerprint of a project's nodes and samples: the project's last change (every sample write
        of the Store touches it), its newest history event and how many are undone (a change in the same
        millisecond as the last one), the count, newest change and row-id sum of its nodes, the count and id
        sum of its samples (rows deleted or restored with their nodes). A page may keep its view of the tree
        while the stamp is the same. Reads indexes and the small node rows only, never the sample rows."""
        row = self.query(
            "select (select updated_at from projects where id = :p) as pt, "
            "(select max(id) from events where project_id = :p) as e, "
            "(select total(undone) from events where project_id = :p) as eu, "
            "(select count(*) from nodes where project_id = :p) as n, "
            "(select max(updated_at) from nodes where project_id = :p) as nt, "
            "(select total(rowid) from nodes where project_id = :p) as nr, "
            "(select count(*) from samples where project_id = :p) as s, "
            "(select total(id) from samples where project_id = :p) as sr", {"p": project_id})[0]
        return tuple(row.values())

    # --- split proposals (issue 8, H1: called only by proposals.py)
    def add_proposal(self, row: dict) -> int:
        row = {**row, "created_at": now(), "updated_at": now()}
        with self.atomic():
            return self.db.execute(f"insert into proposals ({', '.join(row)}) values ({', '.join('?' * len(row))})",
                                   list(row.values())).lastrowid

    def proposal_rows(self, node_id: str, states: tuple[str, ...] = ("new",)) -> list[dict]:
        """A node's stored proposals in these states, newest first."""
        return self.query(f"select * from proposals where node_id = ? and state in ({','.join('?' * len(states))}) "
                          "order by id desc", [node_id, *states])

    def proposal_row(self, proposal_id: int) -> dict | None:
        rows = self.query("select * from proposals where id = ?", [proposal_id])
        return rows[0] if rows else None

    def set_proposal_state(self, proposal_id: int, state: str) -> None:
        with self.atomic():
            self.db.execute("update proposals set state = ?, updated_at = ? where id = ?", [state, now(), proposal_id])
