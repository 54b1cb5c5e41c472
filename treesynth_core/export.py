"""Export samples as JSONL, CSV, Parquet, or fine-tuning JSONL (OpenAI chat, ShareGPT, Alpaca), streamed from the
store to the file.

Every row carries its fields, its leaf path attributes and its leaf id. Rows are built once, as the store hands
out samples in chunks (``Store.iter_samples``), and written as they come, so memory stays flat at any size:
the tree is read once per export and each live node's path is computed once (``scope_paths``), never per row.
CSV cells that a spreadsheet would run as a formula (starting with = + - @ or a tab/CR) are neutralised with a
leading apostrophe. Files are written atomically (``files.atomic_file``): a failed or killed export leaves
the previous file whole.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from .edits import SAMPLE_STATUSES
from .errors import ConfigError, NotFoundError, TreeSynthError
from .files import atomic_file, check_target
from .spec import ProjectSpec
from .store import Store
from .tree import Tree

FORMATS = {"jsonl": "JSON Lines", "csv": "CSV", "parquet": "Parquet", "chat": "OpenAI chat fine-tuning JSONL",
           "sharegpt": "ShareGPT conversations JSONL", "alpaca": "Alpaca instruction JSONL"}
EXTENSIONS = {"jsonl": "jsonl", "csv": "csv", "parquet": "parquet", "chat": "jsonl", "sharegpt": "jsonl",
              "alpaca": "jsonl"}
PAIR_FORMATS = ("chat", "sharegpt", "alpaca")  # a prompt and an answer per line: they need input and output fields
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# the columns after the project's fields: where the sample sits, its review state and where it came from
TAIL = ["path", "leaf_id", "status", "sample_id", "provenance", "edited", "reason", "note"]
ROW_GROUP = 10_000  # Parquet rows per row group
LINES_PER_WRITE = 1_000  # text lines encoded and written at a time (about 1 MB)
# An export without a status choice takes every status but ``excluded`` (rows set aside by balancing, issue 11):
# they are not dataset content; ``statuses=["excluded"]`` (CLI ``--status excluded``) exports them when asked.
ALL_BUT_EXCLUDED = [s for s in SAMPLE_STATUSES if s != "excluded"]
SMALL_EXPORT_ROWS = 20_000  # the app counts and exports a project this small as the page opens (well under 1 s)


# ----------------------------------------------------------------------------- scope and rows


def check_scope(tree: Tree, statuses: list[str] | None, under: str | None) -> None:
    """Refuse a status or a subtree that does not exist (an empty export would look like a real one)."""
    unknown = [s for s in statuses or [] if s not in SAMPLE_STATUSES]
    if unknown or (statuses is not None and not statuses):
        raise ConfigError(f"unknown sample status {', '.join(map(repr, unknown)) or '(empty)'}",
                          f"use one or more of {', '.join(SAMPLE_STATUSES)}, separated by commas")
    if under is not None and under not in tree.nodes:
        raise NotFoundError(f"node {under!r} is not in this project", "see the node ids with `show`")


def scope_paths(tree: Tree, under: str | None = None) -> dict[str, list[dict]]:
    """Every live (not pruned) node at or under ``under`` (the root when None), with its labelled path as
    export rows carry it. One walk of the tree per export: a row looks its node up here, so a sample outside
    the scope or in a pruned subtree is one dict miss, and no path is rebuilt per row."""
    start = under or (tree.root.id if tree.root else None)
    if start is None or tree.is_pruned(start):
        return {}
    out: dict[str, list[dict]] = {}
    stack = [(start, [{"dimension": d, "value": v} for d, v in tree.labelled_path(start)])]
    while stack:
        node_id, path = stack.pop()
        out[node_id] = path
        node = tree.nodes[node_id]
        for kid in tree.kids(node_id, include_pruned=False):
            stack.append((kid.id, path + [{"dimension": node.dimension or "", "value": kid.label}]))
    return out


def iter_rows(store: Store, project_id: int, *, statuses: list[str] | None = None,
              under: str | None = None) -> Iterator[dict]:
    """Rows of live (not pruned) nodes in sample id order: fields, then path, leaf_id, status, sample_id.
    ``statuses`` None: every status but ``excluded`` (``ALL_BUT_EXCLUDED``).

    Streamed: the scope is checked up front (before the first row), samples are read in chunks. Rows of one
    node share their ``path`` list: copy it before changing it."""
    return _scoped_rows(store, project_id, statuses, under)[2]


def _scoped_rows(store: Store, project_id: int, statuses: list[str] | None,
                 under: str | None) -> tuple[ProjectSpec, dict[str, list[dict]], Iterator[dict]]:
    """The spec, the scope's node paths and the row generator; refusals are raised here, before any row."""
    spec = store.project(project_id)
    tree = store.tree(project_id)
    check_scope(tree, statuses, under)
    paths = scope_paths(tree, under)
    return spec, paths, _rows(store, project_id, spec.field_names, paths, ALL_BUT_EXCLUDED if statuses is None
                              else statuses)


