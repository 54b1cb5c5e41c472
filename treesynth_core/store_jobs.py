"""The Store's jobs: rows of the background runs (their rules live in jobs.py).

A mixin of ``Store`` (store.py), the one class callers use: SQL lives in store.py and its store_*.py modules
only."""

from __future__ import annotations


class JobsMixin:
    """Jobs. Owns the ``jobs`` table (and reads ``calls`` for a job's progress line); relies on the composed
    Store's ``db``, ``atomic`` and ``query``."""

    # ----------------------------------------------------------------- jobs (their rules live in jobs.py)
    def insert_job(self, row: dict) -> int:
        with self.atomic():
            table = self.db["jobs"]
            table.insert(row)
            return table.last_pk

    def job_row(self, job_id: int) -> dict | None:
        rows = self.query("select * from jobs where id = ?", [job_id])
        return rows[0] if rows else None

    def update_job(self, job_id: int, **values) -> None:
        with self.atomic():
            self.db["jobs"].update(job_id, values)

    def job_ids(self, project_id: int, *, running_only: bool = False, limit: int | None = None) -> list[int]:
        """The project's job ids, newest first."""
        sql = "select id from jobs where project_id = ?" + (" and status = 'running'" if running_only else "")
        sql += " order by id desc" + (" limit ?" if limit is not None else "")
        params = [project_id] + ([limit] if limit is not None else [])
        return [r["id"] for r in self.query(sql, params)]

    # --- jobs you can watch (issue 8, H3)
    def job_usage(self, job_id: int) -> dict:
        """The calls a job made so far (every attempt) and their tokens, for its progress line."""
        return self.query(
            "select count(*) as calls, coalesce(sum(prompt_tokens), 0) as prompt_tokens, "
            "coalesce(sum(completion_tokens), 0) as completion_tokens, coalesce(sum(error is not null), 0) as "
            "failed_calls from calls where job_id = ?", [job_id])[0]
