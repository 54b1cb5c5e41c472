"""The tree as a JSON file: a faithful round trip, and malformed files refused before anything is written."""

from __future__ import annotations

import json

import pytest

from treesynth_core import edits, treefile
from treesynth_core.errors import TreeImportError
from treesynth_core.partition import build
from treesynth_core.treefile import export_tree, import_tree, parse_tree_file


def shape(store, project_id) -> dict:
    """Everything a tree file is meant to carry, without node ids."""
    tree = store.tree(project_id)

    def node(n) -> dict:
        return {"value": n.value, "dimension": n.dimension, "infinite": n.infinite, "values": n.values,
                "status": n.status, "provenance": n.provenance, "locked": n.locked, "quota": n.quota,
                "children": [node(k) for k in tree.kids(n.id)]}

    return node(tree.root)


def counts(store) -> tuple[int, int]:
    return (store.query("select count(*) as n from projects")[0]["n"],
            store.query("select count(*) as n from nodes")[0]["n"])


@pytest.fixture
def edited_tree(fake, store, project, llm):
    """A tree built on the fake and then edited: pruned, approved, locked, a quota and an open-ended node."""
    build(store, project, llm, depth=2)
    tree = store.tree(project)
    first, second, third = tree.kids(tree.root.id)
    edits.prune(store, first.id)
    edits.approve(store, second.id, subtree=True)
    leaf = tree.kids(second.id)[0]
    edits.lock(store, leaf.id)
    edits.set_quota(store, leaf.id, 7)
    edits.rename_value(store, tree.kids(third.id)[1].id, "Ünïcödé value")
    edits.set_split(store, tree.kids(third.id)[0].id, "city", ["Lagos", "Lima"])
    target = store.tree(project).kids(tree.kids(third.id)[0].id)[0]
    edits.rename_dimension(store, target.id, "year")
    store.add_children(store.node(target.id), [{"infinite": True, "values": ["1999", "2004", "2011"]}],
                       provenance="llm")
    return project


def test_round_trip_keeps_structure_dimensions_values_statuses_and_open_ended_values(store, edited_tree):
    doc = export_tree(store, edited_tree)
    text = json.dumps(doc)

    new = import_tree(store, text)

    assert new != edited_tree
    assert shape(store, new) == shape(store, edited_tree)
    assert store.project(new) == store.project(edited_tree)
    original = shape(store, edited_tree)
    statuses = json.dumps(original, ensure_ascii=False)
    for expected in ('"pruned"', '"approved"', '"edited"', '"proposed"', '"locked": true', '"quota": 7',
                     '"Ünïcödé value"', '"1999", "2004", "2011"', '"infinite": true'):
        assert expected in statuses  # the fixture really exercised what the round trip must keep
    assert len(store.tree(new)) == len(store.tree(edited_tree))
    again = export_tree(store, new)
    assert again["project"] == doc["project"] and again["format"] == "treesynth-tree" and again["version"] == 1


def test_import_can_rename_the_project_and_accepts_bytes(store, edited_tree):
    data = json.dumps(export_tree(store, edited_tree)).encode()
    new = import_tree(store, data, name="copy of math")
    assert store.project(new).name == "copy of math"
    assert store.project(new).task == store.project(edited_tree).task
    assert shape(store, new) == shape(store, edited_tree)


def test_import_into_another_file(tmp_path, store, edited_tree):
    from treesynth_core.store import Store

    text = json.dumps(export_tree(store, edited_tree), ensure_ascii=False)
    with Store(tmp_path / "other.db") as other:
        new = import_tree(other, text)
        assert shape(other, new) == shape(store, edited_tree)


def test_import_into_a_fresh_file_keeps_node_ids(tmp_path, store, edited_tree):
    from treesynth_core.store import Store

    doc = export_tree(store, edited_tree)
    with Store(tmp_path / "other.db") as other:
        new = import_tree(other, json.dumps(doc))
        assert {n.id for n in other.tree(new).nodes.values()} == {n.id for n in store.tree(edited_tree).nodes.values()}


# ----------------------------------------------------------------------------- malformed files


def minimal() -> dict:
    return {
        "format": "treesynth-tree", "version": 1,
        "project": {"name": "p", "task": "short stories", "fields": [{"name": "story", "role": "input"}]},
        "tree": {"dimension": "genre", "children": [{"value": "horror"}, {"value": "comedy"}]},
    }


def chain(levels: int) -> dict:
    """A path of ``levels`` splits below the root (each node has one child)."""
    node: dict = {"value": f"v{levels}"}
    for i in range(levels - 1, 0, -1):
        node = {"value": f"v{i}", "dimension": f"dimension {i}", "children": [node]}
    return {"dimension": "dimension 0", "children": [node]}


