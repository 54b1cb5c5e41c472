"""Export: JSONL, CSV (formula-safe), OpenAI chat JSONL and Parquet; filtered by status and subtree."""

from __future__ import annotations

import csv
import io
import json
import time

import pandas as pd
import pytest

from treesynth_core import edits, export, files
from treesynth_core.errors import TreeSynthError
from treesynth_core.export import export_bytes, export_file, export_rows
from treesynth_core.generate import generate
from treesynth_core.partition import build
from treesynth_core.samples import fingerprint
from treesynth_core.spec import ProjectSpec, parse_fields

COLUMNS = ["question", "answer", "path", "leaf_id", "status", "sample_id", "provenance", "edited", "reason", "note"]


def hand_tree(store, project_id) -> dict[str, str]:
    """Root split by topic into three hand-set leaves; returns {value: node id}."""
    root = store.tree(project_id).root
    ids = edits.set_split(store, root.id, "topic", ["algebra", "geometry", "statistics"])
    return dict(zip(["algebra", "geometry", "statistics"], ids))


def add(store, project_id, leaf_id, *pairs, fields=("question", "answer")) -> list[int]:
    """Insert samples (tuples of field texts) into a leaf; returns their ids."""
    rows = [{"data": dict(zip(fields, p)), "drawn": [], "norm_hash": fingerprint(dict(zip(fields, p)), list(fields))}
            for p in pairs]
    before = {s["id"] for s in store.samples(project_id)}
    inserted, _ = store.add_samples(project_id, leaf_id, rows, cap=None, call_id=None)
    assert inserted == len(pairs)
    return [s["id"] for s in store.samples(project_id) if s["id"] not in before]


def jsonl(data: bytes) -> list[dict]:
    return [json.loads(line) for line in data.decode().splitlines()]


def test_jsonl_after_build_and_generate_carries_fields_path_leaf_and_status(fake, store, project, llm):
    build(store, project, llm, depth=2)
    generate(store, project, llm, per_leaf=2)
    tree = store.tree(project)
    samples = {s["id"]: s for s in store.samples(project)}
    assert len(samples) == 2 * len(tree.leaves()) > 0

    rows = jsonl(export_bytes(store, project, "jsonl"))

    assert sorted(r["sample_id"] for r in rows) == sorted(samples)
    leaf_ids = {n.id for n in tree.leaves()}
    for row in rows:
        sample = samples[row["sample_id"]]
        assert list(row) == COLUMNS
        assert row["question"] == sample["data"]["question"] and row["answer"] == sample["data"]["answer"]
        assert row["leaf_id"] == sample["node_id"] and row["leaf_id"] in leaf_ids
        assert row["status"] == "generated"
        expected = [{"dimension": d, "value": v} for d, v in tree.labelled_path(row["leaf_id"])]
        assert row["path"] == expected and len(expected) == 2
        assert all(p["dimension"] and p["value"] for p in row["path"])


def test_path_of_a_sample_under_an_open_ended_node_is_the_value_drawn_for_it(fake, store, project, llm):
    root = store.tree(project).root
    edits.rename_dimension(store, root.id, "city")
    cities = ["Lagos", "Lima", "Oslo", "Hanoi"]
    (open_id,) = store.add_children(store.node(root.id), [{"infinite": True, "values": cities}], provenance="human")
    generate(store, project, llm, per_leaf=4, samples_per_call=1)

    rows = jsonl(export_bytes(store, project, "jsonl"))

    assert len(rows) == 4
    for row in rows:
        assert row["leaf_id"] == open_id
        [step] = row["path"]
        assert step["dimension"] == "city" and step["value"] in cities
        assert step["value"] in row["question"]  # the fake writes the attributes it was given into the sample


def test_jsonl_keeps_non_ascii_text(store, project):
    leaves = hand_tree(store, project)
    add(store, project, leaves["algebra"], ("Ünïcödé ≠ ascii: x² = 4", "x = ±2"))
    [row] = jsonl(export_bytes(store, project, "jsonl"))
    assert row["question"] == "Ünïcödé ≠ ascii: x² = 4" and row["answer"] == "x = ±2"


DANGEROUS = ["=SUM(A1:A9)", "+1+2", "-3+4", "@cmd", "\tTAB=1", "\rCR=1"]


def test_csv_neutralises_formula_cells_and_parses_back(store, project):
    leaves = hand_tree(store, project)
    ids = add(store, project, leaves["algebra"], *[(text, f"safe answer {i}") for i, text in enumerate(DANGEROUS)])
    ids += add(store, project, leaves["geometry"], ("What is 2+2?", "4"), ("placeholder", "placeholder answer"))
    edits.edit_sample(store, ids[-1], {"question": '=HYPERLINK("http://evil","x")', "answer": "-1"})

    data = export_bytes(store, project, "csv")

    assert data.startswith(b"\xef\xbb\xbf")  # the BOM that makes Excel read UTF-8
    reader = csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline=""))
    assert reader.fieldnames == COLUMNS
    rows = {int(r["sample_id"]): r for r in reader}
    assert sorted(rows) == sorted(ids)
    for sample_id, text in zip(ids, DANGEROUS):
        assert rows[sample_id]["question"] == "'" + text
        assert rows[sample_id]["answer"].startswith("safe answer")
    assert rows[ids[-2]]["question"] == "What is 2+2?" and rows[ids[-2]]["answer"] == "4"  # plain text untouched
    assert rows[ids[-1]]["question"] == '\'=HYPERLINK("http://evil","x")' and rows[ids[-1]]["answer"] == "'-1"
    for row in rows.values():
        assert not row["question"].startswith(("=", "+", "-", "@", "\t", "\r"))
        assert row["path"] in ("topic=algebra", "topic=geometry")
        assert row["leaf_id"] in (leaves["algebra"], leaves["geometry"]) and row["status"] == "generated"


