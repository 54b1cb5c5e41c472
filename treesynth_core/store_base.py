"""Small helpers every part of the Store shares: timestamps, ids, JSON columns and Node rows.

store.py re-exports them (``from treesynth_core.store import now, new_id`` keeps working).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import uuid

from .tree import Node


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
