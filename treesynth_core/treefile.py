"""The tree as a JSON file: export a project's spec and tree, import it into a new project.

Imports are validated before anything is written: bounded size and depth, the right shapes, no duplicate
sibling values, with errors that name where the problem is.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from pydantic import ValidationError

from . import edits
from .errors import ConfigError, TreeImportError
from .files import atomic_write
from .spec import ProjectSpec, bounds
from .store import Store
from .tree import STATUSES, dimension_problem, normalise, value_problem

FORMAT = "treesynth-tree"
VERSION = 1
MAX_BYTES = 20_000_000
MAX_NODES = 50_000
MAX_DEPTH = 12
MAX_TEXT = 500
MAX_QUOTA = int(bounds("per_leaf")[1])
MAX_NESTING = 4 * MAX_DEPTH + 16  # JSON brackets: two per tree level, a few for the project section
STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
NOT_BRACKET = re.compile(rb"[^\[\]{}]+")
ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
NODE_KEYS = {"id", "value", "dimension", "infinite", "values", "status", "provenance", "locked", "quota", "children"}


def export_tree(store: Store, project_id: int) -> dict:
    spec = store.project(project_id)
    tree = store.tree(project_id)

    def node_dict(node) -> dict:
        out = {"id": node.id, "value": node.value, "dimension": node.dimension, "status": node.status,
               "provenance": node.provenance, "locked": node.locked}
        if node.infinite:
            out.update(infinite=True, values=node.values)
        if node.quota is not None:
            out["quota"] = node.quota
        out["children"] = [node_dict(k) for k in tree.kids(node.id)]
        return out

    return {"format": FORMAT, "version": VERSION, "project": json.loads(spec.model_dump_json()),
            "tree": node_dict(tree.root)}


def write_tree_file(store: Store, project_id: int, path: str | Path) -> None:
    """Write the project's tree file atomically (the previous file survives any failure)."""
    text = json.dumps(export_tree(store, project_id), indent=2, ensure_ascii=False)
    atomic_write(path, text.encode("utf-8"), "tree file")


def read_tree_file(path: str | Path) -> bytes:
    """A tree file's bytes, its size checked before it is read."""
    source = Path(path)
    if not source.is_file():
        raise ConfigError(f"tree file {path} does not exist or is not a file",
                          "pass the path of a file written by `export-tree`")
    size = source.stat().st_size
    if size > MAX_BYTES:
        raise TreeImportError(f"the file is larger than {MAX_BYTES // 1_000_000} MB ({size:,} bytes)", "trim the tree")
    try:
        return source.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the tree file {path}: {exc.strerror}", "check its permissions") from None


def nesting_depth(data: bytes, limit: int) -> int:
    """How deeply the JSON text nests arrays and objects, found without recursion (strings skipped);
    stops counting once ``limit`` is exceeded."""
    depth = deepest = 0
    for char in NOT_BRACKET.sub(b"", STRING.sub(b"", data)):
        if char in b"[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    break
        else:
            depth -= 1
    return deepest


