"""Importing a dataset (issue 11 part 1): CSV, JSONL and Parquet, mapping, validation with line numbers, dedup,
provenance, resume, bounded memory, and the bad files: wrong encoding, formulas, 1 MB cells, missing and extra
columns, empty files."""

from __future__ import annotations

import csv
import json
import tracemalloc

import pytest

from treesynth_core.cli import main
from treesynth_core.errors import ConfigError
from treesynth_core.importer import CHUNK, import_file
from treesynth_core.outcome import Outcome

from .conftest import make_project


def write_csv(path, header, rows, encoding="utf-8"):
    with open(path, "w", newline="", encoding=encoding) as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def imported(store, project_id):
    return [s for s in store.samples(project_id) if s["provenance"] == "imported"]


def test_csv_import_maps_columns_keeps_provenance_and_line_numbers(store, project, tmp_path):
    path = write_csv(tmp_path / "d.csv", ["prompt", "reply", "extra"],
                     [[f"question {i}", f"answer {i}", "x"] for i in range(5)])
    report = import_file(store, project, path, mapping={"question": "prompt", "answer": "reply"})
    assert (report.imported, report.skipped, report.duplicates) == (5, 0, 0)
    assert report.outcome is Outcome.COMPLETE
    assert report.ignored_columns == ["extra"]
    rows = imported(store, project)
    root = store.tree(project).root.id
    assert [r["data"] for r in rows] == [{"question": f"question {i}", "answer": f"answer {i}"} for i in range(5)]
    assert [r["source_line"] for r in rows] == [2, 3, 4, 5, 6]  # the header is line 1
    assert {r["node_id"] for r in rows} == {root} and {r["status"] for r in rows} == {"generated"}
    assert {r["import_id"] for r in rows} == {report.import_id}
    record = store.import_row(report.import_id)
    assert record["status"] == "complete" and record["imported"] == 5 and record["next_line"] == 6


def test_default_mapping_is_by_name_case_folded(store, project, tmp_path):
    path = write_csv(tmp_path / "d.csv", ["Question", "ANSWER"], [["q", "a"]])
    assert import_file(store, project, path).imported == 1


def test_bad_rows_are_skipped_with_their_line_numbers_and_counted(store, project, tmp_path):
    big = "x" * (1 << 20)  # a 1 MB cell: over max_field_chars (20,000 by default)
    path = write_csv(tmp_path / "d.csv", ["question", "answer"],
                     [["fine 1", "a"], ["", "no question"], ["fine 2", big], ["multi\nline", "ok"], ["fine 3", "a"]])
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("only one cell\n")
    report = import_file(store, project, path)
    assert report.imported == 3 and report.skipped == 3
    assert report.outcome is Outcome.PARTIAL
    assert report.problems[0] == "line 3: has no text for field 'question'"
    assert report.problems[1].startswith("line 4: field 'answer' has 1,048,576 characters")
    assert report.problems[2] == "line 8: 1 cell(s), the header has 2"  # the quoted newline took lines 5-6
    assert sorted(r["source_line"] for r in imported(store, project)) == [2, 5, 7]
    assert store.import_row(report.import_id)["skipped"] == 3


def test_formula_cells_are_stored_as_text_and_exported_safely(store, project, tmp_path):
    formula = '=HYPERLINK("http://example.com/x","click")'
    path = write_csv(tmp_path / "d.csv", ["question", "answer"], [[formula, "+1+2"]])
    import_file(store, project, path)
    [row] = imported(store, project)
    assert row["data"] == {"question": formula, "answer": "+1+2"}  # the text itself, nothing evaluated
    out = tmp_path / "out.csv"
    assert main(["export", "--db", store.path, "--format", "csv", "--out", str(out)]) == 0
    with open(out, newline="", encoding="utf-8") as handle:
        cells = list(csv.reader(handle))[1]
    assert cells[0] == "'" + formula and cells[1] == "'+1+2"  # a spreadsheet shows it as text, never runs it


