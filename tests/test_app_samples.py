"""Samples page: filters, one-sample review and edit, bulk actions, coverage charts, text-only display."""

from __future__ import annotations

import json

import pytest

from tests.app_support import app_env, errors, texts  # noqa: F401
from treesynth_core import edits

SAMPLES = "pages/3_Samples.py"


@pytest.fixture
def generated(app_env):
    pid = app_env.built()
    job = app_env.run_job(pid, "generate", {"per_leaf": 2})
    assert job["status"] == "complete"
    return pid


def shown_ids(at) -> list[int]:
    return list(at.dataframe[0].value["id"])


def test_table_lists_samples_with_their_leaf(app_env, generated):
    at = app_env.app(SAMPLES, generated)
    assert not errors(at)
    frame = at.dataframe[0].value
    assert len(frame) == 18 and list(frame.columns) == ["id", "status", "question", "answer", "leaf"]
    assert frame["leaf"].str.contains("topic=topic A > difficulty=difficulty A").any()
    assert "18 sample(s) match" in texts(at) and set(frame["status"]) == {"to review"}


def test_filters_by_attribute_status_text_and_node(app_env, generated):
    at = app_env.app(SAMPLES, generated)
    at.multiselect(key="samples_attrs").select("topic = topic B").run()
    assert len(shown_ids(at)) == 6
    at.multiselect(key="samples_attrs").select("difficulty = difficulty C").run()
    assert len(shown_ids(at)) == 2
    at.multiselect(key="samples_attrs").set_value([]).run()
    with app_env.store() as store:
        first = store.samples(generated)[0]
        tree = store.tree(generated)
    at.text_input(key="samples_text").input(first["data"]["question"].upper()).run()
    assert shown_ids(at) == [first["id"]]
    at.text_input(key="samples_text").input("").run()
    at.selectbox(key="samples_under").set_value(tree.nodes[first["node_id"]].parent_id).run()
    assert len(shown_ids(at)) == 6
    at.multiselect(key="samples_status").set_value(["accepted"]).run()
    assert at.info and "No sample matches" in at.info[0].value


def test_accept_reject_and_edit_one(app_env, generated):
    at = app_env.app(SAMPLES, generated)
    at.session_state["samples_table"] = {"selection": {"rows": [1], "columns": []}}
    at.run()
    sample_id = shown_ids(at)[1]
    assert any(f"Sample #{sample_id}" in m.value for m in at.markdown)
    at.button(key="samples_one_accepted").click().run()
    at.text_area(key=f"samples_field_{sample_id}_answer").input("42, because 6 x 7 = 42")
    at.button(key=f"FormSubmitter:samples_edit_{sample_id}-Save edit").click().run()
    assert not errors(at)
    with app_env.store() as store:
        row = next(r for r in store.samples(generated) if r["id"] == sample_id)
    assert row["status"] == "accepted" and row["data"]["answer"] == "42, because 6 x 7 = 42"


def test_an_empty_field_is_refused(app_env, generated):
    at = app_env.app(SAMPLES, generated)
    sample_id = shown_ids(at)[0]
    at.text_area(key=f"samples_field_{sample_id}_question").input("  ")
    at.button(key=f"FormSubmitter:samples_edit_{sample_id}-Save edit").click().run()
    assert any("needs text" in e for e in errors(at))


def test_bulk_accept_the_current_filter(app_env, generated):
    at = app_env.app(SAMPLES, generated)
    at.multiselect(key="samples_attrs").select("topic = topic C").run()
    at.button(key="samples_bulk_accepted").click().run()
    with app_env.store() as store:
        accepted = store.samples(generated, statuses=["accepted"])
        tree = store.tree(generated)
    assert len(accepted) == 6 and {tree.path_text(r["node_id"]).split(" > ")[0] for r in accepted} == {"topic=topic C"}
    at.multiselect(key="samples_attrs").set_value([]).run()
    at.button(key="samples_bulk_rejected").click().run()
    with app_env.store() as store:
        statuses = [r["status"] for r in store.samples(generated)]
    assert statuses.count("rejected") == 18  # bulk acts on everything the filter shows
    assert any("18 sample(s) now rejected" in s.value for s in at.success)


def test_sample_text_is_never_rendered_as_markdown_or_html(app_env, generated):
    with app_env.store() as store, store.atomic():
        sid = store.samples(generated)[0]["id"]
        store.db["samples"].update(sid, {"data": json.dumps({"question": "**bold** <script>x()</script>",
                                                             "answer": "[link](http://example.invalid)"})})
    at = app_env.app(SAMPLES, generated)
    markdown = " ".join(m.value for m in at.markdown) + " ".join(c.value for c in at.caption)
    assert "**bold**" not in markdown and "<script>" not in markdown and "[link]" not in markdown
    assert at.text_area(key=f"samples_field_{sid}_question").value == "**bold** <script>x()</script>"
    assert not at.get("html")


def test_coverage_charts_show_every_leaf(app_env, generated):
    with app_env.store() as store:
        tree = store.tree(generated)
        leaf = tree.leaves()[0]
        edits.set_sample_status(store, [r["id"] for r in store.samples(generated, node_ids=[leaf.id])], "rejected")
    at = app_env.app(SAMPLES, generated)
    charts = at.get("plotly_chart")
    leaf_chart = json.loads(charts[0].proto.spec)["data"]
    assert len(leaf_chart[0]["y"]) == 9  # every leaf, the emptiest first
    live = [a + b for a, b in zip(leaf_chart[0]["x"], leaf_chart[1]["x"])]
    assert live[0] == 0 and live == sorted(live)
    top_chart = json.loads(charts[1].proto.spec)["data"]
    assert top_chart[0]["y"] == ["topic A", "topic B", "topic C"]