def chat_project(store, fields: str) -> int:
    spec = ProjectSpec(name="qa", task="questions about a short context", fields=parse_fields(fields))
    return store.create_project(spec)


def test_chat_format_pairs_input_and_output_fields(store, project):
    leaves = hand_tree(store, project)
    add(store, project, leaves["algebra"], ("Solve x+1=2.", "x = 1"))

    [plain] = jsonl(export_bytes(store, project, "chat"))
    [with_system] = jsonl(export_bytes(store, project, "chat", system="You are a maths tutor."))

    assert plain == {"messages": [{"role": "user", "content": "Solve x+1=2."},
                                  {"role": "assistant", "content": "x = 1"}]}
    assert with_system["messages"][0] == {"role": "system", "content": "You are a maths tutor."}
    assert with_system["messages"][1:] == plain["messages"]


def test_chat_format_joins_several_fields_by_name_and_follows_roles(store):
    project = chat_project(store, "answer (output), context, question, rationale (output)")
    root = store.tree(project).root
    leaf, _ = edits.set_split(store, root.id, "topic", ["history", "physics"])
    add(store, project, leaf, ("Paris", "France's capital is Paris.", "What is the capital?", "It is stated."),
        fields=("answer", "context", "question", "rationale"))

    [line] = jsonl(export_bytes(store, project, "chat"))

    user, assistant = line["messages"]
    assert user == {"role": "user", "content": "context: France's capital is Paris.\n\nquestion: What is the capital?"}
    assert assistant == {"role": "assistant", "content": "answer: Paris\n\nrationale: It is stated."}


def test_chat_format_needs_an_output_field(store):
    project = chat_project(store, "text")
    root = store.tree(project).root
    leaf, _ = edits.set_split(store, root.id, "topic", ["history", "physics"])
    add(store, project, leaf, ("just one field",), fields=("text",))
    with pytest.raises(TreeSynthError, match="input and one output field") as info:
        export_bytes(store, project, "chat")
    assert "(output)" in info.value.hint
    assert jsonl(export_bytes(store, project, "jsonl"))[0]["text"] == "just one field"  # other formats still work


def test_parquet_reads_back_with_pandas(store, project):
    leaves = hand_tree(store, project)
    ids = add(store, project, leaves["algebra"], ("=1+1", "2"), ("Ünïcödé?", "yes"))
    ids += add(store, project, leaves["statistics"], ("mean of 1,2,3?", "2"))

    frame = pd.read_parquet(io.BytesIO(export_bytes(store, project, "parquet")))

    assert list(frame.columns) == COLUMNS
    assert sorted(frame["sample_id"].tolist()) == sorted(ids)
    by_id = frame.set_index("sample_id")
    assert by_id.loc[ids[0], "question"] == "=1+1"  # only CSV neutralises formulas
    assert by_id.loc[ids[1], "question"] == "Ünïcödé?"
    assert json.loads(by_id.loc[ids[2], "path"]) == [{"dimension": "topic", "value": "statistics"}]
    assert by_id.loc[ids[2], "leaf_id"] == leaves["statistics"]
    assert set(frame["status"]) == {"generated"}


def test_filter_by_status_exports_only_accepted(store, project):
    leaves = hand_tree(store, project)
    ids = add(store, project, leaves["algebra"], ("q1", "a1"), ("q2", "a2"), ("q3", "a3"), ("q4", "a4"))
    edits.set_sample_status(store, ids[:2], "accepted")
    edits.set_sample_status(store, ids[2:3], "rejected")

    accepted = jsonl(export_bytes(store, project, "jsonl", statuses=["accepted"]))
    kept = jsonl(export_bytes(store, project, "jsonl", statuses=["accepted", "generated"]))

    assert [r["sample_id"] for r in accepted] == ids[:2]
    assert {r["status"] for r in accepted} == {"accepted"}
    assert [r["sample_id"] for r in kept] == [ids[0], ids[1], ids[3]]
    assert len(jsonl(export_bytes(store, project, "jsonl"))) == 4


def test_filter_by_subtree(store, project):
    leaves = hand_tree(store, project)
    easy, hard = edits.set_split(store, leaves["algebra"], "difficulty", ["easy", "hard"])
    in_easy = add(store, project, easy, ("e1", "a"), ("e2", "a"))
    in_hard = add(store, project, hard, ("h1", "a"))
    add(store, project, leaves["geometry"], ("g1", "a"))

    under_algebra = export_rows(store, project, under=leaves["algebra"])
    under_easy = export_rows(store, project, under=easy)

    assert sorted(r["sample_id"] for r in under_algebra) == sorted(in_easy + in_hard)
    assert [r["sample_id"] for r in under_easy] == in_easy
    assert under_easy[0]["path"] == [{"dimension": "topic", "value": "algebra"},
                                     {"dimension": "difficulty", "value": "easy"}]
    assert len(export_rows(store, project)) == 4


