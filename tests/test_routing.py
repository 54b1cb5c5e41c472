"""Routing rows down the tree with the LLM (issue 11 part 2), over the real fake server and the real client:
batched calls, validation and re-asks, "none of these" recorded, open-ended nodes, any samples from any node,
failures, the plan, the job, the CLI, and kill -9 during routing then resume."""

from __future__ import annotations

import json

from treesynth_core import jobs
from treesynth_core.cli import main
from treesynth_core.fakellm import ROUTE_NONE_MARKER, FakeLLM, Scripted
from treesynth_core.llm import LLM
from treesynth_core.outcome import Outcome
from treesynth_core.partition import build
from treesynth_core.routing import NONE, plan_routing, route_samples
from treesynth_core.store import Store

from .conftest import make_project
from .test_cli import cli, cli_env, command, kill_when
from .test_import import write_csv


def built(store, fake, **settings) -> tuple[int, LLM]:
    project = make_project(store, **settings)
    llm = LLM(fake.endpoint(max_retries=0, timeout=5), store, project)
    assert build(store, project, llm, depth=2).outcome is Outcome.COMPLETE
    return project, llm


def leaf_of(store, project, a: str, b: str) -> str:
    tree = store.tree(project)
    return next(leaf.id for leaf in tree.leaves()
                if tree.labelled_path(leaf.id) == [("topic", f"topic {a}"), ("difficulty", f"difficulty {b}")])


def rows_for(spec: list[tuple[str, str, int]]) -> list[list[str]]:
    """Rows naming their topic and difficulty (the fake router follows the value a row names)."""
    out, n = [], 0
    for a, b, count in spec:
        for _ in range(count):
            n += 1
            out.append([f"row {n}: a topic {a} problem at difficulty {b}", f"answer {n}"])
    return out


def import_rows(store, project, tmp_path, rows, name="d.csv"):
    from treesynth_core.importer import import_file

    return import_file(store, project, write_csv(tmp_path / name, ["question", "answer"], rows))


def at_leaves(store, project) -> dict[str, int]:
    counts = store.provenance_counts(project)
    return {leaf.id: counts.get(leaf.id, {}).get("imported", 0) for leaf in store.tree(project).leaves()}


def test_rows_reach_the_leaf_they_name_in_batched_calls(store, fake, tmp_path):
    project, llm = built(store, fake)
    import_rows(store, project, tmp_path, rows_for([("A", "A", 23), ("B", "C", 7), ("C", "B", 1)]))
    plan = plan_routing(store, project, rows_per_call=10)
    assert plan.rows == 31 and plan.levels == 2
    before = len(fake.requests)
    report = route_samples(store, llm, project, rows_per_call=10)
    calls = [r for r in fake.requests[before:] if "Step: route" in r["messages"][0]["content"]]
    assert report.outcome is Outcome.COMPLETE and report.to_leaf == 31 and report.decisions == 62
    counts = at_leaves(store, project)
    assert counts[leaf_of(store, project, "A", "A")] == 23
    assert counts[leaf_of(store, project, "B", "C")] == 7
    assert counts[leaf_of(store, project, "C", "B")] == 1
    assert sum(counts.values()) == 31
    # the root: 4 calls (10+10+10+1); level 2: the 23 rows of topic A in 3 calls, 7 and 1 in one each
    assert len(calls) == report.calls == 9 <= plan.calls
    assert max(c["messages"][1]["content"].count("\n[") for c in calls) == 10
    again = route_samples(store, llm, project)
    assert again.rows == 0 and again.outcome is Outcome.COMPLETE  # nothing is routed twice


def test_none_of_these_is_recorded_and_the_row_stays_at_its_split(store, fake, tmp_path):
    project, llm = built(store, fake)
    rows = rows_for([("A", "B", 3)]) + [[f"a {ROUTE_NONE_MARKER} row about poetry", "x"]]
    rows.append([f"row about topic B but {ROUTE_NONE_MARKER} at the second level", "y"])
    import_rows(store, project, tmp_path, rows)
    report = route_samples(store, llm, project)
    assert report.outcome is Outcome.COMPLETE
    assert report.none == 2 and report.to_leaf == 3 and report.invalid == 0
    root = store.tree(project).root.id
    nones = store.none_rows(project)
    assert [(r["node_id"], r["answer"]) for r in nones] == [(root, NONE), (root, NONE)]
    # the second row's text names topic B, but the marker wins at the root: it stays there, recorded
    assert store.route_counts(project)[root] == {"routed": 3, "none": 2}
    assert {s["node_id"] for s in store.samples(project) if ROUTE_NONE_MARKER in s["data"]["question"]} == {root}


