"""Tree page: build in the background, select nodes (chart, path box), edit, prune, approve, re-propose."""

from __future__ import annotations

import json

from tests.app_support import app_env, errors, texts  # noqa: F401
from treesynth_core import edits
from treesynth_core.sunburst import fold_id

TREE = "pages/1_Tree.py"


def figure(at) -> dict:
    chart = at.get("plotly_chart")[0]
    return json.loads(chart.proto.spec)["data"][0]


def chart_key(at) -> str:
    return f"tree_chart_{at.session_state['tree_chart_v'] if 'tree_chart_v' in at.session_state else 0}"


def node_by_value(store, pid, value, parent_value=None):
    tree = store.tree(pid)
    for n in tree.nodes.values():
        parent = tree.nodes.get(n.parent_id) if n.parent_id else None
        if n.value == value and (parent_value is None or (parent and parent.value == parent_value)):
            return n
    raise AssertionError(value)


def select(at, node_id):
    at.selectbox(key="tree_pick").set_value(node_id)
    return at.run()


def prune(at):
    """Prune the selected node: the button asks, the confirmation runs it."""
    at.button(key="tree_prune").click().run()
    assert [w for w in at.warning if w.value.startswith("Pruning")]
    return at.button(key="tree_confirm_prune_yes").click().run()


def repropose(at, app_env, pid):
    """Re-propose the selected node as a job, wait for it, and show its stored proposal."""
    at.button(key="tree_repropose").click().run()
    job = app_env.last_job(pid)
    assert job["kind"] == "propose" and job["status"] == "complete", job
    return at.run()


def diff_rows(at):
    """The Replace diff table as shown (a data editor with a change column)."""
    return next(e.value for e in at.data_editor if "change" in e.value.columns)


def test_first_build_runs_in_the_background_and_shows_the_tree(app_env):
    pid = app_env.project()
    at = app_env.app(TREE, pid)
    assert any("no tree yet" in i.value for i in at.info)
    at.number_input(key="tree_first_depth").set_value(2)
    at.button(key="tree_first_go").click().run()
    assert not errors(at)
    job = app_env.last_job(pid)
    assert job["kind"] == "build" and job["status"] == "complete" and job["params"] == {"depth": 2}
    at.run()
    fig = figure(at)
    assert len(fig["ids"]) == 13 and fig["parents"].count("") == 1
    assert fig["labels"].count("difficulty A") == 3  # duplicate labels stay distinct sectors (ids)
    shown = texts(at)
    assert "Last build job" in shown and "topic A" in shown and "13 nodes" in shown


def test_a_project_without_a_tree_on_purpose_still_builds_at_least_one_level(app_env):
    """max_depth 0 ("no tree") is a valid setting, but the Tree page's build inputs start at depth 1."""
    from treesynth_core.spec import bounds

    pid = app_env.project(max_depth=0)
    at = app_env.app(TREE, pid)
    box = at.number_input(key="tree_first_depth")
    assert (box.min, box.max, box.value) == (1, bounds("max_depth")[1], 1)
    at.button(key="tree_first_go").click().run()
    assert not errors(at)
    job = app_env.last_job(pid)
    assert job["status"] == "complete" and job["params"] == {"depth": 1}
    at.run()
    assert at.number_input(key="tree_all_depth").min == 1 and at.number_input(key="tree_all_depth").value == 1


def test_setting_range_is_spec_bounds():
    from treesynth_core.spec import Settings, bounds
    from treesynth_ui import setting_range

    numeric = [n for n, f in Settings.model_fields.items() if f.metadata]
    assert numeric and all(setting_range(n) == bounds(n) for n in numeric)
    assert setting_range("model", 1, 2) == (1, 2)  # no declared bound: the stand-ins


def test_select_with_the_path_box_and_the_chart(app_env):
    pid = app_env.built()
    at = app_env.app(TREE, pid)
    with app_env.store() as store:
        topic_b = node_by_value(store, pid, "topic B")
        leaf = node_by_value(store, pid, "difficulty C", "topic B")
    at = select(at, topic_b.id)
    assert "topic = topic B" in at.code[0].value
    assert figure(at)["level"] == topic_b.id  # zoomed to the selected node
    at.session_state[chart_key(at)] = {"selection": {"points": [{"id": leaf.id}]}}
    at.run()
    assert at.session_state["tree_node"] == leaf.id and at.selectbox(key="tree_pick").value == leaf.id
    assert "difficulty = difficulty C" in at.code[0].value
    assert figure(at)["level"] == topic_b.id  # a leaf shows its siblings
    at.session_state[chart_key(at)] = {"selection": {"points": [{"id": topic_b.id}]}}
    at.run()  # a click on the centre zooms out to the parent
    with app_env.store() as store:
        assert at.session_state["tree_node"] == store.tree(pid).root.id


def test_edit_values_in_the_table(app_env):
    pid = app_env.built()
    at = app_env.app(TREE, pid)
    with app_env.store() as store:
        root = store.tree(pid).root
    editor_key = next(k for k in at.session_state if str(k).startswith(f"tree_values_{root.id}"))
    at.session_state[editor_key] = {"edited_rows": {0: {"value": "fractions"}}, "added_rows": [{"value": "geometry"}],
                                    "deleted_rows": [2]}
    at.button(key="FormSubmitter:tree_values_form-Save value changes").click().run()
    assert not errors(at)
    with app_env.store() as store:  # a delete waits for the curator's confirmation: nothing changed yet
        assert [k.value for k in store.tree(pid).kids(root.id)] == ["topic A", "topic B", "topic C"]
    asked = [w.value for w in at.warning if w.value.startswith("Deleting")]
    assert asked and "**topic C**" in asked[0] and "**4 node(s) and 0 sample(s)**" in asked[0]
    at.button(key="tree_confirm_values_yes").click().run()
    assert not errors(at)
    with app_env.store() as store:
        tree = store.tree(pid)
        values = [k.value for k in tree.kids(tree.root.id)]
        assert values == ["fractions", "topic B", "geometry"]
        assert tree.kids(tree.root.id)[0].status == "edited" and len(tree) == 13 - 4 + 1
    assert any("renamed to fractions" in s.value for s in at.success)
    assert "fractions" in figure(at)["labels"]