def _rows(store: Store, project_id: int, names: list[str], paths: dict[str, list[dict]],
          statuses: list[str] | None) -> Iterator[dict]:
    for sample in store.iter_samples(project_id, statuses=statuses, nodes=paths):
        node_id = sample["node_id"]
        path = paths[node_id]
        data = sample["data"]
        row = {name: data.get(name, "") for name in names}
        drawn = sample["drawn"]
        row["path"] = [{"dimension": d, "value": v} for d, v in drawn] if drawn else path
        row["leaf_id"] = node_id
        row["status"] = sample["status"]
        row["sample_id"] = sample["id"]
        row["provenance"] = sample["provenance"]  # generated or imported (issue 11)
        row["edited"] = sample["edited"]  # the text was changed by a reviewer (issue 8)
        row["reason"] = sample["reason"]  # a reviewer's reject reason, or None
        row["note"] = sample["note"]  # a reviewer's note, or None
        yield row


def export_rows(store: Store, project_id: int, *, statuses: list[str] | None = None,
                under: str | None = None) -> list[dict]:
    """All rows as a list (small exports, previews and tests; files are streamed by ``write_export``)."""
    return [dict(r, path=[dict(p) for p in r["path"]])
            for r in iter_rows(store, project_id, statuses=statuses, under=under)]


def count_rows(store: Store, project_id: int, *, statuses: list[str] | None = None, under: str | None = None,
               counts: dict[str, dict[str, int]] | None = None) -> int:
    """How many rows an export with these choices has, from the counts by node and status
    (``Store.sample_counts``, or ``counts`` when the caller holds them), without decoding a sample."""
    tree = store.tree(project_id)
    check_scope(tree, statuses, under)
    paths = scope_paths(tree, under)
    counts = store.sample_counts(project_id) if counts is None else counts
    wanted = set(ALL_BUT_EXCLUDED if statuses is None else statuses)
    return sum(n for node_id, by_status in counts.items() if node_id in paths
               for status, n in by_status.items() if status in wanted)


# ----------------------------------------------------------------------------- one row in each format
# The text formats are assembled from pieces: JSON keys, paths and ids are encoded once per export (per node
# for paths), and each row encodes only its own field values, with the json module's own string encoder.
# The result is byte for byte what json.dumps and csv.writer produce for the same row (tests compare them);
# it is about twice as fast as encoding a whole row dict per sample.

_string = json.encoder.encode_basestring  # what json.dumps(..., ensure_ascii=False) uses for every str


def json_value(value) -> str:
    """``json.dumps(value, ensure_ascii=False)``, quicker for the common case of a str."""
    kind = type(value)
    if kind is str:
        return _string(value)
    return int.__repr__(value) if kind is int else json.dumps(value, ensure_ascii=False)


