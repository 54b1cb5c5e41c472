"""The Store's LLM call log: every call (messages stored once by hash), usage, failures and evidence.

A mixin of ``Store`` (store.py), the one class callers use: SQL lives in store.py and its store_*.py modules
only."""

from __future__ import annotations

import hashlib
import json

from .errors import NotFoundError
from .store_base import _loads, now


class CallsMixin:
    """The LLM call log. Owns the ``calls`` and ``call_messages`` tables; relies on the composed Store's ``db``,
    ``lock``, ``atomic`` and ``query``."""

    # ----------------------------------------------------------------- calls
    def log_call(self, **row) -> int:
        row.setdefault("created_at", now())
        with self.atomic():
            table = self.db["calls"]
            table.insert(row)
            return table.last_pk

    def log_call_messages(self, messages: list[dict], **row) -> int:
        """Log one call (``log_call``'s columns) storing each distinct message once: a message (role and content)
        goes to ``call_messages`` under its hash, and the row lists the hashes in order in ``message_hashes``
        instead of repeating the whole conversation. ``call_messages(call_id)`` reads it back."""
        keyed = [(hashlib.sha256(f"{m['role']}\0{m['content']}".encode()).hexdigest()[:32], m) for m in messages]
        row = {**row, "message_hashes": json.dumps([h for h, _ in keyed]), "created_at": row.get("created_at") or now()}
        columns = list(row)
        with self.atomic():
            conn = self.db.conn
            conn.executemany("insert or ignore into call_messages (hash, role, content) values (?, ?, ?)",
                             [(h, m["role"], m["content"]) for h, m in keyed])
            cursor = conn.execute(f"insert into calls ({', '.join(columns)}) values ({', '.join('?' * len(columns))})",
                                  [row[c] for c in columns])
            return cursor.lastrowid

    def call_messages(self, call_id: int) -> list[dict]:
        """The messages a logged call sent, in order (rows logged before m010 kept them as JSON)."""
        rows = self.query("select messages, message_hashes from calls where id = ?", [call_id])
        if not rows:
            raise NotFoundError(f"call {call_id} does not exist", "see `calls` for the call ids")
        if rows[0]["message_hashes"] is None:
            return _loads(rows[0]["messages"], [])
        hashes = json.loads(rows[0]["message_hashes"])
        found = {r["hash"]: {"role": r["role"], "content": r["content"]} for r in self.query(
            f"select hash, role, content from call_messages where hash in ({','.join('?' * len(hashes))})", hashes)}
        return [found[h] for h in hashes]

    def note_call(self, call_id: int, dropped: str) -> None:
        """Record what a call's reply lost (invalid or duplicate samples) and why."""
        with self.atomic():
            self.db["calls"].update(call_id, {"dropped": dropped})

    def cached_response(self, cache_key: str) -> str | None:
        rows = self.query(
            "select response from calls where cache_key = ? and valid = 1 order by id desc limit 1", [cache_key]
        )
        return rows[0]["response"] if rows else None

    # --- usage and failures
    def usage(self, project_id: int, node_id: str | None = None) -> dict:
        sql = ("select count(*) as calls, coalesce(sum(prompt_tokens),0) as prompt_tokens, "
               "coalesce(sum(completion_tokens),0) as completion_tokens, "
               "coalesce(sum(error is not null),0) as failed_calls, coalesce(sum(duration_s),0) as seconds, "
               "coalesce(sum(repaired),0) as repaired "
               "from calls where project_id = ?")
        params: list = [project_id]
        if node_id:
            sql += " and node_id = ?"
            params.append(node_id)
        return self.query(sql, params)[0]

    def usage_by_node(self, project_id: int) -> dict[str, dict]:
        rows = self.query(
            "select node_id, count(*) as calls, coalesce(sum(prompt_tokens),0) as prompt_tokens, "
            "coalesce(sum(completion_tokens),0) as completion_tokens, coalesce(sum(error is not null),0) as failed "
            "from calls where project_id = ? group by node_id",
            [project_id],
        )
        return {r["node_id"]: r for r in rows}

    def call_log(self, project_id: int, *, failed_only: bool = False, limit: int = 50) -> list[dict]:
        """The newest calls first: where, what for, which try, tokens, time, and what failed or was dropped."""
        return self.query(
            "select id, node_id, purpose, attempt, prompt_tokens, completion_tokens, duration_s, error, dropped, "
            "repaired from calls where project_id = ?" + (" and error is not null" if failed_only else "") +
            " order by id desc limit ?",
            [project_id, limit],
        )

    def failed_calls(self, project_id: int, limit: int = 200) -> list[dict]:
        return self.query(
            "select id, node_id, purpose, model, attempt, error, finish_reason, created_at from calls "
            "where project_id = ? and error is not null order by id desc limit ?",
            [project_id, limit],
        )

    def failure_counts(self, project_id: int) -> dict[str, int]:
        """``failed_attempts``: logged tries that failed; ``gave_up``: calls whose last try failed. A try after
        the first (``attempt`` > 1) is the re-ask of exactly one failed try of the same call, so the calls that
        gave up are the failed tries less the re-asks (a batch line is one try)."""
        row = self.query("select coalesce(sum(error is not null), 0) as failed, coalesce(sum(attempt > 1 and "
                         "coalesce(finish_reason, '') != 'hedged'), 0) as reasks from calls where project_id = ?",
                         [project_id])[0]  # a hedge's abandoned twin (issue 10) is no re-ask
        return {"failed_attempts": row["failed"], "gave_up": max(0, row["failed"] - row["reasks"])}

    def call_models(self, project_id: int) -> dict[str, int]:
        """The models the project's LLM calls named, with their call counts (most used first); for the card."""
        return {r["model"] or "(endpoint default)": r["n"] for r in self.query(
            "select model, count(*) as n from calls where project_id = ? group by model order by n desc",
            [project_id])}

    def last_call_id(self) -> int:
        """The newest call's id in the file (0 when none): a run counts its calls as those logged after it."""
        with self.lock:
            return self.db.execute("select coalesce(max(id), 0) from calls").fetchone()[0]

    def calls_since(self, project_id: int, after_id: int) -> int:
        """Calls (every attempt, re-asks included) logged for the project after call ``after_id``."""
        with self.lock:
            return self.db.execute("select count(*) from calls where id > ? and +project_id = ?",  # the id range
                                   [after_id, project_id]).fetchone()[0]

    # --- evidence beside every split (issue 8, H2 and the bug-fix round, F2: read by evidence.py)
    def node_calls(self, node_id: str, limit: int = 30) -> list[dict]:
        """The LLM calls made for one node, newest first: what for, which try, tokens, time, what failed."""
        return self.query(
            "select id, purpose, attempt, prompt_tokens, completion_tokens, duration_s, error, valid, created_at "
            "from calls where node_id = ? order by id desc limit ?", [node_id, limit])

    def criterion_reply(self, node_id: str) -> str | None:
        """The newest valid criterion reply logged for a node (its labels per pivot), or None."""
        rows = self.query("select response from calls where node_id = ? and purpose = 'criterion' and valid = 1 "
                          "order by id desc limit 1", [node_id])
        return rows[0]["response"] if rows else None

    def node_call_log(self, node_id: str) -> list[dict]:
        """Every call logged for a node, oldest first, without its messages: the job and its kind, what for,
        which try, tokens, time, error, and the reply of a valid criterion call (it names the split it made)."""
        return self.query(
            "select c.id, c.job_id, j.kind as job_kind, c.purpose, c.attempt, c.prompt_tokens, c.completion_tokens, "
            "c.duration_s, c.error, c.valid, c.created_at, "
            "case when c.purpose = 'criterion' and c.valid = 1 then c.response end as response "
            "from calls c left join jobs j on j.id = c.job_id where c.node_id = ? order by c.id", [node_id])
