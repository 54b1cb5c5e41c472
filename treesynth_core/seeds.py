"""Seed examples: a few example samples a curator writes by hand or imports from a JSONL file, held per node or for
the whole task, and shown in pivot and leaf prompts as *style* examples (prompts.examples_block fences them off
from the content to vary, so the model matches their format and tone without copying them).

A node's prompts see the seeds of the node and of its ancestors, the nearest first, then the task-wide ones, at
most ``MAX_EXAMPLES`` of them. The choice is deterministic (same seeds, same prompt), so cached pivot replies stay
valid until the seeds change. Seeds are checked like generated samples (every field non-empty text, no invalid
Unicode, at most the project's ``max_field_chars``); a bad one refuses the whole batch or file with one line
naming it, so nothing is added half-way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, NotFoundError
from .samples import clean_samples
from .store import Store
from .tree import Node, refuse_pruned

MAX_EXAMPLES = 3  # seeds shown in one prompt (more cost tokens and invite copying)
MAX_SEEDS = 50  # seeds held per scope (a node, or the whole task): "a few", not a dataset
MAX_FILE_BYTES = 5_000_000  # a seed file is small; a bigger one is refused before it is read


@dataclass(frozen=True)
class Seed:
    id: int
    node_id: str | None  # None: the whole task
    data: dict
    source: str


def _check_node(store: Store, project_id: int, node_id: str | None) -> None:
    if node_id is None:
        return
    if node_id not in store.node_ids() or store.node(node_id).project_id != project_id:
        raise NotFoundError(f"node {node_id!r} is not in this project", "see the node ids with `show`")
    refuse_pruned(store.node_path(node_id), "no prompt there would show its examples")


def check_seeds(store: Store, project_id: int, rows: list, labels: list[str] | None = None) -> list[dict]:
    """The rows as clean seeds (the project's fields, stripped text), or ConfigError naming the first bad one by
    its label ("example 2", "line 7 of seeds.jsonl")."""
    spec = store.project(project_id)
    out = []
    for i, row in enumerate(rows, 1):
        where = labels[i - 1] if labels else f"example {i}"
        if isinstance(row, dict):
            missing = [n for n in spec.field_names if n not in row]
            if missing:
                raise ConfigError(f"{where} has no {', '.join(map(repr, missing))}",
                                  f"give every example the fields {', '.join(spec.field_names)}")
        kept, problems = clean_samples([row], spec.field_names, spec.settings.max_field_chars)
        if not kept:
            reason = problems[0].removeprefix("sample 1").lstrip(":").strip() if problems else "is unusable"
            raise ConfigError(f"{where} {reason}",
                              f"give every example non-empty text for {', '.join(spec.field_names)}")
        out.append(kept[0])
    return out


def ignored_fields(store: Store, project_id: int, rows: list) -> list[str]:
    """The keys of the rows that are not fields of the project, in the order first seen: a seed keeps only the
    project's fields, so these are dropped (the caller says so, as import-data names its columns not imported)."""
    names = set(store.project(project_id).field_names)
    out: dict[str, None] = {}
    for row in rows:
        if isinstance(row, dict):
            out.update((str(k), None) for k in row if k not in names)
    return list(out)


def add_seeds(store: Store, project_id: int, rows: list, *, node_id: str | None = None,
              source: str = "hand") -> list[int]:
    """Check and store seed examples on a node (None: the whole task); all or nothing. Returns their ids."""
    _check_node(store, project_id, node_id)
    clean = check_seeds(store, project_id, rows)
    if not clean:
        raise ConfigError("no seed example given", "give at least one example")
    held = len(store.seed_rows(project_id, [node_id]))
    if held + len(clean) > MAX_SEEDS:
        raise ConfigError(f"{held} + {len(clean)} seed examples is more than {MAX_SEEDS} for one scope",
                          "seeds are a few style examples; import a dataset to route it instead")
    return store.add_seed_rows(project_id, node_id, clean, source[:200])


def read_seed_file(data: bytes, name: str = "file") -> list[tuple[int, dict]]:
    """(line number, object) for each line of a JSONL seed file (one JSON object a line; blank lines skipped). A
    line that is not a JSON object is refused with its line number."""
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(f"the seed file {name} has {len(data):,} bytes (at most {MAX_FILE_BYTES:,})",
                          "seeds are a few examples; keep the file small")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"the seed file {name} is not UTF-8 text (byte {exc.start})",
                          "save it as UTF-8") from None
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise ConfigError(f"line {number} of {name} is not JSON: {str(exc)[:120]}",
                              "write one JSON object per line") from None
        if not isinstance(value, dict):
            raise ConfigError(f"line {number} of {name} is not a JSON object", "write one JSON object per line")
        rows.append((number, value))
    if not rows:
        raise ConfigError(f"the seed file {name} holds no example", "write one JSON object per line")
    return rows