def safe_cell(value) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def csv_line(cells: list[str], verbatim: int = 0) -> str:
    """One CSV record as ``csv.writer`` (the excel dialect, QUOTE_MINIMAL) writes it: a cell holding a comma,
    a quote, CR or LF is quoted, its quotes doubled; records end in CRLF. The last ``verbatim`` cells are
    already encoded (several cells joined by commas) and go in as they are."""
    out = []
    for text in (cells[:-verbatim] if verbatim else cells):
        if '"' in text:
            text = '"' + text.replace('"', '""') + '"'
        elif "," in text or "\n" in text or "\r" in text:
            text = '"' + text + '"'
        out.append(text)
    if verbatim:
        out += cells[-verbatim:]
    return ",".join(out) + "\r\n"


def path_text(path: list[dict]) -> str:
    """The path as CSV shows it: ``dim=value > dim=value``."""
    return " > ".join(f"{p['dimension']}={p['value']}" for p in path)


class _ReviewTail:
    """The encoded provenance, edited, reason and note of a row; rows without a reason or note (nearly all) share
    one encoding per (provenance, edited)."""

    def __init__(self, render: Callable[[str, bool, str | None, str | None], str]):
        self.render, self.cache = render, {}

    def __call__(self, row: dict) -> str:
        provenance, edited, reason, note = row["provenance"], row["edited"], row["reason"], row["note"]
        if reason is not None or note is not None:
            return self.render(provenance, edited, reason, note)
        key = (provenance, edited)
        text = self.cache.get(key)
        if text is None:
            text = self.cache[key] = self.render(provenance, edited, None, None)
        return text


class _PathTexts:
    """A row's path as text, rendered once per node (a path drawn for one sample is rendered for it alone)."""

    def __init__(self, paths: dict[str, list[dict]], render: Callable[[list[dict]], str]):
        self.paths, self.render, self.cache = paths, render, {}

    def __call__(self, row: dict) -> str:
        path, leaf = row["path"], row["leaf_id"]
        if path is not self.paths.get(leaf):
            return self.render(path)
        text = self.cache.get(leaf)
        if text is None:
            text = self.cache[leaf] = self.render(path)
        return text


def jsonl_line_maker(names: list[str], paths: dict[str, list[dict]]) -> Callable[[dict], str]:
    """``json.dumps(row, ensure_ascii=False) + "\\n"`` for rows of this export."""
    keys = [_string(n) + ": " for n in names]
    path_json = _PathTexts(paths, lambda p: json.dumps(p, ensure_ascii=False))
    texts: dict = {}  # leaf ids and statuses, encoded once each

    def text(value) -> str:
        out = texts.get(value)
        if out is None:
            out = texts[value] = json_value(value)
        return out

    review = _ReviewTail(lambda provenance, edited, reason, note: (
        '"provenance": ' + text(provenance) + ', "edited": ' + ("true" if edited else "false") +
        ', "reason": ' + json_value(reason) + ', "note": ' + json_value(note)))

    def line(row: dict) -> str:
        parts = [key + json_value(row[n]) for key, n in zip(keys, names)]
        parts += ['"path": ' + path_json(row), '"leaf_id": ' + text(row["leaf_id"]),
                  '"status": ' + text(row["status"]), '"sample_id": ' + json_value(row["sample_id"]), review(row)]
        return "{" + ", ".join(parts) + "}\n"

    return line


def pair_fields(spec: ProjectSpec, fmt: str = "chat") -> tuple[list[str], list[str]]:
    """The input (prompt side) and output (answer side) field names, in the spec's order; the fine-tuning formats
    need at least one of each."""
    inputs = [f.name for f in spec.fields if f.role == "input"]
    outputs = [f.name for f in spec.fields if f.role == "output"]
    if not inputs or not outputs:
        raise TreeSynthError(f"{fmt} export needs at least one input and one output field",
                             "mark a field (output) in the project's fields")
    return inputs, outputs


def _joined(row: dict, names: list[str]) -> str:
    """One field's text as it is; several as "name: text" sections separated by a blank line."""
    return row[names[0]] if len(names) == 1 else "\n\n".join(f"{n}: {row[n]}" for n in names)


