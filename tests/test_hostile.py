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
    "projects db is a directory": ("projects --db {dir}", "does not exist", "db"),
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
    from treesynth_core import cli

    def boom(*args, **kwargs):
        raise MemoryError("simulated")

    monkeypatch.setattr(cli, "plan_generation", boom)
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