def test_duplicates_against_the_project_and_within_the_file_are_skipped(store, project, tmp_path):
    first = write_csv(tmp_path / "a.csv", ["question", "answer"], [["Same question?", "a"], ["other", "b"]])
    import_file(store, project, first)
    second = write_csv(tmp_path / "b.csv", ["question", "answer"],
                       [["same  QUESTION", "another answer"], ["new one", "c"], ["New one!", "d"]])
    report = import_file(store, project, second)
    assert (report.imported, report.duplicates) == (1, 2)
    assert report.outcome is Outcome.COMPLETE  # a duplicate is not a bad row
    assert len(imported(store, project)) == 3


def test_importing_the_same_file_again_does_nothing(store, project, tmp_path):
    path = write_csv(tmp_path / "d.csv", ["question", "answer"], [["q1", "a"], ["q2", "b"]])
    import_file(store, project, path)
    again = import_file(store, project, path)
    assert again.already_complete and again.outcome is Outcome.COMPLETE
    assert len(imported(store, project)) == 2


@pytest.mark.parametrize("content, words", [
    ("question,answer\ncafé,crème\n".encode("latin-1"), "not UTF-8"),
    ("question,answer\ncafé,x\n".encode("latin-1"), "not UTF-8"),  # the bad byte near the end of a short file
    ("question,answer\nq,a\n".encode("utf-16"), "UTF-16"),
    (b"", "empty (0 bytes)"),
    (b"question,answer\n", "no rows"),
    (b"\n\n", "empty (no header line)"),
])
def test_whole_file_problems_are_refused_before_anything_is_written(store, project, tmp_path, content, words):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    before = store.sample_total(project)
    with pytest.raises(ConfigError) as caught:
        import_file(store, project, path)
    assert words in str(caught.value)
    assert store.sample_total(project) == before
    assert store.imports(project) == []  # a refusal leaves no import record either


def test_a_bad_byte_past_the_start_costs_only_its_row(store, project, tmp_path):
    path = tmp_path / "d.csv"
    good = "".join(f"question {i},answer {i}\n" for i in range(3000))  # > 64 KiB of clean UTF-8 first
    path.write_bytes(b"question,answer\n" + good.encode() + "caf\xe9,x\n".encode("latin-1") + b"last,row\n")
    report = import_file(store, project, path)
    assert report.imported == 3001 and report.skipped == 1
    assert report.problems == ["line 3002: field 'question' contains bytes that are not UTF-8, or NUL"]


def test_missing_column_is_refused_with_the_columns_the_file_has(store, project, tmp_path):
    path = write_csv(tmp_path / "d.csv", ["question", "solution"], [["q", "a"]])
    with pytest.raises(ConfigError) as caught:
        import_file(store, project, path)
    assert "no column for the field 'answer'" in str(caught.value) and "solution" in str(caught.value)
    with pytest.raises(ConfigError, match="no column 'reply'"):
        import_file(store, project, path, mapping={"answer": "reply"})
    with pytest.raises(ConfigError, match="not a field"):
        import_file(store, project, path, mapping={"nope": "solution"})
    assert store.sample_total(project) == 0 and store.imports(project) == []


def test_jsonl_rows_report_bad_json_non_objects_and_missing_keys(store, project, tmp_path):
    path = tmp_path / "d.jsonl"
    lines = [json.dumps({"question": "q1", "answer": "a1", "meta": 1}), "{not json", "[1, 2]", "",
             json.dumps({"question": "q2"}), json.dumps({"question": "q3", "answer": 42})]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = import_file(store, project, path)
    assert report.imported == 2  # the number is taken as text
    assert [p.split(":")[0] for p in report.problems] == ["line 2", "line 3", "line 5"]
    assert "not valid JSON" in report.problems[0] and "a JSON list" in report.problems[1]
    assert report.problems[2] == "line 5: no 'answer' key"
    assert report.ignored_columns == ["meta"]
    assert {r["data"]["answer"] for r in imported(store, project)} == {"a1", "42"}


