"""Reading a dataset file (CSV, JSONL, Parquet) for an import (issue 11): the records as a stream, and the mapping
of the project's fields to the file's columns; the import run itself is ``importer.py``.

The file is read once, as a stream: CSV and JSONL record by record, Parquet a row group batch at a time, so a
file of any length holds a bounded number of rows in memory. Each record comes with its line number, or with why
it could not be read (``Record``). Whole-file problems (not UTF-8, empty, a field no column maps to, an unreadable
Parquet file) are refused with a ConfigError before a row is read. Cells are returned as read, never evaluated.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Callable, Iterator

from .errors import ConfigError

FORMATS = ("csv", "jsonl", "parquet")
CHUNK = 1000  # rows committed per transaction by the import (and read per Parquet batch)
PEEK_BYTES = 1 << 16  # read up front to refuse a file that is not UTF-8 text
FINGERPRINT_BYTES = 1 << 20
CSV_FIELD_LIMIT = 64 << 20  # the csv module's own cap (128 KiB) would abort the file on one large cell


# ----------------------------------------------------------------------------- reading


def detect_format(path: str | Path, fmt: str | None = None) -> str:
    if fmt:
        if fmt not in FORMATS:
            raise ConfigError(f"unknown format {fmt!r}", f"use one of {', '.join(FORMATS)}")
        return fmt
    suffix = Path(path).suffix.lower().lstrip(".")
    found = {"csv": "csv", "tsv": "csv", "jsonl": "jsonl", "ndjson": "jsonl", "json": "jsonl", "parquet": "parquet",
             "pq": "parquet"}.get(suffix)
    if found is None:
        raise ConfigError(f"cannot tell the format of {Path(path).name} from its extension",
                          "name it .csv, .jsonl or .parquet, or pass --format")
    return found


def _check_text(path: Path) -> None:
    """Refuse, before anything is written, a file that is not UTF-8 text: its first 64 KiB must decode (a
    UTF-16 file, or Latin-1 with accented letters, fails here with one line). A bad byte further down only
    costs its own row."""
    with open(path, "rb") as handle:
        head = handle.read(PEEK_BYTES)
    _check_head(head, path.name)


def _check_head(head: bytes, name: str) -> None:
    """The checks of ``_check_text`` on a file's first ``PEEK_BYTES`` (also for an upload's preview)."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ConfigError(f"{name} is UTF-16 text, not UTF-8", "save it as UTF-8 and import it again")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if len(head) < PEEK_BYTES or exc.start < len(head) - 4:  # not merely a character cut at the boundary
            raise ConfigError(f"{name} is not UTF-8 text (byte {exc.start + 1} cannot be decoded; the file may "
                              "be Latin-1 or Windows-1252)", "save it as UTF-8 and import it again") from None
    if b"\x00" in head:
        raise ConfigError(f"{name} holds NUL bytes: it is not a text file",
                          "export the data as CSV, JSONL or Parquet")


SWALLOWED = "swallowed by an unterminated quote"  # a line counted as lost, its reason given once on the quote's line
Record = tuple[int, dict | None, str | None]  # (line, the record's cells or None, why it could not be read)


def _csv_records(path: Path) -> tuple[list[str], Iterator[Record]]:
    csv.field_size_limit(CSV_FIELD_LIMIT)
    handle = open(path, encoding="utf-8-sig", errors="surrogateescape", newline="")
    try:
        sample = handle.read(PEEK_BYTES)
        handle.seek(0)
        try:
            dialect = csv.Sniffer().sniff(sample, delimiters=",;\t|") if sample.strip() else csv.excel
        except csv.Error:
            dialect = csv.excel
        reader = csv.reader(handle, dialect)
        header = next(reader, None)
    except BaseException:
        handle.close()
        raise
    if not header or not any(h.strip() for h in header):
        handle.close()
        raise ConfigError(f"{path.name} is empty (no header line)", "a CSV file needs a header line naming its columns")
    columns = [h.strip() for h in header]

    size = os.fstat(handle.fileno()).st_size

    def row(line: int, cells: list[str]) -> Iterator[Record]:
        if len(cells) != len(columns):
            yield line, None, f"{len(cells)} cell(s), the header has {len(columns)}"
        else:
            yield line, dict(zip(columns, cells)), None

    def records() -> Iterator[Record]:
        held: tuple[int, list[str]] | None = None  # a multi-line record read at the end: the last one?
        with handle:
            start = reader.line_num + 1
            while True:
                try:
                    cells = next(reader)
                except StopIteration:
                    if held is not None and _runs_to_eof(path, dialect, held[0]):
                        line, cells = held
                        swallowed = sum(1 for c in cells for text in c.splitlines()[1:] if text.strip())
                        yield line, None, (f"an unterminated quote (a \" that is never closed) starts here: the "
                                           f"{swallowed} line(s) after it, to the end of the file, were read as one "
                                           "cell and none of them was imported; close the quote and import again")
                        for number in range(line + 1, line + 1 + swallowed):
                            yield number, None, SWALLOWED
                    elif held is not None:
                        yield from row(*held)
                    return
                except csv.Error as exc:
                    if held is not None:
                        yield from row(*held)
                        held = None
                    yield start, None, f"unreadable CSV ({exc})"
                    start = reader.line_num + 1
                    continue
                if held is not None:
                    yield from row(*held)
                    held = None
                line, start = start, reader.line_num + 1
                if not cells or not any(c.strip() for c in cells):
                    continue  # a blank line
                if start - line > 1 and any("\n" in c or "\r" in c for c in cells) and os.lseek(
                        handle.fileno(), 0, os.SEEK_CUR) >= size:  # the file is read to its end: maybe the last
                    held = line, cells
                    continue
                yield from row(line, cells)

    return columns, records()


