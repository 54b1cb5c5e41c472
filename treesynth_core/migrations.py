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


@migrations()
def m012_batches(db):
    # issue 10: generation through batch files (OpenAI Batch JSONL, vllm run-batch). One row per request file
    # (a part of an export round), and one row per request line, keyed by its custom_id, holding what import
    # needs: the leaf, the samples asked for and the path attributes drawn into the line (infinite nodes).
    db["batches"].create(
        {
            "id": int,
            "project_id": int,
            "round": int,
            "part": int,
            "path": str,  # the request file
            "lines": int,
            "samples": int,  # samples asked for by its lines
            "bytes": int,
            "model": str,
            "params": str,  # JSON: per_leaf, under, approved_only, samples_per_call, temperature, response_format
            "token": str,  # our mark in the remote batch's metadata: a killed submit finds its batch again
            "state": str,  # exported, submitting, submitted, downloaded, imported, cancelled
            "input_file_id": str,
            "remote_id": str,
            "remote_status": str,  # the provider's status: validating, in_progress, completed, expired...
            "output_file_id": str,
            "error_file_id": str,
            "output_path": str,
            "error_path": str,
            "message": str,
            "created_at": str,
            "updated_at": str,
        },
        pk="id",
    )
    db["batches"].create_index(["project_id", "round", "part"], unique=True)
    db["batch_requests"].create(
        {
            "custom_id": str,  # project:leaf:unit:round
            "batch_id": int,
            "project_id": int,
            "node_id": str,
            "round": int,
            "unit": int,
            "count": int,  # samples asked for
            "attributes": str,  # JSON list of [dimension, value] written into the prompt
            "state": str,  # pending, done, failed, invalid, cancelled
            "inserted": int,  # samples it added
            "call_id": int,
            "note": str,
            "updated_at": str,
        },
        pk="custom_id",
        defaults={"state": "pending", "inserted": 0},
    )
    db["batch_requests"].create_index(["batch_id", "state"])
    db["batch_requests"].create_index(["project_id", "state", "node_id"])


@migrations()
def m013_calls_batch(db):
    # a call answered by a batch engine: its cost takes the project's batch price factor
    db["calls"].add_column("batch_id", int)


@migrations()
def m014_embeddings(db):
    # issue 9: one vector per (sample, embedding model), with a hash of the text it was computed from: an edited
    # sample's hash no longer matches and it is embedded again; a deleted sample takes its vectors with it
    db["embeddings"].create(
        {
            "sample_id": int,
            "model": str,  # the encoder's name (embed.Encoder.name): vectors of different models never mix
            "project_id": int,
            "text_hash": str,  # sha256 of the embedded text (embed.text_hash)
            "dim": int,
            "vector": bytes,  # float32, little-endian, L2-normalised
            "created_at": str,
        },
        pk=("sample_id", "model"),
    )
    db["embeddings"].create_index(["project_id", "model"])
    db.execute("create trigger samples_delete_embeddings after delete on samples "
               "begin delete from embeddings where sample_id = old.id; end")


@migrations()
def m015_baselines(db):
    # issue 9: a tree project's naive baseline (the same task generated without a tree, max_depth 0)
    db["baselines"].create({"project_id": int, "baseline_id": int, "created_at": str}, pk="project_id")
    db["baselines"].create_index(["baseline_id"], unique=True)
    db.execute("create trigger projects_delete_baselines after delete on projects "
               "begin delete from baselines where project_id = old.id or baseline_id = old.id; "
               "delete from embeddings where project_id = old.id; end")


@migrations()
def m011_samples_node_status(db):
    # a leaf's live count (every status but rejected) is read before every insert of samples, under the quota:
    # with the status in the index the count never touches the table's rows (issue 10)
    db["samples"].create_index(["node_id", "status"], index_name="samples_node_status", if_not_exists=True)


@migrations()
def m016_judge_verdicts(db):
    # issue 9: the leaf-fit judge's verdicts, one row per (sample, attribute); position 0 is the task itself, then
    # the path's attributes root first. The attribute's text is kept: a verdict on a renamed value or on a sample
    # whose text changed since is not current. Editing a sample's text drops its verdicts; a deleted sample takes
    # its verdicts with it (so no row outlives its project: the table has no project_id of its own).
    db["verdicts"].create(
        {
            "sample_id": int,
            "position": int,
            "dimension": str,
            "value": str,
            "fits": int,  # 1 fits, 0 does not
            "reason": str,
            "call_id": int,  # the judge call whose reply this is
            "created_at": str,
        },
        pk=("sample_id", "position"),
    )
    db["verdicts"].create_index(["call_id"])
    db.execute("create trigger samples_delete_verdicts after delete on samples "
               "begin delete from verdicts where sample_id = old.id; end")
    db.execute("create trigger samples_edit_verdicts after update of data on samples when old.data is not new.data "
               "begin delete from verdicts where sample_id = new.id; end")


@migrations()
def m017_jobs_app_message(db):
    # a finished job's summary in the app's words (counts and the first failure, cut short, no CLI commands),
    # beside ``message``, the fuller text the CLI prints; empty for kinds without one and for older rows
    db["jobs"].add_column("app_message", str)