def chat_line_maker(spec: ProjectSpec, system: str | None = None) -> Callable[[dict], str]:
    """OpenAI chat fine-tuning lines (user = the input fields, assistant = the output fields), as
    ``json.dumps({"messages": [...]}, ensure_ascii=False) + "\\n"``."""
    inputs, outputs = pair_fields(spec, "chat")
    head = '{"messages": [' + ('{"role": "system", "content": ' + json_value(system) + "}, " if system else "")

    def line(row: dict) -> str:
        return (head + '{"role": "user", "content": ' + json_value(_joined(row, inputs)) +
                '}, {"role": "assistant", "content": ' + json_value(_joined(row, outputs)) + "}]}\n")

    return line


def sharegpt_line_maker(spec: ProjectSpec, system: str | None = None) -> Callable[[dict], str]:
    """ShareGPT lines: ``{"conversations": [{"from": "system"|"human"|"gpt", "value": ...}]}`` with the same
    sides as the chat format (human = the input fields, gpt = the output fields, an optional system turn first),
    as ``json.dumps(..., ensure_ascii=False) + "\\n"``."""
    inputs, outputs = pair_fields(spec, "sharegpt")
    head = '{"conversations": [' + ('{"from": "system", "value": ' + json_value(system) + "}, " if system else "")

    def line(row: dict) -> str:
        return (head + '{"from": "human", "value": ' + json_value(_joined(row, inputs)) +
                '}, {"from": "gpt", "value": ' + json_value(_joined(row, outputs)) + "}]}\n")

    return line


def alpaca_line_maker(spec: ProjectSpec, system: str | None = None) -> Callable[[dict], str]:
    """Alpaca lines: ``{"instruction", "input", "output"}`` (plus ``"system"`` when a system message is given,
    as LLaMA-Factory's Alpaca format allows). instruction = the first input field; input = the other input
    fields ("name: text" sections, empty when there is only one); output = the output fields, as in chat."""
    inputs, outputs = pair_fields(spec, "alpaca")
    first, rest = inputs[0], inputs[1:]
    tail = (', "system": ' + json_value(system) if system else "") + "}\n"

    def line(row: dict) -> str:
        more = "\n\n".join(f"{n}: {row[n]}" for n in rest)
        return ('{"instruction": ' + json_value(row[first]) + ', "input": ' + json_value(more) +
                ', "output": ' + json_value(_joined(row, outputs)) + tail)

    return line


PAIR_MAKERS = {"chat": chat_line_maker, "sharegpt": sharegpt_line_maker, "alpaca": alpaca_line_maker}


def csv_line_maker(names: list[str], paths: dict[str, list[dict]]) -> Callable[[dict], str]:
    """A row as a CSV record, every cell through ``safe_cell`` (no formula injection)."""
    path_cell = _PathTexts(paths, lambda p: safe_cell(path_text(p)))

    review = _ReviewTail(lambda provenance, edited, reason, note: csv_line(
        [safe_cell(provenance), "true" if edited else "false", safe_cell(reason), safe_cell(note)])[:-2])

    def line(row: dict) -> str:
        return csv_line([safe_cell(row[n]) for n in names] + [
            path_cell(row), safe_cell(row["leaf_id"]), safe_cell(row["status"]), safe_cell(row["sample_id"]),
            review(row)], verbatim=1)

    return line


# ----------------------------------------------------------------------------- writers


def _write_lines(rows: Iterator[dict], handle: BinaryIO, line: Callable[[dict], str], head: bytes = b"") -> int:
    """Encode and write LINES_PER_WRITE lines at a time; returns the number of rows."""
    handle.write(head)
    count, batch = 0, []
    for row in rows:
        batch.append(line(row))
        count += 1
        if len(batch) >= LINES_PER_WRITE:
            handle.write("".join(batch).encode())
            batch = []
    if batch:
        handle.write("".join(batch).encode())
    return count


