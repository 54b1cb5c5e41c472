"""The Store's samples: writes on the generation path, curator edits, counts and streaming reads.

A mixin of ``Store`` (store.py), the one class callers use: SQL lives in store.py and its store_*.py modules
only."""

from __future__ import annotations

import json
from typing import Container, Iterator

from .errors import NotFoundError, TreeEditError
from .store_base import _loads, _sample_data, now


class SamplesMixin:
    """Samples. Owns the ``samples`` table (imports and routing write it too, see store_data); relies on the
    composed Store's ``db``, ``lock``, ``atomic``, ``query`` and ``_update_many``."""

    # ----------------------------------------------------------------- samples
    def add_samples(self, project_id: int, node_id: str, rows: list[dict], *, cap: int | None,
                    call_id: int | None, leaf_must_exist: bool = False, leaf_must_be_live: bool = False
                    ) -> tuple[int, int]:
        """Insert samples (dicts with data, drawn, norm_hash) up to ``cap`` live samples in the leaf.

        Returns (inserted, duplicates). Duplicates (same normalised hash anywhere in the project, or earlier in
        ``rows``) are skipped; the cap is checked inside the transaction, so concurrent calls never overshoot a
        quota. ``leaf_must_exist``: NotFoundError, nothing written, when the node is gone (deleted meanwhile);
        ``leaf_must_be_live`` also TreeEditError when it or an ancestor is pruned (read in the same statement).
        One transaction of five statements whatever the row count (a call's hot path, issue 10): the node and
        its live count, the duplicates, one multi-row insert, the project's last change.
        """
        if not rows:
            return 0, 0
        inserted = duplicates = 0
        hashes = [row["norm_hash"] for row in rows]
        stamp = now()
        with self.atomic():
            exists, pruned, live = self.db.conn.execute(
                "with recursive up(id, parent_id, status) as (select id, parent_id, status from nodes where id = ? "
                "union all select n.id, n.parent_id, n.status from nodes n join up on n.id = up.parent_id) "
                "select exists(select 1 from nodes where id = ?), (select count(*) from up where status = 'pruned'), "
                "(select count(*) from samples where node_id = ? and status not in ('rejected', 'excluded'))",
                [node_id, node_id, node_id]).fetchone()
            if (leaf_must_exist or leaf_must_be_live) and not exists:
                raise NotFoundError(f"node {node_id} does not exist", "")
            if leaf_must_be_live and pruned:
                raise TreeEditError(f"node {node_id} is pruned", "")
            seen = {r[0] for r in self.db.execute(
                f"select norm_hash from samples where project_id = ? and norm_hash in ({','.join('?' * len(hashes))})",
                [project_id, *hashes])}
            fresh, drawn_json = [], {}
            for row in rows:
                if cap is not None and live + len(fresh) >= cap:
                    break
                if row["norm_hash"] in seen:
                    duplicates += 1
                    continue
                seen.add(row["norm_hash"])
                drawn = row.get("drawn", [])
                if id(drawn) not in drawn_json:  # a call's rows share one list of drawn attributes
                    drawn_json[id(drawn)] = json.dumps(drawn, ensure_ascii=False)
                fresh.append((project_id, node_id, json.dumps(row["data"], ensure_ascii=False), drawn_json[id(drawn)],
                              row["norm_hash"], "generated", call_id, stamp, stamp))
            if fresh:
                self.db.conn.executemany(
                    "insert into samples (project_id, node_id, data, drawn, norm_hash, status, call_id, created_at, "
                    "updated_at) values (?, ?, ?, ?, ?, ?, ?, ?, ?)", fresh)
                inserted = len(fresh)
                self.db.conn.execute("update projects set updated_at = ? where id = ?", [stamp, project_id])
        return inserted, duplicates

    def set_sample_status(self, sample_ids: list[int], status: str) -> None:
        with self.atomic():
            for chunk in range(0, len(sample_ids), 500):
                ids = sample_ids[chunk: chunk + 500]
                self.db.execute(
                    f"update samples set status = ?, updated_at = ? where id in ({','.join('?' * len(ids))})",
                    [status, now(), *ids])
                self.db.execute(  # the projects' last change (an export prepared before is stale now)
                    "update projects set updated_at = ? where id in (select project_id from samples where id in "
                    f"({','.join('?' * len(ids))}))", [now(), *ids])

    def sample_project_id(self, sample_id: int) -> int | None:
        rows = self.query("select project_id from samples where id = ?", [sample_id])
        return rows[0]["project_id"] if rows else None

    def sample_with_hash(self, project_id: int, norm_hash: str, except_id: int | None = None) -> int | None:
        """The id of a sample of the project with this fingerprint (other than ``except_id``), or None."""
        rows = self.query("select id from samples where project_id = ? and norm_hash = ? and id != ? limit 1",
                          [project_id, norm_hash, -1 if except_id is None else except_id])
        return rows[0]["id"] if rows else None

    def update_sample_data(self, sample_id: int, data: dict, norm_hash: str) -> None:
        with self.atomic():
            self.db["samples"].update(sample_id, {"data": json.dumps(data, ensure_ascii=False),
                                                  "norm_hash": norm_hash, "updated_at": now()})
            self.db.execute("update projects set updated_at = ? where id = (select project_id from samples where id = ?)",
                            [now(), sample_id])  # the project's last change

    def update_samples(self, sample_ids: list[int], **values) -> None:
        """Set these columns on these samples (and the projects' last change)."""
        self._update_many("samples", sample_ids, values)

    def live_count(self, node_id: str) -> int:
        """Samples of a leaf that count towards its quota (all but rejected)."""
        with self.lock:
            return self.db.execute(
                "select count(*) from samples where node_id = ? and status not in ('rejected', 'excluded')", [node_id]
            ).fetchone()[0]

    def sample_counts(self, project_id: int) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for r in self.query(
            "select node_id, status, count(*) as n from samples where project_id = ? group by node_id, status",
            [project_id],
        ):
            out.setdefault(r["node_id"], {})[r["status"]] = r["n"]
        return out

    def samples(self, project_id: int, *, node_ids: list[str] | None = None,
                statuses: list[str] | None = None) -> list[dict]:
        sql = "select * from samples where project_id = ?"
        params: list = [project_id]
        if node_ids is not None:
            sql += f" and node_id in ({','.join('?' * len(node_ids))})"
            params += node_ids
        if statuses:
            sql += f" and status in ({','.join('?' * len(statuses))})"
            params += statuses
        rows = self.query(sql + " order by id", params)
        for r in rows:
            r["data"] = json.loads(r["data"])
            r["drawn"] = _loads(r["drawn"], [])
        return rows

    # --- reads for generation (issue 10)
    def recent_samples(self, node_id: str, k: int) -> list[dict]:
        """The data of a leaf's ``k`` newest samples, oldest first (a prompt's "do not repeat" list), read by
        the node_id index backwards: never the whole leaf. Read-only: a sample's dict is decoded once and shared
        by the calls that read it again (a leaf's recent samples come back call after call)."""
        with self.lock:
            rows = self.db.execute("select data from samples where node_id = ? order by id desc limit ?",
                                   [node_id, k]).fetchall()
        return [_sample_data(r[0]) for r in reversed(rows)]

    def sample_data(self, project_id: int, *, statuses: list[str], limit: int) -> list[dict]:
        """The data of the project's first ``limit`` samples with these statuses (a plan's size estimate)."""
        marks = ",".join("?" * len(statuses))
        rows = self.query(f"select data from samples where project_id = ? and status in ({marks}) order by id limit ?",
                          [project_id, *statuses, limit])
        return [json.loads(r["data"]) for r in rows]

    # --- samples by node, for edits (issue 8, H1)
    def sample_ids_on(self, node_id: str) -> list[int]:
        """The ids of the samples sitting on this very node."""
        return [r["id"] for r in self.query("select id from samples where node_id = ? order by id", [node_id])]

    def samples_on_count(self, node_ids: list[str]) -> int:
        """How many samples sit on these nodes (every status)."""
        total = 0
        for start in range(0, len(node_ids), 500):
            chunk = node_ids[start:start + 500]
            with self.lock:
                total += self.db.execute(f"select count(*) from samples where node_id in ({','.join('?' * len(chunk))})",
                                         chunk).fetchone()[0]
        return total

    def stranded_counts(self, project_id: int) -> dict[str, int]:
        """Samples sitting on a node that has children (a leaf expanded after it got samples), by node."""
        rows = self.query("select s.node_id, count(*) as n from samples s where s.project_id = ? and exists "
                          "(select 1 from nodes c where c.parent_id = s.node_id) group by s.node_id", [project_id])
        return {r["node_id"]: r["n"] for r in rows}

    # --- streaming reads for export (issue 10)
    def iter_samples(self, project_id: int, *, statuses: list[str] | None = None,
                     nodes: Container[str] | None = None, chunk: int = 5000) -> Iterator[dict]:
        """The project's samples (id, node_id, data, drawn, status, provenance, edited, reason, note) in id order,
        read ``chunk`` rows at a time by keyset (``id > last``), so memory stays bounded at any size. The lock is held per chunk only:
        rows added while the generator runs may or may not appear, none appears twice or is skipped.
        ``nodes``: only samples of these nodes (checked before a row is decoded).

        ``+project_id`` keeps SQLite on the rowid range (the only index starting with project_id is
        (project_id, norm_hash), which would sort the whole project for every chunk)."""
        sql = ("select id, node_id, data, drawn, status, provenance, edited, reason, note from samples "
               "where +project_id = ? and id > ?")
        if statuses:
            sql += f" and status in ({','.join('?' * len(statuses))})"
        sql += " order by id limit ?"
        last = -(2**63)
        while True:
            with self.lock:
                rows = self.db.execute(sql, [project_id, last, *(statuses or []), chunk]).fetchall()
            for sample_id, node_id, data, drawn, status, provenance, edited, reason, note in rows:
                if nodes is not None and node_id not in nodes:
                    continue
                yield {"id": sample_id, "node_id": node_id, "data": json.loads(data),
                       "drawn": json.loads(drawn) if drawn and drawn != "[]" else [], "status": status,
                       "provenance": provenance or "generated", "edited": bool(edited), "reason": reason,
                       "note": note}
            if len(rows) < chunk:
                return
            last = rows[-1][0]

    def export_stamp(self, project_id: int) -> tuple:
        """A stamp that changes whenever the project's export may have, in three index lookups: the project's
        last change (every write to it, its nodes and its samples bumps it), its node count (a deletion) and
        the newest sample id in the file (a sample written without going through the Store)."""
        with self.lock:
            project = self.db.execute("select updated_at from projects where id = ?", [project_id]).fetchone()
            nodes = self.db.execute("select count(*) from nodes where project_id = ?", [project_id]).fetchone()
            newest = self.db.execute("select max(id) from samples").fetchone()
        return project[0] if project else None, nodes[0], newest[0]

    def sample_total(self, project_id: int) -> int:
        """How many samples the project has (counted on an index, not the table)."""
        with self.lock:
            return self.db.execute("select count(*) from samples where project_id = ?", [project_id]).fetchone()[0]