def test_pruned_subtrees_are_excluded_until_restored(store, project):
    leaves = hand_tree(store, project)
    easy, _ = edits.set_split(store, leaves["algebra"], "difficulty", ["easy", "hard"])
    pruned = add(store, project, easy, ("e1", "a"))
    kept = add(store, project, leaves["geometry"], ("g1", "a"))

    edits.prune(store, leaves["algebra"])
    for fmt in ("jsonl", "chat"):
        assert len(jsonl(export_bytes(store, project, fmt))) == 1
    assert [r["sample_id"] for r in export_rows(store, project)] == kept
    assert export_rows(store, project, under=leaves["algebra"]) == []

    edits.restore(store, leaves["algebra"])
    assert sorted(r["sample_id"] for r in export_rows(store, project)) == sorted(pruned + kept)


def test_unknown_format_is_refused_clearly_and_writes_nothing(store, project, tmp_path):
    out = tmp_path / "out.xml"
    with pytest.raises(TreeSynthError) as info:
        export_file(store, project, "xml", out)
    assert "unknown export format 'xml'" in info.value.message
    for name in ("jsonl", "csv", "parquet", "chat"):
        assert name in info.value.hint
    assert not out.exists()


def test_export_file_writes_the_file_and_returns_the_row_count(store, project, tmp_path):
    leaves = hand_tree(store, project)
    add(store, project, leaves["algebra"], ("q1", "a1"), ("q2", "a2"))
    add(store, project, leaves["geometry"], ("q3", "a3"))
    out = tmp_path / "data.jsonl"

    assert export_file(store, project, "jsonl", out) == 3
    assert len(jsonl(out.read_bytes())) == 3
    assert export_file(store, project, "jsonl", out, under=leaves["geometry"]) == 1
    assert [r["question"] for r in jsonl(out.read_bytes())] == ["q3"]


def test_an_empty_project_exports_empty_files(store, project):
    assert export_bytes(store, project, "jsonl") == b""
    assert export_bytes(store, project, "chat") == b""
    header = export_bytes(store, project, "csv").decode("utf-8-sig").strip()
    assert header.split(",") == COLUMNS
    assert len(pd.read_parquet(io.BytesIO(export_bytes(store, project, "parquet")))) == 0



# ----------------------------------------------------------------------------- atomic files and scope


def test_an_unknown_status_or_subtree_is_refused_not_exported_empty(store, project, tmp_path):
    hand_tree(store, project)
    out = tmp_path / "x.jsonl"
    with pytest.raises(TreeSynthError) as info:
        export_file(store, project, "jsonl", out, statuses=["acepted"])
    assert "unknown sample status 'acepted'" in info.value.message and "generated, accepted, rejected" in info.value.hint
    with pytest.raises(TreeSynthError, match="node 'nope' is not in this project"):
        export_file(store, project, "jsonl", out, under="nope")
    assert not out.exists()


@pytest.mark.parametrize("where,message", [("dir", "is a directory"), ("missing/x.jsonl", "does not exist"),
                                           ("", "path is empty")])
def test_a_bad_output_path_is_refused_before_any_work(store, project, tmp_path, where, message):
    (tmp_path / "dir").mkdir()
    out = tmp_path / where if where else ""
    with pytest.raises(TreeSynthError, match=message):
        export_file(store, project, "jsonl", out)


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path):
    out = tmp_path / "data.jsonl"
    out.write_bytes(b"old export\n")
    out.chmod(0o640)
    with pytest.raises(RuntimeError):
        with files.atomic_file(out) as handle:
            handle.write(b"half of the new")
            assert len(list(tmp_path.iterdir())) == 2  # the new content goes to a file beside it
            raise RuntimeError("disk on fire")
    assert out.read_bytes() == b"old export\n" and list(tmp_path.iterdir()) == [out]
    files.atomic_write(out, b"new export\n")
    assert out.read_bytes() == b"new export\n" and list(tmp_path.iterdir()) == [out]
    assert out.stat().st_mode & 0o777 == 0o640  # a replaced file keeps its permissions