def test_a_bad_edit_shows_the_error_and_its_hint(app_env):
    pid = app_env.built()
    at = app_env.app(TREE, pid)
    editor_key = next(k for k in at.session_state if str(k).startswith("tree_values_") and k != "tree_values_v")
    at.session_state[editor_key] = {"edited_rows": {0: {"value": "topic B"}}, "added_rows": [], "deleted_rows": []}
    at.button(key="FormSubmitter:tree_values_form-Save value changes").click().run()
    problem = " ".join(errors(at))
    assert "already has the value" in problem and "What to do" in problem
    with app_env.store() as store:
        assert node_by_value(store, pid, "topic A")


def test_prune_restore_approve_and_lock(app_env):
    pid = app_env.built()
    at = app_env.app(TREE, pid)
    with app_env.store() as store:
        topic_a = node_by_value(store, pid, "topic A")
    at = select(at, topic_a.id)
    at.button(key="tree_prune").click().run()
    asked = [w.value for w in at.warning if w.value.startswith("Pruning")]
    assert asked and "**4 node(s) and the 0 sample(s) on them**" in asked[0]
    with app_env.store() as store:
        assert {n.status for n in store.tree(pid).subtree(topic_a.id)} == {"proposed"}  # not before the yes
    at.button(key="tree_confirm_prune_yes").click().run()
    with app_env.store() as store:
        assert {n.status for n in store.tree(pid).subtree(topic_a.id)} == {"pruned"}
        assert len(store.tree(pid).leaves()) == 6
    assert any("Pruned 4 node" in s.value for s in at.success)
    at.button(key="tree_restore").click().run()
    at.button(key="tree_approve_sub").click().run()
    at.button(key="tree_lock").click().run()
    with app_env.store() as store:
        tree = store.tree(pid)
        assert {n.status for n in tree.subtree(topic_a.id)} <= {"approved", "edited"}
        assert tree.nodes[topic_a.id].locked
    assert "locked" in texts(at)
    assert at.button(key="tree_lock").label == "Unlock"


def test_rename_criterion_and_hand_set_the_root_split(app_env):
    pid = app_env.built()
    at = app_env.app(TREE, pid)
    with app_env.store() as store:
        root = store.tree(pid).root
    at.text_input(key=f"tree_dim_{root.id}").input("subject")
    at.button(key="FormSubmitter:tree_dim_form-Rename").click().run()
    with app_env.store() as store:
        assert store.node(root.id).dimension == "subject"
    at.text_input(key="tree_hand_dim").input("grade")
    at.text_area(key="tree_hand_values").input("grade 1\ngrade 2\ngrade 3\ngrade 4")
    at.button(key="FormSubmitter:tree_hand_form-Set split").click().run()
    asked = [w.value for w in at.warning if w.value.startswith("Setting this split")]
    assert asked and "**12 node(s) and 0 sample(s)**" in asked[0]
    with app_env.store() as store:
        assert len(store.tree(pid)) == 13  # not before the yes
    at.button(key="tree_confirm_tree_hand_yes").click().run()
    with app_env.store() as store:
        tree = store.tree(pid)
        assert tree.root.dimension == "grade" and [k.value for k in tree.kids(root.id)] == [
            "grade 1", "grade 2", "grade 3", "grade 4"]
        assert len(tree) == 5


def test_hand_split_on_an_empty_project(app_env):
    pid = app_env.project()
    at = app_env.app(TREE, pid)
    at.text_input(key="tree_root_dim").input("topic")
    at.text_area(key="tree_root_values").input("algebra\nalgebra\n")
    at.button(key="FormSubmitter:tree_root_form-Set split").click().run()
    assert any("at least two distinct values" in e for e in errors(at))
    at.text_area(key="tree_root_values").input("algebra\ngeometry")
    at.button(key="FormSubmitter:tree_root_form-Set split").click().run()
    with app_env.store() as store:
        assert [k.value for k in store.tree(pid).kids(store.tree(pid).root.id)] == ["algebra", "geometry"]
    assert figure(at)["labels"][1:] == ["algebra", "geometry"]


def test_repropose_shows_both_and_replace_applies(app_env):
    pid = app_env.built()
    at = app_env.app(TREE, pid)
    with app_env.store() as store:
        topic_c = node_by_value(store, pid, "topic C")
    at = select(at, topic_c.id)
    app_env.fake.push('{"dimension": "setting", "labels": ["farm", "shop", "farm", "shop"]}')
    app_env.fake.script[-1].step = "criterion"
    at = repropose(at, app_env, pid)
    assert not errors(at)
    assert "**difficulty** → **setting**" in texts(at)
    with app_env.store() as store:
        assert store.node(topic_c.id).dimension == "difficulty"  # a proposal changes nothing by itself
    assert at.button(key="tree_replace").label == "Replace: remove 3 node(s) and 0 sample(s)"
    at.button(key="tree_replace").click().run()
    asked = [w.value for w in at.warning if w.value.startswith("Replacing")]
    assert asked and "**3 node(s) and 0 sample(s)**" in asked[0]
    at.button(key="tree_confirm_replace_yes").click().run()
    assert not errors(at)
    with app_env.store() as store:
        tree = store.tree(pid)
        assert tree.nodes[topic_c.id].dimension == "setting"
        assert [k.value for k in tree.kids(topic_c.id)][:2] == ["farm", "shop"]
        assert not edits.proposals(store, topic_c.id)  # applied: no longer listed


