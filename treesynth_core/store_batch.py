"""The Store's batch files: export rounds, their request lines and what their results came to.

A mixin of ``Store`` (store.py), the one class callers use: SQL lives in store.py and its store_*.py modules
only."""

from __future__ import annotations

from .errors import ConfigError, NotFoundError
from .store_base import now


class BatchMixin:
    """Batch files (issue 10). Owns the ``batches`` and ``batch_requests`` tables; relies on the composed
    Store's ``db``, ``atomic`` and ``query``."""

    # --- batch files (issue 10)
    def next_batch_round(self, project_id: int) -> int:
        """The round number the project's next batch export gets (1 for the first)."""
        return self.query("select coalesce(max(round), 0) + 1 as r from batches where project_id = ?",
                          [project_id])[0]["r"]

    def add_batch_round(self, project_id: int, round_no: int, parts: list[dict], requests: list[dict]) -> list[int]:
        """Record an export round in one transaction: its request files (``parts``, each with a ``part`` number)
        and its request lines (each naming its ``part``). Returns the files' batch ids. A round another export
        took meanwhile is refused, and nothing is written."""
        with self.atomic():
            taken = self.db.execute("select 1 from batches where project_id = ? and round = ?",
                                    [project_id, round_no]).fetchone()
            if taken:
                raise ConfigError(f"round {round_no} of project {project_id} was exported by another run meanwhile",
                                  "export again: the next round takes what is still missing")
            ids = {}
            for part in parts:
                table = self.db["batches"]
                table.insert({**part, "project_id": project_id, "round": round_no, "created_at": now(),
                              "updated_at": now()})
                ids[part["part"]] = table.last_pk
            rows = [{**{k: v for k, v in r.items() if k != "part"}, "batch_id": ids[r["part"]],
                     "project_id": project_id, "round": round_no, "state": "pending", "inserted": 0,
                     "updated_at": now()} for r in requests]
            for start in range(0, len(rows), 5000):
                self.db["batch_requests"].insert_all(rows[start:start + 5000])
        return [ids[p["part"]] for p in parts]

    def batches(self, project_id: int) -> list[dict]:
        """The project's batch files, newest round first."""
        return self.query("select * from batches where project_id = ? order by round desc, part", [project_id])

    def batch(self, batch_id: int) -> dict:
        rows = self.query("select * from batches where id = ?", [batch_id])
        if not rows:
            raise NotFoundError(f"batch {batch_id} does not exist", "list the batches with `batch list`")
        return rows[0]

    def update_batch(self, batch_id: int, **values) -> None:
        with self.atomic():
            self.db["batches"].update(batch_id, {**values, "updated_at": now()})

    def pending_batch_samples(self, project_id: int) -> dict[str, int]:
        """Samples asked for by request lines still out (exported, no result imported), by leaf."""
        rows = self.query("select node_id, sum(count) as n from batch_requests where project_id = ? and "
                          "state = 'pending' group by node_id", [project_id])
        return {r["node_id"]: r["n"] for r in rows}

    def batch_request(self, custom_id: str) -> dict | None:
        rows = self.query("select * from batch_requests where custom_id = ?", [custom_id])
        return rows[0] if rows else None

    def close_batch_request(self, custom_id: str, *, state: str, inserted: int = 0, call_id: int | None = None,
                            note: str | None = None) -> None:
        """Record what a request line's result came to (done, failed, invalid or cancelled)."""
        with self.atomic():
            self.db.execute("update batch_requests set state = ?, inserted = ?, call_id = ?, note = ?, updated_at = ? "
                            "where custom_id = ?", [state, inserted, call_id, note, now(), custom_id])

    def batch_request_counts(self, batch_id: int) -> dict[str, int]:
        """A batch file's request lines by state, ``inserted``: the samples they added, and ``out``: the samples
        its pending lines ask for."""
        out = {"inserted": 0, "out": 0}
        for r in self.query("select state, count(*) as n, coalesce(sum(inserted), 0) as added, "
                            "coalesce(sum(count), 0) as asked from batch_requests where batch_id = ? group by state",
                            [batch_id]):
            out[r["state"]] = r["n"]
            out["inserted"] += r["added"]
            out["out"] += r["asked"] if r["state"] == "pending" else 0
        return out

    def release_batch_requests(self, batch_id: int, state: str, note: str) -> list[str]:
        """Close a batch file's lines still pending (their samples are missing again); returns the leaf of
        each line closed."""
        with self.atomic():
            leaves = [r[0] for r in self.db.execute(
                "select node_id from batch_requests where batch_id = ? and state = 'pending'", [batch_id])]
            self.db.execute("update batch_requests set state = ?, note = ?, updated_at = ? "
                            "where batch_id = ? and state = 'pending'", [state, note, now(), batch_id])
            return leaves

    def batch_usage(self, project_id: int) -> dict:
        """Tokens of the calls answered by batch engines (their price takes the batch price factor)."""
        return self.query("select count(*) as calls, coalesce(sum(prompt_tokens), 0) as prompt_tokens, "
                          "coalesce(sum(completion_tokens), 0) as completion_tokens from calls "
                          "where project_id = ? and batch_id is not null", [project_id])[0]
