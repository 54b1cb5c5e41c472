"""End to end on the bundled 0.5B model: the CLI builds a tree, generates and exports over llama.cpp.

Structure only, never content: the model is there to prove the pipeline runs and survives bad output.
Needs ``pip install -r requirements-local.txt``; skipped without llama-cpp-python. Run with
``pytest -m real_llm -s`` to see the timings.
"""

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlite_utils

pytest.importorskip("llama_cpp")

from treesynth_core.local import LocalServer  # noqa: E402

pytestmark = pytest.mark.real_llm
REPO = Path(__file__).resolve().parent.parent
FIELDS = ["question", "answer"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with LocalServer(log_path=tmp_path_factory.mktemp("llama") / "server.log") as running:
        yield running


def cli(args, env, cwd, timings, server=None, ok=(0,)):
    """Run one CLI command; ``ok`` are the accepted exit codes (3 = partial: some nodes or calls failed, which
    a 0.5B model does; the caller then checks that something usable came out)."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "treesynth_core", *args], env=env, cwd=cwd, capture_output=True, text=True,
        timeout=1200,
    )  # fmt: skip
    timings.append((args[0], time.monotonic() - started))
    deaths = "\n".join(server.deaths) if server is not None else ""
    assert not deaths, f"the llama.cpp server died during {args[0]}:\n{deaths}"
    assert result.returncode in ok, f"{args[0]} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.mark.timeout(3600)
def test_cli_end_to_end_on_local_model(server, tmp_path, capsys):
    pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, **server.env(), "PYTHONPATH": pythonpath}
    db_path, out = tmp_path / "X.db", tmp_path / "out.jsonl"
    db, timings, started = str(db_path), [], time.monotonic()
    task = "Short grade-school math word problems"
    cli(["init", "--db", db, "--task", task, "--fields", ",".join(FIELDS)], env, tmp_path, timings)
    # A failed node is recorded and retried by running build again (it resumes): at most three runs.
    for _ in range(3):
        cli(["build", "--db", db, "--depth", "2", "--max-values", "4", "--pivots", "3"], env, tmp_path, timings,
            server, ok=(0, 3))
        with sqlite3.connect(db_path) as conn:
            rows = conn.execute("select depth, status, failure from nodes").fetchall()
        assert all(failure for _, status, failure in rows if status == "failed"), "a failure without a reason"
        if max(depth for depth, _, _ in rows) == 2:
            break
    cli(["generate", "--db", db, "--per-leaf", "1", "--samples-per-call", "1"], env, tmp_path, timings, server,
        ok=(0, 3))
    cli(["export", "--db", db, "--format", "jsonl", "--out", str(out)], env, tmp_path, timings, server)
    wall = time.monotonic() - started

    store = sqlite_utils.Database(db_path)
    assert {"id", "parent_id", "depth", "dimension", "value", "status"} <= set(store["nodes"].columns_dict)
    nodes = {row["id"]: row for row in store["nodes"].rows}
    assert max(n["depth"] for n in nodes.values()) == 2, "the build did not reach depth 2"
    children = {}
    for node in nodes.values():
        if node["parent_id"] is not None:
            assert node["parent_id"] in nodes, f"node {node['id']} has a missing parent"
            assert node["depth"] == nodes[node["parent_id"]]["depth"] + 1
            children.setdefault(node["parent_id"], []).append(node)
    for parent_id, kids in children.items():
        dimension = nodes[parent_id]["dimension"]
        assert isinstance(dimension, str) and dimension.strip(), f"node {parent_id} has children but no dimension"
        values = [k["value"].strip().casefold() for k in kids if k["value"] and k["status"] != "pruned"]
        assert len(values) == len(set(values)), f"duplicate sibling values under {parent_id}: {values}"

    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    assert rows, "the export is empty"
    for row in rows:
        assert set(FIELDS) <= set(row) and "path" in row and "leaf_id" in row, row
        assert row["leaf_id"] in nodes
        assert isinstance(row["path"], list)
        assert len(row["path"]) == nodes[row["leaf_id"]]["depth"], row  # one attribute per level above the leaf
        for step in row["path"]:
            assert set(step) >= {"dimension", "value"}, step
        dims = [step["dimension"].casefold() for step in row["path"]]
        assert len(dims) == len(set(dims)), f"a dimension repeats along a path: {dims}"

    calls = list(store["calls"].rows)
    failed = {}
    for call in calls:
        failed.setdefault(call["purpose"], [0, 0])[call["error"] is not None] += 1
    tokens = sum(c["completion_tokens"] or 0 for c in calls)
    seconds = sum(c["duration_s"] or 0 for c in calls)  # overlapping calls count their queueing time too
    llm_wall = sum(s for name, s in timings if name in ("build", "generate"))
    with capsys.disabled():
        print(f"\n[real_llm] wall {wall:.0f} s; " + ", ".join(f"{name} {s:.0f} s" for name, s in timings))
        print(f"[real_llm] {len(nodes)} nodes, {len(rows)} exported rows, {len(calls)} calls; ok/failed by purpose: "
              + ", ".join(f"{p} {ok}/{bad}" for p, (ok, bad) in sorted(failed.items())))
        print(f"[real_llm] {tokens} completion tokens: {tokens / max(seconds, 1e-9):.1f} tokens/s over the calls' "
              f"summed duration ({seconds:.0f} s), {tokens / max(llm_wall, 1e-9):.1f} tokens/s over build+generate")