def test_expand_a_subtree_as_a_job(app_env):
    pid = app_env.built()
    at = app_env.app(TREE, pid)
    with app_env.store() as store:
        leaf = node_by_value(store, pid, "difficulty A", "topic A")
    at = select(at, leaf.id)
    at.number_input(key="tree_levels").set_value(1)
    at.button(key="tree_expand_sub").click().run()
    job = app_env.last_job(pid)
    assert job["status"] == "complete" and job["params"] == {"depth": 3, "under": leaf.id}
    with app_env.store() as store:
        assert len(store.tree(pid).kids(leaf.id)) == 3


def test_expand_depth_is_counted_from_the_node_and_says_what_it_adds(app_env):
    pid = app_env.built()  # topic A is already split once (its difficulty leaves)
    at = app_env.app(TREE, pid)
    with app_env.store() as store:
        topic = node_by_value(store, pid, "topic A")
    at = select(at, topic.id)
    box = at.number_input(key="tree_levels")
    assert box.label == "Depth below this node" and box.value == 2  # one level more than it has
    assert not errors(at) and not [w for w in at.warning if "Session State" in w.value]
    assert "already reaches 1 level(s) below it, so depth 2 adds 1 level(s) where it is deepest" in texts(at)
    box.set_value(1).run()
    assert "so depth 1 only splits nodes that are still unsplit above that depth" in texts(at)
    at.number_input(key="tree_levels").set_value(2).run()
    at.button(key="tree_expand_sub").click().run()
    job = app_env.last_job(pid)
    assert job["status"] == "complete" and job["params"] == {"depth": 3, "under": topic.id}
    with app_env.store() as store:
        tree = store.tree(pid)
        assert max(n.depth for n in tree.subtree(topic.id)) - topic.depth == 2  # what the box said


def test_the_header_counts_the_samples_of_the_whole_subtree_as_the_chart_does(app_env):
    from treesynth_core.samples import fingerprint

    pid = app_env.built()
    with app_env.store() as store:
        tree = store.tree(pid)
        topic = node_by_value(store, pid, "topic A")
        leaf = tree.kids(topic.id)[0]
        for node_id, n in ((topic.id, 2), (leaf.id, 3)):  # samples on an inner node: made before it was split
            rows = [{"data": {"question": f"{node_id} q{i}", "answer": "a"}, "drawn": [],
                     "norm_hash": fingerprint({"question": f"{node_id} q{i}", "answer": "a"}, ["question"])}
                    for i in range(n)]
            store.add_samples(pid, node_id, rows, cap=None, call_id=None)
    at = select(app_env.app(TREE, pid), topic.id)
    assert "5 samples below" in texts(at)
    at = select(at, tree.root.id)
    assert "5 samples below" in texts(at)
    fig = figure(at)
    assert "samples: 5 of" in fig["hovertext"][fig["ids"].index(tree.root.id)]


def test_expand_every_approved_leaf(app_env):
    pid = app_env.built()
    with app_env.store() as store:
        from treesynth_core import edits

        edits.approve(store, node_by_value(store, pid, "difficulty B", "topic B").id)
    at = app_env.app(TREE, pid)
    at.number_input(key="tree_all_depth").set_value(3)
    at.button(key="tree_expand_approved").click().run()
    job = app_env.last_job(pid)
    assert job["params"] == {"depth": 3, "approved_only": True} and "expanded 1" in job["message"]


def test_failures_are_shown_on_the_node_and_in_the_chart(app_env):
    pid = app_env.built()
    with app_env.store() as store:
        node = node_by_value(store, pid, "topic B")
        store.update_node(node.id, status="failed", failure="criterion: no usable reply after 3 tries")
    at = app_env.app(TREE, pid)
    at = select(at, node.id)
    assert any("no usable reply" in e for e in errors(at))
    fig = figure(at)
    assert "⚠ topic B" in fig["labels"] and "#e03131" in fig["marker"]["colors"]
    assert any("failure: criterion" in t.value for t in at.text)  # the outline says it too


def test_colour_by_samples(app_env):
    pid = app_env.built()
    app_env.run_job(pid, "generate", {"per_leaf": 3})
    at = app_env.app(TREE, pid)
    before = figure(at)["marker"]["colors"]
    at.segmented_control(key="tree_color").set_value("samples").run()
    assert not errors(at)
    fig = figure(at)
    assert "3 of 3 wanted" in " ".join(fig["hovertext"])
    assert fig["marker"]["colors"] != before and "Pale = no samples yet" in texts(at)


def test_open_ended_values_are_edited_as_a_list(app_env):
    pid = app_env.project()
    with app_env.store() as store:
        root = store.tree(pid).root
        store.update_node(root.id, dimension="city")
        (child,) = store.add_children(root, [{"infinite": True, "values": ["Paris", "Lima", "Oslo"]}],
                                      provenance="llm")
    at = app_env.app(TREE, pid)
    assert "any of 3 values" in figure(at)["labels"]
    at.text_area(key=f"tree_inf_{child}").input("Paris\nLima\nOslo\nCairo")
    at.button(key="FormSubmitter:tree_inf_form-Save values").click().run()
    with app_env.store() as store:
        assert store.node(child).values == ["Paris", "Lima", "Oslo", "Cairo"]
    assert "any of 4 values" in figure(at)["labels"]


def test_a_failed_first_build_says_why(app_env):
    pid = app_env.project(reasks=0)
    for _ in range(3):
        app_env.fake.push("this is not JSON")
    at = app_env.app(TREE, pid)
    at.button(key="tree_first_go").click().run()
    app_env.last_job(pid)
    at.run()
    problem = " ".join(errors(at))
    assert "Proposing the first level failed" in problem and "no usable reply" in problem