KILL_SCRIPT = """
import sys, time
from treesynth_core import files
real = files.os.fsync
def slow_fsync(fd):  # the moment of writing, made long enough to be caught
    sys.stdout.write("writing\\n"); sys.stdout.flush(); time.sleep(30); real(fd)
files.os.fsync = slow_fsync
from treesynth_core.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_killing_export_while_it_writes_leaves_the_old_file_whole(store, project, tmp_path):
    """SIGKILL `export` at the moment it writes, 10 times (5 runs caught as the temporary file appears, 5 held
    inside the write): the previous export is byte-identical every time."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    leaves = hand_tree(store, project)
    big = "x" * 2000
    add(store, project, leaves["algebra"], *[(f"question {i} {big}", f"answer {i} {big}") for i in range(2000)])
    out = tmp_path / "data.jsonl"
    assert export_file(store, project, "jsonl", out, statuses=["generated"]) == 2000
    add(store, project, leaves["geometry"], ("one more", "sample"))
    old = out.read_bytes()
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=str(root))
    args = ["export", "--db", store.path, "--out", str(out)]
    survived = tries = 0
    while tries < 10:
        held = tries % 2 == 1
        command = [sys.executable, "-c", KILL_SCRIPT, *args] if held else [sys.executable, "-m", "treesynth_core", *args]
        proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 60
            if held:
                assert proc.stdout.readline() == b"writing\n", proc.stderr.read()
            else:
                while not list(tmp_path.glob(".data.jsonl.*.tmp")) and proc.poll() is None:
                    assert time.monotonic() < deadline
                    time.sleep(0.002)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            proc.stdout.close()
            proc.stderr.close()
        for leftover in tmp_path.glob(".data.jsonl.*.tmp"):
            leftover.unlink()
        if proc.returncode == 0:  # it finished before it was caught (a loaded machine): not a try
            out.write_bytes(old)
            continue
        assert proc.returncode == -signal.SIGKILL
        tries += 1
        survived += out.read_bytes() == old
    print(f"old file survived {survived}/10")
    assert survived == 10


# ----------------------------------------------------------------------------- streaming (issue 10)


def reference_export(store, project_id, fmt, statuses=None, under=None, system=None) -> bytes:
    """The export as it was built before streaming (whole tree per row, every row in memory): the oracle."""
    spec = store.project(project_id)
    tree = store.tree(project_id)
    scope = {n.id for n in tree.subtree(under or tree.root.id)}
    rows = []
    for sample in store.samples(project_id, statuses=statuses):
        node_id = sample["node_id"]
        if node_id not in scope or tree.is_pruned(node_id):
            continue
        row = {name: sample["data"].get(name, "") for name in spec.field_names}
        row["path"] = [{"dimension": d, "value": v} for d, v in sample["drawn"]] or [
            {"dimension": d, "value": v} for d, v in tree.labelled_path(node_id)]
        row.update(leaf_id=node_id, status=sample["status"], sample_id=sample["id"],
                   provenance=sample["provenance"] or "generated", edited=bool(sample["edited"]),
                   reason=sample["reason"], note=sample["note"])
        rows.append(row)
    columns = spec.field_names + ["path", "leaf_id", "status", "sample_id", "provenance", "edited", "reason", "note"]
    if fmt == "jsonl":
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            flat = dict(r, path=" > ".join(f"{p['dimension']}={p['value']}" for p in r["path"]),
                        edited="true" if r["edited"] else "false")
            writer.writerow({k: export.safe_cell(flat[k]) for k in columns})
        return out.getvalue().encode("utf-8-sig")
    if fmt == "parquet":
        frame = pd.DataFrame(rows, columns=columns)
        frame["path"] = frame["path"].map(lambda p: json.dumps(p, ensure_ascii=False))
        for name in ("reason", "note"):  # text columns that may hold no value at all
            frame[name] = pd.Series(frame[name].tolist(), dtype="str")
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        return buffer.getvalue()
    inputs = [f.name for f in spec.fields if f.role == "input"]
    outputs = [f.name for f in spec.fields if f.role == "output"]

    def join(row, names):
        return row[names[0]] if len(names) == 1 else "\n\n".join(f"{n}: {row[n]}" for n in names)

    lines = []
    for r in rows:
        messages = [{"role": "system", "content": system}] if system else []
        messages += [{"role": "user", "content": join(r, inputs)}, {"role": "assistant", "content": join(r, outputs)}]
        lines.append(json.dumps({"messages": messages}, ensure_ascii=False) + "\n")
    return "".join(lines).encode()


@pytest.fixture
def varied(store, project):
    """Nested and open-ended leaves, a pruned subtree, every status, formulas, non-ASCII, a missing field,
    commas, quotes and newlines: the cases where a rewrite could drift from the old output."""
    leaves = hand_tree(store, project)
    easy, hard = edits.set_split(store, leaves["algebra"], "difficulty", ["easy", "hard"])
    root = store.tree(project).root
    (cities,) = store.add_children(store.node(leaves["statistics"]), [{"infinite": True, "values": ["Oslo", "Lima"]}],
                                   provenance="human")
    store.update_node(leaves["statistics"], dimension="city")
    ids = add(store, project, easy, ("=SUM(A1)", "-1"), ("Ünïcödé ≠ ascii", 'say "hi", then\nleave'))
    ids += add(store, project, hard, ("@cmd", "+2"), ("plain", "text"))
    ids += add(store, project, leaves["geometry"], ("\tTAB", "x, y"), ("g2", "a"))
    drawn = [{"data": {"question": f"in {c}", "answer": "n"}, "drawn": [["topic", "statistics"], ["city", c]],
              "norm_hash": fingerprint({"question": f"in {c}"}, ["question"])} for c in ("Oslo", "Lima")]
    drawn.append({"data": {"question": "no draw", "answer": "n"}, "drawn": [], "norm_hash": "h-no-draw"})
    store.add_samples(project, cities, drawn, cap=None, call_id=None)
    store.add_samples(project, hard, [{"data": {"question": "no answer field"}, "drawn": [], "norm_hash": "h-missing"}],
                      cap=None, call_id=None)
    edits.set_sample_status(store, ids[:2], "accepted")
    edits.set_sample_status(store, ids[2:3], "rejected")
    (pruned,) = store.add_children(store.node(leaves["geometry"]), [{"value": "gone"}], provenance="human")
    store.update_node(leaves["geometry"], dimension="shape")
    add(store, project, pruned, ("pruned sample", "never exported"))
    edits.prune(store, pruned)
    assert root.id
    return {"leaves": leaves, "easy": easy, "hard": hard, "cities": cities}