def test_parquet_import(store, project, tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pa.table({"q": [f"question {i}" for i in range(2500)], "a": [f"answer {i}" for i in range(2500)],
                      "n": list(range(2500))})
    pq.write_table(table, tmp_path / "d.parquet", row_group_size=700)
    report = import_file(store, project, tmp_path / "d.parquet", mapping={"question": "q", "answer": "a"})
    assert report.imported == 2500 and report.ignored_columns == ["n"]
    assert max(r["source_line"] for r in imported(store, project)) == 2500


def test_a_stopped_import_resumes_after_its_last_committed_chunk(store, project, tmp_path):
    rows = [[f"question {i}", f"answer {i}"] for i in range(CHUNK * 3 + 17)]
    path = write_csv(tmp_path / "d.csv", ["question", "answer"], rows)
    calls = {"n": 0}

    def stop_after_first_chunk() -> bool:
        calls["n"] += 1
        return calls["n"] >= 1

    first = import_file(store, project, path, should_stop=stop_after_first_chunk)
    assert first.cancelled and first.imported == CHUNK
    assert store.import_row(first.import_id)["next_line"] == CHUNK + 1
    second = import_file(store, project, path)
    assert second.resumed_from == CHUNK + 1 and second.import_id == first.import_id
    assert second.imported == len(rows) - CHUNK and second.duplicates == 0
    lines = sorted(r["source_line"] for r in imported(store, project))
    assert lines == list(range(2, len(rows) + 2))  # every row once: none lost, none twice


def test_memory_stays_bounded_as_the_file_grows(store, tmp_path):
    """The reader streams: the peak of Python allocations importing 40k rows is about that of 5k rows (a reader
    that loaded the file would hold 8x as much)."""
    peaks = []
    for n in (5_000, 40_000):
        project = make_project(store)
        path = write_csv(tmp_path / f"d{n}.csv", ["question", "answer"],
                         [[f"question number {i} " + "words " * 20, f"answer {i}"] for i in range(n)])
        tracemalloc.start()
        import_file(store, project, path)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] < peaks[0] * 2, peaks


def test_cli_import_data_exit_codes(store, project, tmp_path, capsys):
    db = store.path
    good = write_csv(tmp_path / "g.csv", ["question", "answer"], [["q1", "a"]])
    mixed = write_csv(tmp_path / "m.csv", ["question", "answer"], [["q2", "a"], ["", "b"]])
    bad = write_csv(tmp_path / "b.csv", ["q", "a"], [["q3", "a"]])
    assert main(["import-data", "--db", db, "--file", str(good)]) == 0
    assert "imported 1 row(s)" in capsys.readouterr().out
    assert main(["import-data", "--db", db, "--file", str(mixed)]) == 3
    err = capsys.readouterr().err
    assert "skipped: line 3: has no text for field 'question'" in err
    assert main(["import-data", "--db", db, "--file", str(bad)]) == 2
    assert "no column for the field 'question'" in capsys.readouterr().err
    assert main(["import-data", "--db", db, "--file", str(bad), "--map", "question=q", "--map", "answer=a"]) == 0
    assert main(["import-data", "--db", db, "--file", str(good), "--map", "nonsense"]) == 2


def test_a_tree_built_after_an_import_sees_its_rows_as_style_examples(store, project, tmp_path, fake):
    """The rows land at the root, so the root's pivot prompt shows the first of them (seeds.style_examples):
    the tree is built from the task and a sample of the dataset."""
    from treesynth_core.llm import LLM
    from treesynth_core.partition import build

    path = write_csv(tmp_path / "d.csv", ["question", "answer"],
                     [[f"How do I reset router model X{i}?", f"Hold the button {i} s."] for i in range(5)])
    import_file(store, project, path)
    spec = store.project(project)  # with pivots_from_data (the default) the rows are the pivots: test_pivots_from_data
    spec.settings = spec.settings.model_copy(update={"pivots_from_data": False})
    store.update_project(project, spec)
    build(store, project, LLM(fake.endpoint(), store, project), depth=1)
    pivots = next(r for r in fake.requests if "Step: pivots" in r["messages"][0]["content"])
    assert "How do I reset router model X0?" in pivots["messages"][1]["content"]