def parquet_schema(spec: ProjectSpec):
    """Text columns for the fields, path (JSON text), leaf_id, status, provenance, reason and note; int64
    sample_id; bool edited. The pandas
    metadata is the one ``DataFrame.to_parquet(index=False)`` writes, so pandas reads the same frame back."""
    import pandas as pd
    import pyarrow as pa

    names = spec.field_names + TAIL
    kinds = {"sample_id": [1], "edited": [True]}  # the rest are text
    frame = pd.DataFrame({n: kinds.get(n, ["x"]) for n in names})  # dtypes as pandas infers them
    return pa.Schema.from_pandas(frame, preserve_index=False)


def _write_parquet(rows: Iterator[dict], handle: BinaryIO, spec: ProjectSpec, path_of: _PathTexts) -> int:
    """Parquet in row groups of ROW_GROUP rows: at most one group's columns in memory."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = parquet_schema(spec)
    names = spec.field_names
    columns: dict[str, list] = {n: [] for n in schema.names}
    count = 0
    with pq.ParquetWriter(handle, schema) as writer:
        def flush():
            writer.write_table(pa.table(columns, schema=schema))
            for values in columns.values():
                values.clear()

        for row in rows:
            for n in names:
                value = row[n]
                columns[n].append(value if isinstance(value, str) or value is None else str(value))
            columns["path"].append(path_of(row))
            columns["leaf_id"].append(row["leaf_id"])
            columns["status"].append(row["status"])
            columns["sample_id"].append(row["sample_id"])
            for name in ("provenance", "edited", "reason", "note"):
                columns[name].append(row[name])
            count += 1
            if count % ROW_GROUP == 0:
                flush()
        if count % ROW_GROUP or count == 0:
            flush()  # an empty export still writes its schema (one empty row group, as pandas did)
    return count


def write_export(store: Store, project_id: int, fmt: str, handle: BinaryIO, *, statuses: list[str] | None = None,
                 under: str | None = None, system: str | None = None) -> int:
    """Stream the export to a binary file object; returns the row count. Every refusal (format, scope,
    chat fields) comes before the first byte is written."""
    if fmt not in FORMATS:
        raise TreeSynthError(f"unknown export format {fmt!r}", f"choose one of {', '.join(FORMATS)}")
    pair = PAIR_MAKERS[fmt](store.project(project_id), system) if fmt in PAIR_MAKERS else None
    spec, paths, rows = _scoped_rows(store, project_id, statuses, under)
    if fmt == "jsonl":
        return _write_lines(rows, handle, jsonl_line_maker(spec.field_names, paths))
    if pair is not None:
        return _write_lines(rows, handle, pair)
    if fmt == "csv":
        header = csv_line(spec.field_names + TAIL)
        return _write_lines(rows, handle, csv_line_maker(spec.field_names, paths), ("\ufeff" + header).encode())
    return _write_parquet(rows, handle, spec, _PathTexts(paths, lambda p: json.dumps(p, ensure_ascii=False)))


def export_bytes(store: Store, project_id: int, fmt: str, *, statuses: list[str] | None = None,
                 under: str | None = None, system: str | None = None) -> bytes:
    """The export in memory (small exports and tests; use ``export_file`` for big ones)."""
    buffer = io.BytesIO()
    write_export(store, project_id, fmt, buffer, statuses=statuses, under=under, system=system)
    return buffer.getvalue()


def export_file(store: Store, project_id: int, fmt: str, out: str | Path, **options) -> int:
    """Stream the export to ``out`` atomically (the previous file survives any failure); returns the row count."""
    check_target(out, "export file")  # before the work: a bad path is refused at once
    if fmt not in FORMATS:
        raise TreeSynthError(f"unknown export format {fmt!r}", f"choose one of {', '.join(FORMATS)}")
    with atomic_file(out, "export file") as handle:
        return write_export(store, project_id, fmt, handle, **options)