CHOICES = [dict(), dict(statuses=["accepted"]), dict(statuses=["accepted", "generated"]), "algebra", "statistics",
           "easy"]


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "chat", "parquet"])
@pytest.mark.parametrize("choice", range(len(CHOICES)))
def test_streamed_export_is_byte_identical_to_the_old_one(store, project, varied, fmt, choice):
    options = CHOICES[choice]
    if isinstance(options, str):
        options = dict(under=varied["leaves"].get(options) or varied[options])
    if fmt == "chat":
        options["system"] = "Be brief."
    new = export_bytes(store, project, fmt, **options)
    old = reference_export(store, project, fmt, **options)
    if fmt != "parquet":
        assert new == old
        return
    import pyarrow.parquet as pq
    new_table, old_table = pq.read_table(io.BytesIO(new)), pq.read_table(io.BytesIO(old))
    assert new_table.schema.equals(old_table.schema, check_metadata=True)  # the pandas metadata too
    assert new_table.equals(old_table)
    pd.testing.assert_frame_equal(pd.read_parquet(io.BytesIO(new)), pd.read_parquet(io.BytesIO(old)))


def test_the_varied_dataset_covers_what_it_claims(store, project, varied):
    rows = export_rows(store, project)
    by_question = {r["question"]: r for r in rows}
    assert "pruned sample" not in by_question and len(rows) == 10
    assert by_question["no answer field"]["answer"] == ""
    assert by_question["in Oslo"]["path"] == [{"dimension": "topic", "value": "statistics"},
                                              {"dimension": "city", "value": "Oslo"}]
    assert by_question["no draw"]["path"][1]["dimension"] == "city"  # the open-ended node's label
    assert {r["status"] for r in rows} == {"accepted", "rejected", "generated"}


def test_samples_are_streamed_in_chunks_by_id(store, project, monkeypatch):
    """The store hands samples out a chunk at a time (keyset by id), in id order, none twice or missing,
    also with a status filter and with another project's samples in between."""
    leaves = hand_tree(store, project)
    other = store.create_project(store.project(project))
    other_leaf = edits.set_split(store, store.tree(other).root.id, "topic", ["x", "y"])[0]
    ids = []
    for i in range(7):
        ids += add(store, project, leaves["algebra"], *[(f"q{i}-{j}", "a") for j in range(3)])
        add(store, other, other_leaf, (f"other {i}", "a"))
    edits.set_sample_status(store, ids[::2], "accepted")

    calls = []
    real = store.iter_samples

    def spy(project_id, *, statuses=None, nodes=None, chunk=5000):
        calls.append(chunk)
        return real(project_id, statuses=statuses, nodes=nodes, chunk=4)

    monkeypatch.setattr(store, "iter_samples", spy)
    assert [r["sample_id"] for r in export_rows(store, project)] == ids
    assert [r["sample_id"] for r in export_rows(store, project, statuses=["accepted"])] == ids[::2]
    assert calls == [5000, 5000]  # the export asks for the default chunk; the spy shrinks it
    assert [s["id"] for s in real(project, chunk=1)] == ids
    assert [s["id"] for s in real(project, chunk=len(ids))] == ids  # a last chunk exactly full


def test_the_export_reads_the_tree_once_not_per_row(store, project, monkeypatch):
    leaves = hand_tree(store, project)
    add(store, project, leaves["algebra"], *[(f"q{i}", "a") for i in range(50)])
    reads = []
    real_tree = store.tree
    monkeypatch.setattr(store, "tree", lambda pid: reads.append(pid) or real_tree(pid))
    from treesynth_core import tree as tree_module
    labelled = []
    real_labelled = tree_module.Tree.labelled_path
    monkeypatch.setattr(tree_module.Tree, "labelled_path", lambda self, nid: labelled.append(nid) or real_labelled(self, nid))
    for fmt in ("jsonl", "csv", "parquet", "chat"):
        export_bytes(store, project, fmt)
    assert reads == [project] * 4
    assert labelled == [store.tree(project).root.id] * 4  # the start of the walk, once per export


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet", "chat"])
def test_export_file_streams_and_counts(store, project, tmp_path, fmt, monkeypatch):
    """Several row groups (Parquet) and writes (text): the file holds every row, the count says so."""
    monkeypatch.setattr(export, "ROW_GROUP", 7)
    monkeypatch.setattr(export, "LINES_PER_WRITE", 7)
    leaves = hand_tree(store, project)
    add(store, project, leaves["algebra"], *[(f"q{i}", f"a{i}") for i in range(30)])
    out = tmp_path / f"x.{fmt}"
    assert export_file(store, project, fmt, out) == 30
    assert out.read_bytes() == reference_export(store, project, fmt) if fmt != "parquet" else True
    if fmt == "parquet":
        import pyarrow.parquet as pq
        meta = pq.ParquetFile(out).metadata
        assert meta.num_rows == 30 and meta.num_row_groups == 5
        assert pd.read_parquet(out)["question"].tolist() == [f"q{i}" for i in range(30)]