def _runs_to_eof(path: Path, dialect, line: int) -> bool:
    """Whether the CSV record starting at ``line`` is a quoted field never closed (it runs to the end of the file):
    the lenient reader takes it as one cell; a strict reader from that line says so."""
    with open(path, encoding="utf-8-sig", errors="surrogateescape", newline="") as handle:
        for _ in range(line - 1):
            handle.readline()
        try:
            next(csv.reader(handle, dialect, strict=True), None)
        except csv.Error as exc:
            return "unexpected end of data" in str(exc)
    return False


def _jsonl_records(path: Path) -> tuple[list[str], Iterator[Record]]:
    """JSONL: one object per line. Its columns are the first object's keys (rows may have more: ignored)."""
    handle = open(path, encoding="utf-8-sig", errors="surrogateescape")
    first: tuple[int, dict] | None = None
    buffered: list[Record] = []
    try:
        for number, text in enumerate(handle, 1):
            if not text.strip():
                continue
            record = _json_record(number, text)
            buffered.append(record)
            if record[1] is not None:
                first = (number, record[1])
                break
    except BaseException:
        handle.close()
        raise
    if first is None and not buffered:
        handle.close()
        raise ConfigError(f"{path.name} is empty (no JSON line)", "a JSONL file holds one JSON object per line")
    columns = list(first[1]) if first else []
    start = first[0] if first else 0

    def records() -> Iterator[Record]:
        with handle:
            yield from buffered
            for number, text in enumerate(handle, start + 1):
                if text.strip():
                    yield _json_record(number, text)

    return columns, records()


def _json_record(number: int, text: str) -> Record:
    try:
        value = json.loads(text)
    except ValueError as exc:
        return number, None, f"not valid JSON ({str(exc)[:80]})"
    if not isinstance(value, dict):
        return number, None, f"{_json_kind(value)}, not an object"
    return number, value, None


def _json_kind(value) -> str:
    """A JSON value's kind in JSON's own words: a JSON null, string, number, list or true/false."""
    if value is None:
        return "a JSON null"
    if isinstance(value, bool):
        return "a JSON true/false"
    if isinstance(value, (int, float)):
        return "a JSON number"
    return "a JSON string" if isinstance(value, str) else "a JSON list"


def _parquet_records(path: Path, wanted: Callable[[list[str]], list[str]]) -> tuple[list[str], Iterator[Record]]:
    try:
        import pyarrow.parquet as pq

        source = pq.ParquetFile(path)
    except ImportError:
        raise ConfigError("reading Parquet needs pyarrow", "pip install pyarrow") from None
    except Exception as exc:
        raise ConfigError(f"{path.name} is not a readable Parquet file ({type(exc).__name__}: {str(exc)[:120]})",
                          "check the file, or export it as CSV or JSONL") from None
    columns = list(source.schema_arrow.names)
    if source.metadata.num_rows == 0:
        raise ConfigError(f"{path.name} is empty (no rows)", "import a file with rows")

    def records() -> Iterator[Record]:
        number = 0
        for batch in source.iter_batches(batch_size=CHUNK, columns=wanted(columns)):
            for row in batch.to_pylist():
                number += 1
                yield number, row, None

    return columns, records()


# ----------------------------------------------------------------------------- mapping