def _check_node(node, where: str, depth: int, counter: list[int]) -> None:
    if not isinstance(node, dict):
        raise TreeImportError(f"{where} is not an object", "each node is a JSON object")
    unknown = set(node) - NODE_KEYS
    if unknown:
        raise TreeImportError(f"{where} has unknown keys: {', '.join(sorted(unknown))}", "remove them")
    if depth > MAX_DEPTH:
        raise TreeImportError(f"{where} is deeper than {MAX_DEPTH} levels", "trim the tree")
    counter[0] += 1
    if counter[0] > MAX_NODES:
        raise TreeImportError(f"the tree has more than {MAX_NODES} nodes", "split it into several projects")
    for key in ("value", "dimension"):
        text = node.get(key)
        if text is not None and (not isinstance(text, str) or len(text) > MAX_TEXT):
            raise TreeImportError(f"{where}.{key} must be text of at most {MAX_TEXT} characters", "fix the file")
    if node.get("dimension"):
        problem = dimension_problem(node["dimension"])
        if problem:
            raise TreeImportError(f"{where}.dimension: {problem}", "name one concrete dimension in plain words")
    if node.get("status", "proposed") not in STATUSES:
        raise TreeImportError(f"{where}.status must be one of {', '.join(STATUSES)}", "fix the file")
    if node.get("provenance", "llm") not in ("llm", "human"):
        raise TreeImportError(f"{where}.provenance must be llm or human", "fix the file")
    if node.get("infinite") and (not isinstance(node.get("values"), list)
                                 or not all(isinstance(v, str) and v.strip() for v in node["values"])):
        raise TreeImportError(f"{where} is open-ended but its values are not a list of text", "fix the file")
    if node.get("infinite"):
        for value in node["values"]:
            problem = value_problem(" ".join(value.split()))
            if problem:
                raise TreeImportError(f"{where}.values: {problem}",
                                      "values must be concrete, distinct and not combined")
    quota = node.get("quota")
    if quota is not None and (not isinstance(quota, int) or isinstance(quota, bool) or not 0 <= quota <= MAX_QUOTA):
        raise TreeImportError(f"{where}.quota must be a whole number from 0 to {MAX_QUOTA}", "fix the file")
    if node.get("id") is not None and not (isinstance(node["id"], str) and ID.match(node["id"])):
        raise TreeImportError(f"{where}.id must be 1 to 32 letters, digits, - or _", "fix or remove the id")
    children = node.get("children", [])
    if not isinstance(children, list):
        raise TreeImportError(f"{where}.children must be a list", "fix the file")
    if children and not node.get("dimension"):
        raise TreeImportError(f"{where} has children but no dimension", "name the dimension that splits it")
    seen = set()
    for i, child in enumerate(children):
        here = f"{where}.children[{i}]"
        if isinstance(child, dict) and not child.get("infinite"):
            value = child.get("value")
            if not isinstance(value, str) or not value.strip():
                raise TreeImportError(f"{here} has no value", "every child needs a value")
            problem = value_problem(value)
            if problem:
                raise TreeImportError(f"{here}.value: {problem}", "values must be concrete, distinct and not combined")
            if normalise(value) in seen:
                raise TreeImportError(f"{here} repeats the sibling value {value!r}", "sibling values must differ")
            seen.add(normalise(value))
        _check_node(child, here, depth + 1, counter)


def parse_tree_file(data: bytes | str) -> tuple[ProjectSpec, dict]:
    """Validate a tree file; returns (spec, root node dict). Raises TreeImportError with the reason."""
    if len(data) > MAX_BYTES:
        raise TreeImportError(f"the file is larger than {MAX_BYTES // 1_000_000} MB", "trim the tree")
    if isinstance(data, str):
        try:
            data = data.encode("utf-8")
        except UnicodeEncodeError:
            raise TreeImportError("the file contains invalid Unicode", "export a tree from TreeSynth Studio") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TreeImportError(f"the file is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})",
                              "save it as UTF-8, or export a tree from TreeSynth Studio") from None
    if nesting_depth(data, MAX_NESTING) > MAX_NESTING:
        raise TreeImportError(f"the file nests lists and objects more than {MAX_NESTING} levels deep",
                              f"a tree file holds at most {MAX_DEPTH} tree levels")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TreeImportError(f"the file is not valid JSON: {exc}", "export a tree from TreeSynth Studio") from None
    except RecursionError:  # a last guard: the scan above should have refused it
        raise TreeImportError("the file nests too deeply", f"a tree file holds at most {MAX_DEPTH} levels") from None
    try:
        json.dumps(doc, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise TreeImportError("the file contains an invalid Unicode escape (a lone surrogate such as \\ud800)",
                              "remove it; text must be valid Unicode") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise TreeImportError(f"this is not a {FORMAT} file", "export a tree from TreeSynth Studio")
    if doc.get("version") != VERSION:
        raise TreeImportError(f"unsupported version {doc.get('version')!r}", f"this build reads version {VERSION}")
    try:
        spec = ProjectSpec.model_validate(doc.get("project"))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise TreeImportError(f"project.{where}: {first['msg'].removeprefix('Value error, ')}",
                              "fix the project section") from None
    root = doc.get("tree")
    _check_node(root, "tree", 0, [0])
    return spec, root


def import_tree(store: Store, data: bytes | str, *, name: str | None = None) -> int:
    """Create a new project from a tree file, in one transaction. Node ids are kept when free."""
    spec, root = parse_tree_file(data)
    if name is not None:
        try:
            spec = ProjectSpec.model_validate({**spec.model_dump(), "name": name})
        except ValidationError as exc:
            raise TreeImportError(f"the project name: {exc.errors()[0]['msg'].removeprefix('Value error, ')}",
                                  "choose a name of 1 to 200 characters") from None
    with store.atomic():
        taken = store.node_ids()

        def free(node_id):
            if node_id and node_id not in taken:
                taken.add(node_id)
                return node_id
            return None

        project_id = store.create_project(spec)
        edits.import_tree_nodes(store, project_id, root, free)
    return project_id