def test_an_empty_parquet_export_keeps_its_column_types(store, project):
    import pyarrow as pa
    import pyarrow.parquet as pq
    table = pq.read_table(io.BytesIO(export_bytes(store, project, "parquet")))
    assert table.num_rows == 0 and table.column_names == COLUMNS
    assert pa.types.is_string(table.schema.field("question").type) or pa.types.is_large_string(
        table.schema.field("question").type)  # not null-typed, as the old empty DataFrame made it
    assert table.schema.field("sample_id").type == pa.int64()


def test_a_refused_export_writes_no_byte(store, project, tmp_path):
    """Every refusal comes before the first write: the old file stays, no temporary file is left."""
    project_text = chat_project(store, "text")
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / "x.jsonl"
    out.write_bytes(b"old\n")
    for call in (lambda: export_file(store, project_text, "chat", out),
                 lambda: export_file(store, project, "jsonl", out, statuses=["nope"]),
                 lambda: export_file(store, project, "csv", out, under="nope")):
        with pytest.raises(TreeSynthError):
            call()
        assert out.read_bytes() == b"old\n" and list(out.parent.iterdir()) == [out]


def test_count_rows_matches_the_export(store, project, varied):
    leaves = varied["leaves"]
    for options in (dict(), dict(statuses=["accepted"]), dict(under=leaves["algebra"]),
                    dict(under=varied["cities"], statuses=["generated"]), dict(under=leaves["geometry"])):
        assert export.count_rows(store, project, **options) == len(export_rows(store, project, **options))
    with pytest.raises(TreeSynthError, match="unknown sample status"):
        export.count_rows(store, project, statuses=["nope"])


def test_the_export_stamp_follows_every_change_that_changes_an_export(store, project, varied):
    """The app keeps a prepared file while the stamp holds: every edit an export can see must move it."""
    leaves = varied["leaves"]
    seen = [store.export_stamp(project)]
    assert store.export_stamp(project) == seen[0]  # nothing changed: the same stamp
    export_bytes(store, project, "jsonl")
    assert store.export_stamp(project) == seen[0]  # exporting is no change
    first = export_rows(store, project)[0]["sample_id"]
    changes = {"status": lambda: edits.set_sample_status(store, [first], "rejected"),
               "sample edit": lambda: edits.edit_sample(store, first, {"question": "edited", "answer": "new"}),
               "new sample": lambda: add(store, project, varied["easy"], ("new one", "a")),
               "prune": lambda: edits.prune(store, leaves["geometry"]),
               "dimension": lambda: edits.rename_dimension(store, store.tree(project).root.id, "subject"),
               "node deleted": lambda: store.delete_nodes([varied["hard"]]),
               "spec": lambda: store.update_project(project, store.project(project).model_copy(update={"name": "m2"}))}
    for what, change in changes.items():
        time.sleep(0.002)  # stamps are milliseconds
        change()
        seen.append(store.export_stamp(project))
        assert seen[-1] not in seen[:-1], what


def test_assembled_lines_equal_json_dumps_and_csv_writer_on_awkward_text():
    """The text writers build lines from pieces; on random text full of quotes, commas, CR/LF, backslashes,
    control characters, non-BMP characters and formula starts they equal json.dumps and csv.writer."""
    import random

    from treesynth_core.spec import OutputField

    rng = random.Random(10)
    alphabet = list('ab ,"\'\r\n\t\\=+-@;|\x00\x1f\x7fé€😀\u2028\u2029<>&/') + ["", "  "]
    texts = ["", " ", '"', '""', ",", "\r\n", " lead", "trail ", "=1", "-", "\\u0041"]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))) for _ in range(400)]
    paths = {"leaf": [{"dimension": "topic, \"x\"", "value": "a\nb"}]}
    spec = ProjectSpec(name="n", task="awkward text in every field",
                       fields=[OutputField(name="q"), OutputField(name="a", role="output")])
    jsonl_line = export.jsonl_line_maker(["q", "a"], paths)
    csv_row = export.csv_line_maker(["q", "a"], paths)
    chat_line = export.chat_line_maker(spec, system='sys "prompt"\n')
    for i in range(0, len(texts) - 1):
        drawn = i % 3 == 0
        row = {"q": texts[i], "a": texts[i + 1],
               "path": [{"dimension": texts[i], "value": texts[-i]}] if drawn else paths["leaf"],
               "leaf_id": "leaf", "status": "generated", "sample_id": i,
               "provenance": ("generated", "imported")[i % 2], "edited": i % 4 == 1,
               "reason": texts[-i - 1] if i % 5 else None, "note": texts[i] if i % 3 else None}
        assert jsonl_line(row) == json.dumps(row, ensure_ascii=False) + "\n"
        buffer = io.StringIO()
        flat = dict(row, path=export.path_text(row["path"]), edited="true" if row["edited"] else "false")
        csv.writer(buffer).writerow([export.safe_cell(flat[k]) for k in ["q", "a", "path", "leaf_id", "status",
                                                                        "sample_id", "provenance", "edited",
                                                                        "reason", "note"]])
        assert csv_row(row) == buffer.getvalue()
        messages = [{"role": "system", "content": 'sys "prompt"\n'}, {"role": "user", "content": texts[i]},
                    {"role": "assistant", "content": texts[i + 1]}]
        assert chat_line(row) == json.dumps({"messages": messages}, ensure_ascii=False) + "\n"
    for value in (None, 3, 2.5, True, ["x", 1], {"k": "v"}, float("nan")):  # a field that is not text
        row = {"q": value, "a": "x", "path": paths["leaf"], "leaf_id": "leaf", "status": "accepted", "sample_id": 1,
               "provenance": "generated", "edited": False, "reason": None, "note": None}
        assert jsonl_line(row) == json.dumps(row, ensure_ascii=False) + "\n"


