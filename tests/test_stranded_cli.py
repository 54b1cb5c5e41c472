"""`show` marks stranded samples (left on a node that got children) and `move-stranded` moves them (issue 8, 7)."""

from __future__ import annotations

from treesynth_core import edits
from treesynth_core.cli import main
from treesynth_core.samples import fingerprint
from treesynth_core.spec import ProjectSpec, Settings, parse_fields
from treesynth_core.store import Store


def run(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def stranded_db(tmp_path):
    """topic = algebra | geometry; 3 samples made on algebra, then algebra split by level: they are stranded."""
    db = str(tmp_path / "s.db")
    with Store(db) as store:
        spec = ProjectSpec(name="math", task="math word problems", fields=parse_fields("question,answer"),
                           settings=Settings(pivots=4, max_depth=2, per_leaf=3))
        pid = store.create_project(spec)
        algebra, geometry = edits.set_split(store, store.tree(pid).root.id, "topic", ["algebra", "geometry"])
        rows = [{"data": {"question": f"q{i}", "answer": "a"}, "drawn": [],
                 "norm_hash": fingerprint({"question": f"q{i}", "answer": "a"}, ["question"])} for i in range(3)]
        edits.add_samples(store, pid, algebra, rows, cap=None, call_id=None)
        easy, hard = edits.set_split(store, algebra, "level", ["easy", "hard"])
    return db, {"algebra": algebra, "geometry": geometry, "easy": easy, "hard": hard}


def test_show_marks_stranded_samples_on_their_node(tmp_path, capsys):
    db, ids = stranded_db(tmp_path)
    code, out, _ = run(capsys, "show", "--db", db)
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("  algebra  "))
    assert code == 0 and lines[at + 1].startswith("    ! 3 stranded samples (route: `route --under ")
    assert sum("stranded" in line for line in lines) == 1  # only the node holding them


def test_move_stranded_moves_them_to_a_leaf_below_and_undo_brings_them_back(tmp_path, capsys):
    db, ids = stranded_db(tmp_path)
    code, out, _ = run(capsys, "move-stranded", "--db", db, "--node", ids["algebra"], "--to", ids["hard"])
    assert code == 0 and out.startswith("moved 3 stranded sample(s) to hard"), out
    with Store(db) as store:
        assert len(store.sample_ids_on(ids["hard"])) == 3 and not edits.stranded(store, 1)
    assert "stranded" not in run(capsys, "show", "--db", db)[1]
    code, out, _ = run(capsys, "move-stranded", "--db", db, "--node", ids["algebra"], "--to", ids["hard"])
    assert code == 0 and out.strip() == "nothing to move: no stranded samples on this node"
    assert run(capsys, "undo", "--db", db)[0] == 0
    with Store(db) as store:
        assert edits.stranded(store, 1) == {ids["algebra"]: 3}


def test_move_stranded_refuses_a_target_outside_the_node_in_one_line(tmp_path, capsys):
    db, ids = stranded_db(tmp_path)
    code, out, err = run(capsys, "move-stranded", "--db", db, "--node", ids["algebra"], "--to", ids["geometry"])
    assert code == 2 and "is not below --node" in err and len(err.strip().splitlines()) <= 2, err
    code, _, err = run(capsys, "move-stranded", "--db", db, "--node", "nope", "--to", ids["hard"])
    assert code != 0 and "--node 'nope': no such node" in err
    with Store(db) as store:
        assert edits.stranded(store, 1) == {ids["algebra"]: 3}  # nothing moved