# --- issue 8 (H1): history, sample review, stored proposals
@migrations()
def m018_events(db):
    # every change to the tree and to samples, written in the change's transaction: who (llm / human), what, and
    # the full rows of every node and sample it touched before and after (JSON: {"nodes": {id: row or null},
    # "samples": {id: row or null}}), so undo and redo put back exactly those rows. ``undone`` 1: undone, on the
    # redo stack (a new change drops them); ``undoable`` 0: a barrier (a tree import), undo stops there.
    db["events"].create(
        {
            "id": int,
            "project_id": int,
            "node_id": str,  # the node acted on (for samples: their node when they share one)
            "actor": str,  # llm, human
            "action": str,
            "summary": str,
            "before": str,
            "after": str,
            "undone": int,
            "undoable": int,
            "created_at": str,
        },
        pk="id",
        defaults={"undone": 0, "undoable": 1},
    )
    db["events"].create_index(["project_id", "undone", "id"])
    db["events"].create_index(["node_id"])
    db.execute("create trigger projects_delete_events after delete on projects "
               "begin delete from events where project_id = old.id; end")


@migrations()
def m019_sample_review(db):
    # a reviewer's reject reason and free note per sample; the text as generated, kept the first time it is edited
    # (JSON, null while never edited) with ``edited`` 1 while the text differs from it
    db["samples"].add_column("reason", str)
    db["samples"].add_column("note", str)
    db["samples"].add_column("original", str)
    db["samples"].add_column("edited", int, not_null_default=0)


@migrations()
def m020_proposals(db):
    # a re-proposed split kept until the curator applies or dismisses it (survives reloads; several per node), with
    # the pivots and the criterion's label per pivot that motivated it
    db["proposals"].create(
        {
            "id": int,
            "project_id": int,
            "node_id": str,
            "job_id": int,
            "dimension": str,
            "value_list": str,  # JSON list
            "infinite": int,
            "pivots": str,  # JSON list of pivot samples
            "labels": str,  # JSON list: the criterion's value for each pivot, in order
            "note": str,
            "state": str,  # new, applied, dismissed
            "created_at": str,
            "updated_at": str,
        },
        pk="id",
        defaults={"infinite": 0, "state": "new"},
    )
    db["proposals"].create_index(["node_id", "state"])
    db.execute("create trigger projects_delete_proposals after delete on projects "
               "begin delete from proposals where project_id = old.id; end")


@migrations()
def m021_imports(db):
    # issue 11: bring your own data. Each sample says where it came from (``provenance``: generated or imported),
    # and an imported one which import and which line of the file (``source_line``). One row per import of a
    # file, holding what a resumed import needs: the lines consumed so far, the counts and the bad rows' reasons.
    db["samples"].add_column("provenance", str, not_null_default="generated")
    db["samples"].add_column("import_id", int)
    db["samples"].add_column("source_line", int)
    db["imports"].create(
        {
            "id": int,
            "project_id": int,
            "name": str,  # the file's name (never its folder: it may be a temporary upload path)
            "format": str,  # csv, jsonl, parquet
            "fingerprint": str,  # size + sha256 of the file's first MiB + the column mapping: finds a resumed import
            "mapping": str,  # JSON {field: column}
            "node_id": str,  # where the rows land (the root: routing moves them down)
            "status": str,  # running, then an Outcome value
            "next_line": int,  # the last line (row, for Parquet) whose record is committed
            "rows": int,  # records read
            "imported": int,
            "duplicates": int,
            "skipped": int,  # bad rows
            "problems": str,  # JSON list of the first bad rows' "line N: reason"
            "ignored_columns": str,  # JSON list of the file's columns no field maps to
            "created_at": str,
            "updated_at": str,
        },
        pk="id",
        defaults={"next_line": 0, "rows": 0, "imported": 0, "duplicates": 0, "skipped": 0},
    )
    db["imports"].create_index(["project_id", "fingerprint"])
    db["samples"].create_index(["import_id", "source_line"])


@migrations()
def m022_routing(db):
    # issue 11: one row per routing decision (a sample classified at a node): the child it went to, or none
    # ("none of these", ``answer`` keeps what the model said). The key makes a decision once per sample and node,
    # so a resumed run never routes a row twice; a deleted sample takes its decisions with it.
    db["routes"].create(
        {
            "sample_id": int,
            "node_id": str,  # the node whose dimension was asked
            "project_id": int,
            "child_id": str,  # null: none of these
            "answer": str,  # the value the model answered (kept verbatim for "none of these")
            "call_id": int,
            "created_at": str,
        },
        pk=("sample_id", "node_id"),
    )
    db["routes"].create_index(["project_id", "node_id", "child_id"])
    db.execute("create trigger samples_delete_routes after delete on samples "
               "begin delete from routes where sample_id = old.id; end")
    db.execute("create trigger projects_delete_imports after delete on projects "
               "begin delete from imports where project_id = old.id; delete from routes where project_id = old.id; end")


# --- issue 11 (H6): seed examples
@migrations()
def m023_seeds(db):
    # a few example samples shown in pivot and leaf prompts as style examples: on a node (its subtree's prompts) or,
    # with node_id null, for the whole task. ``data`` holds one value per project field (JSON); ``source`` says where
    # it came from (hand, or the file it was imported from). A deleted node or project takes its seeds with it.
    db["seeds"].create(
        {"id": int, "project_id": int, "node_id": str, "data": str, "source": str, "created_at": str},
        pk="id",
    )
    db["seeds"].create_index(["project_id", "node_id"])
    db.execute("create trigger nodes_delete_seeds after delete on nodes "
               "begin delete from seeds where node_id = old.id; end")
    db.execute("create trigger projects_delete_seeds after delete on projects "
               "begin delete from seeds where project_id = old.id; end")


# --- issue 8: deleting a project moves it to "Recently deleted" first (restorable); "Delete forever" removes it
@migrations()
def m024_projects_trash(db):
    db["projects"].add_column("deleted_at", str)  # null: live; a time: in Recently deleted since then
