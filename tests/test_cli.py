"""The command line, run as `python -m treesynth_core` subprocesses against the fake server on loopback."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from treesynth_core.cli import main
from treesynth_core.fakellm import FakeLLM
from treesynth_core.llm import LLM
from treesynth_core.partition import build
from treesynth_core.spec import ProjectSpec, Settings, parse_fields
from treesynth_core.store import Store

ROOT = Path(__file__).resolve().parent.parent
FAKE_KEY = "sk-fake-test-key-123456"


def cli_env(base_url: str | None = None, **extra: str) -> dict:
    """The environment of a CLI run: no endpoint settings leak in from outside, the fake's when given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "TREESYNTH_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if base_url:
        env.update(OPENAI_BASE_URL=base_url, OPENAI_API_KEY=FAKE_KEY, TREESYNTH_MODEL="fake-model",
                   TREESYNTH_MAX_RETRIES="0", TREESYNTH_TIMEOUT="10")
    env.update(extra)
    return env


def command(*args) -> list[str]:
    return [sys.executable, "-m", "treesynth_core", *map(str, args)]


def cli(*args, env: dict, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(command(*args), env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def refused(result: subprocess.CompletedProcess, message: str) -> str:
    """Exit 2 with one `error:` line (and its hint), never a traceback."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert message in errors[0]
    return errors[0]


def copy_db(src: Path, dst: Path) -> Path:
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{src}{suffix}").exists():
            shutil.copy(f"{src}{suffix}", f"{dst}{suffix}")
    return dst


def read_only(db: Path) -> contextlib.closing:
    """A read-only connection that is closed after its with-block (reads never take the write lock)."""
    return contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10))


def leaf_counts(db: Path) -> dict[str, int]:
    """Live samples per leaf (every live leaf listed, 0 when empty)."""
    with Store(db) as store:
        project = store.only_project_id()
        tree = store.tree(project)
        return {leaf.id: store.live_count(leaf.id) for leaf in tree.leaves()}


def make_db(path: Path, fake: FakeLLM | None = None, depth: int = 0) -> Path:
    """A project file made in-process (when the CLI's init is not what is tested), built on the fake."""
    with Store(path) as store:
        spec = ProjectSpec(name="math", task="GSM8K-style grade-school math word problems",
                           fields=parse_fields("question: the problem, answer: the worked solution"),
                           settings=Settings(pivots=4, max_depth=max(depth, 1)))
        project = store.create_project(spec)
        if depth:
            build(store, project, LLM(fake.endpoint(max_retries=0, timeout=5), store, project), depth=depth)
    return path


def use_env(monkeypatch, base_url: str | None = None, **extra: str) -> None:
    """The same environment as cli_env, for in-process runs of main()."""
    for name in list(os.environ):
        if name.startswith(("OPENAI_", "TREESYNTH_")):
            monkeypatch.delenv(name)
    for name, value in cli_env(base_url, **extra).items():
        if name.startswith(("OPENAI_", "TREESYNTH_")):
            monkeypatch.setenv(name, value)


def kill_when(args: list[str], env: dict, cwd: Path, ready, what: str, timeout: float) -> None:
    """Start the CLI as a subprocess, SIGKILL it as soon as ``ready()`` holds (its work is in flight), and check
    that the kill, not an exit of its own, ended it; ``what`` says what never happened on a timeout."""
    proc = subprocess.Popen(args, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, what
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL


def run_main(capsys, *args) -> tuple[int, str, str]:
    """main() in this process: quicker than a subprocess where the process boundary is not what is tested."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def module_fake():
    with FakeLLM() as server:
        yield server


@pytest.fixture(scope="module")
def flow(module_fake, tmp_path_factory):
    """init, build --depth 2 and generate --per-leaf 3, through the CLI, once for this module."""
    work = tmp_path_factory.mktemp("cli")
    env = cli_env(module_fake.base_url)
    db = work / "math.db"
    steps = {
        "init": cli("init", "--db", db, "--task", "GSM8K-style grade-school math word problems",
                    "--fields", "question,answer", "--pivots", "4", env=env, cwd=work),
        "build": cli("build", "--db", db, "--depth", "2", env=env, cwd=work),
        "generate": cli("generate", "--db", db, "--per-leaf", "3", env=env, cwd=work),
    }
    return {"db": db, "work": work, "env": env, "steps": steps}


# ----------------------------------------------------------------------------- the flow


def test_init_build_generate(flow):
    steps = flow["steps"]
    task = "GSM8K-style grade-school math word problems"
    assert ok(steps["init"]).strip() == f"created project 1 ({task!r}) in {flow['db']}"
    assert "expanded 4 node(s), 0 failed; the tree has 13 nodes and 9 leaves" in ok(steps["build"])
    assert "build [" in steps["build"].stderr  # the progress bar
    out = ok(steps["generate"])
    assert "plan: 9 leaves, 27 samples missing, 9 calls" in out
    assert "27 new sample(s), 0 duplicate(s) and 0 invalid dropped, 0 failed call(s)" in out
    assert set(leaf_counts(flow["db"]).values()) == {3} and len(leaf_counts(flow["db"])) == 9
    with Store(flow["db"]) as store:
        assert store.tree(1).max_depth() == 2
        assert {c["model"] for c in store.query("select distinct model from calls")} == {"fake-model"}


def test_show_prints_the_outline(flow):
    out = ok(cli("show", "--db", flow["db"], env=flow["env"], cwd=flow["work"]))
    lines = out.splitlines()
    assert lines[0] == "GSM8K-style grade-school math word problems: GSM8K-style grade-school math word problems"
    assert re.match(r"^\(root\)  \(proposed\)  -> split by \[topic\]  id=\w+$", lines[1])
    assert sum("-> split by [difficulty]" in line for line in lines) == 3
    leaves = [line for line in lines if re.match(r"^    difficulty [ABC]  \(proposed, 3 samples\)  id=\w+$", line)]
    assert len(leaves) == 9
    assert re.match(r"^calls \d+ \(0 failed\), tokens \d+ in / \d+ out, cost unknown", lines[-1])


def test_generate_again_has_nothing_to_do_and_calls_nothing(flow, module_fake, tmp_path, capsys, monkeypatch):
    db = copy_db(flow["db"], tmp_path / "again.db")
    use_env(monkeypatch, module_fake.base_url)
    before = len(module_fake.requests)
    code, out, _ = run_main(capsys, "generate", "--db", db, "--per-leaf", "3")
    assert code == 0 and out.startswith("plan: 9 leaves, 0 samples missing, 0 calls")
    assert len(module_fake.requests) == before
    code, out, _ = run_main(capsys, "generate", "--db", db, "--per-leaf", "4", "--dry-run")
    assert code == 0 and out.startswith("plan: 9 leaves, 9 samples missing, 9 calls")
    assert len(module_fake.requests) == before and set(leaf_counts(db).values()) == {3}


def test_export_every_format(flow):
    work, db = flow["work"], flow["db"]
    outs = {fmt: work / f"out-{fmt}.{'jsonl' if fmt == 'chat' else fmt}" for fmt in ("jsonl", "csv", "chat", "parquet")}
    extra = {"chat": ["--system", "Be brief."], "csv": ["--status", "generated,accepted"]}
    runs = {fmt: subprocess.Popen(command("export", "--db", db, "--format", fmt, "--out", out, *extra.get(fmt, [])),
                                  env=flow["env"], cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for fmt, out in outs.items()}
    for fmt, proc in runs.items():
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 0 and "Traceback" not in stderr, stderr
        assert stdout.startswith(f"wrote 27 rows to {outs[fmt]}")

    with Store(db) as store:
        samples = {s["id"]: s for s in store.samples(1)}
    rows = [json.loads(line) for line in outs["jsonl"].read_text().splitlines()]
    assert sorted(r["sample_id"] for r in rows) == sorted(samples)
    assert all(r["question"] == samples[r["sample_id"]]["data"]["question"] and len(r["path"]) == 2 for r in rows)
    table = list(csv.DictReader(io.StringIO(outs["csv"].read_text(encoding="utf-8-sig"), newline="")))
    assert len(table) == 27 and list(table[0]) == ["question", "answer", "path", "leaf_id", "status", "sample_id",
                                                   "provenance", "edited", "reason", "note"]
    assert all(re.fullmatch(r"topic=topic [ABC] > difficulty=difficulty [ABC]", r["path"]) for r in table)
    chat = [json.loads(line) for line in outs["chat"].read_text().splitlines()]
    assert len(chat) == 27
    assert [m["role"] for m in chat[0]["messages"]] == ["system", "user", "assistant"]
    assert chat[0]["messages"][0]["content"] == "Be brief."
    assert {c["messages"][1]["content"] for c in chat} == {s["data"]["question"] for s in samples.values()}
    frame = pd.read_parquet(outs["parquet"])
    assert len(frame) == 27 and sorted(frame["sample_id"]) == sorted(samples)


def test_export_tree_then_import_tree(flow, tmp_path):
    tree_file = tmp_path / "tree.json"
    new_db = tmp_path / "copy.db"
    assert ok(cli("export-tree", "--db", flow["db"], "--out", tree_file, env=flow["env"], cwd=tmp_path)).startswith(
        f"wrote the tree to {tree_file}")
    doc = json.loads(tree_file.read_text())
    assert doc["format"] == "treesynth-tree" and doc["tree"]["dimension"] == "topic"

    out = ok(cli("import-tree", "--db", new_db, "--file", tree_file, "--name", "copy", env=flow["env"], cwd=tmp_path))
    assert out.strip() == f"imported {tree_file} as project 1"

    def outline(db):
        with Store(db) as store:
            tree = store.tree(1)
            return sorted((tree.path_text(n.id), n.dimension, n.status) for n in tree.nodes.values())

    assert outline(new_db) == outline(flow["db"])
    with Store(new_db) as store:
        assert store.project(1).name == "copy" and store.samples(1) == []


def test_edit_prunes_a_subtree(flow, tmp_path, capsys):
    db = copy_db(flow["db"], tmp_path / "edit.db")
    with Store(db) as store:
        tree = store.tree(1)
        first = tree.kids(tree.root.id)[0]
        leaves = tree.kids(first.id)
    code, out, _ = run_main(capsys, "edit", "prune", "--db", db, "--node", first.id)
    assert (code, out) == (0, f"pruned {first.label!r} and 3 nodes under it\n")  # not "prune: 4"
    assert len(leaf_counts(db)) == 6
    code, out, _ = run_main(capsys, "export", "--db", db, "--out", tmp_path / "kept.jsonl")
    assert code == 0 and out.startswith("wrote 18 rows")
    assert run_main(capsys, "edit", "restore", "--db", db, "--node", first.id)[:2] == (
        0, f"restored {first.label!r} and 3 nodes under it\n")
    for leaf in leaves[1:]:
        assert run_main(capsys, "edit", "prune", "--db", db, "--node", leaf.id)[:2] == (0, f"pruned {leaf.label!r}\n")
    assert run_main(capsys, "edit", "approve", "--db", db, "--node", first.id)[:2] == (
        0, f"approved {first.label!r} and 1 node under it\n")  # the pruned leaves are not approved
    assert len(leaf_counts(db)) == 7


# ----------------------------------------------------------------------------- errors


def test_no_endpoint_configured(flow, tmp_path):
    db = copy_db(flow["db"], tmp_path / "nokey.db")
    result = cli("generate", "--db", db, "--per-leaf", "5", env=cli_env(), cwd=tmp_path)
    refused(result, "error: no LLM endpoint is configured (OPENAI_API_KEY is not set)")
    assert "OPENAI_API_KEY" in result.stderr and "--local" in result.stderr
    assert set(leaf_counts(db).values()) == {3}


def test_unreachable_endpoint_stops_generate(flow, tmp_path):
    db = copy_db(flow["db"], tmp_path / "down.db")
    env = cli_env("http://127.0.0.1:9/v1", TREESYNTH_MAX_RETRIES="0")
    result = cli("generate", "--db", db, "--per-leaf", "5", env=env, cwd=tmp_path)
    refused(result, "could not connect to http://127.0.0.1:9/v1")
    assert set(leaf_counts(db).values()) == {3}


def test_unreachable_endpoint_stops_build_of_a_started_tree(module_fake, tmp_path):
    db = make_db(tmp_path / "down.db", module_fake, depth=1)
    env = cli_env("http://127.0.0.1:9/v1", TREESYNTH_MAX_RETRIES="0")
    refused(cli("build", "--db", db, "--depth", "2", env=env, cwd=tmp_path),
            "the endpoint failed on every node (could not connect to http://127.0.0.1:9/v1")


def test_unreachable_endpoint_stops_build_of_a_new_project(tmp_path, capsys, monkeypatch):
    db = make_db(tmp_path / "new.db")
    use_env(monkeypatch, "http://127.0.0.1:9/v1")
    code, _, err = run_main(capsys, "build", "--db", db, "--depth", "2")
    assert code == 2 and "error: " in err and "could not connect" in err


def test_missing_db_file(tmp_path):
    result = cli("export", "--db", "nope.db", "--out", "x.jsonl", env=cli_env(), cwd=tmp_path)
    refused(result, "error: nope.db does not exist")
    assert "init --db" in result.stderr  # the hint says how to make one
    assert list(tmp_path.iterdir()) == []  # neither the database nor the output was created


def test_bad_tree_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{ not json")
    db = tmp_path / "new.db"
    refused(cli("import-tree", "--db", db, "--file", bad, env=cli_env(), cwd=tmp_path),
            "error: the file is not valid JSON")
    with Store(db) as store:
        assert store.projects() == []


def test_tree_file_with_a_bad_project_section(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "treesynth-tree", "version": 1, "project": {"name": "p"}, "tree": {}}))
    code, _, err = run_main(capsys, "import-tree", "--db", tmp_path / "new.db", "--file", bad)
    assert code == 2 and err.startswith("error: project.task: Field required (")


def test_projects_on_a_missing_db_file(tmp_path, capsys):
    code, _, err = run_main(capsys, "projects", "--db", tmp_path / "nope.db")
    assert code == 2 and "does not exist" in err
    assert list(tmp_path.iterdir()) == []


def test_missing_tree_file(tmp_path, capsys):
    code, _, err = run_main(capsys, "import-tree", "--db", tmp_path / "x.db", "--file", tmp_path / "nope.json")
    assert code == 2 and "nope.json" in err


# ----------------------------------------------------------------------------- kill and resume


def test_generate_killed_mid_run_resumes_to_exact_quotas(tmp_path):
    with FakeLLM() as quick:
        db = make_db(tmp_path / "kill.db", quick, depth=2)
    leaves = leaf_counts(db)
    assert len(leaves) == 9
    args = ("generate", "--db", db, "--per-leaf", "6", "--samples-per-call", "2", "--concurrency", "2")

    def made() -> int:
        with read_only(db) as conn:
            return conn.execute("select count(*) from samples").fetchone()[0]

    with FakeLLM(latency=0.3) as slow:
        env = cli_env(slow.base_url)
        kill_when(command(*args), env, tmp_path, lambda: made() > 0, "no sample appeared", timeout=30)
        kept = made()
        assert 0 < kept < 9 * 6

        slow.latency = 0.0
        out = ok(cli(*args, env=env, cwd=tmp_path))
    assert out.startswith(f"plan: 9 leaves, {9 * 6 - kept} samples missing")
    assert leaf_counts(db) == {leaf: 6 for leaf in leaves}
    with read_only(db) as conn:
        total, distinct = conn.execute("select count(*), count(distinct norm_hash) from samples").fetchone()
        job_statuses = [r[0] for r in conn.execute("select status from jobs order by id")]
    assert total == distinct == 54
    assert job_statuses == ["interrupted", "complete"]  # the killed run's job is seen as interrupted, not running


# ----------------------------------------------------------------------------- the README


def readme_commands() -> list[list[str]]:
    """The `python -m treesynth_core ...` lines of the README's quick start (its first bash block that runs
    commands: later blocks, such as the batch files' round trip on a GPU cluster, need files made elsewhere)."""
    readme = (ROOT / "README.md").read_text()
    blocks = [b for b in re.findall(r"```bash\n(.*?)```", readme, re.S) if "python -m treesynth_core " in b]
    lines = [line.strip() for line in blocks[0].splitlines()]
    return [shlex.split(line, comments=True)[3:] for line in lines if line.startswith("python -m treesynth_core ")]


def option(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


def test_readme_example_runs_against_the_fake(module_fake, tmp_path):
    runs = readme_commands()
    assert runs and runs[0][0] == "init" and {"build", "generate", "export"} <= {r[0] for r in runs}
    env = cli_env(module_fake.base_url)
    for args in runs:
        ok(cli(*args, env=env, cwd=tmp_path, timeout=120))

    counts = leaf_counts(tmp_path / option(runs[0], "--db"))
    per_leaf = next(option(r, "--per-leaf") for r in runs if r[0] == "generate")
    assert len(counts) > 1 and set(counts.values()) == {int(per_leaf)}
    for args in runs:
        if args[0] == "export" and (option(args, "--format") or "jsonl") == "jsonl":
            rows = (tmp_path / option(args, "--out")).read_text().splitlines()
            assert len(rows) == sum(counts.values())
            assert all(len(json.loads(row)["path"]) >= 1 for row in rows)


def test_readme_names_only_commands_that_exist(capsys):
    from treesynth_core.cli import parser

    readme = (ROOT / "README.md").read_text()
    named = set(re.findall(r"python -m treesynth_core (\w[\w-]*)", readme))
    other = re.search(r"Other commands: (.*?)\.\s", readme, re.S)
    if other:
        named |= set(re.findall(r"`([a-z][\w-]*)", other[1]))
    assert {"init", "build", "generate", "export"} <= named
    for name in sorted(named):
        with pytest.raises(SystemExit) as info:
            parser().parse_args([name, "--help"])
        assert info.value.code == 0, f"the README names `{name}`, which the CLI does not have"
    capsys.readouterr()


# ----------------------------------------------------------------------------- exit codes from outcomes


def fail_where(*needles: str, step: str | None = None):
    """A fault injector: HTTP 500 for every request of ``step`` whose user message contains a needle."""
    from treesynth_core.fakellm import Scripted, _first_user, step_of

    def fault(body):
        if (step is None or step_of(body) == step) and any(n in _first_user(body) for n in needles):
            return Scripted(status=500, content="injected failure")
        return None
    return fault


def test_help_documents_the_exit_codes(capsys):
    code, out, _ = run_main(capsys, "--help")
    assert code == 0 and "exit codes:" in out
    for line in ("0    complete", "2    a user error", "3    partial", "130  cancelled or interrupted", "1    an internal"):
        assert line in out
    code, out, _ = run_main(capsys, "generate", "--help")
    assert code == 0 and "3    partial" in out


def test_build_with_some_failed_nodes_exits_3_and_says_how_to_retry(module_fake, tmp_path):
    db = make_db(tmp_path / "partial.db")
    module_fake.fault_fn = fail_where("topic B", step="pivots")
    try:
        result = cli("build", "--db", db, "--depth", "2", "--concurrency", "1", env=cli_env(module_fake.base_url),
                     cwd=tmp_path)
    finally:
        module_fake.fault_fn = None
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    assert "expanded 3 node(s), 1 failed" in result.stdout and "run build again" in result.stdout
    assert "warning: partial build (1 node(s) failed)" in result.stderr
    assert re.search(r"failed topic=topic B: .*500", result.stderr)
    with read_only(db) as conn:
        assert conn.execute("select status, failed from jobs").fetchall() == [("partial", 1)]

    result = cli("build", "--db", db, "--depth", "2", env=cli_env(module_fake.base_url), cwd=tmp_path)
    assert result.returncode == 0 and "expanded 1 node(s), 0 failed" in result.stdout  # the retry resumes


def test_build_where_nothing_worked_exits_2(module_fake, tmp_path):
    db = make_db(tmp_path / "failed.db")
    module_fake.fault_fn = lambda body: __import__("treesynth_core.fakellm").fakellm.Scripted(content="{nope")
    try:
        result = cli("build", "--db", db, "--depth", "2", env=cli_env(module_fake.base_url), cwd=tmp_path)
    finally:
        module_fake.fault_fn = None
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert re.search(r"^error: build failed: .*root", result.stderr, re.M), result.stderr
    with read_only(db) as conn:
        assert conn.execute("select status from jobs").fetchall() == [("failed",)]


def test_generate_after_a_failed_root_exits_2_without_generating(module_fake, tmp_path, capsys, monkeypatch):
    db = make_db(tmp_path / "noroot.db")
    with Store(db) as store:
        store.update_node(store.tree(1).root.id, status="failed", failure="the criterion kept failing")
    use_env(monkeypatch, module_fake.base_url)
    before = len(module_fake.requests)
    code, out, err = run_main(capsys, "generate", "--db", db, "--per-leaf", "2")
    assert code == 2 and out.startswith("plan: 0 leaves")
    assert err.startswith("error: the tree has no leaves: the root's split failed (the criterion kept failing)")
    assert len(module_fake.requests) == before
    code, _, err = run_main(capsys, "generate", "--db", db, "--dry-run")
    assert code == 0 and err.startswith("warning: the tree has no leaves")


def test_generate_with_some_failed_calls_exits_3_then_completes(flow, module_fake, tmp_path):
    db = copy_db(flow["db"], tmp_path / "partial.db")
    module_fake.fault_fn = fail_where("topic C", step="samples")
    args = ("generate", "--db", db, "--per-leaf", "4", "--concurrency", "1")
    try:
        result = cli(*args, env=cli_env(module_fake.base_url), cwd=tmp_path)
    finally:
        module_fake.fault_fn = None
    assert result.returncode == 3, result.stderr
    failed = int(re.search(r"6 new sample\(s\), .* (\d+) failed call\(s\)", result.stdout)[1])
    assert failed >= 3 and "3 leaf/leaves still short of quota (3 samples)" in result.stdout  # topic C's leaves
    assert "run generate again to retry" in result.stdout
    assert f"warning: partial generate ({failed} call(s) failed)" in result.stderr
    assert "failed call" in result.stderr and "Traceback" not in result.stderr
    result = cli(*args, env=cli_env(module_fake.base_url), cwd=tmp_path)
    assert result.returncode == 0 and "3 new sample(s)" in result.stdout
    assert set(leaf_counts(db).values()) == {4}


def test_generate_where_every_call_fails_exits_2(flow, module_fake, tmp_path):
    db = copy_db(flow["db"], tmp_path / "allfail.db")
    module_fake.fault_fn = fail_where("", step="samples")
    try:
        result = cli("generate", "--db", db, "--per-leaf", "4", env=cli_env(module_fake.base_url), cwd=tmp_path)
    finally:
        module_fake.fault_fn = None
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert re.search(r"^error: generate failed: .*0 new sample\(s\)", result.stderr, re.M), result.stderr
    assert set(leaf_counts(db).values()) == {3}


def test_generate_with_nothing_missing_but_a_failed_node_exits_3(flow, tmp_path, capsys, monkeypatch):
    db = copy_db(flow["db"], tmp_path / "failednode.db")
    with Store(db) as store:
        tree = store.tree(1)
        topic = tree.kids(tree.root.id)[0]
        store.delete_nodes([n.id for n in tree.subtree(topic.id)[1:]])
        store.update_node(topic.id, status="failed", dimension=None, failure="no split")
    use_env(monkeypatch)
    code, out, err = run_main(capsys, "generate", "--db", db, "--per-leaf", "3")
    assert code == 3 and "plan: 6 leaves, 0 samples missing" in out
    assert err.startswith("warning: nothing missing in the leaves, but 1 failed node(s) have no samples")


def test_show_prints_failures_and_review_notes(flow, tmp_path, capsys):
    db = copy_db(flow["db"], tmp_path / "notes.db")
    with Store(db) as store:
        tree = store.tree(1)
        first, second = tree.kids(tree.root.id)[:2]
        store.update_node(first.id, note="the coverage reply dropped 2 value(s): 'x', 'y'")
        store.update_node(second.id, status="failed", failure="the criterion kept failing")
    code, out, _ = run_main(capsys, "show", "--db", db)
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(f"  {first.label}  "))
    assert lines[at + 1] == "    ! needs review: the coverage reply dropped 2 value(s): 'x', 'y'"
    at = next(i for i, line in enumerate(lines) if line.startswith(f"  {second.label}  "))
    assert lines[at + 1] == "    ! failed: the criterion kept failing"
    code, out, _ = run_main(capsys, "show", "--db", db, "--under", first.id, "--max-depth", "1")
    assert code == 0 and out.splitlines()[1].startswith(f"{first.label}  ") and len(out.splitlines()) == 4
    code, out, _ = run_main(capsys, "show", "--db", db, "--under", first.id, "--max-depth", "2")
    assert code == 0 and len(out.splitlines()) == 4 + 3  # its three leaves too


def test_calls_lists_the_log_through_the_store(flow, capsys):
    code, out, _ = run_main(capsys, "calls", "--db", flow["db"], "--limit", "3")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 3
    assert all(re.match(r"^#\d+ samples try \d+ at topic=topic [ABC] > difficulty=difficulty [ABC]: \d+\+\d+ tokens, "
                        r"\d+\.\d\ds, ok$", line) for line in lines), lines
    code, out, _ = run_main(capsys, "calls", "--db", flow["db"], "--failed")
    assert code == 0 and out == ""


def test_replies_mended_by_json_repair_are_marked_in_calls_and_counted_in_show(tmp_path, capsys, monkeypatch):
    """A reply that only parsed after json-repair is a re-ask saved: `calls` says so and `show` counts it."""
    from treesynth_core.fakellm import Scripted

    db = tmp_path / "m.db"
    with FakeLLM() as fake:
        assert run_main(capsys, "init", "--db", db, "--task", "Short math word problems",
                        "--fields", "question,answer", "--depth", "1")[0] == 0
        fake.push(Scripted(step="pivots", content="Sure! ```json\n{'samples': [{'question': 'q1', 'answer': 'a1'}, "
                                                  "{'question': 'q2', 'answer': 'a2'},]}\n```"))
        monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        code, _, err = run_main(capsys, "build", "--db", db, "--depth", "1")
        assert code == 0, err
        assert len([r for r in fake.requests if "Step: pivots" in r["messages"][0]["content"]]) == 1  # no re-ask
    code, out, _ = run_main(capsys, "calls", "--db", db)
    mended = [line for line in out.splitlines() if "mended by json-repair" in line]
    assert code == 0 and len(mended) == 1 and " pivots try 1 " in mended[0]
    code, out, _ = run_main(capsys, "show", "--db", db)
    assert code == 0 and "1 mended by json-repair" in out


# ----------------------------------------------------------------------------- pipes, prices, help


def test_a_closed_pipe_ends_quietly_with_141(flow, capsys, monkeypatch):
    """`show | head`: the reader goes away; the command stops without an 'internal error' line, exit 141."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader has gone: every write now fails with EPIPE
    closed = os.fdopen(write_end, "w")
    monkeypatch.setattr(sys, "stdout", closed)
    try:
        code = main(["show", "--db", str(flow["db"])])
    finally:
        monkeypatch.undo()
        try:
            closed.close()
        except BrokenPipeError:
            pass  # what was still buffered: the stream now writes to /dev/null, or gave up
    assert code == 141
    assert capsys.readouterr().err == ""


def test_prices_can_be_set_on_generate_build_and_run_and_show_points_to_them(flow, module_fake, tmp_path, capsys,
                                                                             monkeypatch):
    db = copy_db(flow["db"], tmp_path / "prices.db")
    use_env(monkeypatch)  # no endpoint: generate refuses before the prices change
    code, _, err = run_main(capsys, "generate", "--db", db, "--per-leaf", "4", "--price-in", "1", "--price-out", "2")
    assert code == 2 and "no LLM endpoint is configured" in err
    code, out, _ = run_main(capsys, "show", "--db", db)
    assert ("cost unknown (no prices set: pass --price-in and --price-out to generate, build or run, or set them "
            "on the app's Home)") in out
    with Store(db) as store:
        assert store.project(1).settings.price_input_per_m is None
    code, out, _ = run_main(capsys, "generate", "--db", db, "--per-leaf", "4", "--dry-run", "--price-in", "1",
                            "--price-out", "2")
    assert code == 0 and re.search(r"plan: 9 leaves, 9 samples missing, 9 calls, ~\d+ tokens, cost \$0\.\d{4}$",
                                   out.strip())
    code, out, _ = run_main(capsys, "show", "--db", db)
    assert re.search(r"cost \$\d+\.\d{4}$", out.strip())  # the prices were saved in the project
    use_env(monkeypatch, module_fake.base_url)
    for command_name in ("build", "run"):
        code, _, err = run_main(capsys, command_name, "--db", db, "--depth", "2", "--price-in", "3", "--price-out",
                                "4")
        assert code == 0, err
        with Store(db) as store:
            settings = store.project(1).settings
            assert (settings.price_input_per_m, settings.price_output_per_m) == (3, 4)
        with Store(db) as store:
            spec = store.project(1)
            spec.settings = spec.settings.model_copy(update={"price_input_per_m": None})
            store.update_project(1, spec)


def test_every_option_of_the_commands_has_help(capsys):
    import argparse

    from treesynth_core.cli import parser

    own = {"init", "projects", "build", "show", "generate", "run", "export", "export-tree", "import-tree", "calls",
           "edit"}
    commands = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    missing = [f"{name} {a.option_strings or a.dest}" for name, command in commands.items() if name in own
               for a in command._actions if not a.help]
    assert missing == []
    code, out, _ = run_main(capsys, "generate", "--help")
    assert code == 0 and "--per-leaf PER_LEAF" in out and "1 to 10000" in out
    for flag in ("--under", "--approved-only", "--price-in", "--price-out", "--temperature"):
        assert flag in out
    code, out, _ = run_main(capsys, "build", "--help")
    assert "--depth DEPTH" in out and "counted from the root; 1 to 8" in " ".join(out.split())


def test_init_sets_the_avoid_list_and_refuses_an_unknown_mode(tmp_path, capsys):
    db = tmp_path / "a.db"
    code, _, err = run_main(capsys, "init", "--db", db, "--task", "Short math questions", "--fields", "q,a",
                            "--avoid-list", "topics")
    assert code == 0, err
    with Store(db) as store:
        assert store.project(store.only_project_id()).settings.avoid_list == "topics"
    code, _, err = run_main(capsys, "init", "--db", tmp_path / "b.db", "--task", "Short math questions",
                            "--fields", "q,a", "--avoid-list", "sometimes")
    assert code == 2 and not (tmp_path / "b.db").exists() and "invalid choice" in err
