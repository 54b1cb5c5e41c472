"""Import a dataset (CSV, JSONL, Parquet) into a project as samples with provenance ``imported`` (issue 11).

The file is read once, as a stream (``datafile.open_records``), so a file of any length holds a bounded number
of rows in memory. Each record is mapped to the project's fields (``mapping``: field -> column; by default the
column with the field's name, case folded), validated like a generated sample (every field non-empty text, valid
Unicode, at most ``max_field_chars``) and fingerprinted the same way, so a row already in the project (or earlier
in the file) is a duplicate and skipped.

**What "never half-imported" means here.** A row either lands whole or not at all; a bad row is skipped and
reported with its line number (its first line, for a CSV record spanning several). Valid rows are committed
in chunks of ``CHUNK`` rows, each chunk in one transaction together with the import's record (the last line
consumed, the counts and the first bad rows' reasons). A killed import therefore keeps whole chunks only, and
importing the same file again with the same mapping resumes after the last committed line: no row is lost or
imported twice. Whole-file problems (not UTF-8, empty, a field no column maps to, an unreadable Parquet file)
are refused before anything is written.

**History.** An import run is one event in the project's history (``history.barrier``): it says what was imported,
and undo stops there (100k rows are not copied into an event); rows are taken back by rejecting them.

Cells are stored as text, never evaluated: a cell such as ``=HYPERLINK(...)`` stays that text, and the CSV
export quotes formula starts (``export.safe_cell``). The rows land at the root (or ``node_id``); ``routing``
moves them down the tree.

Reading the file (its formats, its records, the mapping of fields to columns) is ``datafile.py``; its names are
re-exported here.
"""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .datafile import (CHUNK, FORMATS, PEEK_BYTES, SWALLOWED, Record, detect_format, file_fingerprint,  # noqa: F401
                       open_records, parse_mapping, peek_columns, resolve_mapping)
from .errors import ConfigError
from .history import barrier
from .outcome import Outcome, RunReport
from .samples import clean_reply
from .store import Store
from .tree import refuse_pruned

PROBLEMS_KEPT = 100  # bad rows whose reason is kept (all are counted)


@dataclass
class ImportReport(RunReport):
    failed_field = "skipped"
    import_id: int | None = None
    name: str = ""
    rows: int = 0  # records read in this run
    imported: int = 0
    duplicates: int = 0
    skipped: int = 0  # bad rows
    problems: list[str] = field(default_factory=list)  # "line N: reason", the first PROBLEMS_KEPT
    ignored_columns: list[str] = field(default_factory=list)
    resumed_from: int = 0  # the line a resumed import went on after (0: a fresh import)
    already_complete: bool = False
    earlier: int = 0  # rows a killed or cancelled part of this import stored or found duplicate (resumed only)

    def verdict(self) -> Outcome:
        """Of the whole file, resumed parts included: complete when every row read was imported or was a
        duplicate; partial when some rows were bad (skipped, with their line numbers) and some imported; failed
        when rows were read and none could be imported. ``skipped`` and ``problems`` cover the whole file."""
        if not self.skipped:  # a file imported before keeps the outcome its import had
            return Outcome.COMPLETE
        return Outcome.PARTIAL if (self.imported or self.duplicates or self.earlier) else Outcome.FAILED

    def summary(self) -> str:
        if self.already_complete:
            if not self.skipped:
                return f"{self.name} was imported before (import {self.import_id}); nothing to do"
            text = (f"{self.name} was imported before (import {self.import_id}, {self.outcome.value}): "
                    f"{self.imported} row(s) imported, {self.duplicates} duplicate(s), {self.skipped} bad row(s)"
                    + (f" (first: {self.problems[0]})" if self.problems else ""))
            return text + "; fix the bad rows and import them in a new file"
        text = (f"imported {self.imported} row(s) from {self.name}" + (
            f" (resumed after line {self.resumed_from})" if self.resumed_from else "") +
            f"; {self.duplicates} duplicate(s) skipped; {self.skipped} bad row(s) skipped"
            + (" in the whole file" if self.resumed_from else ""))
        if self.problems:
            text += f" (first: {self.problems[0]})"
        if self.ignored_columns:
            text += f"; columns not imported: {', '.join(self.ignored_columns[:8])}"
        return text + ("; cancelled: import the same file again to resume" if self.cancelled else "")