# ----------------------------------------------------------------------------- ShareGPT and Alpaca (issue 11)
# Shapes as documented: ShareGPT {"conversations": [{"from": "system"|"human"|"gpt", "value": str}]} (FastChat,
# axolotl, LLaMA-Factory's sharegpt role tags); Alpaca {"instruction", "input", "output"} (+ optional "system",
# LLaMA-Factory's alpaca columns).

def check_sharegpt(line: dict) -> None:
    assert list(line) == ["conversations"]
    turns = line["conversations"]
    assert all(list(t) == ["from", "value"] and isinstance(t["value"], str) for t in turns)
    roles = [t["from"] for t in turns]
    assert roles in (["human", "gpt"], ["system", "human", "gpt"])


def check_alpaca(line: dict) -> None:
    assert list(line) in (["instruction", "input", "output"], ["instruction", "input", "output", "system"])
    assert all(isinstance(v, str) for v in line.values())
    assert line["instruction"] and line["output"]


def test_sharegpt_format_has_the_documented_shape_and_the_chat_sides(fake, store, project, llm):
    build(store, project, llm, depth=1)
    generate(store, project, llm, per_leaf=2)
    samples = {s["id"]: s["data"] for s in store.samples(project)}
    assert samples

    plain = jsonl(export_bytes(store, project, "sharegpt"))
    with_system = jsonl(export_bytes(store, project, "sharegpt", system="You are a maths tutor."))
    chat = jsonl(export_bytes(store, project, "chat"))

    assert len(plain) == len(with_system) == len(chat) == len(samples)
    expected = sorted((d["question"], d["answer"]) for d in samples.values())
    assert sorted((line["conversations"][0]["value"], line["conversations"][1]["value"]) for line in plain) == expected
    for line, sys_line, chat_line in zip(plain, with_system, chat):
        check_sharegpt(line)
        check_sharegpt(sys_line)
        assert [t["from"] for t in line["conversations"]] == ["human", "gpt"]
        assert sys_line["conversations"][0] == {"from": "system", "value": "You are a maths tutor."}
        assert sys_line["conversations"][1:] == line["conversations"]
        assert [m["content"] for m in chat_line["messages"]] == [t["value"] for t in line["conversations"]]


def test_alpaca_format_has_the_documented_shape(fake, store, project, llm):
    build(store, project, llm, depth=1)
    generate(store, project, llm, per_leaf=2)
    samples = {s["id"]: s["data"] for s in store.samples(project)}

    plain = jsonl(export_bytes(store, project, "alpaca"))
    with_system = jsonl(export_bytes(store, project, "alpaca", system="Be brief."))

    assert len(plain) == len(samples) > 0
    assert sorted((r["instruction"], r["output"]) for r in plain) == sorted(
        (d["question"], d["answer"]) for d in samples.values())
    for row, sys_row in zip(plain, with_system):
        check_alpaca(row)
        check_alpaca(sys_row)
        assert list(row) == ["instruction", "input", "output"] and row["input"] == ""
        assert sys_row == dict(row, system="Be brief.")


def test_alpaca_puts_the_other_input_fields_in_input_and_joins_outputs(store):
    project = chat_project(store, "instruction, context, response (output), rationale (output)")
    root = store.tree(project).root
    leaf, _ = edits.set_split(store, root.id, "topic", ["history", "physics"])
    add(store, project, leaf, ("Name the capital.", "France's capital is Paris.", "Paris", "It is stated."),
        fields=("instruction", "context", "response", "rationale"))

    [row] = jsonl(export_bytes(store, project, "alpaca"))
    [conv] = jsonl(export_bytes(store, project, "sharegpt"))

    assert row == {"instruction": "Name the capital.", "input": "context: France's capital is Paris.",
                   "output": "response: Paris\n\nrationale: It is stated."}
    assert conv["conversations"][0]["value"] == ("instruction: Name the capital.\n\n"
                                                 "context: France's capital is Paris.")