def test_rename_the_selected_nodes_value_and_pruned_nodes_cannot_be_approved(app_env):
    pid = app_env.built()
    at = app_env.app(TREE, pid)
    with app_env.store() as store:
        topic_b = node_by_value(store, pid, "topic B")
    at = select(at, topic_b.id)
    at.text_input(key=f"tree_value_{topic_b.id}").set_value("two-step problems")
    at.button(key="FormSubmitter:tree_value_form-Rename value").click().run()
    assert not errors(at)
    with app_env.store() as store:
        node = store.node(topic_b.id)
        assert (node.value, node.status, node.provenance) == ("two-step problems", "edited", "human")
    prune(at)
    assert at.button(key="tree_approve").disabled and at.button(key="tree_repropose").disabled


def test_a_node_with_a_note_needs_review_and_can_be_picked(app_env):
    pid = app_env.built()
    with app_env.store() as store:
        topic_b = node_by_value(store, pid, "topic B")
        topic_c = node_by_value(store, pid, "topic C")
        store.update_node(topic_b.id, note="coverage incomplete: 2 values dropped (**not a rule**)")
        store.update_node(topic_c.id, status="failed", failure="pivots: no usable reply after 3 tries")
    at = app_env.app(TREE, pid)
    summary = " ".join(errors(at))  # a failure somewhere makes the count an error
    assert "1 node(s) failed to expand" in summary and "1 node(s) need review" in summary
    picker = at.selectbox(key="tree_attention")
    assert picker.value is None and picker.options == [
        "failed: topic=topic C", "needs review: topic=topic B"]  # failed first, then flagged, by path
    picker.set_value(topic_b.id).run()
    assert at.session_state["tree_node"] == topic_b.id and at.selectbox(key="tree_pick").value == topic_b.id
    assert at.selectbox(key="tree_attention").value is None  # a jump list: it reads "pick one" again
    review = [w.value for w in at.warning if w.value.startswith("Needs review")]
    assert review == ["Needs review: coverage incomplete: 2 values dropped (\\*\\*not a rule\\*\\*)  \n"
                      "**What to do:** check that the values below cover the whole space and add what is missing, "
                      "or re-propose the criterion. Approving this node, replacing its split or **Mark reviewed** "
                      "clears this mark."]
    assert any("needs review: coverage incomplete" in t.value for t in at.text)  # the outline marks it too
    at.selectbox(key="tree_attention").set_value(topic_c.id).run()
    assert any(e.startswith("Expanding this node failed: pivots") for e in errors(at))


def test_no_attention_list_when_nothing_failed(app_env):
    pid = app_env.built()
    at = app_env.app(TREE, pid)
    assert not errors(at) and not [s for s in at.selectbox if s.key == "tree_attention"]


def test_mark_reviewed_clears_the_mark_and_keeps_the_split(app_env):
    pid = app_env.built()
    with app_env.store() as store:
        topic_b = node_by_value(store, pid, "topic B")
        store.update_node(topic_b.id, note="coverage incomplete: 2 values dropped")
        before = store.tree(pid)
    at = select(app_env.app(TREE, pid), topic_b.id)
    assert at.button(key="tree_resolve_note").label == "Mark reviewed"
    at.button(key="tree_resolve_note").click().run()
    assert not errors(at) and not at.exception
    assert any("Marked reviewed" in s.value for s in at.success)
    assert not [w for w in at.warning if w.value.startswith("Needs review")]
    assert not [b for b in at.button if b.key == "tree_resolve_note"]  # no mark, no button
    with app_env.store() as store:
        after = store.tree(pid)
        assert after.nodes[topic_b.id].note is None
        assert [(n.id, n.status, n.dimension) for n in after.subtree(topic_b.id)] == [
            (n.id, n.status, n.dimension) for n in before.subtree(topic_b.id)]  # the split is kept as it was


def test_approving_a_flagged_node_clears_its_mark(app_env):
    pid = app_env.built()
    with app_env.store() as store:
        topic_b = node_by_value(store, pid, "topic B")
        store.update_node(topic_b.id, note="coverage incomplete: 2 values dropped")
    at = select(app_env.app(TREE, pid), topic_b.id)
    at.button(key="tree_approve").click().run()
    assert not errors(at)
    assert not [w for w in at.warning if w.value.startswith("Needs review")]
    with app_env.store() as store:
        assert store.node(topic_b.id).note is None and store.node(topic_b.id).status == "approved"


def test_replacing_a_flagged_split_clears_its_mark(app_env):
    """What the "Needs review" message promises: re-proposing and replacing the split clears the mark."""
    pid = app_env.built()
    with app_env.store() as store:
        topic_c = node_by_value(store, pid, "topic C")
        store.update_node(topic_c.id, note="coverage incomplete: the coverage call failed")
    at = select(app_env.app(TREE, pid), topic_c.id)
    assert any(w.value.startswith("Needs review") for w in at.warning)
    app_env.fake.push('{"dimension": "setting", "labels": ["farm", "shop", "farm", "shop"]}')
    app_env.fake.script[-1].step = "criterion"
    at = repropose(at, app_env, pid)
    at.button(key="tree_replace").click().run()
    at.button(key="tree_confirm_replace_yes").click().run()
    assert not errors(at)
    with app_env.store() as store:
        assert store.node(topic_c.id).note is None and store.node(topic_c.id).dimension == "setting"
    assert not [w for w in at.warning if w.value.startswith("Needs review")]


# ---------------------------------------------------------------------------- issue 8: curation with a safety net


