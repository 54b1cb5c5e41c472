"""Building the tree from the dataset's own rows as pivots (issue 11 part 2), over the real fake server and the real
client: a node holding imported rows takes a seeded sample of them as its pivots (no pivots call), the criterion
prompt carries those rows, the stored pivots are marked as real rows; level by level after routing; the setting and
the CLI flag turn it off."""

from __future__ import annotations

from treesynth_core.fakellm import step_of
from treesynth_core.llm import LLM
from treesynth_core.outcome import Outcome
from treesynth_core.partition import IMPORTED_MARK, build, data_pivots
from treesynth_core.routing import route_samples
from treesynth_core.store import Store

from .conftest import make_project
from .test_cli import cli, cli_env, ok
from .test_routing import import_rows, rows_for


def user_of(body: dict) -> str:
    return next(m["content"] for m in body["messages"] if m["role"] == "user")


def calls_by_step(fake) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for body in fake.requests:
        out.setdefault(step_of(body), []).append(user_of(body))
    return out


def imported_project(store, fake, tmp_path, **settings) -> tuple[int, LLM, dict[int, dict]]:
    project = make_project(store, **settings)
    import_rows(store, project, tmp_path, rows_for([("A", "A", 12), ("B", "C", 9), ("C", "B", 4)]))
    rows = {s["id"]: s["data"] for s in store.samples(project)}
    assert len(rows) == 25
    return project, LLM(fake.endpoint(max_retries=0, timeout=5), store, project), rows


def test_the_root_takes_its_pivots_from_the_imported_rows(store, fake, tmp_path):
    project, llm, rows = imported_project(store, fake, tmp_path, pivots=4, max_depth=1)
    report = build(store, project, llm)
    assert report.outcome is Outcome.COMPLETE
    steps = calls_by_step(fake)
    assert "pivots" not in steps  # the one node expanded used the data: no pivots call at all
    root = store.tree(project).root
    assert len(root.pivots) == 4
    ids = [p[IMPORTED_MARK] for p in root.pivots]
    assert len(set(ids)) == 4 and ids == sorted(ids)
    for pivot in root.pivots:  # each stored pivot is a real row, marked with its sample id
        assert {k: v for k, v in pivot.items() if k != IMPORTED_MARK} == rows[pivot[IMPORTED_MARK]]
    [criterion] = steps["criterion"]
    for pivot in root.pivots:  # the criterion saw the real rows (fields only, not the marker)
        assert pivot["question"] in criterion
    assert IMPORTED_MARK not in criterion
    assert store.query("select count(*) as n from calls where purpose = 'pivots'")[0]["n"] == 0
    # the draw is seeded by the node: the same rows again
    assert [p[IMPORTED_MARK] for p in data_pivots(store, root.id, 4, ["question", "answer"], 20_000)] == ids


def test_rejected_and_excluded_rows_are_never_pivots_and_too_few_rows_fall_back(store, fake, tmp_path):
    project, llm, rows = imported_project(store, fake, tmp_path, pivots=4, max_depth=1)
    root = store.tree(project).root
    ids = sorted(rows)
    with store.atomic():
        store.update_samples(ids[:12], status="rejected")
        store.update_samples(ids[12:24], status="excluded")
    assert data_pivots(store, root.id, 4, ["question", "answer"], 20_000) == []  # one usable row left
    assert build(store, project, llm).outcome is Outcome.COMPLETE
    assert len(calls_by_step(fake)["pivots"]) == 1  # the LLM wrote the root's pivots
    assert not any(IMPORTED_MARK in p for p in store.tree(project).root.pivots)


def test_level_by_level_after_routing_the_children_use_their_routed_rows(store, fake, tmp_path):
    """Build one level from the root's rows, route the rows, build the next level: each child with at least two
    routed rows takes them as pivots; a child with none asks the LLM, as before."""
    project, llm, rows = imported_project(store, fake, tmp_path, pivots=3, max_depth=2)
    assert build(store, project, llm, depth=1).outcome is Outcome.COMPLETE
    assert route_samples(store, llm, project).outcome is Outcome.COMPLETE
    tree = store.tree(project)
    on = {kid.id: store.imported_ids_on(kid.id) for kid in tree.kids(tree.root.id)}
    assert sorted(map(len, on.values())) == [4, 9, 12]  # the fake router follows the topic a row names
    fake.requests.clear()
    assert build(store, project, llm, depth=2).outcome is Outcome.COMPLETE
    assert "pivots" not in calls_by_step(fake)  # every child had rows routed to it
    tree = store.tree(project)
    for kid in tree.kids(tree.root.id):
        assert kid.dimension and len(kid.pivots) == 3
        assert {p[IMPORTED_MARK] for p in kid.pivots} <= set(on[kid.id])


