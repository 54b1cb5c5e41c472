"""The Store: one SQLite file (WAL) holding projects, the tree, samples, the LLM call log and jobs.

All access is serialised by a lock so worker threads can share one Store; multi-row edits run in one
transaction. The app and the CLI can open the same file at once.

``Store`` is the one class callers use. This module holds the connection, the lock, ``atomic``, ``query``, the
schema checks and the projects; each other concept's queries live in a mixin of their own module, and only
these modules (and migrations.py) speak SQL:

- store_tree.py: nodes, reads along the tree, the Tree page's stamp, split proposals
- store_samples.py: samples (generation writes, curator edits, counts, streaming export reads)
- store_calls.py: the LLM call log; store_jobs.py: jobs
- store_batch.py: batch files and their request lines
- store_quality.py: embeddings, naive baselines, judge verdicts, duplicates per call
- store_data.py: imports, routing, balance, seed examples
- store_history.py: snapshots, writing rows back, the event log of undo/redo
- store_base.py: ``now``, ``new_id``, ``node_from_row`` and the JSON helpers (re-exported here)
"""

from __future__ import annotations

import json
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path

import sqlite_utils

from .errors import ConfigError, NotFoundError
from .migrations import migrations
from .spec import ProjectSpec
from .store_base import _loads, _sample_data, new_id, node_from_row, now  # noqa: F401 (re-exported)
from .store_batch import BatchMixin
from .store_calls import CallsMixin
from .store_data import DataMixin
from .store_history import HistoryMixin
from .store_jobs import JobsMixin
from .store_quality import QualityMixin
from .store_samples import SamplesMixin
from .store_tree import TreeMixin


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
    if not path.strip():
        raise ConfigError("the database path is empty", "pass a file name, e.g. --db my.db")
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


class Store(TreeMixin, SamplesMixin, CallsMixin, JobsMixin, BatchMixin, QualityMixin, DataMixin, HistoryMixin):
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

    def in_trash(self, project_id: int) -> bool:
        """Whether the project is in Recently deleted (False for one that does not exist)."""
        rows = self.query("select deleted_at from projects where id = ?", [project_id])
        return bool(rows and rows[0]["deleted_at"])

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

    # --- the projects' last change, written by every part of the Store
    def touch(self, project_id: int) -> None:
        """Mark the project as changed now (the Home page lists projects by their last change)."""
        with self.atomic():
            self.db.execute("update projects set updated_at = ? where id = ?", [now(), project_id])

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
