"""Hostile inputs to every command: each ends in exactly one `error:` line on stderr, exit code 2, no traceback,
no LLM request, and the database exactly as it was (row counts and a hash of projects, nodes and samples).

Most cases run main() in this process (quick); the ones where the process boundary matters (argv bytes that
are not UTF-8, `python -m` exit codes, a slow refusal) run as subprocesses.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from treesynth_core.fakellm import FakeLLM
from treesynth_core.store import Store

from .test_cli import cli_env, copy_db, make_db, run_main, use_env

ROOT = Path(__file__).resolve().parent.parent
TABLES = ("projects", "nodes", "samples", "calls", "jobs")


def snapshot(db: Path):
    """Row counts of every table and a hash of the content of projects, nodes and samples (None: no file)."""
    if not db.is_file():
        return None
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        try:
            counts = tuple(conn.execute(f"select count(*) from {t}").fetchone()[0] for t in TABLES)
        except sqlite3.DatabaseError:  # not ours: compare its bytes
            return hashlib.sha256(db.read_bytes()).hexdigest()
        digest = hashlib.sha256()
        for table in ("projects", "nodes", "samples"):
            for row in conn.execute(f"select * from {table} order by 1"):
                digest.update(repr(row).encode())
    conn.close()
    return counts, digest.hexdigest()


@pytest.fixture(scope="module")
def fake():
    with FakeLLM() as server:
        yield server


@pytest.fixture(scope="module")
def base(fake, tmp_path_factory):
    """A built project with samples, made once; each case works on a copy."""
    from treesynth_core.generate import generate
    from treesynth_core.llm import LLM

    db = make_db(tmp_path_factory.mktemp("hostile") / "base.db", fake, depth=2)
    with Store(db) as store:
        generate(store, 1, LLM(fake.endpoint(max_retries=0, timeout=5), store, 1), per_leaf=2)
        tree = store.tree(1)
        ids = {"root": tree.root.id, "leaf": tree.leaves()[0].id}
    return db, ids


@pytest.fixture
def work(base, tmp_path, fake, monkeypatch):
    """A copy of the base project, the paths the cases use, and an endpoint configured (the fake), so a
    refusal is never just 'no endpoint'."""
    db = copy_db(base[0], tmp_path / "p.db")
    (tmp_path / "folder").mkdir()
    (tmp_path / "notes.txt").write_text("my notes, not a database\n" * 10)
    with sqlite3.connect(tmp_path / "other.db") as conn:
        conn.execute("create table contacts (name text)")
    conn.close()
    future = copy_db(base[0], tmp_path / "future.db")
    with Store(future) as store:
        store.db["_sqlite_migrations"].insert({"migration_set": "treesynth", "name": "m099_future",
                                               "applied_at": "2031-01-01"})
    tree_file = tmp_path / "tree.json"
    tree_file.write_text(json.dumps({
        "format": "treesynth-tree", "version": 1,
        "project": {"name": "p", "task": "short stories", "fields": [{"name": "story"}]},
        "tree": {"dimension": "genre", "children": [{"value": "horror"}, {"value": "comedy"}]}}))
    (tmp_path / "nested.json").write_bytes(b"[" * 10_000 + b"]" * 10_000)
    (tmp_path / "latin1.json").write_bytes('{"format": "treesynth-tree", "name": "caf\xe9"}'.encode("latin-1"))
    (tmp_path / "surrogate.json").write_text(tree_file.read_text().replace("horror", "\\ud800"))
    (tmp_path / "broken.json").write_text('{"format": "treesynth-tree",')
    with (tmp_path / "huge.json").open("wb") as handle:
        handle.truncate(25_000_000)
    two = copy_db(base[0], tmp_path / "two.db")
    with Store(two) as store:
        store.create_project(store.project(1))
    use_env(monkeypatch, fake.base_url)
    paths = {"db": db, "dir": tmp_path / "folder", "notes": tmp_path / "notes.txt", "other": tmp_path / "other.db",
             "future": future, "tree": tree_file, "nested": tmp_path / "nested.json",
             "latin1": tmp_path / "latin1.json", "surrogate": tmp_path / "surrogate.json",
             "broken": tmp_path / "broken.json", "huge": tmp_path / "huge.json", "two": two,
             "new": tmp_path / "new.db", "missing": tmp_path / "missing.db", "tmp": tmp_path, **base[1]}
    return paths


# Each case: (arguments with {placeholders}, what the one error line must say, the database to watch).
# The database watched is left exactly as it was; "new" must not even be created.
CASES = {
    # init: ranges come from spec.Settings
    "init per-leaf 0": ("init --db {new} --task t1x --fields q,a --per-leaf 0",
                        "--per-leaf: must be a whole number from 1 to 10000 (got '0')", "new"),
    "init per-leaf negative": ("init --db {new} --task t1x --fields q,a --per-leaf -5", "from 1 to 10000", "new"),
    "init per-leaf absurd": ("init --db {new} --task t1x --fields q,a --per-leaf 1000000000", "from 1 to 10000", "new"),
    "init per-leaf not a number": ("init --db {new} --task t1x --fields q,a --per-leaf ten", "(got 'ten')", "new"),
    "init depth too deep": ("init --db {new} --task t1x --fields q,a --depth 9", "--depth: must be a whole number from 0 to 8", "new"),
    "init depth negative": ("init --db {new} --task t1x --fields q,a --depth -1", "from 0 to 8", "new"),
    "init max-values 1": ("init --db {new} --task t1x --fields q,a --max-values 1", "--max-values: must be a whole number from 2 to 200", "new"),
    "init pivots 0": ("init --db {new} --task t1x --fields q,a --pivots 0", "--pivots: must be a whole number from 2 to 20", "new"),
    "init samples-per-call 21": ("init --db {new} --task t1x --fields q,a --samples-per-call 21", "from 1 to 20", "new"),
    "init price negative": ("init --db {new} --task t1x --fields q,a --price-in -1", "--price-in: must be a number from 0 to 10000", "new"),
    "init price absurd": ("init --db {new} --task t1x --fields q,a --price-out 1e9", "--price-out: must be a number from 0 to 10000", "new"),
    "init price nan": ("init --db {new} --task t1x --fields q,a --price-in nan", "(got 'nan')", "new"),
    "init field name with a space": ("init --db {new} --task t1x --fields 'two words,a'", "field name 'two words' must be", "new"),
    "init no field": ("init --db {new} --task t1x --fields ' , '", "--fields: names no field", "new"),
    "init duplicate fields": ("init --db {new} --task t1x --fields q,q", "--fields: field names must be unique", "new"),
    "init root split without colon": ("init --db {new} --task t1x --fields q,a --root-split 'algebra, geometry'",
                                      "--root-split: write it as 'dimension: value, value, ...'", "new"),
    "init root split one value": ("init --db {new} --task t1x --fields q,a --root-split 'subject: algebra'",
                                  "at least two distinct values", "new"),
    "init root split catch-all": ("init --db {new} --task t1x --fields q,a --root-split 'subject: algebra, other'",
                                  "'other' is a vague catch-all", "new"),
    "init root split formula": ("init --db {new} --task t1x --fields q,a --root-split '=cmd(): a, b'",
                                "looks like a spreadsheet formula", "new"),
    "init empty task": ("init --db {new} --task '   ' --fields q,a", "--task: is empty", "new"),
    "init task too long": ("init --db {new} --task " + "x" * 4001 + " --fields q,a", "--task: String should have at most 4000", "new"),
    "init name too long": ("init --db {new} --task t1x --name " + "n" * 201 + " --fields q,a", "--name: String should have at most 200", "new"),
    "init db is a directory": ("init --db {dir} --task t1x --fields q,a", "is a directory", "db"),
    "init db is not sqlite": ("init --db {notes} --task t1x --fields q,a", "is not an SQLite database", "notes"),
    "init db in an unwritable folder": ("init --db /proc/x.db --task t1x --fields q,a",
                                        "cannot open the database /proc/x.db: unable to open database file", "new"),
    "init db folder cannot be made": ("init --db {notes}/sub/x.db --task t1x --fields q,a",
                                      "cannot create the folder of the database", "notes"),
    "init db of another program": ("init --db {other} --task t1x --fields q,a", "an SQLite database of another program", "other"),
    "init db from a newer version": ("init --db {future} --task t1x --fields q,a",
                                     "this database was written by a newer TreeSynth (migration m099_future)", "future"),
    # build
    "build depth 0": ("build --db {db} --depth 0", "--depth: must be a whole number from 1 to 8", "db"),
    "build depth 99": ("build --db {db} --depth 99", "from 1 to 8", "db"),
    "build concurrency 0": ("build --db {db} --concurrency 0", "--concurrency: must be a whole number from 1 to 64", "db"),
    "build concurrency absurd": ("build --db {db} --concurrency 100000", "from 1 to 64", "db"),
    "build pivots negative": ("build --db {db} --pivots -3", "--pivots: must be a whole number from 2 to 20", "db"),
    "build unknown under": ("build --db {db} --under nope --depth 3", "--under 'nope': no such node in this project", "db"),
    "build unknown project": ("build --db {db} --project 99", "project 99 does not exist", "db"),
    "build project 0": ("build --db {db} --project 0", "--project: must be a whole number from 1", "db"),
    "build two projects": ("build --db {two}", "this database holds 2 projects (pass --project ID", "two"),
    "build missing db": ("build --db {missing}", "missing.db does not exist", "missing"),
    "build no endpoint (settings untouched)": ("build --db {db} --depth 3 --max-values 5", "no LLM endpoint is configured", "db"),
    # generate
    "generate per-leaf 0": ("generate --db {db} --per-leaf 0", "--per-leaf: must be a whole number from 1 to 10000 (got '0')", "db"),
    "generate per-leaf negative": ("generate --db {db} --per-leaf -3", "from 1 to 10000", "db"),
    "generate per-leaf absurd": ("generate --db {db} --per-leaf 1000000000", "from 1 to 10000", "db"),
    "generate samples-per-call 0": ("generate --db {db} --samples-per-call 0", "from 1 to 20", "db"),
    "generate temperature 5": ("generate --db {db} --temperature 5", "--temperature: must be a number from 0 to 2", "db"),
    "generate temperature negative": ("generate --db {db} --temperature -0.1", "from 0 to 2", "db"),
    "generate temperature inf": ("generate --db {db} --temperature inf", "(got 'inf')", "db"),
    "generate concurrency negative": ("generate --db {db} --concurrency -1", "from 1 to 64", "db"),
    "generate unknown under": ("generate --db {db} --under nope --per-leaf 5", "--under 'nope': no such node", "db"),
    "generate db is a directory": ("generate --db {dir} --per-leaf 5", "is a directory", "db"),
    # export
    "export unknown status": ("export --db {db} --out {tmp}/x.jsonl --status acepted",
                              "--status: unknown sample status 'acepted'; use one or more of generated, accepted, rejected", "db"),
    "export empty status": ("export --db {db} --out {tmp}/x.jsonl --status ,", "unknown sample status (none given)", "db"),
    "export unknown under": ("export --db {db} --out {tmp}/x.jsonl --under nope", "--under 'nope': no such node", "db"),
    "export out is a directory": ("export --db {db} --out {dir}", "is a directory", "db"),
    "export out folder missing": ("export --db {db} --out {tmp}/no/such/x.jsonl", "does not exist", "db"),
    "export out unwritable": ("export --db {db} --out /proc/x.jsonl", "/proc/x.jsonl", "db"),
    "export out is the database": ("export --db {db} --out {db}", "is the database itself", "db"),
    "export unknown format": ("export --db {db} --out {tmp}/x.xml --format xml", "invalid choice: 'xml'", "db"),
    "export db not sqlite": ("export --db {notes} --out {tmp}/x.jsonl", "is not an SQLite database", "notes"),
    "export db from a newer version": ("export --db {future} --out {tmp}/x.jsonl", "newer TreeSynth", "future"),
    "export db missing": ("export --db {missing} --out {tmp}/x.jsonl", "does not exist", "missing"),
    "export chat non-UTF-8 system": ("export --db {db} --out {tmp}/x.jsonl --format chat --system \udcff",
                                     "--system: is not valid UTF-8 text", "db"),
    # export-tree
    "export-tree out is a directory": ("export-tree --db {db} --out {dir}", "is a directory", "db"),
    "export-tree out folder missing": ("export-tree --db {db} --out {tmp}/no/t.json", "does not exist", "db"),
    # import-tree
    "import nested 10,000 levels": ("import-tree --db {db} --file {nested}", "nests lists and objects more than 64 levels", "db"),
    "import not UTF-8": ("import-tree --db {db} --file {latin1}", "the file is not UTF-8 text", "db"),
    "import lone surrogate": ("import-tree --db {db} --file {surrogate}", "invalid Unicode escape", "db"),
    "import too large": ("import-tree --db {db} --file {huge}", "larger than 20 MB", "db"),
    "import invalid JSON": ("import-tree --db {db} --file {broken}", "not valid JSON", "db"),
    "import a directory": ("import-tree --db {db} --file {dir}", "does not exist or is not a file", "db"),
    "import a missing file": ("import-tree --db {db} --file {tmp}/none.json", "does not exist or is not a file", "db"),
    "import into a new file (not created)": ("import-tree --db {new} --file {nested}", "nests", "new"),
    "import name too long": ("import-tree --db {db} --file {tree} --name " + "n" * 201, "the project name: String should have at most 200", "db"),
    "import empty name": ("import-tree --db {db} --file {tree} --name ''", "the project name: String should have at least 1 character", "db"),
    "import into a newer database": ("import-tree --db {future} --file {tree}", "newer TreeSynth", "future"),
    # calls
    "calls limit 0": ("calls --db {db} --limit 0", "--limit: must be a whole number from 1 to 100000", "db"),
    "calls limit absurd": ("calls --db {db} --limit 1000000000000", "from 1 to 100000", "db"),
    # edit
    "edit unknown node": ("edit approve --db {db} --node nope", "--node 'nope': no such node", "db"),
    "edit unknown action": ("edit frobnicate --db {db} --node {leaf}", "invalid choice: 'frobnicate'", "db"),
    "edit prune the root": ("edit prune --db {db} --node {root}", "the root cannot be pruned", "db"),
    "edit node of another project": ("edit lock --db {two} --node {leaf} --project 2", "belongs to project 1, not 2", "two"),
    # show
    "show unknown under": ("show --db {db} --under nope", "--under 'nope': no such node", "db"),
    "show max-depth negative": ("show --db {db} --max-depth -1", "--max-depth: must be a whole number from 0 to 8", "db"),
    "show unknown project": ("show --db {db} --project 5", "project 5 does not exist", "db"),
    # projects and the command line itself
    "projects db is a directory": ("projects --db {dir}", "is a directory", "db"),
    "projects db not sqlite": ("projects --db {notes}", "is not an SQLite database", "notes"),
    "projects db from a newer version": ("projects --db {future}", "newer TreeSynth", "future"),
    "no command": ("", "the following arguments are required: command", "db"),
    "unknown option": ("build --db {db} --colour red", "unrecognized arguments: --colour red", "db"),
    "missing --db": ("show", "the following arguments are required: --db", "db"),
}


def expand(template: str, paths: dict) -> list[str]:
    import shlex

    return [part.format(**paths) for part in shlex.split(template)]


def one_error_line(err: str, message: str) -> None:
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert message in lines[0], lines[0]


@pytest.mark.parametrize("template,message,watched", list(CASES.values()), ids=list(CASES))
def test_hostile_input_is_one_line_exit_2_and_changes_nothing(work, fake, capsys, template, message, watched):
    args = expand(template, work)
    if "no LLM endpoint" in message:
        for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY"):
            os.environ.pop(name, None)  # monkeypatched by `work`: restored after the test
    before = snapshot(work[watched])
    requests = len(fake.requests)
    code, _, err = run_main(capsys, *args)
    assert code == 2, err
    one_error_line(err, message)
    assert snapshot(work[watched]) == before
    assert len(fake.requests) == requests  # nothing was asked of (or paid to) the endpoint
    if watched == "db":
        assert not list(work["tmp"].glob("x.*")) and not list(work["tmp"].glob(".*.tmp"))


def test_there_are_at_least_45_cases():
    assert len(CASES) >= 45


# ----------------------------------------------------------------------------- as separate processes


def run(*args, timeout: float = 60, **env) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "treesynth_core", *[os.fsencode(a) if isinstance(a, str) else a for a in args]]
    return subprocess.run(command, env=cli_env(**env), cwd=ROOT, capture_output=True, timeout=timeout)


SUBPROCESS_CASES = {
    "task bytes that are not UTF-8": (["init", "--db", "{new}", "--task", b"caf\xe9 problems", "--fields", "q,a"],
                                      "--task: is not valid UTF-8 text", "new"),
    "per-leaf absurd, refused at once": (["generate", "--db", "{db}", "--per-leaf", "1000000000"],
                                         "from 1 to 10000", "db"),
    "db is a directory": (["build", "--db", "{dir}"], "is a directory", "db"),
    "db from a newer version": (["show", "--db", "{future}"], "migration m099_future", "future"),
    "nested tree file": (["import-tree", "--db", "{db}", "--file", "{nested}"], "nests", "db"),
    "export to a directory": (["export", "--db", "{db}", "--out", "{dir}"], "is a directory", "db"),
}


@pytest.mark.parametrize("argv,message,watched", list(SUBPROCESS_CASES.values()), ids=list(SUBPROCESS_CASES))
def test_hostile_input_through_python_m(work, fake, argv, message, watched):
    args = [a.format(**work) if isinstance(a, str) else a for a in argv]
    before = snapshot(work[watched])
    started = time.monotonic()
    result = run(*args, base_url=fake.base_url)
    err = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 2, err
    one_error_line(err, message)
    assert time.monotonic() - started < 30
    assert snapshot(work[watched]) == before


def test_an_unexpected_error_is_one_line_exit_1_and_a_traceback_only_on_request(work, capsys, monkeypatch):
    from treesynth_core import cli_generate

    def boom(*args, **kwargs):
        raise MemoryError("simulated")

    monkeypatch.setattr(cli_generate, "plan_generation", boom)
    code, _, err = run_main(capsys, "generate", "--db", work["db"], "--per-leaf", "2")
    assert code == 1 and "Traceback" not in err
    assert err.strip() == ("internal error: MemoryError: simulated (please report it with the command you ran; "
                           "TREESYNTH_DEBUG=1 shows the details)")
    monkeypatch.setenv("TREESYNTH_DEBUG", "1")
    code, _, err = run_main(capsys, "generate", "--db", work["db"], "--per-leaf", "2")
    assert code == 1 and "Traceback" in err and err.strip().endswith("TREESYNTH_DEBUG=1 shows the details)")


def test_a_project_name_with_markdown_is_stored_as_written(work, capsys):
    name = "**bold** [link](javascript:alert(1)) <b>x</b> # heading"
    code, out, err = run_main(capsys, "init", "--db", work["new"], "--task", "short stories", "--fields", "story",
                              "--name", name)
    assert code == 0, err
    with Store(work["new"]) as store:
        assert store.project(1).name == name
    code, out, _ = run_main(capsys, "projects", "--db", work["new"])
    assert out.strip() == f"1  {name}"


# ----------------------------------------------------------------------------- this session's commands
# import-data, route, balance, seed, push, history, undo, redo and edit --quota, with hostile arguments and files.
# Besides the database (every table of TABLES and NEW_TABLES), the working folder must hold no new file or folder
# afterwards: nothing half-written (a dry-run folder, an export, a temporary file).

NEW_TABLES = ("events", "seeds", "imports", "routes", "proposals")


def full_snapshot(db: Path):
    """snapshot() plus the row counts and content of the tables this session added."""
    base = snapshot(db)
    if not isinstance(base, tuple):
        return base
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        digest = hashlib.sha256()
        for table in NEW_TABLES:
            for row in conn.execute(f"select * from {table} order by 1"):
                digest.update(repr((table, row)).encode())
    conn.close()
    return base, digest.hexdigest()


def folder_listing(folder: Path) -> set[str]:
    """Every path under the folder, less SQLite's own side files (opening a database may leave them)."""
    return {str(p.relative_to(folder)) for p in folder.rglob("*")
            if not p.name.endswith(("-wal", "-shm", "-journal"))}