def import_seed_file(store: Store, project_id: int, path: str | Path, *, node_id: str | None = None) -> list[int]:
    """Read a JSONL file of examples and add them (all or nothing); a bad line is named by its number."""
    target = Path(path)
    if not target.is_file():
        raise ConfigError(f"the seed file {path} does not exist or is not a file", "pass a JSONL file")
    if target.stat().st_size > MAX_FILE_BYTES:
        raise ConfigError(f"the seed file {path} has {target.stat().st_size:,} bytes (at most {MAX_FILE_BYTES:,})",
                          "seeds are a few examples; keep the file small")
    return import_seed_bytes(store, project_id, target.read_bytes(), target.name, node_id=node_id)


def import_seed_bytes(store: Store, project_id: int, data: bytes, name: str, *,
                      node_id: str | None = None) -> list[int]:
    numbered = read_seed_file(data, name)
    _check_node(store, project_id, node_id)
    clean = check_seeds(store, project_id, [row for _, row in numbered],
                        [f"line {number} of {name}" for number, _ in numbered])
    return add_seeds(store, project_id, clean, node_id=node_id, source=name)


def list_seeds(store: Store, project_id: int, node_id: str | None = None, *, everything: bool = True) -> list[Seed]:
    """Every seed of the project (``everything``) or those of one scope (a node, or None: the task-wide ones)."""
    rows = store.seed_rows(project_id, None if everything else [node_id])
    return [Seed(r["id"], r["node_id"], r["data"], r["source"] or "hand") for r in rows]


def delete_seeds(store: Store, project_id: int, seed_ids: list[int]) -> int:
    known = {s.id for s in list_seeds(store, project_id)}
    unknown = [i for i in seed_ids if i not in known]
    if unknown:
        raise NotFoundError(f"seed {unknown[0]} is not in this project", "see the seeds with `seed list`")
    return store.delete_seed_rows(project_id, seed_ids)


def style_examples(store: Store, project_id: int, path: list[Node], limit: int = MAX_EXAMPLES) -> list[dict]:
    """The examples a prompt at the end of ``path`` (root first) shows, at most ``limit``: the node's own seeds,
    then its imported rows (a leaf topped up after an import, issue 11 part 4, sees the curator's data as its
    style), then the ancestors' seeds (nearest first), then the task-wide ones. Empty (and the prompt
    unchanged) when there are none."""
    if limit <= 0 or not path:
        return []
    order = [n.id for n in reversed(path)] + [None]
    rows = store.seed_rows(project_id, order)
    rank = {node_id: i for i, node_id in enumerate(order)}
    rows.sort(key=lambda r: (rank[r["node_id"]], r["id"]))
    own = [r["data"] for r in rows if r["node_id"] == path[-1].id]
    imported = store.imported_examples(path[-1].id, limit) if len(own) < limit else []
    return (own + imported + [r["data"] for r in rows if r["node_id"] != path[-1].id])[:limit]
