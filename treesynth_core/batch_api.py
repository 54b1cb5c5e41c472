"""The OpenAI Batch API side of batch files (batch.py): upload and start, poll and download, cancel.

Everything goes through the ``openai`` SDK's Files and Batches resources of the configured endpoint (the one
client factory, ``LLM``): any provider with the Batch API. A provider without it (vLLM's server, llama.cpp)
answers 404, and the error says to run the files with ``vllm run-batch`` and import the result instead.

A submit records "submitting" before it uploads and marks the remote batch with a token in its metadata, so a
submit killed after the batch was created, but before its id was stored, finds that batch again instead of
starting a second one. A poll that finds a batch ended downloads its output and error files beside the request
file (atomically), records them ("downloaded"), then imports them; killed anywhere, the next poll picks up from
the recorded state, and import is idempotent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import openai

from .batch import ImportReport, URL, import_file, measure_short, refresh
from .config import Endpoint
from .errors import ConfigError, EndpointError, NotFoundError
from .files import atomic_file
from .llm import LLM, describe_api_error
from .outcome import Outcome
from .store import Store

REMOTE_ENDED = ("completed", "failed", "expired", "cancelled")
TRANSFER_TIMEOUT = 900.0  # seconds for one upload or download (files up to 200 MB)
LIST_LIMIT = 1000  # remote batches searched for our mark when a killed submit resumes
NO_BATCH_API = ("run the files with `vllm run-batch -i FILE -o RESULT --model M` and import RESULT with "
                "`batch import --file RESULT`, or point OPENAI_BASE_URL at a provider with the Batch API")


@dataclass
class RemoteReport:
    """What submit or poll did, batch by batch (one line each), and the import poll ran."""

    lines: list[str] = field(default_factory=list)
    running: int = 0
    imported: ImportReport | None = None

    @property
    def outcome(self) -> Outcome:
        return self.imported.outcome if self.imported is not None else Outcome.COMPLETE


def _records(store: Store, project_id: int, batch_ids: list[int] | None, states: tuple[str, ...]) -> list[dict]:
    if batch_ids:
        records = [store.batch(i) for i in batch_ids]
        for r in records:
            if r["project_id"] != project_id:
                raise NotFoundError(f"batch {r['id']} belongs to project {r['project_id']}", "pass the right --project")
        return [r for r in records if r["state"] in states]
    return [r for r in reversed(store.batches(project_id)) if r["state"] in states]


def _remote(endpoint: Endpoint, what: str, call: Callable):
    """One Batch API call; its failure becomes an EndpointError that says what to do."""
    try:
        return call()
    except openai.NotFoundError as exc:
        raise EndpointError(f"{endpoint.shown_url()} has no {what} (HTTP 404: {str(exc)[:120]})",
                            NO_BATCH_API) from None
    except openai.APIError as exc:
        raise describe_api_error(exc, endpoint) from None
    except OSError as exc:
        raise ConfigError(f"cannot read or write a batch file: {exc}", "check the path and the disk") from None


def submit(store: Store, project_id: int, endpoint: Endpoint, batch_ids: list[int] | None = None) -> RemoteReport:
    """Upload exported request files and start a batch for each. A submit killed after the batch was created
    but before its id was stored finds it again by our mark in its metadata: never two batches for one file."""
    report = RemoteReport()
    llm = LLM(endpoint)
    try:
        client = llm.client.with_options(timeout=TRANSFER_TIMEOUT)
        for record in _records(store, project_id, batch_ids, ("exported", "submitting")):
            resumed = record["state"] == "submitting"
            store.update_batch(record["id"], state="submitting")
            file_id = record["input_file_id"]
            if not file_id:
                path = Path(record["path"])
                if not path.is_file():
                    raise ConfigError(f"the request file {path} of batch {record['id']} is gone",
                                      f"`batch cancel --batch {record['id']}` and export again")
                with open(path, "rb") as handle:
                    uploaded = _remote(endpoint, "Files API", lambda: client.files.create(
                        file=(path.name, handle), purpose="batch"))
                file_id = uploaded.id
                store.update_batch(record["id"], input_file_id=file_id)
            remote = _find(client, endpoint, record["token"]) if resumed else None
            adopted = remote is not None
            if remote is None:
                remote = _remote(endpoint, "Batch API", lambda: client.batches.create(
                    input_file_id=file_id, endpoint=URL, completion_window="24h",
                    metadata={"treesynth": record["token"]}))
            store.update_batch(record["id"], state="submitted", remote_id=remote.id, remote_status=remote.status,
                               message=f"submitted as {remote.id}")
            report.lines.append(f"batch {record['id']} (round {record['round']}, part {record['part']}, "
                                f"{record['lines']} lines): {'found again' if adopted else 'submitted'} as "
                                f"{remote.id}, {remote.status}")
            report.running += 1
    finally:
        llm.close()
    return report


def _find(client, endpoint: Endpoint, token: str):
    """The remote batch carrying our mark, among the newest LIST_LIMIT, or None."""
    def search():
        for n, remote in enumerate(client.batches.list(limit=100)):
            if n >= LIST_LIMIT:
                return None
            if (remote.metadata or {}).get("treesynth") == token:
                return remote
        return None

    return _remote(endpoint, "Batch API", search)


def poll(store: Store, project_id: int, endpoint: Endpoint, batch_ids: list[int] | None = None,
         do_import: bool = True, into: ImportReport | None = None) -> RemoteReport:
    """Ask the provider how each submitted batch is doing; when one has ended, download its output and error
    files beside the request file and (``do_import``) import them, adding to ``into`` when given. Requests with
    no result line in an ended batch are closed as lost: their samples are missing again."""
    report = RemoteReport(imported=into)
    llm = LLM(endpoint)
    try:
        client = llm.client.with_options(timeout=TRANSFER_TIMEOUT)
        for record in _records(store, project_id, batch_ids, ("submitted", "downloaded")):
            label = f"batch {record['id']} (round {record['round']}, part {record['part']})"
            if record["state"] == "submitted":
                remote = _remote(endpoint, "Batch API", lambda: client.batches.retrieve(record["remote_id"]))
                counts = remote.request_counts
                progress = f"{counts.completed + counts.failed}/{counts.total} done" if counts else ""
                store.update_batch(record["id"], remote_status=remote.status, message=f"{remote.status} {progress}")
                if remote.status not in REMOTE_ENDED:
                    report.running += 1
                    report.lines.append(f"{label}: {remote.status} {progress}".rstrip())
                    continue
                paths = {}
                for kind, file_id in (("output", remote.output_file_id), ("errors", remote.error_file_id)):
                    if file_id:
                        target = Path(record["path"]).with_suffix(f".{kind}.jsonl")
                        _remote(endpoint, "Files API", lambda: _download(client, file_id, target))
                        paths[kind] = str(target)
                why = _why(remote)
                store.update_batch(record["id"], state="downloaded", output_file_id=remote.output_file_id,
                                   error_file_id=remote.error_file_id, output_path=paths.get("output"),
                                   error_path=paths.get("errors"), message=f"{remote.status}{why}")
                record = store.batch(record["id"])
                report.lines.append(f"{label}: {remote.status}{why}, downloaded "
                                    f"{', '.join(paths.values()) or 'no result file'}")
            if do_import:
                report.imported = report.imported or ImportReport()
                for path in (record["output_path"], record["error_path"]):
                    if path:
                        import_file(store, project_id, path, report.imported)
                lost = store.release_batch_requests(record["id"], "failed", "no result line when the batch ended "
                                                    f"({record['message'] or record['remote_status']})")
                report.imported.lost += len(lost)
                report.imported.per_leaf.update(dict.fromkeys(lost, json.loads(record["params"])["per_leaf"]))
                refresh(store, record["id"])
                report.imported.batch_ids.add(record["id"])
        if report.imported is not None:
            measure_short(store, project_id, report.imported)  # lost lines leave their leaves short too
    finally:
        llm.close()
    return report


def _why(remote) -> str:
    """What the provider says went wrong with a whole batch (a file that failed validation...), or ""."""
    errors = getattr(remote.errors, "data", None) or []
    return f": {errors[0].message}"[:300] if errors and errors[0].message else ""


def _download(client, file_id: str, target: Path) -> None:
    with client.files.with_streaming_response.content(file_id) as response:
        with atomic_file(target, "batch results file") as handle:
            for chunk in response.iter_bytes():
                handle.write(chunk)


def cancel(store: Store, project_id: int, batch_id: int, endpoint: Endpoint | None = None) -> str:
    """Release a batch file's pending lines (their samples are missing again, so the next export asks for them)
    and cancel its remote batch if it is still running there. Results that arrive later are ignored."""
    record = _records(store, project_id, [batch_id], ("exported", "submitting", "submitted", "downloaded",
                                                      "imported", "cancelled"))[0]
    if record["remote_id"] and record["state"] == "submitted" and record["remote_status"] not in REMOTE_ENDED:
        if endpoint is None:
            raise ConfigError(f"batch {batch_id} is running at the provider as {record['remote_id']}",
                              "configure the endpoint (OPENAI_API_KEY / OPENAI_BASE_URL) so it is cancelled there too")
        llm = LLM(endpoint)
        try:
            _remote(endpoint, "Batch API", lambda: llm.client.batches.cancel(record["remote_id"]))
        finally:
            llm.close()
    released = len(store.release_batch_requests(batch_id, "cancelled", "released by batch cancel"))
    store.update_batch(batch_id, state="cancelled", message=f"cancelled; {released} pending line(s) released")
    return f"batch {batch_id}: cancelled, {released} pending request line(s) released (missing again)"