def mutate(**changes):
    doc = minimal()
    for path, value in changes.items():
        target = doc
        *parents, last = path.split("__")
        for key in parents:
            target = target[int(key)] if key.isdigit() else target[key]
        target[int(last) if last.isdigit() else last] = value
    return json.dumps(doc)


MALFORMED = {
    "invalid JSON": ("{not json", "not valid JSON"),
    "not UTF-8": (b"\xff\xfe\x00{", "not UTF-8 text (byte 0xff at offset 0)"),
    "Latin-1 text": ('{"format": "treesynth-tree", "name": "caf\xe9"}'.encode("latin-1"), "not UTF-8 text"),
    "nested 10,000 levels": (b"[" * 10_000 + b"]" * 10_000, "nests lists and objects more than"),
    "nested objects in a string-heavy file": (
        b'{"a": "[[[[", "b": ' * 5_000 + b"1" + b"}" * 5_000, "nests lists and objects more than"),
    "lone surrogate": (mutate(tree__children__0__value="\ud800"), "invalid Unicode escape"),
    "formula value": (mutate(tree__children__0__value="=HYPERLINK(\"http://x\")"),
                      "tree.children[0].value: value '=HYPERLINK"),
    "markup dimension": (mutate(tree__dimension="<img src=x onerror=alert(1)>"), "tree.dimension: dimension '<img"),
    "catch-all value": (mutate(tree__children__1__value="other"), "tree.children[1].value: 'other' is a vague"),
    "a JSON list": ("[1, 2]", "not a treesynth-tree file"),
    "wrong format": (mutate(format="someone-elses-tree"), "not a treesynth-tree file"),
    "no format": (json.dumps({k: v for k, v in minimal().items() if k != "format"}), "not a treesynth-tree file"),
    "wrong version": (mutate(version=2), "unsupported version 2"),
    "unknown root key": (mutate(tree__colour="red"), "tree has unknown keys: colour"),
    "unknown child keys": (mutate(tree__children__1__weight=3, tree__children__1__aaa=1),
                           "tree.children[1] has unknown keys: aaa, weight"),
    "children but no dimension": (mutate(tree__dimension=None), "tree has children but no dimension"),
    "grandchildren but no dimension": (
        mutate(tree__children__0__children=[{"value": "gore"}, {"value": "ghosts"}]),
        "tree.children[0] has children but no dimension"),
    "duplicate sibling values": (mutate(tree__children__1__value="  HORROR! "),
                                 "tree.children[1] repeats the sibling value '  HORROR! '"),
    "duplicate sibling punctuation": (
        mutate(tree__children=[{"value": "sci-fi"}, {"value": "Sci fi"}]), "repeats the sibling value 'Sci fi'"),
    "child without value": (mutate(tree__children__0__value="  "), "tree.children[0] has no value"),
    "value not text": (mutate(tree__children__0__value=5), "tree.children[0] has no value"),
    "value too long": (mutate(tree__children__0__value="x" * 501), "tree.children[0].value: value 'xxx"),
    "quota too large": (mutate(tree__children__0__quota=10_001), "quota must be a whole number from 0 to 10000"),
    "children not a list": (mutate(tree__children={"value": "x"}), "tree.children must be a list"),
    "node not an object": (mutate(tree__children=["horror", "comedy"]), "tree.children[0] is not an object"),
    "no tree": (json.dumps({k: v for k, v in minimal().items() if k != "tree"}), "tree is not an object"),
    "too deep": (mutate(tree=chain(treefile.MAX_DEPTH + 1)), f"deeper than {treefile.MAX_DEPTH} levels"),
    "unknown status": (mutate(tree__children__0__status="bogus"), "tree.children[0].status must be one of"),
    "unknown provenance": (mutate(tree__provenance="robot"), "tree.provenance must be llm or human"),
    "open-ended values not a list": (
        mutate(tree__children=[{"infinite": True, "values": "Lagos"}]),
        "tree.children[0] is open-ended but its values are not a list of text"),
    "open-ended values not text": (
        mutate(tree__children=[{"infinite": True, "values": ["Lagos", 2]}]), "values are not a list of text"),
    "project missing": (json.dumps({k: v for k, v in minimal().items() if k != "project"}), "project."),
    "project without task": (mutate(project__task=None), "project.task"),
    "project bad field name": (mutate(project__fields=[{"name": "two words"}]), "project.fields.0.name"),
    "project unknown setting": (mutate(project__settings={"bogus": 1}), "project.settings.bogus"),
    "project setting out of range": (mutate(project__settings={"max_depth": 99}), "project.settings.max_depth"),
    "root split formula dimension": (
        mutate(project__root_split={"dimension": "=HYPERLINK(\"x\")", "values": ["a", "b"]}),
        "project.root_split.dimension: dimension '=HYPERLINK"),
    "root split catch-all value": (mutate(project__root_split={"dimension": "genre", "values": ["horror", "misc"]}),
                                   "project.root_split.values: 'misc' is a vague catch-all"),
    "open-ended markup value": (mutate(tree__children=[{"infinite": True, "values": ["Lagos", "<b>Paris</b>"]}]),
                                "tree.children[0].values: value '<b>Paris</b>' contains HTML"),
}