def add_samples(store, pid, node_id, n, tag="s"):
    from treesynth_core.samples import fingerprint

    rows = [{"data": {"question": f"{tag} {node_id} q{i}", "answer": "a"}, "drawn": [],
             "norm_hash": fingerprint({"question": f"{tag} {node_id} q{i}", "answer": "a"}, ["question"])}
            for i in range(n)]
    edits.add_samples(store, pid, node_id, rows, cap=None, call_id=None)


def test_next_unreviewed_node_walks_the_outline_and_skips_reviewed_ones(app_env):
    pid = app_env.built()
    with app_env.store() as store:
        topic_a = node_by_value(store, pid, "topic A")
        edits.approve(store, topic_a.id)
        first_leaf = node_by_value(store, pid, "difficulty A", "topic A")
    at = app_env.app(TREE, pid)
    assert at.button(key="tree_next_unreviewed").label == "Next unreviewed (11)"
    at.button(key="tree_next_unreviewed").click().run()
    assert at.session_state["tree_node"] == first_leaf.id  # topic A is approved: its first child comes next
    at.button(key="tree_approve").click().run()
    assert at.button(key="tree_next_unreviewed").label == "Next unreviewed (10)"
    at.button(key="tree_next_unreviewed").click().run()
    with app_env.store() as store:
        assert at.session_state["tree_node"] == node_by_value(store, pid, "difficulty B", "topic A").id
        edits.approve(store, store.tree(pid).root.id, subtree=True)
    at.run()
    assert at.button(key="tree_next_unreviewed").disabled
    assert at.button(key="tree_next_unreviewed").label == "Every node is reviewed"


def test_per_leaf_quota_is_set_and_reset_from_the_tree_page(app_env):
    pid = app_env.built()  # per_leaf 3
    with app_env.store() as store:
        leaf = node_by_value(store, pid, "difficulty B", "topic C")
        topic = node_by_value(store, pid, "topic C")
    at = select(app_env.app(TREE, pid), topic.id)
    assert not [n for n in at.number_input if n.key == f"tree_quota_{topic.id}"]  # inner nodes have no quota
    at = select(at, leaf.id)
    assert "Quota: 3 (the project's)" in texts(at)
    at.number_input(key=f"tree_quota_{leaf.id}").set_value(7)
    at.button(key="FormSubmitter:tree_quota_form-Set quota").click().run()
    assert not errors(at)
    with app_env.store() as store:
        assert store.node(leaf.id).quota == 7
    assert "Quota: 7 (this leaf's own)" in texts(at)
    fig = figure(at)
    assert "samples: 0 of 7 wanted" in fig["hovertext"][fig["ids"].index(leaf.id)]
    at.button(key="FormSubmitter:tree_quota_form-Use default (3)").click().run()
    with app_env.store() as store:
        assert store.node(leaf.id).quota is None
    assert "Quota: 3 (the project's)" in texts(at)


def test_the_evidence_of_a_split_is_beside_it(app_env):
    pid = app_env.built()
    at = app_env.app(TREE, pid)
    with app_env.store() as store:
        root = store.tree(pid).root
        use = store.usage(pid, root.id)
    title = next(e.label for e in at.expander if e.label.startswith("Evidence"))
    assert title == f"Evidence: 4 pivot(s) · {use['calls']} LLM call(s)"
    pivots = next(d.value for d in at.dataframe if "question" in d.value.columns)
    assert len(pivots) == 4 and set(pivots["value"]) <= {"topic A", "topic B", "topic C"}
    assert list(pivots.columns) == ["value", "question", "answer"]
    calls = next(d.value for d in at.dataframe if "step" in d.value.columns)
    assert {"pivots", "criterion"} <= set(calls["step"]) and set(calls["for"]) == {"this split"}
    assert "cost unknown (no prices set)" in texts(at)
    fig = figure(at)
    assert "pivots: 4 · e.g." in fig["hovertext"][fig["ids"].index(root.id)]
    assert any("pivot 1: " in t.value for t in at.text)  # the outline lists them too


def test_undo_after_delete_restores_the_subtree_and_its_samples_then_redo(app_env):
    pid = app_env.built()
    with app_env.store() as store:
        topic_b = node_by_value(store, pid, "topic B")
        for leaf in store.tree(pid).kids(topic_b.id):
            add_samples(store, pid, leaf.id, 2)
        before = {n.id for n in store.tree(pid).subtree(topic_b.id)}
        samples_before = sorted(s["id"] for s in store.samples(pid))
        root = store.tree(pid).root
    at = app_env.app(TREE, pid)
    assert not at.button(key="tree_undo").disabled and at.button(key="tree_redo").disabled  # nothing undone yet
    editor_key = next(k for k in at.session_state if str(k).startswith(f"tree_values_{root.id}"))
    at.session_state[editor_key] = {"edited_rows": {}, "added_rows": [], "deleted_rows": [1]}
    at.button(key="FormSubmitter:tree_values_form-Save value changes").click().run()
    asked = next(w.value for w in at.warning if w.value.startswith("Deleting"))
    assert "**4 node(s) and 6 sample(s)**" in asked
    at.button(key="tree_confirm_values_yes").click().run()
    with app_env.store() as store:
        assert not before & set(store.tree(pid).nodes) and len(store.samples(pid)) == 0
    at.button(key="tree_undo").click().run()
    assert not errors(at) and any(s.value.startswith("Undone: ") for s in at.success)
    assert not at.button(key="tree_redo").disabled
    with app_env.store() as store:
        assert before <= set(store.tree(pid).nodes)
        assert sorted(s["id"] for s in store.samples(pid)) == samples_before
    assert "6 samples below" in texts(at)  # the page's view followed the undo
    at.button(key="tree_redo").click().run()
    with app_env.store() as store:
        assert not before & set(store.tree(pid).nodes)
    assert at.button(key="tree_redo").disabled  # nothing left to redo
    history = next(d.value for d in at.dataframe if "what" in d.value.columns)
    assert history["what"].str.contains("topic B").any()


