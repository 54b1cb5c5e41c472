"""The Store's bring-your-own-data tables: imports, routing decisions, balance reads and seed examples.

A mixin of ``Store`` (store.py), the one class callers use: SQL lives in store.py and its store_*.py modules
only."""

from __future__ import annotations

import json

from .errors import NotFoundError
from .store_base import now


class DataMixin:
    """Bring your own data (issue 11). Owns the ``imports``, ``routes`` and ``seeds`` tables, and writes imported
    and routed rows of ``samples``; relies on the composed Store's ``db``, ``lock``, ``atomic``, ``query`` and
    ``touch``."""

    # --- imports (issue 11, H5)
    def find_import(self, project_id: int, fingerprint: str) -> dict | None:
        """The newest import of this project with this file fingerprint (size, first MiB, mapping), or None."""
        rows = self.query("select * from imports where project_id = ? and fingerprint = ? order by id desc limit 1",
                          [project_id, fingerprint])
        return rows[0] if rows else None

    def create_import(self, row: dict) -> int:
        with self.atomic():
            table = self.db["imports"]
            table.insert({**row, "created_at": now(), "updated_at": now()})
            return table.last_pk

    def import_row(self, import_id: int) -> dict:
        rows = self.query("select * from imports where id = ?", [import_id])
        if not rows:
            raise NotFoundError(f"import {import_id} does not exist", "the Data page lists the project's imports")
        return rows[0]

    def imports(self, project_id: int) -> list[dict]:
        """The project's imports, newest first."""
        return self.query("select * from imports where project_id = ? order by id desc", [project_id])

    def update_import(self, import_id: int, **values) -> None:
        with self.atomic():
            self.db["imports"].update(import_id, {**values, "updated_at": now()})

    def import_chunk(self, import_id: int, project_id: int, node_id: str, rows: list[dict], progress: dict
                     ) -> tuple[int, int]:
        """Commit one chunk of an import in one transaction: its rows (dicts with data, norm_hash, line) as
        samples (provenance ``imported``, status ``generated``: to review) at ``node_id``, rows whose fingerprint
        the project already holds (or an earlier row of the chunk) skipped as duplicates, and the import's
        ``progress`` (its columns: next_line, rows, skipped, problems...; imported and duplicates are added here).
        A killed import resumes after ``next_line``: a row is never half-imported nor imported twice."""
        stamp = now()
        with self.atomic():
            hashes = [r["norm_hash"] for r in rows]
            seen: set[str] = set()
            for start in range(0, len(hashes), 500):
                chunk = hashes[start:start + 500]
                seen.update(r[0] for r in self.db.execute(
                    f"select norm_hash from samples where project_id = ? and norm_hash in ({','.join('?' * len(chunk))})",
                    [project_id, *chunk]))
            fresh = []
            for row in rows:
                if row["norm_hash"] in seen:
                    continue
                seen.add(row["norm_hash"])
                fresh.append((project_id, node_id, json.dumps(row["data"], ensure_ascii=False), "[]", row["norm_hash"],
                              "generated", "imported", import_id, row["line"], stamp, stamp))
            if fresh:
                self.db.conn.executemany(
                    "insert into samples (project_id, node_id, data, drawn, norm_hash, status, provenance, import_id, "
                    "source_line, created_at, updated_at) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", fresh)
                self.touch(project_id)
            self.db.execute("update imports set imported = imported + ?, duplicates = duplicates + ?, "
                            + "".join(f"{k} = ?, " for k in progress) + "updated_at = ? where id = ?",
                            [len(fresh), len(rows) - len(fresh), *progress.values(), stamp, import_id])
        return len(fresh), len(rows) - len(fresh)

    # --- routing (issue 11, H5)
    def unrouted_samples(self, project_id: int, node_ids: list[str], *, sample_ids: list[int] | None = None,
                         limit: int | None = None) -> list[dict]:
        """Samples (id, node_id, data) sitting at one of ``node_ids`` with no routing decision there yet, live
        ones only (not rejected or excluded), in id order; only these ``sample_ids`` when given."""
        out: list[dict] = []
        for start in range(0, len(node_ids), 500):
            chunk = node_ids[start:start + 500]
            sql = (f"select s.id, s.node_id, s.data from samples s where s.project_id = ? and s.node_id in "
                   f"({','.join('?' * len(chunk))}) and s.status not in ('rejected', 'excluded') and not exists "
                   "(select 1 from routes r where r.sample_id = s.id and r.node_id = s.node_id)")
            with self.lock:
                rows = self.db.execute(sql + " order by s.id", [project_id, *chunk]).fetchall()
            out += [{"id": i, "node_id": n, "data": json.loads(d)} for i, n, d in rows]
        if sample_ids is not None:
            wanted = set(sample_ids)
            out = [r for r in out if r["id"] in wanted]
        out.sort(key=lambda r: r["id"])
        return out[:limit] if limit is not None else out

    def record_routes(self, project_id: int, node_id: str, decisions: list[tuple[int, str | None, str]],
                      call_id: int | None) -> int:
        """Store a routing call's decisions at ``node_id`` in one transaction: (sample id, child id or None for
        "none of these", the model's answer). A sample moves to its child only while it is still at ``node_id``
        and has no decision there (another run may have routed it meanwhile): no row is routed twice. Returns
        the decisions written."""
        stamp = now()
        written = 0
        with self.atomic():
            for sample_id, child_id, answer in decisions:
                cursor = self.db.conn.execute(
                    "insert or ignore into routes (sample_id, node_id, project_id, child_id, answer, call_id, "
                    "created_at) select ?, ?, ?, ?, ?, ?, ? where exists (select 1 from samples where id = ? and "
                    "node_id = ?)", [sample_id, node_id, project_id, child_id, answer, call_id, stamp, sample_id,
                                     node_id])
                if cursor.rowcount != 1:
                    continue
                written += 1
                if child_id is not None:
                    self.db.conn.execute("update samples set node_id = ?, updated_at = ? where id = ? and node_id = ?",
                                         [child_id, stamp, sample_id, node_id])
            if written:
                self.touch(project_id)
        return written

    def route_counts(self, project_id: int) -> dict[str, dict[str, int]]:
        """Per node where rows were classified: ``routed`` (sent to a child) and ``none`` (none of these)."""
        out: dict[str, dict[str, int]] = {}
        for r in self.query("select node_id, child_id is null as none, count(*) as n from routes where project_id = ? "
                            "group by node_id, child_id is null", [project_id]):
            out.setdefault(r["node_id"], {"routed": 0, "none": 0})["none" if r["none"] else "routed"] += r["n"]
        return out

    def none_rows(self, project_id: int, node_id: str | None = None, limit: int = 500) -> list[dict]:
        """The rows answered "none of these" (at ``node_id``, or anywhere): sample id, node, answer, data."""
        sql = ("select r.sample_id, r.node_id, r.answer, s.data, s.status from routes r join samples s on "
               "s.id = r.sample_id where r.project_id = ? and r.child_id is null")
        params: list = [project_id]
        if node_id is not None:
            sql += " and r.node_id = ?"
            params.append(node_id)
        rows = self.query(sql + " order by r.sample_id limit ?", params + [limit])
        for r in rows:
            r["data"] = json.loads(r["data"])
        return rows

    def change_status_from(self, sample_ids: list[int], old: str, new: str) -> int:
        """Set ``new`` on those of these samples whose status is still ``old`` (a curator's change made meanwhile,
        e.g. an accept during a balance, is never overwritten). Returns how many changed."""
        changed, stamp = 0, now()
        with self.atomic():
            for start in range(0, len(sample_ids), 500):
                chunk = sample_ids[start:start + 500]
                changed += self.db.execute(
                    f"update samples set status = ?, updated_at = ? where status = ? and id in "
                    f"({','.join('?' * len(chunk))})", [new, stamp, old, *chunk]).rowcount
            if changed:
                self.db.execute("update projects set updated_at = ? where id = (select project_id from samples "
                                "where id = ?)", [stamp, sample_ids[0]])
        return changed

    def clear_none_routes(self, project_id: int, node_ids: list[str]) -> int:
        """Forget the "none of these" decisions at these nodes (their split changed: ask again). Returns how many."""
        removed = 0
        with self.atomic():
            for start in range(0, len(node_ids), 500):
                chunk = node_ids[start:start + 500]
                removed += self.db.execute(
                    f"delete from routes where project_id = ? and child_id is null and node_id in "
                    f"({','.join('?' * len(chunk))})", [project_id, *chunk]).rowcount
        return removed

    def route_total(self, project_id: int) -> int:
        with self.lock:
            return self.db.execute("select count(*) from routes where project_id = ?", [project_id]).fetchone()[0]

    # --- balance (issue 11, H5)
    def provenance_counts(self, project_id: int) -> dict[str, dict[str, int]]:
        """node id -> counts of live samples by provenance (``imported``, ``generated``) and of ``excluded`` ones."""
        out: dict[str, dict[str, int]] = {}
        for r in self.query("select node_id, provenance, status, count(*) as n from samples where project_id = ? "
                            "and status != 'rejected' group by node_id, provenance, status", [project_id]):
            key = "excluded" if r["status"] == "excluded" else r["provenance"]
            counts = out.setdefault(r["node_id"], {"imported": 0, "generated": 0, "excluded": 0})
            counts[key] = counts.get(key, 0) + r["n"]
        return out

    def balance_candidates(self, node_id: str) -> list[dict]:
        """A leaf's samples that balancing may keep or exclude: id, status, provenance and data, in id order
        (rejected ones are out of play)."""
        rows = self.query("select id, status, provenance, data from samples where node_id = ? and status != 'rejected' "
                          "order by id", [node_id])
        for r in rows:
            r["data"] = json.loads(r["data"])
        return rows

    # --- imported rows as examples and pivots (issue 11, H6 and part 2, H9)
    def imported_ids_on(self, node_id: str) -> list[int]:
        """The ids of the imported samples sitting on this very node and still in use (not rejected or excluded),
        in id order: what a build draws a node's pivots from (partition.data_pivots)."""
        return [r["id"] for r in self.query(
            "select id from samples where node_id = ? and provenance = 'imported' "
            "and status not in ('rejected', 'excluded') order by id", [node_id])]

    def imported_examples(self, node_id: str, limit: int) -> list[dict]:
        """The data of a node's first imported samples still in use (not rejected or excluded), oldest first."""
        return [json.loads(r["data"]) for r in self.query(
            "select data from samples where node_id = ? and provenance = 'imported' "
            "and status not in ('rejected', 'excluded') order by id limit ?", [node_id, limit])]

    # --- seed examples (issue 11, H6): their rules live in seeds.py
    def add_seed_rows(self, project_id: int, node_id: str | None, rows: list[dict], source: str) -> list[int]:
        """Insert seed examples (dicts of field texts) in one transaction; returns their ids."""
        with self.atomic():
            return [self.db.execute("insert into seeds (project_id, node_id, data, source, created_at) "
                                    "values (?, ?, ?, ?, ?)",
                                    [project_id, node_id, json.dumps(r, ensure_ascii=False), source, now()]).lastrowid
                    for r in rows]

    def seed_rows(self, project_id: int, node_ids: list[str | None] | None = None) -> list[dict]:
        """Seeds of a project in id order (all of them, or those on these nodes; None in the list: the
        task-wide ones), with ``data`` decoded."""
        sql, params = "select * from seeds where project_id = ?", [project_id]
        if node_ids is not None:
            named = [n for n in node_ids if n is not None]
            clauses = ([f"node_id in ({','.join('?' * len(named))})"] if named else []) + (
                ["node_id is null"] if None in node_ids else [])
            if not clauses:
                return []
            sql += " and (" + " or ".join(clauses) + ")"
            params += named
        return [dict(r, data=json.loads(r["data"])) for r in self.query(sql + " order by id", params)]

    def delete_seed_rows(self, project_id: int, seed_ids: list[int]) -> int:
        with self.atomic():
            return sum(self.db.execute("delete from seeds where project_id = ? and id = ?", [project_id, i]).rowcount
                       for i in seed_ids)