def test_kill_9_during_an_import_then_resume_imports_every_row_once(tmp_path):
    from treesynth_core.store import Store

    from .test_cli import cli, cli_env, command, kill_when

    db = tmp_path / "k.db"
    with Store(db) as store:
        make_project(store)
    rows = 60_000
    path = write_csv(tmp_path / "big.csv", ["question", "answer"],
                     [[f"question {i} about returns", f"answer {i}"] for i in range(rows)])
    env = cli_env()

    def some_chunks_in() -> bool:
        with Store(db) as s:
            found = s.query("select next_line from imports")
        return bool(found) and CHUNK * 3 < found[0]["next_line"] < rows

    kill_when(command("import-data", "--db", db, "--file", path), env, tmp_path, some_chunks_in,
              "the import never committed a chunk", 120)
    with Store(db) as store:
        record = store.imports(1)[0]
        assert record["status"] == "running" and record["imported"] == record["next_line"] - 1
    result = cli("import-data", "--db", db, "--file", path, env=env, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"(resumed after line {record['next_line']})" in result.stdout
    with Store(db) as store:
        lines = [r["source_line"] for r in store.query("select source_line from samples order by source_line")]
        assert lines == list(range(2, rows + 2))  # none lost, none twice
        assert store.imports(1)[0]["status"] == "complete"


def test_import_job_keeps_a_cancelled_upload_for_its_resume_and_removes_it_at_the_end(store, project, tmp_path):
    from treesynth_core.errors import Cancelled
    from treesynth_core.importer import import_job, save_upload

    rows = [[f"question {i}", f"answer {i}"] for i in range(CHUNK * 2 + 5)]
    data = write_csv(tmp_path / "d.csv", ["question", "answer"], rows).read_bytes()
    saved = save_upload(data, "../../d.csv", tmp_path / "uploads")
    assert saved.parent == tmp_path / "uploads" and saved.name.endswith("-d.csv")
    with pytest.raises(Cancelled):
        import_job(store, project, path=str(saved), name="d.csv", remove=True, should_stop=lambda: True)
    assert saved.exists()  # kept: the job can be resumed
    report = import_job(store, project, path=str(saved), name="d.csv", remove=True)
    assert report.resumed_from == CHUNK + 1 and report.outcome is Outcome.COMPLETE
    assert not saved.exists() and len(imported(store, project)) == len(rows)
    bad = save_upload(b"", "empty.csv", tmp_path / "uploads")
    with pytest.raises(ConfigError):
        import_job(store, project, path=str(bad), remove=True)
    assert not bad.exists()


def test_an_unterminated_quote_is_named_and_the_rows_it_swallowed_counted(store, project, tmp_path, capsys):
    rows = ["question,answer", "q1,a1", "q2,a2", '"unterminated,4'] + [f"q{i},a{i}" for i in range(3, 50)]
    path = tmp_path / "quote.csv"
    path.write_text("\n".join(rows) + "\n")
    report = import_file(store, project, path)
    assert report.imported == 2 and report.skipped == 1 + 47  # the quote's line and the 47 lines it swallowed
    assert report.outcome is Outcome.PARTIAL
    assert len(report.problems) == 1 and report.problems[0].startswith("line 4: an unterminated quote")
    assert "47 line(s) after it" in report.problems[0] and "unterminated quote" in report.summary()
    assert main(["import-data", "--db", store.path, "--file", str(path)]) == 3  # again: still partial
    err = capsys.readouterr().err
    assert "skipped: line 4: an unterminated quote" in err and "... and 47 more bad row(s)" in err


def test_a_quoted_multiline_cell_at_the_end_is_not_called_unterminated(store, project, tmp_path):
    path = tmp_path / "ok.csv"
    path.write_text('question,answer\nq1,a1\nq2,"line one\nline two\nline three"\n')
    report = import_file(store, project, path)
    assert (report.imported, report.skipped) == (2, 0)


def test_a_failed_or_partial_import_keeps_its_outcome_when_run_again(store, project, tmp_path):
    failed = write_csv(tmp_path / "f.csv", ["question", "answer"], [["", "a"], ["", "b"]])
    assert import_file(store, project, failed).outcome is Outcome.FAILED
    again = import_file(store, project, failed)
    assert again.already_complete and again.outcome is Outcome.FAILED and again.skipped == 2
    assert "nothing to do" not in again.summary() and "2 bad row(s)" in again.summary()
    partial = write_csv(tmp_path / "p.csv", ["question", "answer"], [["q1", "a"], ["", "b"]])
    assert import_file(store, project, partial).outcome is Outcome.PARTIAL
    again = import_file(store, project, partial)
    assert again.outcome is Outcome.PARTIAL and (again.imported, again.skipped) == (1, 1)
    assert again.problems and again.problems[0].startswith("line 3")


def test_ambiguous_columns_and_repeated_maps_are_refused(store, project, tmp_path, capsys):
    twice = tmp_path / "twice.csv"
    twice.write_text("question,answer,question\nq1,a1,other\n")
    with pytest.raises(ConfigError, match="2 columns named 'question'"):
        import_file(store, project, twice)
    alike = tmp_path / "alike.csv"
    alike.write_text("Question,QUESTION,answer\nq1,q2,a\n")
    with pytest.raises(ConfigError, match="'Question' and 'QUESTION' both fit"):
        import_file(store, project, alike)
    assert import_file(store, project, alike, mapping={"question": "QUESTION"}).imported == 1
    exact = tmp_path / "exact.csv"
    exact.write_text("Question,question,answer\nq3,q4,a\n")  # the exact name wins over a case-folded one
    import_file(store, project, exact)
    assert {"question": "q4", "answer": "a"} in [r["data"] for r in imported(store, project)]
    db = store.path
    assert main(["import-data", "--db", db, "--file", str(alike), "--map", "question=Question",
                 "--map", "question=QUESTION"]) == 2
    assert "names the field 'question' twice" in capsys.readouterr().err
    assert store.imports(project) and all(r["status"] != "failed" for r in store.imports(project))


def test_skipped_json_lines_are_described_in_json_words(store, project, tmp_path):
    path = tmp_path / "kinds.jsonl"
    path.write_text('null\n"text"\n7\ntrue\n[1]\n{"question": "q", "answer": "a"}\n')
    problems = import_file(store, project, path).problems
    assert [p.split(": ", 1)[1] for p in problems] == [
        f"a JSON {kind}, not an object" for kind in ("null", "string", "number", "true/false", "list")]


def test_an_upload_refused_by_its_import_job_is_named_as_the_user_named_it(store, project, tmp_path):
    from treesynth_core.importer import import_job, save_upload

    saved = save_upload("question,answer\ncafé,x\n".encode("latin-1"), "my file.csv", tmp_path / "uploads")
    with pytest.raises(ConfigError) as caught:
        import_job(store, project, path=str(saved), name="my file.csv", remove=True)
    assert str(caught.value).startswith("my file.csv is not UTF-8 text") and saved.name not in str(caught.value)
    assert not saved.exists() and store.imports(project) == []


def test_the_preview_refuses_what_the_import_would_refuse():
    from treesynth_core.importer import peek_columns

    with pytest.raises(ConfigError, match="latin.csv is not UTF-8"):
        peek_columns("question,answer\ncafé,x\n".encode("latin-1"), "latin.csv")
    assert peek_columns(b"question,answer\nq,a\n", "ok.csv")[0] == ["question", "answer"]