def test_undo_is_disabled_at_an_import_and_names_it(app_env):
    """A tree import starts the history: Undo is disabled (not a green 'Nothing to undo.') and says why."""
    from treesynth_core.treefile import export_tree, import_tree

    pid = app_env.built()
    with app_env.store() as store:
        copy = import_tree(store, json.dumps(export_tree(store, pid)))
    at = app_env.app(TREE, copy)
    undo, redo = at.button(key="tree_undo"), at.button(key="tree_redo")
    assert undo.disabled and redo.disabled and not errors(at)
    assert "cannot be undone (imported a tree of 13 node(s))" in undo.help
    assert "Undo stops at: imported a tree of 13 node(s)" in texts(at)
    assert not [s for s in at.success if "Nothing to" in s.value]


def test_re_propose_with_an_identical_proposal_keeps_every_descendant(app_env):
    pid = app_env.built()
    with app_env.store() as store:
        topic_a = node_by_value(store, pid, "topic A")
        leaves = store.tree(pid).kids(topic_a.id)
        for leaf in leaves:
            add_samples(store, pid, leaf.id, 3)
        store.update_node(leaves[0].id, dimension="setting")
        store.add_children(store.node(leaves[0].id), [{"value": "farm"}, {"value": "shop"}], provenance="human")
        below = {n.id for n in store.tree(pid).subtree(topic_a.id)}
    at = select(app_env.app(TREE, pid), topic_a.id)
    app_env.fake.push('{"dimension": "difficulty", "labels": ["difficulty A", "difficulty B", "difficulty C", '
                      '"difficulty A"]}')
    app_env.fake.script[-1].step = "criterion"
    at = repropose(at, app_env, pid)
    assert any("identical to the current split" in s.value for s in at.success)
    rows = diff_rows(at)
    assert list(rows["change"]) == ["= kept"] * 3 and list(rows["nodes below"]) == [2, 0, 0]
    assert list(rows["samples below"]) == [3, 3, 3]
    assert at.button(key="tree_replace").label == "Replace (nothing is removed)"
    at.button(key="tree_replace").click().run()
    assert not errors(at) and not [w for w in at.warning if w.value.startswith("Replacing")]
    with app_env.store() as store:
        assert {n.id for n in store.tree(pid).subtree(topic_a.id)} == below
        assert len(store.samples(pid)) == 9


def test_replace_as_a_diff_with_a_choice_per_value(app_env):
    pid = app_env.built()
    with app_env.store() as store:
        topic_b = node_by_value(store, pid, "topic B")
        kids = {k.value: k.id for k in store.tree(pid).kids(topic_b.id)}
        add_samples(store, pid, kids["difficulty C"], 2)
    at = select(app_env.app(TREE, pid), topic_b.id)
    app_env.fake.push('{"dimension": "difficulty", "labels": ["difficulty A", "difficulty Bee", "hardest", '
                      '"hardest"]}')
    app_env.fake.script[-1].step = "criterion"
    at = repropose(at, app_env, pid)
    rows = diff_rows(at)
    assert rows["pivots"].str.startswith("2: ").any()  # two pivots were labelled "hardest"
    shown = texts(at)
    assert "1 kept" in shown and "1 renamed" in shown and "1 added" in shown and "1 removed" in shown
    assert at.button(key="tree_replace").label == "Replace: remove 1 node(s) and 2 sample(s)"
    # untick the removal of difficulty C: it stays with its samples
    key = next(k for k in at.session_state if str(k).startswith("tree_diff_"))
    frame_rows = rows.to_dict("records")
    removed_row = next(i for i, r in enumerate(frame_rows) if r["change"] == "- removed")
    at.session_state[key] = {"edited_rows": {removed_row: {"apply": False}}, "added_rows": [], "deleted_rows": []}
    at.run()
    assert at.button(key="tree_replace").label == "Replace (nothing is removed)"
    at.button(key="tree_replace").click().run()
    assert not errors(at)
    with app_env.store() as store:
        values = {k.value: k.id for k in store.tree(pid).kids(topic_b.id)}
        assert values["difficulty C"] == kids["difficulty C"] and values["difficulty Bee"] == kids["difficulty B"]
        assert "hardest" in values and len(store.samples(pid)) == 2


def test_restore_an_earlier_split_from_the_history(app_env):
    pid = app_env.built()
    with app_env.store() as store:
        topic_c = node_by_value(store, pid, "topic C")
    at = select(app_env.app(TREE, pid), topic_c.id)
    at.text_input(key="tree_hand_dim").input("setting")
    at.text_area(key="tree_hand_values").input("farm\nshop")
    at.button(key="FormSubmitter:tree_hand_form-Set split").click().run()
    at.button(key="tree_confirm_tree_hand_yes").click().run()
    with app_env.store() as store:
        assert store.node(topic_c.id).dimension == "setting"
    picker = at.selectbox(key="tree_restore_pick")
    assert "difficulty" in picker.format_func(picker.value)
    assert "removes 2 node(s) and 0 sample(s)" in texts(at)
    at.button(key="tree_restore_split").click().run()
    assert any(w.value.startswith("Restoring that split removes") for w in at.warning)
    at.button(key="tree_confirm_restore_yes").click().run()
    assert not errors(at)
    with app_env.store() as store:
        tree = store.tree(pid)
        assert tree.nodes[topic_c.id].dimension == "difficulty"
        assert [k.value for k in tree.kids(topic_c.id)] == ["difficulty A", "difficulty B", "difficulty C"]