def test_invented_values_are_re_asked_then_recorded_as_none_with_the_answer(store, fake, tmp_path):
    project, llm = built(store, fake, reasks=1)
    import_rows(store, project, tmp_path, rows_for([("A", "A", 3)]))
    fake.route_invalid = True
    before = len(fake.requests)
    report = route_samples(store, llm, project)
    asked = [r for r in fake.requests[before:] if "Step: route" in r["messages"][0]["content"]]
    assert len(asked) == 2  # the call and its one re-ask
    assert "not one of the values" in asked[1]["messages"][-1]["content"]
    assert report.invalid == 3 and report.none == 3
    assert report.outcome is Outcome.PARTIAL
    assert sorted(r["answer"] for r in store.none_rows(project)) == ["not-a-value 1", "not-a-value 2",
                                                                      "not-a-value 3"]


def test_a_re_ask_that_fixes_the_values_routes_every_row(store, fake, tmp_path):
    project, llm = built(store, fake)
    import_rows(store, project, tmp_path, rows_for([("B", "B", 2)]))
    fake.push(Scripted(step="route", content=json.dumps({"routes": [{"row": 1, "value": "topic Z"},
                                                                     {"row": 2, "value": "topic B"}]})))
    report = route_samples(store, llm, project)
    assert report.outcome is Outcome.COMPLETE and report.to_leaf == 2 and report.invalid == 0
    assert at_leaves(store, project)[leaf_of(store, project, "B", "B")] == 2


def test_failed_calls_leave_rows_in_place_and_the_next_run_routes_them(store, fake, tmp_path):
    project, llm = built(store, fake, reasks=0)
    import_rows(store, project, tmp_path, rows_for([("C", "C", 4)]))
    fake.push(Scripted(step="route", status=500))  # max_retries=0: one try per call
    report = route_samples(store, llm, project)
    assert report.outcome is Outcome.FAILED and report.unrouted == 4 and report.failed_calls == 1
    assert "route again" in report.summary()
    report = route_samples(store, llm, project)
    assert report.outcome is Outcome.COMPLETE and report.to_leaf == 4


def test_open_ended_nodes_take_rows_without_a_call(store, fake, tmp_path):
    project = make_project(store, max_depth=1)
    tree = store.tree(project)
    store.update_node(tree.root.id, dimension="name")
    store.add_children(tree.root, [{"infinite": True, "values": ["Ann", "Bo", "Cy"]}], provenance="human")
    llm = LLM(fake.endpoint(), store, project)
    import_rows(store, project, tmp_path, rows_for([("A", "A", 3)]))
    before = len(fake.requests)
    report = route_samples(store, llm, project)
    assert len(fake.requests) == before and report.open_ended == 3 and report.to_leaf == 3
    leaf = store.tree(project).leaves()[0]
    assert at_leaves(store, project)[leaf.id] == 3


def test_any_samples_from_any_node_stranded_samples(store, fake):
    """Samples generated on a leaf that was split afterwards are routed from that node, only the ones asked for."""
    project = make_project(store, max_depth=1)
    llm = LLM(fake.endpoint(), store, project)
    assert build(store, project, llm, depth=1).outcome is Outcome.COMPLETE
    tree = store.tree(project)
    leaf = tree.leaves()[0]
    rows = [{"data": {"question": f"q{i} at difficulty {'A' if i % 2 else 'B'}", "answer": "a"}, "norm_hash": f"h{i}"}
            for i in range(4)]
    store.add_samples(project, leaf.id, rows, cap=None, call_id=None)
    store.update_node(leaf.id, dimension="difficulty")
    kids = store.add_children(store.node(leaf.id), [{"value": "difficulty A"}, {"value": "difficulty B"}],
                              provenance="human")
    ids = [s["id"] for s in store.samples(project, node_ids=[leaf.id])]
    report = route_samples(store, llm, project, ids[:3], leaf.id)
    assert report.rows == 3 and report.to_leaf == 3
    by_node = {s["id"]: s["node_id"] for s in store.samples(project)}
    assert [by_node[i] for i in ids] == [kids[1], kids[0], kids[1], leaf.id]  # the 4th was not asked for