@pytest.fixture
def hostile(work, monkeypatch):
    """`work` plus hostile data files, a project without a tree, and no Hugging Face token (and a Hub address
    nothing listens on, so no case can ever reach the real Hub)."""
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    tmp = work["tmp"]
    data = tmp / "data"
    data.mkdir()
    files = {
        "empty_csv": b"",
        "header_csv": b"question,answer\n",
        "latin1_csv": "question,answer\ncaf\xe9 problem,r\xe9ponse\n".encode("latin-1"),
        "utf16_csv": "question,answer\nwhat is 2+2,4\n".encode("utf-16"),  # with its BOM
        "binary_csv": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 8,
        "nul_csv": b"question,answer\nq\x001,a1\n",
        "other_cols_csv": b"q,a\nhello,world\n",
        "dup_header_csv": b"question,answer,question\nfirst question,an answer,second question\n",
        "good_jsonl": b'{"question": "how much is 3+3", "answer": "6"}\n',
        "seeds_jsonl": b'{"question": "a seed question", "answer": "a seed answer"}\n',
        "seeds_bad_line_jsonl": b'{"question": "good", "answer": "a"}\n{bad json\n',
        "seeds_blank_jsonl": b"\n\n",
        "seeds_huge_jsonl": json.dumps({"question": "q" * 25_000, "answer": "a"}).encode() + b"\n",
        "seeds_many_jsonl": b"".join(json.dumps({"question": f"q{i}", "answer": "a"}).encode() + b"\n"
                                     for i in range(60)),
        "notes_bin": b"plain text without a known extension\n",
    }
    paths = {}
    for name, content in files.items():
        stem, ext = name.rsplit("_", 1)
        path = data / f"{stem}.{ext if ext != 'bin' else 'dat'}"
        path.write_bytes(content)
        paths[name] = path
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"question": [f"q{i}" for i in range(200)], "answer": ["a"] * 200}), data / "whole.parquet")
    whole = (data / "whole.parquet").read_bytes()
    (data / "truncated.parquet").write_bytes(whole[: len(whole) // 2])
    paths["truncated_parquet"] = data / "truncated.parquet"
    spaced = data / "my exports ☃" / "données été.csv"
    spaced.parent.mkdir()
    spaced.write_bytes(b"")
    paths["spaced_empty_csv"] = spaced
    (data / "rows.csv").mkdir()
    paths["dir_csv"] = data / "rows.csv"
    (tmp / "upload-set").mkdir()
    (tmp / "upload-set" / "keep.txt").write_text("mine\n")
    bare = make_db(tmp / "bare.db")
    return {**work, **paths, "data": data, "bare": bare, "full_dir": tmp / "upload-set"}


NEW_CASES = {
    # import-data: the file
    "import-data empty file": ("import-data --db {db} --file {empty_csv}", "empty.csv is empty (0 bytes)", "db"),
    "import-data Latin-1": ("import-data --db {db} --file {latin1_csv}", "latin1.csv is not UTF-8 text", "db"),
    "import-data UTF-16 with BOM": ("import-data --db {db} --file {utf16_csv}", "is UTF-16 text, not UTF-8", "db"),
    "import-data binary file": ("import-data --db {db} --file {binary_csv}", "binary.csv is not UTF-8 text", "db"),
    "import-data NUL bytes": ("import-data --db {db} --file {nul_csv}", "holds NUL bytes", "db"),
    "import-data a directory named .csv": ("import-data --db {db} --file {dir_csv}", "rows.csv is not a file", "db"),
    "import-data a directory": ("import-data --db {db} --file {dir}", "folder", "db"),
    "import-data a missing file": ("import-data --db {db} --file {tmp}/none.csv", "none.csv is not a file", "db"),
    "import-data truncated Parquet": ("import-data --db {db} --file {truncated_parquet}",
                                      "truncated.parquet is not a readable Parquet file", "db"),
    "import-data CSV read as Parquet": ("import-data --db {db} --file {good_jsonl} --format parquet",
                                        "is not a readable Parquet file", "db"),
    "import-data unknown extension": ("import-data --db {db} --file {notes_bin}", "cannot tell the format", "db"),
    "import-data unknown format": ("import-data --db {db} --file {good_jsonl} --format xlsx",
                                   "invalid choice: 'xlsx'", "db"),
    "import-data spaces and unicode in the path": ("import-data --db {db} --file {spaced_empty_csv}",
                                                   "données été.csv is empty", "db"),
    # import-data: the mapping and where rows land
    "import-data no column for a field": ("import-data --db {db} --file {other_cols_csv}",
                                          "no column for the field 'question'", "db"),
    "import-data map to an unknown field": ("import-data --db {db} --file {other_cols_csv} --map nosuch=q",
                                            "'nosuch' is not a field of this project", "db"),
    "import-data map from an unknown column": (
        "import-data --db {db} --file {other_cols_csv} --map question=nosuch --map answer=a",
        "the file has no column 'nosuch'", "db"),
    "import-data map without =": ("import-data --db {db} --file {other_cols_csv} --map question",
                                  "--map 'question' is not FIELD=COLUMN", "db"),
    "import-data unknown node": ("import-data --db {db} --file {good_jsonl} --node nope",
                                 "--node 'nope': no such node", "db"),
    "import-data two projects": ("import-data --db {two} --file {good_jsonl}", "this database holds 2 projects", "two"),
    "import-data into a missing database": ("import-data --db {missing} --file {good_jsonl}", "does not exist",
                                            "missing"),
    # route
    "route rows-per-call 0": ("route --db {db} --rows-per-call 0",
                              "--rows-per-call: must be a whole number from 1 to 50",
                              "db"),
    "route rows-per-call 51": ("route --db {db} --rows-per-call 51", "from 1 to 50", "db"),
    "route rows-per-call not a number": ("route --db {db} --rows-per-call ten", "(got 'ten')", "db"),
    "route concurrency negative": ("route --db {db} --yes --concurrency -1", "from 1 to 64", "db"),
    "route unknown under": ("route --db {db} --yes --under nope", "--under 'nope': no such node", "db"),
    "route unknown project": ("route --db {db} --project 9", "project 9 does not exist", "db"),
    "route without a tree": ("route --db {bare} --yes", "the tree has no split yet", "bare"),
    # balance
    "balance target negative": ("balance --db {db} --target -5", "--target: must be a whole number from 0 to 10000",
                                "db"),
    "balance target huge": ("balance --db {db} --yes --target 1000000000", "from 0 to 10000", "db"),
    "balance target not a number": ("balance --db {db} --target abc", "(got 'abc')", "db"),
    "balance target in exponent form": ("balance --db {db} --target 1e3", "(got '1e3')", "db"),
    "balance no target": ("balance --db {db} --yes", "no target given", "db"),
    "balance leaf-target unknown node": ("balance --db {db} --yes --target 5 --leaf-target nope=3",
                                         "'nope' is not a leaf of this project", "db"),
    "balance leaf-target not a leaf": ("balance --db {db} --yes --target 5 --leaf-target {root}=3",
                                       "is not a leaf of this project", "db"),
    "balance leaf-target negative": ("balance --db {db} --target 5 --leaf-target {leaf}=-1", "is not LEAF=N", "db"),
    "balance leaf-target without =": ("balance --db {db} --target 5 --leaf-target {leaf}", "is not LEAF=N", "db"),
    "balance leaf-target not a number": ("balance --db {db} --target 5 --leaf-target {leaf}=x", "is not LEAF=N", "db"),
    "balance unknown under": ("balance --db {db} --yes --target 5 --under nope", "--under 'nope': no such node", "db"),
    "balance seed negative": ("balance --db {db} --target 5 --seed -1", "--seed: must be a whole number from 0", "db"),
    "balance samples-per-call 0": ("balance --db {db} --target 5 --samples-per-call 0", "from 1 to 20", "db"),
    "balance unknown method": ("balance --db {db} --target 5 --method best", "invalid choice: 'best'", "db"),
    "balance without a tree": ("balance --db {bare} --yes --target 3", "the tree has no leaves yet", "bare"),
    # seed
    "seed add bad JSON": ("seed add --db {db} --json '{{bad'", "--json is not JSON", "db"),
    "seed add a JSON list": ("seed add --db {db} --json '[1, 2]'", "--json is not a JSON object", "db"),
    "seed add JSON null": ("seed add --db {db} --json null", "--json is not a JSON object", "db"),
    "seed add a missing field": ("seed add --db {db} --json '{{\"question\": \"q\"}}'",
                                 "example 1 has no 'answer'", "db"),
    "seed add empty text": ("seed add --db {db} --json '{{\"question\": \"\", \"answer\": \"a\"}}'",
                            "has no text for field 'question'", "db"),
    "seed add a huge field": ("seed add --db {db} --file {seeds_huge_jsonl}", "field 'question' has 25,000 characters",
                              "db"),
    "seed add too many": ("seed add --db {db} --file {seeds_many_jsonl}", "60 seed examples is more than 50", "db"),
    "seed add one bad line (all or nothing)": ("seed add --db {db} --file {seeds_bad_line_jsonl}",
                                               "line 2 of seeds_bad_line.jsonl is not JSON", "db"),
    "seed add a blank file": ("seed add --db {db} --file {seeds_blank_jsonl}", "holds no example", "db"),
    "seed add not UTF-8": ("seed add --db {db} --file {latin1_csv}", "is not UTF-8 text", "db"),
    "seed add a directory": ("seed add --db {db} --file {dir}", "does not exist or is not a file", "db"),
    "seed add unknown node": ("seed add --db {db} --file {seeds_jsonl} --node nope", "--node 'nope': no such node",
                              "db"),
    "seed add both file and json": ("seed add --db {db} --file {seeds_jsonl} --json '{{}}'",
                                    "not allowed with argument", "db"),
    "seed rm unknown id": ("seed rm --db {db} --id 99", "seed 99 is not in this project", "db"),
    "seed rm id 0": ("seed rm --db {db} --id 0", "--id: must be a whole number from 1", "db"),
    # push (no HF_TOKEN in these cases)
    "push repo with two slashes": ("push --db {db} --repo a/b/c --dry-run {tmp}/x.push",
                                   "'a/b/c' is not a Hub repository id", "db"),
    "push repo with ..": ("push --db {db} --repo ../x --dry-run {tmp}/x.push",
                          "'../x' is not a Hub repository id", "db"),
    "push repo without a name": ("push --db {db} --repo me/ --dry-run {tmp}/x.push",
                                 "is not a Hub repository id", "db"),
    "push repo name too long": ("push --db {db} --repo me/" + "x" * 200 + " --dry-run {tmp}/x.push",
                                "is not a Hub repository id", "db"),
    "push without HF_TOKEN": ("push --db {db} --repo me/ok", "HF_TOKEN is not set", "db"),
    "push dry-run into an existing file": ("push --db {db} --repo me/ok --dry-run {notes}", "is not a folder", "db"),
    "push dry-run into the database": ("push --db {db} --repo me/ok --dry-run {db}", "is not a folder", "db"),
    "push dry-run into a folder holding other files": ("push --db {db} --repo me/ok --dry-run {full_dir}",
                                                       "holds other files (keep.txt)", "db"),
    "push dry-run under a missing folder": ("push --db {db} --repo me/ok --dry-run {tmp}/no/such/set",
                                            "the folder above", "db"),
    "push unknown status": ("push --db {db} --repo me/ok --dry-run {tmp}/x.push --status nope",
                            "unknown sample status 'nope'", "db"),
    "push nothing to push": ("push --db {db} --repo me/ok --dry-run {tmp}/x.push --status rejected",
                             "nothing to push", "db"),
    "push dry-run into an unwritable place": ("push --db {db} --repo me/ok --dry-run /proc/h8-upload-set",
                                              "cannot make the upload folder /proc/h8-upload-set", "db"),
    # history, undo, redo, edit --quota
    "history limit -1": ("history --db {db} --limit -1", "--limit: must be a whole number from 1 to 10000", "db"),
    "history limit 0": ("history --db {db} --limit 0", "from 1 to 10000", "db"),
    "history limit huge": ("history --db {db} --limit 10001", "from 1 to 10000", "db"),
    "history limit not a number": ("history --db {db} --limit all", "(got 'all')", "db"),
    "history unknown node": ("history --db {db} --node nope", "--node 'nope': no such node", "db"),
    "undo a split whose leaves got samples since": ("undo --db {db}", "6 sample(s) changed since", "db"),
    "edit quota negative": ("edit --db {db} --node {leaf} --quota -5",
                            "--quota: must be from 0 to 10000, or none", "db"),
    "edit quota not a number": ("edit --db {db} --node {leaf} --quota abc", "(got 'abc')", "db"),
    "edit quota fraction": ("edit --db {db} --node {leaf} --quota 1.5", "(got '1.5')", "db"),
    "edit quota huge": ("edit --db {db} --node {leaf} --quota 10001", "from 0 to 10000", "db"),
    "edit quota empty": ("edit --db {db} --node {leaf} --quota ''", "(got '')", "db"),
    "edit nothing to do": ("edit --db {db} --node {leaf}", "say what to do", "db"),
    "edit quota unknown node": ("edit --db {db} --node nope --quota 5", "--node 'nope': no such node", "db"),
}


# fixed by F1 (were known bugs)
NEW_CASES.update({
    "import-data header only": (
        "import-data --db {db} --file {header_csv}", "has no rows (only a header)", "db"),
    "import-data maps one field twice": (
        "import-data --db {db} --file {other_cols_csv} --map question=q --map answer=a --map answer=q", "answer", "db"),
    "import-data CSV with a repeated column name": (
        "import-data --db {db} --file {dup_header_csv}", "question", "db"),
})


def refused_cleanly(hostile, fake, capsys, template, message, watched, args=None):
    """Run one case; assert one error line with the message, exit 2, no request, the database and the working
    folder as they were."""
    args = args or expand(template, hostile)
    before = full_snapshot(hostile[watched])
    listing = folder_listing(hostile["tmp"])
    requests = len(fake.requests)
    code, _, err = run_main(capsys, *args)
    assert code == 2, err
    one_error_line(err, message)
    assert full_snapshot(hostile[watched]) == before
    assert len(fake.requests) == requests
    assert folder_listing(hostile["tmp"]) == listing  # nothing half-written, not even an empty folder


NEW_CASES["edit quota on the root"] = ("edit --db {db} --node {root} --quota 5", "quotas are per leaf", "db")


@pytest.mark.parametrize("template,message,watched", list(NEW_CASES.values()), ids=list(NEW_CASES))
def test_new_commands_refuse_hostile_input_in_one_line(hostile, fake, capsys, template, message, watched):
    refused_cleanly(hostile, fake, capsys, template, message, watched)


def test_there_are_at_least_80_new_cases():
    assert len(NEW_CASES) >= 80


@pytest.mark.parametrize("template", ["balance --db {db} --target 5 --seed -1", "seed rm --db {db} --id abc"])
def test_range_messages_print_whole_numbers(hostile, capsys, template):
    code, _, err = run_main(capsys, *expand(template, hostile))
    assert code == 2 and "Traceback" not in err
    assert "e+" not in err, err
    import re

    assert re.search(r"from \d+ to \d{10,} ", err), err  # the bound as a whole number


@pytest.mark.parametrize("name,content,problem", [
    ("cell.csv", b"question,answer\nq1," + b"x" * 1_000_000 + b"\n", "field 'answer' has 1,000,000 characters"),
    ("ragged.csv", b"question,answer\nq1,a1,extra\nq2\n", "line 2: 3 cell(s), the header has 2"),
    ("objects.jsonl", b'[1, 2]\n"text"\n7\n', "line 1: a JSON list, not an object"),
], ids=["a 1 MB cell", "ragged rows", "JSONL without an object"])
def test_an_import_with_no_good_row_fails_listing_its_skipped_rows(hostile, fake, capsys, name, content, problem):
    """Nothing usable: exit 2, each skipped row on a line of its own, then one error line; no sample stored."""
    path = hostile["data"] / name
    path.write_bytes(content)
    before = snapshot(hostile["db"])
    code, _, err = run_main(capsys, "import-data", "--db", hostile["db"], "--file", path)
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("import [")]
    assert lines[-1].startswith("error: import failed: no row could be imported") and problem in lines[-1]
    assert all(line.startswith("  skipped: line ") for line in lines[:-1]) and lines[:-1]
    assert snapshot(hostile["db"]) == before


def test_importing_a_failed_file_again_still_fails(hostile, capsys):
    path = hostile["data"] / "cell.csv"
    path.write_bytes(b"question,answer\nq1," + b"x" * 30_000 + b"\n")
    assert run_main(capsys, "import-data", "--db", hostile["db"], "--file", path)[0] == 2
    code, out, err = run_main(capsys, "import-data", "--db", hostile["db"], "--file", path)
    with Store(hostile["db"]) as store:
        assert store.db.execute("select count(*) from samples where provenance = 'imported'").fetchone()[0] == 0
    assert code == 2, out + err


def test_an_unterminated_quote_is_named_and_its_lost_rows_counted(hostile, capsys):
    rows = ["question,answer", "q1,a1", "q2,a2", '"unterminated,4'] + [f"q{i},a{i}" for i in range(3, 1000)]
    path = hostile["data"] / "quote.csv"
    path.write_text("\n".join(rows) + "\n")
    code, out, err = run_main(capsys, "import-data", "--db", hostile["db"], "--file", path)
    assert "Traceback" not in err
    with Store(hostile["db"]) as store:
        imported = store.db.execute("select count(*) from samples where provenance = 'imported'").fetchone()[0]
    # every row is either imported or counted as lost, and the unterminated quote is named
    assert imported == 999 or ("quote" in (out + err).lower() and (code == 2 or "997" in out + err)), out + err


def test_skipped_jsonl_lines_are_named_in_json_terms(hostile, capsys):
    path = hostile["data"] / "mixed.jsonl"
    path.write_bytes(b'null\n"text"\n{"question": "q", "answer": "a"}\n')
    code, out, err = run_main(capsys, "import-data", "--db", hostile["db"], "--file", path)
    assert code == 3, err
    assert "NoneType" not in err and " str," not in err, err


def test_import_from_a_path_with_spaces_and_unicode(hostile, capsys):
    path = hostile["data"] / "my exports ☃" / "données été.csv"
    path.write_text("question,answer\nhow much is 3+3,6\n")
    code, out, err = run_main(capsys, "import-data", "--db", hostile["db"], "--file", path)
    assert code == 0, err
    assert "imported 1 row(s) from données été.csv" in out
    with Store(hostile["db"]) as store:
        rows = store.db.execute("select data, provenance from samples where provenance = 'imported'").fetchall()
    assert [(json.loads(d), p) for d, p in rows] == [({"question": "how much is 3+3", "answer": "6"}, "imported")]


def test_formulas_imported_from_a_csv_are_neutralised_in_the_csv_export(hostile, capsys):
    path = hostile["data"] / "formulas.csv"
    path.write_text("question,answer\n\"=HYPERLINK(\"\"http://x\"\")\",+1+1\n@SUM(1),-2\n")
    assert run_main(capsys, "import-data", "--db", hostile["db"], "--file", path)[0] == 0
    with Store(hostile["db"]) as store:  # stored as written
        stored = {json.loads(d)["question"] for (d,) in store.db.execute(
            "select data from samples where provenance = 'imported'")}
    assert stored == {'=HYPERLINK("http://x")', "@SUM(1)"}
    out = hostile["tmp"] / "x.csv"
    code, _, err = run_main(capsys, "export", "--db", hostile["db"], "--out", out, "--format", "csv",
                            "--status", "generated")
    assert code == 0, err
    import csv as csv_module

    cells = [c for row in csv_module.reader(out.read_text(encoding="utf-8-sig").splitlines()) for c in row]
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@")], cells


def test_undo_with_nothing_to_undo_and_redo_with_nothing_to_redo(hostile, capsys):
    """On a project without history both say so in one line and change nothing (exit 0: not an error)."""
    before = full_snapshot(hostile["bare"])
    for command, line in (("undo", "nothing to undo"), ("redo", "nothing to redo")):
        code, out, err = run_main(capsys, command, "--db", hostile["bare"])
        assert (code, out.strip(), err) == (0, line, "")
    assert full_snapshot(hostile["bare"]) == before


def test_redo_after_a_new_change_has_nothing_to_redo(hostile, capsys):
    db, leaf = hostile["db"], hostile["leaf"]
    assert run_main(capsys, "edit", "approve", "--db", db, "--node", leaf)[0] == 0
    assert run_main(capsys, "undo", "--db", db)[0] == 0
    assert run_main(capsys, "edit", "lock", "--db", db, "--node", leaf)[0] == 0
    before = full_snapshot(db)
    code, out, err = run_main(capsys, "redo", "--db", db)
    assert (code, out.strip(), err) == (0, "nothing to redo", "")
    assert full_snapshot(db) == before
    with Store(db) as store:
        node = store.node(leaf)
    assert node.status == "proposed" and node.locked  # the undone approval did not come back


def test_push_dry_run_again_into_its_own_folder_replaces_the_set(hostile, capsys):
    """The first dry run writes the upload set; a second one into the same folder (holding only that set) writes
    the new set over it: the same four files, the card naming the new repository, nothing else left."""
    target = hostile["tmp"] / "set"
    code, out, err = run_main(capsys, "push", "--db", hostile["db"], "--repo", "me/ok", "--dry-run", target)
    assert code == 0, err
    first = {p: p.read_bytes() for p in target.rglob("*") if p.is_file()}
    assert {p.name for p in first} == {"README.md", "train.parquet", "train.jsonl", "sunburst.svg"}
    code, out, err = run_main(capsys, "push", "--db", hostile["db"], "--repo", "me/other", "--dry-run", target)
    assert code == 0 and "Traceback" not in err, err
    assert "me/other" in out
    second = {p: p.read_bytes() for p in target.rglob("*") if p.is_file()}
    assert set(second) == set(first) and not list(target.rglob("*.tmp"))
    assert (target / "data" / "train.jsonl").read_bytes() == first[target / "data" / "train.jsonl"]


def test_undo_down_to_an_import_names_the_import(hostile, capsys):
    db = hostile["db"]
    path = hostile["data"] / "rows.jsonl"
    path.write_text('{"question": "an imported question", "answer": "an imported answer"}\n')
    assert run_main(capsys, "import-data", "--db", db, "--file", path)[0] == 0
    assert run_main(capsys, "edit", "--db", db, "--node", hostile["leaf"], "--quota", "5")[0] == 0
    assert run_main(capsys, "undo", "--db", db)[0] == 0  # the quota
    before = full_snapshot(db)
    code, out, err = run_main(capsys, "undo", "--db", db)
    assert full_snapshot(db) == before
    assert code == 2, out
    one_error_line(err, "cannot be undone")


# --- T1 sweep (session 14)
# Today's changes with hostile arguments: the --db/--project helper every command shares, the wording of
# `edit approve/prune/restore` and `seed add/rm`. Each test below pins a bug found in the sweep (a strict xfail:
# it fails today for the reason given, and passes once the bug is fixed, whichever way it is fixed).


def _topic_and_its_first_child(db: Path):
    """A node under the root that has children, and its first child (the base project is built to depth 2)."""
    with Store(db) as store:
        tree = store.tree(1)
        topic = next(kid for kid in tree.kids(tree.root.id) if tree.kids(kid.id))
        return topic.id, tree.kids(topic.id)[0].id


def test_t1_restore_of_a_live_subtree_keeps_its_approvals(work, capsys):
    db = work["db"]
    topic, _ = _topic_and_its_first_child(db)
    assert run_main(capsys, "edit", "approve", "--db", db, "--node", topic)[0] == 0
    code, out, err = run_main(capsys, "edit", "restore", "--db", db, "--node", topic)
    assert "Traceback" not in err
    with Store(db) as store:
        statuses = {store.node(i).status for i in store.subtree_ids([topic])}
    assert statuses == {"approved"}, (code, out, err)


def test_t1_restore_under_a_pruned_node_is_refused_or_brings_it_back(work, capsys):
    from treesynth_core.tree import path_pruned

    db = work["db"]
    topic, child = _topic_and_its_first_child(db)
    assert run_main(capsys, "edit", "prune", "--db", db, "--node", topic)[0] == 0
    before = full_snapshot(db)
    code, out, err = run_main(capsys, "edit", "restore", "--db", db, "--node", child)
    assert "Traceback" not in err
    if code == 0:  # it says restored: the node must be live again
        with Store(db) as store:
            assert not path_pruned(store.node_path(child)), out
    else:  # or it is refused, in one line, changing nothing
        assert code == 2, err
        one_error_line(err, "")
        assert full_snapshot(db) == before


@pytest.mark.parametrize("template", [
    "seed add --db {two} --project 1 --json '{{\"question\": \"q\", \"answer\": \"a\"}}'",
    "balance --db {two} --project 1 --yes --target 1",
    "edit approve --db {two} --node {leaf}",
    "edit --db {two} --node {leaf} --quota 7",
], ids=["seed add", "balance", "edit approve", "edit --quota"])
def test_t1_a_project_in_recently_deleted_is_not_changed_from_the_command_line(work, fake, capsys, template):
    from treesynth_core import edits

    with Store(work["two"]) as store:
        edits.trash_project(store, 1)
        assert [p["id"] for p in store.projects()] == [2]
    before = full_snapshot(work["two"])
    requests = len(fake.requests)
    code, out, err = run_main(capsys, *expand(template, work))
    assert "Traceback" not in err
    assert full_snapshot(work["two"]) == before, (code, out, err)
    assert code == 2, out
    one_error_line(err, "")
    assert len(fake.requests) == requests


@pytest.mark.parametrize("template", ["show --db {empty}", "seed list --db {empty}", "history --db {empty}",
                                      "edit approve --db {empty} --node nope"],
                         ids=["show", "seed list", "history", "edit approve"])
def test_t1_an_empty_file_given_as_db_is_left_empty(work, capsys, template):
    empty = work["tmp"] / "empty.db"
    empty.write_bytes(b"")
    code, out, err = run_main(capsys, *expand(template, {**work, "empty": empty}))
    assert code == 2, out
    one_error_line(err, "")
    assert empty.read_bytes() == b"", f"{len(empty.read_bytes())} bytes written; the error was: {err.strip()}"


@pytest.mark.parametrize("template", ["show --db ''", "seed list --db ''", "edit approve --db '' --node x",
                                      "init --db '' --task 'math problems' --fields q,a"],
                         ids=["show", "seed list", "edit approve", "init"])
def test_t1_an_empty_db_option_is_named_as_empty(work, capsys, template):
    listing = folder_listing(work["tmp"])
    code, out, err = run_main(capsys, *expand(template, work))
    assert code == 2, out
    one_error_line(err, "--db")
    assert "is a directory" not in err, err
    assert folder_listing(work["tmp"]) == listing


def _pruned_topic(db: Path) -> tuple[str, str]:
    """Prune a node under the root (it has children); returns it and its first child."""
    topic, child = _topic_and_its_first_child(db)
    from treesynth_core import edits

    with Store(db) as store:
        edits.prune(store, topic)
    return topic, child


def test_t1_import_data_onto_a_pruned_node_is_refused_or_says_so(hostile, capsys):
    db = hostile["db"]
    _, child = _pruned_topic(db)
    path = hostile["data"] / "t1_rows.csv"
    path.write_text("question,answer\nfirst imported question,a1\nsecond imported question,a2\n")
    before = full_snapshot(db)
    code, out, err = run_main(capsys, "import-data", "--db", db, "--file", path, "--node", child)
    assert "Traceback" not in err
    if code == 2:
        one_error_line(err, "pruned")
        assert full_snapshot(db) == before
    else:
        assert "pruned" in out + err, (code, out, err)


def test_t1_build_under_a_pruned_node_is_refused_or_says_so(work, fake, capsys):
    db = work["db"]
    _, child = _pruned_topic(db)
    before = full_snapshot(db)
    requests = len(fake.requests)
    code, out, err = run_main(capsys, "build", "--db", db, "--under", child, "--depth", "3")
    assert "Traceback" not in err
    assert len(fake.requests) == requests
    if code == 2:
        assert [line for line in err.splitlines() if line.startswith("error: ")] and "pruned" in err, err
        assert full_snapshot(db) == before
    else:
        assert "pruned" in out + err, (code, out, err)


def test_t1_balance_under_a_pruned_node_names_the_prune(hostile, capsys):
    db = hostile["db"]
    topic, _ = _pruned_topic(db)
    before = full_snapshot(db)
    code, out, err = run_main(capsys, "balance", "--db", db, "--yes", "--target", "1", "--under", topic)
    assert code == 2, out
    one_error_line(err, "pruned")
    assert full_snapshot(db) == before