def test_a_click_on_more_zooms_there_and_lists_what_still_does_not_fit(app_env, monkeypatch):
    import treesynth_core.sunburst as sunburst

    pid = app_env.built()
    with app_env.store() as store:
        topic_b = node_by_value(store, pid, "topic B")
        edits.set_split(store, topic_b.id, "setting", [f"place {i}" for i in range(30)])
        place = node_by_value(store, pid, "place 7")
    monkeypatch.setattr(sunburst, "MIN_DEGREES", 50.0)  # 30 places of 10-12 degrees each fold, even zoomed in
    at = app_env.app(TREE, pid)
    fig = figure(at)
    assert fold_id(topic_b.id) in fig["ids"] and "+30 more" in fig["labels"] and place.id not in fig["ids"]
    at.session_state[chart_key(at)] = {"selection": {"points": [{"id": fold_id(topic_b.id)}]}}
    at.run()
    assert at.session_state["tree_node"] == topic_b.id and figure(at)["level"] == topic_b.id
    picker = at.selectbox(key="tree_more_pick")
    assert len(picker.options) == 30
    at.session_state[chart_key(at)] = {"selection": {"points": [{"id": fold_id(topic_b.id)}]}}
    at.run()  # "+30 more" clicked again, now under the centre: it stays there (the centre alone zooms out)
    assert at.session_state["tree_node"] == topic_b.id and figure(at)["level"] == topic_b.id
    picker = at.selectbox(key="tree_more_pick")
    picker.set_value(place.id).run()
    assert at.session_state["tree_node"] == place.id
    assert not [s for s in at.selectbox if s.key == "tree_more_pick"]  # the list closes once one is picked


def test_a_big_tree_is_searched_not_listed(app_env, monkeypatch):
    import treesynth_ui_tree

    pid = app_env.built()
    monkeypatch.setattr(treesynth_ui_tree, "PICK_ALL_UP_TO", 5)
    at = app_env.app(TREE, pid)
    assert len(at.selectbox(key="tree_pick").options) == 1 + 3  # the root and its children, no more
    at.text_input(key="tree_find").input("topic b difficulty c").run()
    with app_env.store() as store:
        leaf = node_by_value(store, pid, "difficulty C", "topic B")
    picker = at.selectbox(key="tree_pick")
    assert any("topic=topic B > difficulty=difficulty C" == o for o in picker.options)
    picker.set_value(leaf.id).run()
    assert at.session_state["tree_node"] == leaf.id


def test_the_chart_follows_a_running_build(app_env):
    import time

    pid = app_env.project(concurrency=1)
    app_env.fake.latency = 0.3
    at = app_env.app(TREE, pid)
    at.button(key="tree_first_go").click().run()
    deadline = time.time() + 15
    while time.time() < deadline:  # wait until the first level is in, the build still running
        with app_env.store() as store:
            if store.tree(pid).kids(store.tree(pid).root.id):
                break
        time.sleep(0.1)
    at.run()
    assert "The chart follows the running job." in texts(at)
    first = len(figure(at)["ids"])
    app_env.last_job(pid)
    at.run()
    assert "The chart follows the running job." not in texts(at) and len(figure(at)["ids"]) >= first


def test_a_failed_re_proposal_says_why_and_changes_nothing(app_env):
    pid = app_env.built(reasks=0)
    with app_env.store() as store:
        topic_c = node_by_value(store, pid, "topic C")
        before = [(n.id, n.value, n.dimension) for n in store.tree(pid).subtree(topic_c.id)]
    at = select(app_env.app(TREE, pid), topic_c.id)
    app_env.fail_calls_mentioning("topic C")
    at.button(key="tree_repropose").click().run()
    job = app_env.last_job(pid)
    assert job["kind"] == "propose"
    at.run()
    problem = " ".join(errors(at))
    assert "Re-propose (job #" in problem and "failed" in problem
    assert not [s for s in at.selectbox if s.key == "tree_proposal_pick"]
    with app_env.store() as store:
        assert [(n.id, n.value, n.dimension) for n in store.tree(pid).subtree(topic_c.id)] == before


def test_undo_and_redo_wait_while_a_job_changes_the_tree(app_env):
    """A running job writes under what an undo would restore: the buttons are disabled and say why."""
    from treesynth_core import jobs

    pid = app_env.built()
    app_env.fake.latency = 0.3
    with app_env.store() as store:
        leaf = next(n for n in store.tree(pid).leaves())
    job_id = jobs.start_job(app_env.db, pid, "generate", {"per_leaf": 40, "samples_per_call": 1, "concurrency": 1,
                                                          "leaf_ids": [leaf.id]}, app_env.fake.endpoint())
    try:
        at = app_env.app(TREE, pid)
        assert at.button(key="tree_undo").disabled and at.button(key="tree_redo").disabled
        assert "Wait for the running job" in at.button(key="tree_undo").help
    finally:
        with app_env.store() as store:
            jobs.request_cancel(store, job_id)
        jobs.wait(app_env.db, job_id, timeout=30)
    at = app_env.app(TREE, pid)
    assert not at.button(key="tree_undo").disabled


# ----------------------------------------------------------------------------- stranded samples (issue 8, part 7)


def leaf_with_samples(app_env, n=4):
    pid = app_env.built()
    with app_env.store() as store:
        leaf = node_by_value(store, pid, "difficulty A", "topic A")
        add_samples(store, pid, leaf.id, n, tag="strand")
    return pid, leaf


def strand_question(at) -> list[str]:
    return [w.value for w in at.warning if "After the split they would sit on an inner node" in w.value]