def test_route_job_and_cli(store, fake, tmp_path, capsys):
    project, llm = built(store, fake)
    import_rows(store, project, tmp_path, rows_for([("A", "C", 5)]))
    job_id = jobs.start_job(store.path, project, "route", {"rows_per_call": 2}, fake.endpoint())
    jobs.wait(store.path, job_id, 30)
    job = jobs.get_job(store, job_id)
    assert job["status"] == "complete" and job["done"] == job["total"] == 5, job
    assert "5 reached a leaf" in job["message"]
    import_rows(store, project, tmp_path, rows_for([("B", "A", 2)]) + [["new row topic B difficulty A", "z"]], "e.csv")
    code = main(["route", "--db", store.path, "--plan"])
    out = capsys.readouterr().out
    assert code == 0 and "plan: 3 row(s) to route over 2 level(s)" in out
    assert store.route_total(project) == 10  # the plan changed nothing


def test_kill_9_during_routing_then_resume_routes_every_row_exactly_once(tmp_path):
    n = 300
    with FakeLLM(latency=0.03) as fake:
        db = tmp_path / "k.db"
        with Store(db) as store:
            project, llm = built(store, fake)
            spec = [("A", "A", 150), ("A", "B", 60), ("B", "C", 50), ("C", "A", 40)]
            import_rows(store, project, tmp_path, rows_for(spec))
            llm.close()
        env = cli_env(fake.base_url)
        args = ["route", "--db", db, "--yes", "--rows-per-call", "5", "--concurrency", "2"]

        def half_way() -> bool:
            with Store(db) as s:
                return s.route_total(project) >= n // 2

        kill_when(command(*args), env, tmp_path, half_way, "routing never got half way", 60)
        with Store(db) as store:
            done_before = store.route_total(project)
            assert n // 2 <= done_before < 2 * n  # killed in the middle
        result = cli(*args, env=env, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        with Store(db) as store:
            routes = store.query("select sample_id, count(*) as n from routes group by sample_id")
            assert len(routes) == n and {r["n"] for r in routes} == {2}  # each row: one decision per level
            counts = at_leaves(store, project)
            expected = {leaf_of(store, project, a, b): c for a, b, c in spec}
            assert {k: v for k, v in counts.items() if v} == expected  # none lost, none twice


def test_rows_answered_none_can_be_asked_again(store, fake, tmp_path, capsys, monkeypatch):
    for name, value in {"OPENAI_BASE_URL": fake.base_url, "OPENAI_API_KEY": "sk-x", "TREESYNTH_MODEL": "fake-model"
                        }.items():
        monkeypatch.setenv(name, value)
    project, llm = built(store, fake, reasks=0)
    import_rows(store, project, tmp_path, rows_for([("B", "A", 4)]))
    fake.route_invalid = True
    assert route_samples(store, llm, project).none == 4
    fake.route_invalid = False
    assert route_samples(store, llm, project).rows == 0  # a decision stands until asked again
    assert plan_routing(store, project, retry_none=True).rows == 4
    assert main(["route", "--db", store.path, "--retry-none", "--yes"]) == 0
    assert "4 reached a leaf" in capsys.readouterr().out
    assert at_leaves(store, project)[leaf_of(store, project, "B", "A")] == 4
    assert store.none_rows(project) == []


def test_without_a_tree_route_and_balance_say_to_build_first(store, project, tmp_path, capsys):
    import_rows(store, project, tmp_path, rows_for([("A", "A", 2)]))
    assert main(["route", "--db", store.path]) == 2
    assert "the tree has no split yet" in capsys.readouterr().err
    assert main(["balance", "--db", store.path, "--target", "5"]) == 2
    assert "the tree has no leaves yet" in capsys.readouterr().err
