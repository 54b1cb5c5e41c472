"""Export samples as JSONL, CSV, Parquet or OpenAI chat fine-tuning JSONL.

Every row carries its fields, its leaf path attributes and its leaf id. CSV cells that a spreadsheet would
run as a formula (starting with = + - @ or a tab/CR) are neutralised with a leading apostrophe.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from .edits import SAMPLE_STATUSES
from .errors import ConfigError, NotFoundError, TreeSynthError
from .files import atomic_file, check_target
from .spec import ProjectSpec
from .store import Store

FORMATS = {"jsonl": "JSON Lines", "csv": "CSV", "parquet": "Parquet", "chat": "OpenAI chat fine-tuning JSONL"}
EXTENSIONS = {"jsonl": "jsonl", "csv": "csv", "parquet": "parquet", "chat": "jsonl"}
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def export_rows(store: Store, project_id: int, *, statuses: list[str] | None = None,
                under: str | None = None) -> list[dict]:
    """Rows of live (not pruned) leaves: fields, then path, leaf_id, status, sample_id."""
    spec = store.project(project_id)
    tree = store.tree(project_id)
    check_scope(tree, statuses, under)
    scope = {n.id for n in tree.subtree(under or tree.root.id)} if tree.root else set()
    rows = []
    for sample in store.samples(project_id, statuses=statuses):
        node_id = sample["node_id"]
        if node_id not in scope or tree.is_pruned(node_id):
            continue
        row = {name: sample["data"].get(name, "") for name in spec.field_names}
        row["path"] = [{"dimension": d, "value": v} for d, v in sample["drawn"]] or [
            {"dimension": d, "value": v} for d, v in tree.labelled_path(node_id)]
        row.update(leaf_id=node_id, status=sample["status"], sample_id=sample["id"])
        rows.append(row)
    return rows


def check_scope(tree, statuses: list[str] | None, under: str | None) -> None:
    """Refuse a status or a subtree that does not exist (an empty export would look like a real one)."""
    unknown = [s for s in statuses or [] if s not in SAMPLE_STATUSES]
    if unknown or (statuses is not None and not statuses):
        raise ConfigError(f"unknown sample status {', '.join(map(repr, unknown)) or '(empty)'}",
                          f"use one or more of {', '.join(SAMPLE_STATUSES)}, separated by commas")
    if under is not None and under not in tree.nodes:
        raise NotFoundError(f"node {under!r} is not in this project", "see the node ids with `show`")


def safe_cell(value) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def to_jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()


def to_csv(rows: list[dict], spec: ProjectSpec) -> bytes:
    out = io.StringIO()
    columns = spec.field_names + ["path", "leaf_id", "status", "sample_id"]
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        flat = dict(r, path=" > ".join(f"{p['dimension']}={p['value']}" for p in r["path"]))
        writer.writerow({k: safe_cell(flat[k]) for k in columns})
    return out.getvalue().encode("utf-8-sig")  # the BOM makes Excel read UTF-8


def to_parquet(rows: list[dict], spec: ProjectSpec) -> bytes:
    import pandas as pd

    frame = pd.DataFrame(rows, columns=spec.field_names + ["path", "leaf_id", "status", "sample_id"])
    frame["path"] = frame["path"].map(lambda p: json.dumps(p, ensure_ascii=False))
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def to_chat(rows: list[dict], spec: ProjectSpec, system: str | None = None) -> bytes:
    """OpenAI chat fine-tuning lines: user = the input fields, assistant = the output fields."""
    inputs = [f.name for f in spec.fields if f.role == "input"]
    outputs = [f.name for f in spec.fields if f.role == "output"]
    if not inputs or not outputs:
        raise TreeSynthError("chat export needs at least one input and one output field",
                             "mark a field (output) in the project's fields")

    def join(row, names):
        return row[names[0]] if len(names) == 1 else "\n\n".join(f"{n}: {row[n]}" for n in names)

    lines = []
    for r in rows:
        messages = [{"role": "system", "content": system}] if system else []
        messages += [{"role": "user", "content": join(r, inputs)}, {"role": "assistant", "content": join(r, outputs)}]
        lines.append(json.dumps({"messages": messages}, ensure_ascii=False) + "\n")
    return "".join(lines).encode()


def export_bytes(store: Store, project_id: int, fmt: str, *, statuses: list[str] | None = None,
                 under: str | None = None, system: str | None = None) -> bytes:
    return _render(store, project_id, fmt, statuses=statuses, under=under, system=system)[0]


def _render(store: Store, project_id: int, fmt: str, *, statuses: list[str] | None = None,
            under: str | None = None, system: str | None = None) -> tuple[bytes, int]:
    if fmt not in FORMATS:
        raise TreeSynthError(f"unknown export format {fmt!r}", f"choose one of {', '.join(FORMATS)}")
    spec = store.project(project_id)
    rows = export_rows(store, project_id, statuses=statuses, under=under)
    if fmt == "jsonl":
        data = to_jsonl(rows)
    elif fmt == "csv":
        data = to_csv(rows, spec)
    elif fmt == "parquet":
        data = to_parquet(rows, spec)
    else:
        data = to_chat(rows, spec, system)
    return data, len(rows)


def export_file(store: Store, project_id: int, fmt: str, out: str | Path, **options) -> int:
    """Write the export to ``out`` atomically (the previous file survives any failure); returns the row count."""
    check_target(out, "export file")  # before the work: a bad path is refused at once
    data, count = _render(store, project_id, fmt, **options)
    with atomic_file(out, "export file") as handle:
        handle.write(data)
    return count