def test_the_cli_walk_import_build_route_build(tmp_path, fake):
    """import-data says to build a level first; build --depth 1, route --yes, build --depth 2: no pivots call."""
    from .test_import import write_csv

    db = tmp_path / "w.db"
    with Store(db) as store:
        project = make_project(store, pivots=3, max_depth=2)
    data = write_csv(tmp_path / "d.csv", ["question", "answer"],
                     rows_for([("A", "A", 6), ("B", "B", 6), ("C", "C", 6)]))
    env = cli_env(fake.base_url)
    out = ok(cli("import-data", "--db", db, "--file", data, env=env, cwd=tmp_path))
    assert "next: build the tree from these rows, a level at a time (`build --db ... --depth 1`" in out
    ok(cli("build", "--db", db, "--depth", "1", env=env, cwd=tmp_path))
    ok(cli("route", "--db", db, "--yes", env=env, cwd=tmp_path))
    ok(cli("build", "--db", db, "--depth", "2", env=env, cwd=tmp_path))
    assert "pivots" not in calls_by_step(fake) and len(calls_by_step(fake)["criterion"]) == 4
    with Store(db) as store:
        tree = store.tree(project)
        assert all(IMPORTED_MARK in p for n in tree.nodes.values() if n.dimension for p in n.pivots)
        assert sum(1 for n in tree.nodes.values() if n.dimension) == 4
    out = ok(cli("import-data", "--db", db, "--file", write_csv(tmp_path / "e.csv", ["question", "answer"],
                                                               [["one more row", "x"]]), env=env, cwd=tmp_path))
    assert "next: route the rows down the tree" in out


def test_the_setting_and_the_cli_flag_turn_it_off(tmp_path, fake):
    db = tmp_path / "t.db"
    with Store(db) as store:
        project = make_project(store, pivots=4, max_depth=1)
        import_rows(store, project, tmp_path, rows_for([("A", "A", 5), ("B", "B", 5)]))
    env = cli_env(fake.base_url)
    ok(cli("build", "--db", db, "--no-pivots-from-data", env=env, cwd=tmp_path))
    with Store(db) as store:
        assert store.project(project).settings.pivots_from_data is False
        root = store.tree(project).root
        assert root.pivots and not any(IMPORTED_MARK in p for p in root.pivots)
    assert len(calls_by_step(fake)["pivots"]) == 1
    ok(cli("build", "--db", db, "--pivots-from-data", "--depth", "1", env=env, cwd=tmp_path))
    with Store(db) as store:
        assert store.project(project).settings.pivots_from_data is True


def test_a_reproposal_draws_other_rows_and_makes_no_pivots_call(store, fake, tmp_path):
    """Re-proposing a node that holds imported rows draws them afresh (proposals compared side by side rest on
    different rows), still without a pivots call; the proposal keeps the marked rows as its evidence."""
    from treesynth_core import edits
    from treesynth_core.partition import repropose

    project, llm, rows = imported_project(store, fake, tmp_path, pivots=3, max_depth=1)
    assert build(store, project, llm).outcome is Outcome.COMPLETE
    root = store.tree(project).root
    built = {p[IMPORTED_MARK] for p in root.pivots}
    draws = []
    for _ in range(4):
        report = repropose(store, project, llm, node_id=root.id)
        assert report.outcome is Outcome.COMPLETE, report.summary()
        proposal = edits.proposals(store, root.id)[0]
        assert all(p[IMPORTED_MARK] in rows for p in proposal.split.pivots)
        draws.append({p[IMPORTED_MARK] for p in proposal.split.pivots})
    assert "pivots" not in calls_by_step(fake)
    assert any(d != built for d in draws)  # 4 draws of 3 among 25 rows all equal to the build's: odds 1 in 2300**4