# ----------------------------------------------------------------------------- the import


def _cell(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float, str)):
        return value if isinstance(value, str) else str(value)
    return json.dumps(value, ensure_ascii=False, default=str)  # a list or object cell: kept as its JSON text


def import_file(store: Store, project_id: int, path: str | Path, *, fmt: str | None = None,
                mapping: dict[str, str] | None = None, node_id: str | None = None, name: str | None = None,
                on_progress: Callable[[int, int], None] | None = None,
                should_stop: Callable[[], bool] | None = None) -> ImportReport:
    """Import the file's valid rows as samples at ``node_id`` (default: the root). Resumes an earlier import of
    the same file with the same mapping after its last committed line. ``on_progress(bytes read, file size)``
    for CSV/JSONL, (rows, rows) for Parquet. Raises ConfigError for a whole-file problem, before any write."""
    path = Path(path)
    fmt = detect_format(name or path, fmt)
    spec = store.project(project_id)
    names = spec.field_names
    tree = store.tree(project_id)
    if node_id is None:
        node_id = tree.root.id
    elif node_id not in tree.nodes:
        raise ConfigError(f"node {node_id!r} is not in this project", "pass a node id from `show`")
    refuse_pruned(tree.path(node_id), "rows imported there would never be routed or exported")
    try:
        resolved, ignored, records = open_records(path, fmt, names, mapping)
    except ConfigError as exc:  # an upload's saved copy is named as the user's file
        if not name or name == path.name:
            raise
        raise ConfigError(exc.message.replace(str(path), name).replace(path.name, name), exc.hint) from None
    position = _byte_position(path)
    report = ImportReport(name=name or path.name, ignored_columns=ignored)
    fingerprint = file_fingerprint(path, fmt, resolved)
    earlier = store.find_import(project_id, fingerprint)
    if earlier is not None and earlier["status"] in (Outcome.COMPLETE.value, Outcome.PARTIAL.value,
                                                     Outcome.FAILED.value):
        records.close()
        if not earlier["rows"]:
            raise ConfigError(f"{report.name} has no rows (only a header)", "import a file with rows")
        report.import_id, report.already_complete = earlier["id"], True
        report.imported, report.duplicates = earlier["imported"], earlier["duplicates"]
        report.skipped = earlier["skipped"]
        report.problems = json.loads(earlier["problems"] or "[]")
        return report
    first = next(records, None)
    if first is None:  # a header and nothing else: refused before anything is written
        raise ConfigError(f"{report.name} has no rows (only a header)", "import a file with rows")
    records = itertools.chain([first], records)
    if earlier is not None:
        import_id, after = earlier["id"], earlier["next_line"]
        report.resumed_from = after
        report.earlier = (earlier["imported"] or 0) + (earlier["duplicates"] or 0)
        problems = json.loads(earlier["problems"] or "[]")
        skipped, rows_read = earlier["skipped"], earlier["rows"]
        store.update_import(import_id, status="running")
    else:
        import_id, after, problems, skipped, rows_read = store.create_import(
            {"project_id": project_id, "name": report.name, "format": fmt, "fingerprint": fingerprint,
             "mapping": json.dumps(resolved), "node_id": node_id, "status": "running",
             "ignored_columns": json.dumps(ignored)}), 0, [], 0, 0
    report.import_id = import_id
    size = path.stat().st_size
    max_chars = spec.settings.max_field_chars
    dedup = spec.dedup_fields
    pending: list[dict] = []
    last_line = after
    start_rows = rows_read

    def commit(final_status: str | None = None) -> None:
        progress = {"next_line": last_line, "rows": rows_read, "skipped": skipped,
                    "problems": json.dumps(problems[:PROBLEMS_KEPT])}
        if final_status:
            progress["status"] = final_status
        inserted, dups = store.import_chunk(import_id, project_id, node_id, pending, progress)
        report.imported += inserted
        report.duplicates += dups
        pending.clear()

    def nonlocal_skip() -> None:
        nonlocal skipped
        skipped += 1

    def bad(line: int, reason: str) -> None:
        nonlocal skipped
        skipped += 1
        if len(problems) < PROBLEMS_KEPT:
            problems.append(f"line {line}: {reason}")

    try:
        for line, record, error in records:
            if line <= after:
                continue
            rows_read += 1
            last_line = line
            if error is SWALLOWED:
                nonlocal_skip()
            elif error is not None:
                bad(line, error)
            else:
                row = {f: _cell(record.get(column)) for f, column in resolved.items()}
                missing = [f for f, column in resolved.items() if column not in record]
                if missing:
                    bad(line, f"no {resolved[missing[0]]!r} key")
                else:
                    kept, why = clean_reply([row], names, max_chars, dedup)
                    if kept:
                        pending.append({"data": kept[0][0], "norm_hash": kept[0][1], "line": line})
                    else:
                        bad(line, why[0].removeprefix("sample 1 ").removeprefix("sample 1: ")
                            .replace("invalid Unicode (a lone surrogate) or NUL",
                                     "bytes that are not UTF-8, or NUL"))
            if len(pending) >= CHUNK or (rows_read - start_rows) % CHUNK == 0:
                commit()
                if on_progress is not None:
                    on_progress(*((rows_read, rows_read) if fmt == "parquet" else (position(), size)))
                if should_stop is not None and should_stop():
                    report.cancelled = True
                    break
    finally:
        report.rows = rows_read - start_rows
        report.skipped = skipped  # the whole file's, as ``problems``: a resumed part's outcome is the file's
        report.problems = problems
        if report.cancelled:
            commit("cancelled")
        else:
            commit()
    if not rows_read:  # a header and nothing else: nothing was imported, and the file says nothing useful
        store.update_import(import_id, status=Outcome.FAILED.value)
        raise ConfigError(f"{report.name} has no rows (only a header)", "import a file with rows")
    if not report.cancelled:
        store.update_import(import_id, status=report.outcome.value)
    if report.imported:  # one event in the project's history; its rows are not kept, so undo stops here
        barrier(store, project_id, "import", report.summary())
        if on_progress is not None:
            on_progress(size, size)
    return report


