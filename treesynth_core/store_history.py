"""The Store's history: full-row snapshots, writing rows back, and the event log behind undo/redo.

A mixin of ``Store`` (store.py), the one class callers use: SQL lives in store.py and its store_*.py modules
only."""

from __future__ import annotations


class HistoryMixin:
    """History (issue 8, H1: called only by edits.py / history.py / proposals.py). Owns the ``events`` table and
    reads and writes whole ``nodes`` and ``samples`` rows; relies on the composed Store's ``db``, ``lock``,
    ``atomic`` and ``query``."""

    # --- history, review (issue 8, H1: called only by edits.py / history.py / proposals.py)
    def snapshot(self, *, node_ids=(), parents=(), sample_ids=(), sample_nodes=()) -> tuple[dict, dict]:
        """Full rows (every column, as stored) of the nodes with these ids or these parents, and of the samples
        with these ids or on these nodes: ``({node_id: row}, {sample_id: row})``."""
        nodes: dict[str, dict] = {}
        samples: dict[int, dict] = {}
        with self.lock:
            for table, column, keys, out in (("nodes", "id", list(node_ids), nodes),
                                             ("nodes", "parent_id", list(parents), nodes),
                                             ("samples", "id", list(sample_ids), samples),
                                             ("samples", "node_id", list(sample_nodes), samples)):
                for start in range(0, len(keys), 500):
                    chunk = keys[start:start + 500]
                    cursor = self.db.execute(f"select * from {table} where {column} in ({','.join('?' * len(chunk))})",
                                             chunk)
                    names = [d[0] for d in cursor.description]
                    for row in cursor.fetchall():
                        out[row[0]] = dict(zip(names, row))
        return nodes, samples

    def put_rows(self, nodes: dict[str, dict | None], samples: dict[int, dict | None]) -> None:
        """Make these rows exactly so: None deletes the row, a dict writes it whole (updated, or inserted when
        missing). One transaction; samples deleted before nodes, nodes written before samples."""
        with self.atomic():
            for ids, table in (([k for k, v in samples.items() if v is None], "samples"),
                               ([k for k, v in nodes.items() if v is None], "nodes")):
                for start in range(0, len(ids), 500):
                    chunk = ids[start:start + 500]
                    self.db.execute(f"delete from {table} where id in ({','.join('?' * len(chunk))})", chunk)
            for rows, table in (([v for v in nodes.values() if v is not None], "nodes"),
                                ([v for v in samples.values() if v is not None], "samples")):
                for row in rows:
                    columns = [c for c in row if c != "id"]
                    cursor = self.db.execute(f"update {table} set {', '.join(f'[{c}] = ?' for c in columns)} "
                                             "where id = ?", [row[c] for c in columns] + [row["id"]])
                    if cursor.rowcount == 0:
                        self.db.execute(f"insert into {table} ({', '.join(f'[{c}]' for c in row)}) values "
                                        f"({', '.join('?' * len(row))})", list(row.values()))

    def add_event(self, row: dict) -> int:
        with self.atomic():
            return self.db.execute(f"insert into events ({', '.join(row)}) values ({', '.join('?' * len(row))})",
                                   list(row.values())).lastrowid

    def event_rows(self, project_id: int, *, node_id: str | None = None, limit: int = 50,
                   payloads: bool = True) -> list[dict]:
        """The project's events (of one node, when given), newest first."""
        columns = "*" if payloads else ("id, project_id, node_id, actor, action, summary, undone, undoable, created_at, "
                                        "null as before, null as after")
        sql = f"select {columns} from events where project_id = ?" + (" and node_id = ?" if node_id else "")
        return self.query(sql + " order by id desc limit ?", [project_id] + ([node_id] if node_id else []) + [limit])

    def event_row(self, event_id: int) -> dict | None:
        rows = self.query("select * from events where id = ?", [event_id])
        return rows[0] if rows else None

    def undo_candidate(self, project_id: int) -> dict | None:
        """The newest event not undone, when it can be undone (an import is a barrier)."""
        rows = self.query("select * from events where project_id = ? and undone = 0 order by id desc limit 1",
                          [project_id])
        return rows[0] if rows and rows[0]["undoable"] else None

    def redo_candidate(self, project_id: int) -> dict | None:
        """The oldest undone event (the last one undone)."""
        rows = self.query("select * from events where project_id = ? and undone = 1 order by id limit 1",
                          [project_id])
        return rows[0] if rows else None

    def mark_event(self, event_id: int, undone: bool) -> None:
        with self.atomic():
            self.db.execute("update events set undone = ? where id = ?", [int(undone), event_id])

    def drop_undone_events(self, project_id: int) -> int:
        """A new change clears the redo stack."""
        with self.atomic():
            return self.db.execute("delete from events where project_id = ? and undone = 1", [project_id]).rowcount

    # --- history: undo/redo availability (bug-fix round, F2)
    def newest_live_event(self, project_id: int) -> dict | None:
        """The newest event not undone, without its payloads: what undo would take, or the barrier it stops at."""
        rows = self.query("select id, action, summary, undoable from events where project_id = ? and undone = 0 "
                          "order by id desc limit 1", [project_id])
        return rows[0] if rows else None

    def has_undone_event(self, project_id: int) -> bool:
        """Whether redo has something to apply again."""
        return bool(self.query("select 1 as x from events where project_id = ? and undone = 1 limit 1",
                               [project_id]))