@pytest.mark.parametrize("data,message", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_file_is_refused_with_the_reason_and_creates_no_project(store, project, data, message):
    before = counts(store)
    with pytest.raises(TreeImportError) as info:
        import_tree(store, data)
    assert message in info.value.message
    assert info.value.hint
    assert counts(store) == before


def test_the_deepest_allowed_tree_is_accepted(store):
    new = import_tree(store, mutate(tree=chain(treefile.MAX_DEPTH)))
    assert store.tree(new).max_depth() == treefile.MAX_DEPTH


def test_too_many_nodes_is_refused(store, project, monkeypatch):
    monkeypatch.setattr(treefile, "MAX_NODES", 5)
    five = mutate(tree__children=[{"value": f"genre {i}"} for i in range(4)])
    six = mutate(tree__children=[{"value": f"genre {i}"} for i in range(5)])
    assert len(store.tree(import_tree(store, five))) == 5
    before = counts(store)
    with pytest.raises(TreeImportError, match="more than 5 nodes"):
        import_tree(store, six)
    assert counts(store) == before


def test_too_large_file_is_refused_before_parsing(store, project):
    data = b" " * (treefile.MAX_BYTES + 1)  # not even valid JSON: the size check comes first
    before = counts(store)
    with pytest.raises(TreeImportError, match="larger than 20 MB"):
        import_tree(store, data)
    assert counts(store) == before


def test_parse_tree_file_returns_spec_and_root_without_writing(store):
    before = counts(store)
    spec, root = parse_tree_file(mutate())
    assert spec.name == "p" and spec.field_names == ["story"]
    assert [c["value"] for c in root["children"]] == ["horror", "comedy"]
    assert counts(store) == before


def test_a_quota_that_is_not_a_count_is_refused(store, project):
    doc = minimal()
    doc["tree"]["children"][0]["quota"] = "abc"
    before = counts(store)
    with pytest.raises(TreeImportError):
        import_tree(store, json.dumps(doc))
    assert counts(store) == before


def test_mutate_helper_leaves_minimal_valid(store):
    """The malformed cases above are each one change away from this file, which imports."""
    new = import_tree(store, mutate())
    tree = store.tree(new)
    assert tree.root.dimension == "genre"
    assert [k.value for k in tree.kids(tree.root.id)] == ["horror", "comedy"]


def test_a_file_nested_far_beyond_the_limit_is_refused_without_recursion(store, project):
    """A 100,000-level file would blow Python's recursion limit in json.loads: the scan refuses it first."""
    data = b'{"a": ' * 100_000 + b"1" + b"}" * 100_000
    assert treefile.nesting_depth(data, treefile.MAX_NESTING) == treefile.MAX_NESTING + 1  # stops early
    with pytest.raises(TreeImportError, match="nests lists and objects more than"):
        import_tree(store, data)


def test_brackets_inside_strings_do_not_count_as_nesting():
    assert treefile.nesting_depth(b'{"a": "[[[{{{\\"[[", "b": [1, {"c": "]]]"}]}', 100) == 3


def test_read_tree_file_checks_the_size_before_reading(tmp_path):
    big = tmp_path / "big.json"
    with big.open("wb") as handle:  # sparse: large on paper, nothing to read
        handle.truncate(treefile.MAX_BYTES + 1)
    with pytest.raises(TreeImportError, match="larger than 20 MB"):
        treefile.read_tree_file(big)
    with pytest.raises(Exception, match="does not exist or is not a file"):
        treefile.read_tree_file(tmp_path)


def test_write_tree_file_replaces_the_old_file_whole_or_not_at_all(store, edited_tree, tmp_path, monkeypatch):
    out = tmp_path / "tree.json"
    out.write_text("old")
    treefile.write_tree_file(store, edited_tree, out)
    assert json.loads(out.read_text())["format"] == "treesynth-tree"
    good = out.read_bytes()

    def broken(*args, **kwargs):
        raise ValueError("boom while rendering")

    monkeypatch.setattr(treefile, "export_tree", broken)
    with pytest.raises(ValueError):
        treefile.write_tree_file(store, edited_tree, out)
    assert out.read_bytes() == good and not list(tmp_path.glob(".tree.json.*"))