def _byte_position(path: Path) -> Callable[[], int]:
    """How far the reader is into the file, for progress: the open descriptor's offset, read from /proc on Linux
    (no second handle, no re-read); 0 where that is not available."""
    fd_dir = Path("/proc/self/fd")

    def position() -> int:
        try:
            for fd in fd_dir.iterdir():
                if os.path.realpath(fd) == str(path.resolve()):
                    for line in (Path("/proc/self/fdinfo") / fd.name).read_text().splitlines():
                        if line.startswith("pos:"):
                            return int(line.split()[1])
        except OSError:
            pass
        return 0

    return position


def import_job(store: Store, project_id: int, llm=None, *, on_progress=None, should_stop=None, path: str,
               name: str | None = None, fmt: str | None = None, mapping: dict[str, str] | None = None,
               node_id: str | None = None, remove: bool = False) -> ImportReport:
    """``import_file`` as a background job (jobs.ACTIONS["import"]; the app's uploads). ``remove``: delete the
    file once the import has ended (complete, partial or refused); a cancelled or killed one keeps it, so the job
    can be resumed."""
    try:
        report = import_file(store, project_id, path, fmt=fmt, mapping=mapping, node_id=node_id, name=name,
                             on_progress=on_progress, should_stop=should_stop)
    except ConfigError:
        if remove:
            Path(path).unlink(missing_ok=True)
        raise
    if remove and not report.cancelled:
        Path(path).unlink(missing_ok=True)
    if report.cancelled:
        from .errors import Cancelled

        raise Cancelled(f"import cancelled: {report.summary()}", "resume the job to go on", report=report)
    return report


def save_upload(data: bytes, name: str, folder: str | Path) -> Path:
    """Write an upload to a new file in ``folder`` (atomically) for an import job; returns its path."""
    import uuid

    from .files import atomic_write

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    safe = "".join(c for c in Path(name).name if c.isalnum() or c in "._-")[:80] or "upload"
    target = folder / f"{uuid.uuid4().hex[:12]}-{safe}"
    atomic_write(target, data, "upload")
    return target


__all__ = ["FORMATS", "CHUNK", "ImportReport", "import_file", "import_job", "save_upload", "detect_format",
           "parse_mapping", "resolve_mapping", "peek_columns"]