def resolve_mapping(field_names: list[str], columns: list[str], mapping: dict[str, str] | None) -> dict[str, str]:
    """field -> column. Given pairs are checked against the file's columns; every other field takes the column
    of its own name (case folded). A field with no column refuses the file with the columns it has."""
    mapping = dict(mapping or {})
    unknown = [f for f in mapping if f not in field_names]
    if unknown:
        raise ConfigError(f"{unknown[0]!r} is not a field of this project (its fields: {', '.join(field_names)})",
                          "map each field as FIELD=COLUMN")
    by_fold: dict[str, list[str]] = {}
    for c in dict.fromkeys(columns):
        by_fold.setdefault(c.casefold(), []).append(c)
    out = {}
    for name in field_names:
        column = mapping.get(name)
        if column is None:
            alike = by_fold.get(name.casefold(), [])
            column = name if name in alike else alike[0] if len(alike) == 1 else None
            if len(alike) > 1 and column is None:
                raise ConfigError(f"the columns {' and '.join(repr(c) for c in alike)} both fit the field {name!r}",
                                  f"choose one: --map {name}=COLUMN")
        elif column not in columns:
            raise ConfigError(f"the file has no column {column!r} (its columns: {', '.join(columns[:20])})",
                              f"map {name} to one of those")
        if column is None:
            have = ", ".join(columns[:20]) or "none"
            raise ConfigError(f"no column for the field {name!r}: the file's columns are {have}",
                              f"map it, e.g. --map {name}=COLUMN (or rename the column)")
        if columns.count(column) > 1:
            raise ConfigError(f"the file has {columns.count(column)} columns named {column!r}: which one holds "
                              f"{name!r} is ambiguous", "rename the repeated columns in the header line")
        out[name] = column
    return out


def parse_mapping(pairs: list[str] | None) -> dict[str, str]:
    """``["question=prompt", "answer=completion"]`` -> {"question": "prompt", "answer": "completion"}."""
    out = {}
    for pair in pairs or []:
        name, eq, column = pair.partition("=")
        if not eq or not name.strip() or not column.strip():
            raise ConfigError(f"--map {pair!r} is not FIELD=COLUMN", "e.g. --map question=prompt")
        if name.strip() in out:
            raise ConfigError(f"--map names the field {name.strip()!r} twice ({name.strip()}={out[name.strip()]} "
                              f"and {pair})", "map each field once")
        out[name.strip()] = column.strip()
    return out


def open_records(path: Path, fmt: str, field_names: list[str], mapping: dict[str, str] | None
                 ) -> tuple[dict[str, str], list[str], Iterator[Record]]:
    """The resolved mapping, the columns left out, and the records: everything checked before a row is read."""
    if not path.is_file():
        raise ConfigError(f"{path} is not a file", "pass the path of a CSV, JSONL or Parquet file")
    if path.stat().st_size == 0:
        raise ConfigError(f"{path.name} is empty (0 bytes)", "import a file with rows")
    if fmt == "parquet":
        resolved: dict[str, str] = {}

        def wanted(columns: list[str]) -> list[str]:
            resolved.update(resolve_mapping(field_names, columns, mapping))
            return list(dict.fromkeys(resolved.values()))

        columns, records = _parquet_records(path, wanted)
        resolved.update(resolve_mapping(field_names, columns, mapping))
    else:
        _check_text(path)
        columns, records = (_csv_records if fmt == "csv" else _jsonl_records)(path)
        resolved = resolve_mapping(field_names, columns, mapping) if columns else {}
        if not columns:  # a JSONL file whose lines are all bad: every row is reported below
            resolved = {name: name for name in field_names}
    ignored = [c for c in columns if c not in resolved.values()]
    return resolved, ignored, records


def file_fingerprint(path: Path, fmt: str, mapping: dict[str, str]) -> str:
    """Size, the first MiB and the mapping: the same file imported again the same way is the same import."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        digest.update(handle.read(FINGERPRINT_BYTES))
    digest.update(json.dumps([path.stat().st_size, fmt, sorted(mapping.items())]).encode())
    return digest.hexdigest()[:32]


def peek_columns(data: bytes, name: str, limit: int = 5) -> tuple[list[str], list[dict]]:
    """The columns and first rows of an upload, for the app's mapping step (reads at most 64 KiB)."""
    fmt = detect_format(name)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        table = pq.ParquetFile(io.BytesIO(data))
        first = next(table.iter_batches(batch_size=limit), None)
        return list(table.schema_arrow.names), first.to_pylist()[:limit] if first is not None else []
    _check_head(data[:PEEK_BYTES], Path(name).name)  # refused here as the import would refuse it
    text = data[:PEEK_BYTES].decode("utf-8-sig", errors="replace")
    if fmt == "jsonl":
        rows = []
        for line in text.splitlines()[:limit + 1]:
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                rows.append(value)
        return (list(rows[0]) if rows else []), rows[:limit]
    reader = csv.reader(io.StringIO(text))
    header = next(reader, [])
    rows = [dict(zip(header, r)) for r, _ in zip(reader, range(limit))]
    return [h.strip() for h in header], rows