def test_expanding_a_leaf_with_samples_asks_first_then_routes_them_after_the_build(app_env):
    pid, leaf = leaf_with_samples(app_env)
    at = select(app_env.app(TREE, pid), leaf.id)
    at.button(key="tree_expand_node").click().run()
    assert strand_question(at) and "**4 sample(s)**" in strand_question(at)[0]
    with app_env.store() as store:
        assert app_env.last_job(pid)["kind"] == "build" and not store.tree(pid).kids(leaf.id)  # nothing ran yet
    at.button(key="tree_strand_expand_route").click().run()
    build = app_env.last_job(pid)
    assert build["kind"] == "build" and build["params"] == {"depth": 3, "under": leaf.id}
    assert build["status"] == "complete", build
    at.run()  # the page sees the build ended and starts the route job
    route = app_env.last_job(pid)
    assert route["kind"] == "route" and route["params"]["start_node_id"] == leaf.id, route
    assert route["status"] == "complete", route
    with app_env.store() as store:
        kids = {k.id for k in store.tree(pid).kids(leaf.id)}
        assert len(kids) == 3 and not edits.stranded(store, pid)
        assert sum(len(store.sample_ids_on(k)) for k in kids) == 4  # every sample went to a new child
    at.run()
    assert not errors(at) and not [w for w in at.warning if "stranded sample(s)" in w.value]


def test_leave_flagged_then_the_node_offers_move_and_undo_brings_them_back(app_env):
    pid, leaf = leaf_with_samples(app_env, 3)
    at = select(app_env.app(TREE, pid), leaf.id)
    at.button(key="tree_expand_node").click().run()
    at.button(key="tree_strand_expand_leave").click().run()
    assert app_env.last_job(pid)["status"] == "complete"
    at.run()
    assert app_env.last_job(pid)["kind"] == "build"  # no route job: the curator left them flagged
    shown = [w.value for w in at.warning if "stranded sample(s)" in w.value]
    assert shown and "**3 stranded sample(s)**" in shown[0]
    assert any("hold stranded samples" in w.value for w in at.warning)  # the attention list names it
    fig = figure(at)
    marked = [h for nid, h in zip(fig["ids"], fig["hovertext"]) if "stranded" in h]
    assert len(marked) == 1 and "! 3 stranded samples" in marked[0]  # the chart's hover too, on that node only
    assert fig["ids"][fig["hovertext"].index(marked[0])] == leaf.id
    assert any("3 stranded samples" in o for o in at.selectbox(key="tree_attention").options)
    assert "Routing plan: 3 sample(s)" in texts(at)
    at.button(key="tree_stranded_leave").click().run()
    assert not [w for w in at.warning if "**3 stranded" in w.value]
    assert "3 stranded sample(s) on this node, left flagged" in texts(at)
    at.button(key="tree_stranded_show").click().run()
    with app_env.store() as store:
        target = store.tree(pid).kids(leaf.id)[1]
    at.selectbox(key=f"tree_stranded_to_{leaf.id}").set_value(target.id)
    at.button(key="FormSubmitter:tree_stranded_move_form-Move all 3").click().run()
    assert not errors(at)
    with app_env.store() as store:
        assert len(store.sample_ids_on(target.id)) == 3 and not edits.stranded(store, pid)
        edits.undo(store, pid)
        assert edits.stranded(store, pid) == {leaf.id: 3}


def test_route_stranded_samples_from_the_node_panel(app_env):
    pid, leaf = leaf_with_samples(app_env, 5)
    app_env.run_job(pid, "build", {"depth": 3, "under": leaf.id})  # expanded outside the page: stranded
    at = select(app_env.app(TREE, pid), leaf.id)
    assert any("5 stranded samples" in o for o in at.selectbox(key="tree_attention").options)
    at.button(key="tree_stranded_route").click().run()
    route = app_env.last_job(pid)
    assert route["kind"] == "route" and route["status"] == "complete", route
    with app_env.store() as store:
        assert not edits.stranded(store, pid)
    at.run()
    assert not [w for w in at.warning if "stranded sample(s)" in w.value]
    assert "Last" in texts(at) and "route" in texts(at).lower()


def test_hand_split_of_a_leaf_with_samples_asks_and_routes(app_env):
    pid, leaf = leaf_with_samples(app_env, 2)
    at = select(app_env.app(TREE, pid), leaf.id)
    at.text_input(key="tree_hand_dim").input("length")
    at.text_area(key="tree_hand_values").input("short\nlong")
    at.button(key="FormSubmitter:tree_hand_form-Set split").click().run()
    assert strand_question(at) and "**2 sample(s)**" in strand_question(at)[0]
    with app_env.store() as store:
        assert not store.tree(pid).kids(leaf.id)
    at.button(key="tree_strand_tree_hand_route").click().run()
    route = app_env.last_job(pid)
    assert route["kind"] == "route" and route["status"] == "complete", route
    with app_env.store() as store:
        assert [k.value for k in store.tree(pid).kids(leaf.id)] == ["short", "long"]
        assert not edits.stranded(store, pid)


def test_applying_a_proposal_on_a_leaf_with_samples_asks_and_can_leave_them_flagged(app_env):
    pid, leaf = leaf_with_samples(app_env, 3)
    at = select(app_env.app(TREE, pid), leaf.id)
    at = repropose(at, app_env, pid)
    at.button(key="tree_replace").click().run()
    assert strand_question(at) and "**3 sample(s)**" in strand_question(at)[0]
    with app_env.store() as store:
        assert not store.tree(pid).kids(leaf.id)  # nothing applied before the answer
    at.button(key="tree_strand_replace_leave").click().run()
    assert not errors(at)
    with app_env.store() as store:
        assert len(store.tree(pid).kids(leaf.id)) == 3
        assert edits.stranded(store, pid) == {leaf.id: 3}  # left flagged: no route job
    assert app_env.last_job(pid)["kind"] == "propose"
    assert [w for w in at.warning if "**3 stranded sample(s)**" in w.value]
