"""The Store's quality data: cached embeddings, naive baselines, judge verdicts, duplicates per call.

A mixin of ``Store`` (store.py), the one class callers use: SQL lives in store.py and its store_*.py modules
only."""

from __future__ import annotations

from .store_base import now


class QualityMixin:
    """Quality (issue 9). Owns the ``embeddings``, ``baselines`` and ``verdicts`` tables; relies on the
    composed Store's ``db``, ``lock``, ``atomic`` and ``query``."""

    # --- embeddings (issue 9)
    def embedding_hashes(self, project_id: int, model: str) -> dict[int, str]:
        """The text hash of every cached vector of the project under ``model``, by sample id."""
        with self.lock:
            return dict(self.db.execute("select sample_id, text_hash from embeddings where project_id = ? and "
                                        "model = ?", [project_id, model]).fetchall())

    def save_embeddings(self, project_id: int, model: str, rows: list[tuple[int, str, bytes]], dim: int) -> int:
        """Store ``(sample_id, text_hash, float32 vector bytes)`` rows in one transaction, replacing a sample's
        older vector under ``model``. A sample deleted meanwhile gets no row. Returns the rows written."""
        stamp = now()
        with self.atomic():
            before = self.db.conn.total_changes
            self.db.conn.executemany(
                "insert or replace into embeddings (sample_id, model, project_id, text_hash, dim, vector, created_at) "
                "select ?, ?, ?, ?, ?, ?, ? where exists (select 1 from samples where id = ? and project_id = ?)",
                [(sid, model, project_id, h, dim, vec, stamp, sid, project_id) for sid, h, vec in rows])
            return self.db.conn.total_changes - before

    def embedding_vectors(self, project_id: int, model: str) -> dict[int, tuple[str, bytes]]:
        """``sample_id -> (text_hash, vector bytes)`` for the project's cached vectors under ``model``."""
        with self.lock:
            rows = self.db.execute("select sample_id, text_hash, vector from embeddings where project_id = ? and "
                                   "model = ?", [project_id, model]).fetchall()
        return {sid: (h, vec) for sid, h, vec in rows}

    def embedding_count(self, project_id: int, model: str | None = None) -> int:
        sql = "select count(*) from embeddings where project_id = ?" + (" and model = ?" if model else "")
        with self.lock:
            return self.db.execute(sql, [project_id] + ([model] if model else [])).fetchone()[0]

    # --- naive baselines (issue 9)
    def link_baseline(self, project_id: int, baseline_id: int) -> None:
        """Record ``baseline_id`` as the naive baseline of ``project_id`` (one per project)."""
        with self.atomic():
            self.db.execute("insert into baselines (project_id, baseline_id, created_at) values (?, ?, ?)",
                            [project_id, baseline_id, now()])

    def baseline_id(self, project_id: int) -> int | None:
        """The naive baseline project of ``project_id``, or None."""
        rows = self.query("select baseline_id from baselines where project_id = ?", [project_id])
        return rows[0]["baseline_id"] if rows else None

    def baseline_source(self, baseline_id: int) -> int | None:
        """The tree project whose naive baseline ``baseline_id`` is, or None when it is not a baseline."""
        rows = self.query("select project_id from baselines where baseline_id = ?", [baseline_id])
        return rows[0]["project_id"] if rows else None

    # --- judge verdicts (issue 9)
    def save_verdicts(self, call_id: int | None, verdicts: dict[int, list[tuple[str, str, bool, str]]]) -> int:
        """Store a judge call's verdicts in one transaction: for each sample id, its (dimension, value, fits,
        reason) per attribute in order, replacing the sample's earlier verdicts. A sample deleted meanwhile gets
        no row. Returns the samples written. Nests in a caller's transaction (the judge rejects misfits in it)."""
        stamp = now()
        ids = list(verdicts)
        with self.atomic():
            alive: set[int] = set()
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                marks = ",".join("?" * len(chunk))
                self.db.execute(f"delete from verdicts where sample_id in ({marks})", chunk)
                alive.update(r[0] for r in self.db.execute(f"select id from samples where id in ({marks})", chunk))
            self.db.conn.executemany(
                "insert into verdicts (sample_id, position, dimension, value, fits, reason, call_id, created_at) "
                "values (?, ?, ?, ?, ?, ?, ?, ?)",
                [(sid, pos, dim, value, int(bool(fits)), reason, call_id, stamp)
                 for sid, rows in verdicts.items() if sid in alive
                 for pos, (dim, value, fits, reason) in enumerate(rows)])
        return len(alive)

    def verdicts(self, project_id: int, *, node_ids: list[str] | None = None) -> dict[int, list[dict]]:
        """The judge's verdicts of the project's samples (of these leaves only, when given): sample id -> its
        rows (position, dimension, value, fits, reason, call_id) in position order."""
        sql = ("select v.sample_id, v.position, v.dimension, v.value, v.fits, v.reason, v.call_id from verdicts v "
               "join samples s on s.id = v.sample_id where s.project_id = ?")
        chunks = [None] if node_ids is None else [node_ids[i:i + 500] for i in range(0, len(node_ids), 500)]
        out: dict[int, list[dict]] = {}
        for chunk in chunks:
            params: list = [project_id]
            where = sql
            if chunk is not None:
                where += f" and s.node_id in ({','.join('?' * len(chunk))})"
                params += chunk
            with self.lock:
                rows = self.db.execute(where + " order by v.sample_id, v.position", params).fetchall()
            for sid, position, dimension, value, fits, reason, call_id in rows:
                out.setdefault(sid, []).append({"position": position, "dimension": dimension, "value": value,
                                                "fits": bool(fits), "reason": reason, "call_id": call_id})
        return out

    # --- duplicates per call (issue 9)
    def sample_call_notes(self, project_id: int, since: str, until: str | None = None) -> list[dict]:
        """The project's successful generation calls logged from ``since`` to ``until`` (timestamps, e.g. a job's
        started_at and finished_at; None: until now): each call's id, its ``dropped`` note and how many samples
        it stored (``generate.duplicate_rate`` turns them into the duplicate rate per call)."""
        calls = self.query(
            "select id, dropped from calls where project_id = ? and purpose = 'samples' and error is null "
            "and coalesce(finish_reason, '') != 'hedged' "  # a hedge's abandoned twin returned nothing (issue 10)
            "and created_at >= ?" + (" and created_at <= ?" if until else "") + " order by id",
            [project_id, since] + ([until] if until else []))
        if not calls:
            return []
        stored = {r["call_id"]: r["n"] for r in self.query(
            "select call_id, count(*) as n from samples where project_id = ? and call_id between ? and ? "
            "group by call_id", [project_id, calls[0]["id"], calls[-1]["id"]])}
        return [{"id": c["id"], "dropped": c["dropped"], "inserted": stored.get(c["id"], 0)} for c in calls]