@pytest.mark.parametrize("fmt", ["sharegpt", "alpaca"])
def test_pair_formats_need_an_output_field_and_refuse_before_writing(store, tmp_path, fmt):
    project = chat_project(store, "text")
    root = store.tree(project).root
    leaf, _ = edits.set_split(store, root.id, "topic", ["history", "physics"])
    add(store, project, leaf, ("just one field",), fields=("text",))
    out = tmp_path / f"x.{fmt}.jsonl"
    out.write_text("previous\n")
    with pytest.raises(TreeSynthError, match=f"{fmt} export needs at least one input and one output"):
        export_file(store, project, fmt, out)
    assert out.read_text() == "previous\n"


def test_sharegpt_and_alpaca_lines_equal_json_dumps_for_awkward_text():
    import random

    from treesynth_core.spec import OutputField

    rng = random.Random(11)
    alphabet = list('ab ,"\'\r\n\t\\=+-@;|\x00\x1f\x7fé€😀\u2028\u2029<>&/') + [""]
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))) for _ in range(300)]
    spec = ProjectSpec(name="n", task="awkward text in every field",
                       fields=[OutputField(name="q"), OutputField(name="c"), OutputField(name="a", role="output")])
    for system in (None, 'sys "x"\n'):
        share = export.sharegpt_line_maker(spec, system)
        alpaca = export.alpaca_line_maker(spec, system)
        for i in range(len(texts) - 2):
            row = {"q": texts[i], "c": texts[i + 1], "a": texts[i + 2]}
            human = f"q: {texts[i]}\n\nc: {texts[i + 1]}"
            turns = ([{"from": "system", "value": system}] if system else []) + [
                {"from": "human", "value": human}, {"from": "gpt", "value": texts[i + 2]}]
            assert share(row) == json.dumps({"conversations": turns}, ensure_ascii=False) + "\n"
            expected = {"instruction": texts[i], "input": f"c: {texts[i + 1]}", "output": texts[i + 2]}
            if system:
                expected["system"] = system
            assert alpaca(row) == json.dumps(expected, ensure_ascii=False) + "\n"


def test_every_format_carries_provenance_and_the_review_columns(store, project):
    """provenance (issue 11: generated or imported), edited, the reject reason and the note (issue 8) per row."""
    leaves = hand_tree(store, project)
    a, b, c = add(store, project, leaves["algebra"], ("q1", "a1"), ("q2", "a2"), ("q3", "a3"))
    edits.set_sample_status(store, [a], "rejected", reason="off topic")
    edits.set_sample_note(store, b, "check the units")
    edits.edit_sample(store, b, {"question": "q2 fixed", "answer": "a2"})
    store.db.execute("update samples set provenance = 'imported' where id = ?", [c])
    expected = {a: ("generated", False, "off topic", None), b: ("generated", True, None, "check the units"),
                c: ("imported", False, None, None)}

    rows = {r["sample_id"]: r for r in jsonl(export_bytes(store, project, "jsonl"))}
    assert {i: (r["provenance"], r["edited"], r["reason"], r["note"]) for i, r in rows.items()} == expected
    frame = pd.read_parquet(io.BytesIO(export_bytes(store, project, "parquet")))
    got = {int(r.sample_id): (r.provenance, bool(r.edited), None if pd.isna(r.reason) else r.reason,
                              None if pd.isna(r.note) else r.note) for r in frame.itertuples()}
    assert got == expected and frame["edited"].dtype == bool
    table = list(csv.DictReader(io.StringIO(export_bytes(store, project, "csv").decode("utf-8-sig"), newline="")))
    assert {int(r["sample_id"]): (r["provenance"], r["edited"] == "true", r["reason"] or None, r["note"] or None)
            for r in table} == expected


def test_excluded_rows_leave_only_when_asked_for(store, project, tmp_path):
    """Rows balancing set aside (status excluded, issue 11) are not in an export without a status choice (the CLI's
    default, the Export page's "All, including rejected"), rejected ones still are; --status excluded exports them,
    and a row restored to generated is back in the default export."""
    from treesynth_core.cli import main

    leaves = hand_tree(store, project)
    a, b, c = add(store, project, leaves["algebra"], ("q1", "a1"), ("q2", "a2"), ("q3", "a3"))
    edits.set_sample_status(store, [a], "rejected")
    with store.atomic():
        store.update_samples([b], status="excluded", provenance="imported")
    assert {r["sample_id"] for r in export_rows(store, project)} == {a, c}
    assert export.count_rows(store, project) == 2
    assert [r["sample_id"] for r in export_rows(store, project, statuses=["excluded"])] == [b]
    assert export.count_rows(store, project, statuses=["excluded"]) == 1
    out = tmp_path / "all.jsonl"
    assert main(["export", "--db", str(store.path), "--out", str(out)]) == 0
    assert {r["sample_id"] for r in jsonl(out.read_bytes())} == {a, c}
    assert main(["export", "--db", str(store.path), "--status", "excluded", "--out", str(out)]) == 0
    assert [(r["sample_id"], r["status"], r["provenance"]) for r in jsonl(out.read_bytes())] == [
        (b, "excluded", "imported")]
    edits.set_sample_status(store, [b], "generated")  # a curator restores it
    assert {r["sample_id"] for r in export_rows(store, project)} == {a, b, c}
    edits.undo(store, project)
    assert [r["sample_id"] for r in export_rows(store, project, statuses=["excluded"])] == [b]
