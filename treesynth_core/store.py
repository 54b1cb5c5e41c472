"""The Store: one SQLite file (WAL) holding projects, the tree, samples, the LLM call log and jobs.

All access is serialised by a lock so worker threads can share one Store; multi-row edits run in one
transaction. The app and the CLI can open the same file at once.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import sqlite3
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Container, Iterator

import sqlite_utils

from .errors import ConfigError, NotFoundError
from .migrations import migrations
from .spec import ProjectSpec
from .tree import Node, Tree


@functools.lru_cache(maxsize=8192)
def _sample_data(text: str) -> dict:
    """A sample's data decoded from its JSON text, cached (``recent_samples``: shared, never to be mutated)."""
    return json.loads(text)


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def new_id() -> str:
    return uuid.uuid4().hex[:12]


def _loads(text, default):
    return json.loads(text) if text else default


def _project_row(spec: ProjectSpec) -> dict:
    return {
        "name": spec.name,
        "task": spec.task,
        "fields": json.dumps([f.model_dump() for f in spec.fields]),
        "constraints": spec.constraints,
        "settings": spec.settings.model_dump_json(),
        "root_split": spec.root_split.model_dump_json() if spec.root_split else None,
        "updated_at": now(),
    }


def _connect(path: str) -> sqlite3.Connection:
    """Open the file, refusing paths that cannot hold a database with one clear error."""
    if path != ":memory:":
        target = Path(path)
        if target.is_dir():
            raise ConfigError(f"the database path {path} is a directory", "pass a file name, e.g. my.db")
        if target.exists() and not target.is_file():
            raise ConfigError(f"the database path {path} is not a regular file", "pass a file name, e.g. my.db")
        try:
            path.encode("utf-8")
            target.parent.mkdir(parents=True, exist_ok=True)
        except (OSError, UnicodeEncodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "the path is not valid UTF-8"
            raise ConfigError(f"cannot create the folder of the database {path}: {reason}",
                              "choose another path") from None
    try:
        return sqlite3.connect(path, check_same_thread=False, timeout=30)
    except sqlite3.Error as exc:
        raise ConfigError(f"cannot open the database {path}: {exc}",
                          "check that the file and its folder are writable") from None


def _known_migrations() -> set[str]:
    """The names of every migration this version has (all of them are pending on an empty database)."""
    return {m.name for m in migrations.pending(sqlite_utils.Database(memory=True))}


def node_from_row(row: dict) -> Node:
    return Node(
        id=row["id"],
        project_id=row["project_id"],
        parent_id=row["parent_id"],
        depth=row["depth"],
        value=row["value"],
        dimension=row["dimension"],
        infinite=bool(row["infinite"]),
        values=_loads(row["value_list"], []),
        status=row["status"],
        provenance=row["provenance"],
        locked=bool(row["locked"]),
        failure=row["failure"],
        quota=row["quota"],
        position=row["position"] or 0,
        pivots=_loads(row["pivots"], []),
        note=row.get("note"),
    )


class Store:
    def __init__(self, path: str | Path):
        self.path = str(path)
        self.lock = threading.RLock()
        conn = _connect(self.path)
        self.db = sqlite_utils.Database(conn)
        try:
            with self.lock:
                self._check_schema()
                if self.path != ":memory:":
                    self.db.enable_wal()
                self.db.execute("PRAGMA foreign_keys = ON")
                self.db.execute("PRAGMA busy_timeout = 30000")
                self.db.execute("PRAGMA synchronous = NORMAL")
                migrations.apply(self.db)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise ConfigError(f"cannot use {self.path} as a database: {exc}",
                              "check that the file is a TreeSynth database and that it and its folder are writable"
                              ) from None
        except BaseException:
            conn.close()
            raise

    def _check_schema(self) -> None:
        """Refuse, before writing anything, a file this version must not touch: not SQLite, another
        program's database, or one written by a newer TreeSynth (an applied migration this version lacks)."""
        try:
            tables = [r[0] for r in self.db.execute("select name from sqlite_master where type = 'table'")]
        except sqlite3.OperationalError:  # cannot open or read it (permissions, a folder without -shm rights)
            raise
        except sqlite3.DatabaseError:  # "file is not a database"
            raise ConfigError(f"{self.path} is not an SQLite database",
                              "pass a TreeSynth database file, or a new file name to create one") from None
        applied = [m.name for m in migrations.applied(self.db)]
        if not applied and [t for t in tables if not t.startswith(("sqlite_", "_sqlite_migrations"))]:
            raise ConfigError(f"{self.path} is an SQLite database of another program (no TreeSynth tables)",
                              "pass a TreeSynth database file, or a new file name to create one")
        known = _known_migrations()
        unknown = [name for name in applied if name not in known]
        if unknown:
            raise ConfigError(f"this database was written by a newer TreeSynth (migration {unknown[0]})",
                              "upgrade TreeSynth Studio to open it; this version leaves it untouched")

    def close(self) -> None:
        with self.lock:
            self.db.conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def atomic(self):
        """One transaction (a savepoint when nested). It takes SQLite's write lock up front (BEGIN
        IMMEDIATE): a deferred transaction that reads first fails at once with "database is locked" when
        another connection (the app, the CLI) commits in between, and busy_timeout cannot help it."""
        with self.lock:
            conn = self.db.conn
            if conn.in_transaction:
                with self.db.atomic():
                    yield
                return
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                conn.rollback()
                raise
            conn.execute("COMMIT")

    def query(self, sql: str, params=()) -> list[dict]:
        """The rows of one SELECT as dicts. Straight on the connection: sqlite-utils' ``query`` wraps every read
        in a savepoint of its own, two more statements per read on the generation path (issue 10)."""
        with self.lock:
            cursor = self.db.conn.execute(sql, params)
            if cursor.description is None:
                raise ValueError("Store.query is for statements that return rows")
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]

    # ----------------------------------------------------------------- projects
    def create_project(self, spec: ProjectSpec) -> int:
        with self.atomic():
            table = self.db["projects"]
            table.insert({**_project_row(spec), "created_at": now()})
            project_id = table.last_pk
            self.db["nodes"].insert(
                {"id": new_id(), "project_id": project_id, "parent_id": None, "depth": 0, "position": 0,
                 "status": "proposed", "provenance": "human", "created_at": now(), "updated_at": now()}
            )
        return project_id

    def project(self, project_id: int) -> ProjectSpec:
        with self.lock:
            rows = list(self.db["projects"].rows_where("id = ?", [project_id]))
        if not rows:
            raise NotFoundError(f"project {project_id} does not exist", "list projects to see their ids")
        row = rows[0]
        return ProjectSpec(
            name=row["name"],
            task=row["task"],
            fields=json.loads(row["fields"]),
            constraints=row["constraints"] or "",
            settings=json.loads(row["settings"]),
            root_split=_loads(row["root_split"], None),
        )

    def projects(self) -> list[dict]:
        """The live projects (not in Recently deleted)."""
        return self.query("select id, name, task, created_at, updated_at from projects where deleted_at is null "
                          "order by id")

    def deleted_projects(self) -> list[dict]:
        """The projects in Recently deleted, newest first."""
        return self.query("select id, name, task, created_at, updated_at, deleted_at from projects "
                          "where deleted_at is not null order by deleted_at desc, id desc")

    def set_project_deleted(self, project_id: int, deleted_at: str | None) -> None:
        """Move a project into Recently deleted (a time) or back out of it (None); its rows stay as they are."""
        self.project(project_id)
        with self.atomic():
            self.db.execute("update projects set deleted_at = ? where id = ?", [deleted_at, project_id])

    def only_project_id(self) -> int:
        """The project of a single-project file (the CLI's default)."""
        rows = self.projects()
        if not rows:
            raise NotFoundError("this database holds no project", "run `python -m treesynth_core init` first")
        if len(rows) > 1:
            raise NotFoundError(
                f"this database holds {len(rows)} projects", "pass --project ID (see `projects`)"
            )
        return rows[0]["id"]

    def update_project(self, project_id: int, spec: ProjectSpec) -> None:
        self.project(project_id)
        with self.atomic():
            self.db["projects"].update(project_id, _project_row(spec))

    def delete_project(self, project_id: int) -> None:
        with self.atomic():
            for table in ("batch_requests", "batches", "samples", "calls", "jobs", "nodes"):
                self.db.execute(f"delete from {table} where project_id = ?", [project_id])
            self.db.execute("delete from projects where id = ?", [project_id])

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

    def touch(self, project_id: int) -> None:
        """Mark the project as changed now (the Home page lists projects by their last change)."""
        with self.atomic():
            self.db.execute("update projects set updated_at = ? where id = ?", [now(), project_id])

    def delete_nodes(self, node_ids: list[str]) -> None:
        with self.atomic():
            for chunk in range(0, len(node_ids), 500):
                ids = node_ids[chunk : chunk + 500]
                marks = ",".join("?" * len(ids))
                self.db.execute(f"delete from samples where node_id in ({marks})", ids)
                self.db.execute(f"delete from nodes where id in ({marks})", ids)

    # ----------------------------------------------------------------- samples
    def add_samples(self, project_id: int, node_id: str, rows: list[dict], *, cap: int | None,
                    call_id: int | None, leaf_must_exist: bool = False) -> tuple[int, int]:
        """Insert samples (dicts with data, drawn, norm_hash) up to ``cap`` live samples in the leaf.

        Returns (inserted, duplicates). Duplicates (same normalised hash anywhere in the project, or earlier in
        ``rows``) are skipped; the cap is checked inside the transaction, so concurrent calls never overshoot a
        quota. ``leaf_must_exist``: NotFoundError, nothing written, when the node is gone (deleted meanwhile).
        One transaction of five statements whatever the row count (a call's hot path, issue 10): the node and
        its live count, the duplicates, one multi-row insert, the project's last change.
        """
        if not rows:
            return 0, 0
        inserted = duplicates = 0
        hashes = [row["norm_hash"] for row in rows]
        stamp = now()
        with self.atomic():
            exists, live = self.db.conn.execute(
                "select exists(select 1 from nodes where id = ?), (select count(*) from samples where node_id = ? "
                "and status not in ('rejected', 'excluded'))", [node_id, node_id]).fetchone()
            if leaf_must_exist and not exists:
                raise NotFoundError(f"node {node_id} does not exist", "")
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

    # ----------------------------------------------------------------- calls
    def log_call(self, **row) -> int:
        row.setdefault("created_at", now())
        with self.atomic():
            table = self.db["calls"]
            table.insert(row)
            return table.last_pk

    def cached_response(self, cache_key: str) -> str | None:
        rows = self.query(
            "select response from calls where cache_key = ? and valid = 1 order by id desc limit 1", [cache_key]
        )
        return rows[0]["response"] if rows else None

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

    def note_call(self, call_id: int, dropped: str) -> None:
        """Record what a call's reply lost (invalid or duplicate samples) and why."""
        with self.atomic():
            self.db["calls"].update(call_id, {"dropped": dropped})

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

    # --- tree reads for the scheduler (issue 10)
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

    def last_call_id(self) -> int:
        """The newest call's id in the file (0 when none): a run counts its calls as those logged after it."""
        with self.lock:
            return self.db.execute("select coalesce(max(id), 0) from calls").fetchone()[0]

    def calls_since(self, project_id: int, after_id: int) -> int:
        """Calls (every attempt, re-asks included) logged for the project after call ``after_id``."""
        with self.lock:
            return self.db.execute("select count(*) from calls where id > ? and +project_id = ?",  # the id range
                                   [after_id, project_id]).fetchone()[0]

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

    # --- jobs you can watch (issue 8, H3)
    def job_usage(self, job_id: int) -> dict:
        """The calls a job made so far (every attempt) and their tokens, for its progress line."""
        return self.query(
            "select count(*) as calls, coalesce(sum(prompt_tokens), 0) as prompt_tokens, "
            "coalesce(sum(completion_tokens), 0) as completion_tokens, coalesce(sum(error is not null), 0) as "
            "failed_calls from calls where job_id = ?", [job_id])[0]

    # --- history, review, proposals (issue 8, H1: called only by edits.py / history.py / proposals.py)
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

    def update_samples(self, sample_ids: list[int], **values) -> None:
        """Set these columns on these samples (and the projects' last change)."""
        self._update_many("samples", sample_ids, values)

    def _update_many(self, table: str, ids: list, values: dict) -> None:
        """Set columns on many rows of ``nodes`` or ``samples`` (one statement per 500 ids) and touch their projects'
        last change, in one transaction. ``table`` is one of those two names, never user input."""
        assert table in ("nodes", "samples"), table
        values = {**values, "updated_at": now()}
        columns = list(values)
        with self.atomic():
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                marks = ",".join("?" * len(chunk))
                self.db.execute(f"update {table} set {', '.join(f'[{c}] = ?' for c in columns)} where id in ({marks})",
                                [values[c] for c in columns] + chunk)
                self.db.execute(f"update projects set updated_at = ? where id in (select project_id from {table} "
                                f"where id in ({marks}))", [values["updated_at"], *chunk])

    def stranded_counts(self, project_id: int) -> dict[str, int]:
        """Samples sitting on a node that has children (a leaf expanded after it got samples), by node."""
        rows = self.query("select s.node_id, count(*) as n from samples s where s.project_id = ? and exists "
                          "(select 1 from nodes c where c.parent_id = s.node_id) group by s.node_id", [project_id])
        return {r["node_id"]: r["n"] for r in rows}

    def sample_ids_on(self, node_id: str) -> list[int]:
        """The ids of the samples sitting on this very node."""
        return [r["id"] for r in self.query("select id from samples where node_id = ? order by id", [node_id])]

    def update_nodes(self, node_ids: list[str], **values) -> None:
        """Set these columns on many nodes at once, and the project's last change."""
        self._update_many("nodes", node_ids, values)

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

    def samples_on_count(self, node_ids: list[str]) -> int:
        """How many samples sit on these nodes (every status)."""
        total = 0
        for start in range(0, len(node_ids), 500):
            chunk = node_ids[start:start + 500]
            with self.lock:
                total += self.db.execute(f"select count(*) from samples where node_id in ({','.join('?' * len(chunk))})",
                                         chunk).fetchone()[0]
        return total

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

    def imported_examples(self, node_id: str, limit: int) -> list[dict]:
        """The data of a node's first imported samples still in use (not rejected or excluded), oldest first."""
        return [json.loads(r["data"]) for r in self.query(
            "select data from samples where node_id = ? and provenance = 'imported' "
            "and status not in ('rejected', 'excluded') order by id limit ?", [node_id, limit])]

    def call_models(self, project_id: int) -> dict[str, int]:
        """The models the project's LLM calls named, with their call counts (most used first); for the card."""
        return {r["model"] or "(endpoint default)": r["n"] for r in self.query(
            "select model, count(*) as n from calls where project_id = ? group by model order by n desc",
            [project_id])}

    def delete_seed_rows(self, project_id: int, seed_ids: list[int]) -> int:
        with self.atomic():
            return sum(self.db.execute("delete from seeds where project_id = ? and id = ?", [project_id, i]).rowcount
                       for i in seed_ids)

    # --- bring your own data: imports, routing, balance (issue 11, H5)
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

    # --- evidence beside every split (issue 8, H2: read by evidence.py)
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


    # --- pivots from the dataset's own rows (issue 11 part 2, H9)
    def imported_ids_on(self, node_id: str) -> list[int]:
        """The ids of the imported samples sitting on this very node and still in use (not rejected or excluded),
        in id order: what a build draws a node's pivots from (partition.data_pivots)."""
        return [r["id"] for r in self.query(
            "select id from samples where node_id = ? and provenance = 'imported' "
            "and status not in ('rejected', 'excluded') order by id", [node_id])]

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

    # --- evidence: which calls made a node's current split (bug-fix round, F2)
    def node_call_log(self, node_id: str) -> list[dict]:
        """Every call logged for a node, oldest first, without its messages: the job and its kind, what for,
        which try, tokens, time, error, and the reply of a valid criterion call (it names the split it made)."""
        return self.query(
            "select c.id, c.job_id, j.kind as job_kind, c.purpose, c.attempt, c.prompt_tokens, c.completion_tokens, "
            "c.duration_s, c.error, c.valid, c.created_at, "
            "case when c.purpose = 'criterion' and c.valid = 1 then c.response end as response "
            "from calls c left join jobs j on j.id = c.job_id where c.node_id = ? order by c.id", [node_id])
