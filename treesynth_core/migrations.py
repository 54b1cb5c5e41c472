"""Named schema migrations, applied in order when a Store opens. Never edit an applied one: add a new one."""

from __future__ import annotations

from sqlite_utils import Migrations

migrations = Migrations("treesynth")


@migrations()
def m001_projects(db):
    db["projects"].create(
        {
            "id": int,
            "name": str,
            "task": str,
            "fields": str,  # JSON list of OutputField
            "constraints": str,
            "settings": str,  # JSON Settings
            "root_split": str,  # JSON RootSplit or null
            "created_at": str,
            "updated_at": str,
        },
        pk="id",
        not_null={"name", "task", "fields", "settings"},
    )


@migrations()
def m002_nodes(db):
    db["nodes"].create(
        {
            "id": str,
            "project_id": int,
            "parent_id": str,
            "depth": int,
            "position": int,
            "value": str,
            "dimension": str,
            "infinite": int,
            "value_list": str,  # JSON list: the values of an infinite node
            "status": str,
            "provenance": str,
            "locked": int,
            "failure": str,
            "quota": int,
            "pivots": str,  # JSON list of the pivot samples that chose the dimension
            "created_at": str,
            "updated_at": str,
        },
        pk="id",
        foreign_keys=[("project_id", "projects", "id")],
        defaults={"infinite": 0, "locked": 0, "status": "proposed", "provenance": "llm", "position": 0},
    )
    db["nodes"].create_index(["parent_id"])
    db["nodes"].create_index(["project_id", "depth"])


@migrations()
def m003_samples(db):
    db["samples"].create(
        {
            "id": int,
            "project_id": int,
            "node_id": str,
            "data": str,  # JSON object: one value per output field
            "drawn": str,  # JSON list of [dimension, value] actually used in the prompt
            "norm_hash": str,
            "status": str,
            "call_id": int,
            "created_at": str,
            "updated_at": str,
        },
        pk="id",
        foreign_keys=[("project_id", "projects", "id")],
        defaults={"status": "generated"},
    )
    db["samples"].create_index(["node_id"])
    db["samples"].create_index(["project_id", "norm_hash"], unique=True)


@migrations()
def m004_calls(db):
    db["calls"].create(
        {
            "id": int,
            "project_id": int,
            "node_id": str,
            "job_id": int,
            "purpose": str,
            "model": str,
            "params": str,
            "cache_key": str,
            "messages": str,
            "response": str,
            "finish_reason": str,
            "prompt_tokens": int,
            "completion_tokens": int,
            "duration_s": float,
            "attempt": int,
            "valid": int,
            "error": str,
            "created_at": str,
        },
        pk="id",
    )
    db["calls"].create_index(["cache_key"])
    db["calls"].create_index(["project_id", "node_id"])


@migrations()
def m005_jobs(db):
    db["jobs"].create(
        {
            "id": int,
            "project_id": int,
            "kind": str,
            "params": str,
            "status": str,  # running, then an Outcome value (m009: "done" became complete/partial)
            "total": int,
            "done": int,
            "failed": int,
            "message": str,
            "cancel_requested": int,
            "pid": int,
            "heartbeat_at": str,
            "started_at": str,
            "finished_at": str,
        },
        pk="id",
        defaults={"cancel_requested": 0, "done": 0, "failed": 0, "total": 0},
    )
    db["jobs"].create_index(["project_id", "status"])


@migrations()
def m006_calls_dropped(db):
    # what a call's reply lost and why (invalid or duplicate samples), so nothing is dropped silently
    db["calls"].add_column("dropped", str)


@migrations()
def m007_nodes_note(db):
    # a warning a curator should read, e.g. a split accepted although its pivots were not cleanly assigned
    db["nodes"].add_column("note", str)


@migrations()
def m008_calls_repaired(db):
    # 1 when the reply was malformed JSON that json-repair fixed (a re-ask saved), so the saving is countable
    db["calls"].add_column("repaired", int, not_null_default=0)


@migrations()
def m009_job_outcomes(db):
    # a job ends complete / partial / failed / cancelled / interrupted (treesynth_core.outcome); "done" said
    # nothing about what failed on the way
    db.execute("update jobs set status = 'complete' where status = 'done' and coalesce(failed, 0) = 0")
    db.execute("update jobs set status = 'partial' where status = 'done'")


@migrations()
def m010_call_messages(db):
    # the call log keeps each distinct message (role and content) once, under its hash; a call row lists its
    # messages' hashes in order (message_hashes) instead of repeating the whole conversation as JSON: the system
    # prompt and a re-ask's first turns are shared by many calls. Rows logged before keep their ``messages``.
    db["call_messages"].create({"hash": str, "role": str, "content": str}, pk="hash")
    db["calls"].add_column("message_hashes", str)
