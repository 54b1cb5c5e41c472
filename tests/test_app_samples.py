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
    assert len(frame) == 18 and list(frame.columns) == ["▶", "id", "status", "judge", "question", "answer", "leaf",
                                                        "provenance", "reason", "note", "edited", "misfit because"]
    assert set(frame["provenance"]) == {"generated"}
    assert frame["leaf"].str.contains("topic=topic A > difficulty=difficulty A").any()
    # one vocabulary: the table, the filter and the export say what the database says
    assert "18 sample(s) match" in texts(at) and set(frame["status"]) == {"generated"}
    assert at.multiselect(key="samples_status").value == ["generated", "accepted"]
    assert at.multiselect(key="samples_status").options == ["generated", "accepted", "rejected", "excluded"]


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


def pick_row(at, row: int):
    """Click a table row, as the browser reports it (the table is a new widget after each key press)."""
    key = at.session_state["samples_table_key"] if "samples_table_key" in at.session_state else "samples_table"
    at.session_state[key] = {"selection": {"rows": [row], "columns": []}}
    return at.run()


def current_id(at) -> int | None:
    frame = at.dataframe[0].value
    marked = list(frame.loc[frame["▶"] == "▶", "id"])
    assert len(marked) <= 1
    return marked[0] if marked else None


def test_nothing_acts_before_a_sample_is_picked(app_env, generated):
    at = app_env.app(SAMPLES, generated)
    assert current_id(at) is None and "No sample selected" in texts(at)
    for key in ("samples_one_accepted", "samples_one_rejected", "samples_edit"):
        assert not [b for b in at.button if b.key == key], key  # no action on a sample nobody picked
    assert not any(m.value.startswith("**Sample #") for m in at.markdown)


def test_the_review_buttons_have_keyboard_shortcuts(app_env, generated):
    at = pick_row(app_env.app(SAMPLES, generated), 0)
    keys = {b.key: b.proto.shortcut for b in at.button if b.proto.shortcut}
    assert keys == {"samples_one_accepted": "a", "samples_one_rejected": "x", "samples_next": "j",
                    "samples_prev": "k", "samples_next_todo": "n", "samples_edit": "e", "samples_one_generated": "u"}
    assert at.button(key="samples_one_generated").disabled  # it is generated already; U once it is reviewed


def test_accept_and_reject_move_to_the_next_unreviewed_sample(app_env, generated):
    at = app_env.app(SAMPLES, generated)
    at.multiselect(key="samples_status").set_value(["generated", "accepted", "rejected"]).run()
    at = pick_row(at, 1)
    ids = shown_ids(at)
    assert current_id(at) == ids[1] and any(f"Sample #{ids[1]}" in m.value for m in at.markdown)
    at.button(key="samples_one_accepted").click().run()
    assert status_of(app_env, generated)[ids[1]] == "accepted" and current_id(at) == ids[2]
    at.selectbox(key="samples_reason").set_value("duplicate").run()
    at.button(key="samples_one_rejected").click().run()
    assert current_id(at) == ids[3]
    at.text_input(key="samples_reason_text").input("answer does not follow").run()
    at.button(key="samples_one_rejected").click().run()  # own words win over the list
    with app_env.store() as store:
        rows = {r["id"]: r for r in store.samples(generated)}
    assert (rows[ids[2]]["status"], rows[ids[2]]["reason"]) == ("rejected", "duplicate")
    assert (rows[ids[3]]["status"], rows[ids[3]]["reason"]) == ("rejected", "answer does not follow")
    assert current_id(at) == ids[4]
    # the stale table selection (row 1) does not pull the review back to it
    at.button(key="samples_next").click().run()
    assert current_id(at) == ids[5]
    at.button(key="samples_prev").click().run()
    at.button(key="samples_prev").click().run()
    assert current_id(at) == ids[3]
    at.button(key="samples_one_generated").click().run()  # back to generated: stays on it
    assert status_of(app_env, generated)[ids[3]] == "generated" and current_id(at) == ids[3]
    assert status_of(app_env, generated)[ids[0]] == "generated"  # nothing else changed
    at.multiselect(key="samples_status").set_value(["generated", "accepted"]).run()
    assert ids[2] not in shown_ids(at)  # a rejected sample leaves a list that shows no rejected ones


def test_next_unreviewed_wraps_round_and_says_when_all_are_reviewed(app_env, generated):
    with app_env.store() as store:
        ids = [r["id"] for r in store.samples(generated)]
        edits.set_sample_status(store, ids[:-1], "accepted")
    at = app_env.app(SAMPLES, generated)
    at.button(key="samples_next_todo").click().run()
    assert current_id(at) == ids[-1]
    at.button(key="samples_one_accepted").click().run()
    assert current_id(at) == ids[-1] and at.button(key="samples_next_todo").disabled
    assert "0 of 18 shown still generated" in texts(at)


def test_the_reject_reason_filter_and_the_note(app_env, generated):
    with app_env.store() as store:
        ids = [r["id"] for r in store.samples(generated)]
        edits.set_sample_status(store, ids[:2], "rejected", reason="off-topic for its leaf")
        edits.set_sample_status(store, ids[2:3], "rejected", reason="incorrect")
    at = app_env.app(SAMPLES, generated)
    at.multiselect(key="samples_status").set_value(["rejected"]).run()
    at.multiselect(key="samples_reasons").set_value(["off-topic for its leaf"]).run()
    assert shown_ids(at) == ids[:2] and list(at.dataframe[0].value["reason"]) == ["off-topic for its leaf"] * 2
    at = pick_row(at, 0)
    assert "Rejected because: off-topic for its leaf" in texts(at)
    at.text_input(key=f"samples_note_{ids[0]}").input("ask the author").run()
    with app_env.store() as store:
        assert next(r for r in store.samples(generated) if r["id"] == ids[0])["note"] == "ask the author"
    at.multiselect(key="samples_reasons").set_value([]).run()
    at.text_input(key="samples_text").input("ASK THE").run()  # the text search reads notes too
    assert shown_ids(at) == ids[:1] and list(at.dataframe[0].value["note"]) == ["ask the author"]


def test_edit_keeps_the_original_shows_the_diff_and_reverts(app_env, generated):
    at = pick_row(app_env.app(SAMPLES, generated), 1)
    sample_id = shown_ids(at)[1]
    with app_env.store() as store:
        before = next(r for r in store.samples(generated) if r["id"] == sample_id)["data"]
    assert any(t.value == before["answer"] for t in at.text)  # every field is shown, as text
    assert not at.text_area  # the editor opens on E
    at.button(key="samples_edit").click().run()
    at.text_area(key=f"samples_field_{sample_id}_answer").input("42, because 6 x 7 = 42")
    at.button(key=f"FormSubmitter:samples_edit_{sample_id}-Save edit").click().run()
    assert not errors(at)
    with app_env.store() as store:
        row = next(r for r in store.samples(generated) if r["id"] == sample_id)
    assert row["data"]["answer"] == "42, because 6 x 7 = 42" and row["edited"]
    assert list(at.dataframe[0].value["edited"])[1]
    diff = next(c.value for c in at.code if "+42, because 6 x 7 = 42" in c.value)
    assert f"-{before['answer'].splitlines()[0]}" in diff
    at.button(key="samples_revert").click().run()
    with app_env.store() as store:
        row = next(r for r in store.samples(generated) if r["id"] == sample_id)
    assert row["data"] == before and not row["edited"]


def test_an_empty_field_is_refused(app_env, generated):
    at = pick_row(app_env.app(SAMPLES, generated), 0)
    sample_id = shown_ids(at)[0]
    at.button(key="samples_edit").click().run()
    at.text_area(key=f"samples_field_{sample_id}_question").input("  ")
    at.button(key=f"FormSubmitter:samples_edit_{sample_id}-Save edit").click().run()
    assert any("needs text" in e for e in errors(at))


def test_bulk_accept_the_current_filter_and_reject_all_after_a_confirmation(app_env, generated):
    at = app_env.app(SAMPLES, generated)
    at.multiselect(key="samples_attrs").select("topic = topic C").run()
    at.button(key="samples_bulk_accepted").click().run()
    with app_env.store() as store:
        accepted = store.samples(generated, statuses=["accepted"])
        tree = store.tree(generated)
    assert len(accepted) == 6 and {tree.path_text(r["node_id"]).split(" > ")[0] for r in accepted} == {"topic=topic C"}
    at.multiselect(key="samples_attrs").set_value([]).run()
    before = status_of(app_env, generated)
    assert at.button(key="samples_bulk_reject").label == "Reject all 18 shown…"
    at.button(key="samples_bulk_reject").click().run()
    assert status_of(app_env, generated) == before  # nothing happens before the confirmation
    warning = at.warning[0].value
    assert warning.startswith("Reject 18 sample(s), every one shown:") and "history" in warning
    at.button(key="samples_bulk_no").click().run()
    assert status_of(app_env, generated) == before
    at.button(key="samples_bulk_reject").click().run()
    at.button(key="samples_bulk_yes").click().run()
    assert set(status_of(app_env, generated).values()) == {"rejected"}  # bulk acts on everything the filter shows
    assert any("18 sample(s) now rejected" in s.value for s in at.success)
    from treesynth_core import history
    with app_env.store() as store:
        history.undo(store, generated)  # one step puts every status back
    assert status_of(app_env, generated) == before


def test_sample_text_is_never_rendered_as_markdown_or_html(app_env, generated):
    with app_env.store() as store, store.atomic():
        sid = store.samples(generated)[0]["id"]
        store.db["samples"].update(sid, {"data": json.dumps({"question": "**bold** <script>x()</script>",
                                                             "answer": "[link](http://example.invalid)"})})
    at = pick_row(app_env.app(SAMPLES, generated), 0)
    markdown = " ".join(m.value for m in at.markdown) + " ".join(c.value for c in at.caption)
    assert "**bold**" not in markdown and "<script>" not in markdown and "[link]" not in markdown
    assert any(t.value == "**bold** <script>x()</script>" for t in at.text)
    at.button(key="samples_edit").click().run()
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


# ------------------------------------------------------------------------ near-duplicate review (issue 9)
from tests.test_app_quality import COPIES, VARIED, seed_varied  # noqa: E402


@pytest.fixture
def varied(app_env):
    return seed_varied(app_env)


def status_of(app_env, pid: int) -> dict[int, str]:
    with app_env.store() as store:
        return {r["id"]: r["status"] for r in store.samples(pid)}


def test_near_duplicates_found_on_demand_side_by_side(app_env, varied):
    pid, ids = varied
    at = app_env.app(SAMPLES, pid)
    at.toggle(key="samples_neardup").set_value(True).run()
    assert "No near-duplicates measured in this session yet" in texts(at) and len(at.dataframe) == 0
    at.button(key="samples_neardup_find").click().run(timeout=120)
    assert not errors(at)
    assert set(shown_ids(at)) == {ids[i] for pair in COPIES for i in pair}
    assert "3 near-duplicate pair(s)" in texts(at)
    pane = next(e for e in at.expander if e.label == "Near-duplicate pairs side by side")
    captions = [c.value for c in pane.caption]
    side_by_side = [t.value for t in pane.text]
    for a, b in COPIES:
        early, late = sorted((ids[a], ids[b]))
        assert any(c.startswith(f"#{early} · earlier") for c in captions)
        assert any(c.startswith(f"#{late} · later") for c in captions)
        assert any(VARIED[a] in t for t in side_by_side) and any(VARIED[b] in t for t in side_by_side)
    at.slider(key="samples_neardup_threshold").set_value(0.95).run()
    assert "2 near-duplicate pair(s)" in texts(at)  # a stricter threshold filters the report's pairs


def test_bulk_reject_rejects_exactly_the_later_of_each_pair_after_confirmation(app_env, varied):
    pid, ids = varied
    before = status_of(app_env, pid)
    at = app_env.app(SAMPLES, pid)
    at.toggle(key="samples_neardup").set_value(True).run()
    at.button(key="samples_neardup_find").click().run(timeout=120)
    later = sorted(max(ids[a], ids[b]) for a, b in COPIES)
    assert at.button(key="samples_neardup_reject").label.startswith("Reject the later of each pair (3 sample(s))")
    at.button(key="samples_neardup_reject").click().run()
    assert status_of(app_env, pid) == before  # nothing happens before the confirmation
    assert f"Reject 3 sample(s), the later of each pair: {', '.join(f'#{i}' for i in later)}" in at.warning[0].value
    at.button(key="samples_neardup_no").click().run()
    assert status_of(app_env, pid) == before and not at.warning
    at.button(key="samples_neardup_reject").click().run()
    at.button(key="samples_neardup_yes").click().run()
    assert not errors(at)
    after = status_of(app_env, pid)
    assert {i for i, s in after.items() if s == "rejected"} == set(later)
    assert all(after[i] == before[i] for i in after if i not in later)
    assert any("3 near-duplicate sample(s) rejected" in s.value for s in at.success)
    assert "No near-duplicate pair among the samples these filters show" in texts(at)


def test_the_near_duplicate_filter_combines_with_the_other_filters(app_env, varied):
    pid, ids = varied
    at = app_env.app(SAMPLES, pid)
    at.toggle(key="samples_neardup").set_value(True).run()
    at.button(key="samples_neardup_find").click().run(timeout=120)
    at.multiselect(key="samples_attrs").select("topic = topic A").run()
    assert set(shown_ids(at)) == {ids[i] for pair in COPIES[:2] for i in pair}  # the cross-topic pair is out
    at.button(key="samples_neardup_reject").click().run()
    at.button(key="samples_neardup_yes").click().run()
    rejected = {i for i, s in status_of(app_env, pid).items() if s == "rejected"}
    assert rejected == {max(ids[a], ids[b]) for a, b in COPIES[:2]}


# ------------------------------------------------------------------------ leaf-fit judge (issue 9)
from treesynth_core.fakellm import MISFIT_MARKER, Scripted, step_of  # noqa: E402


@pytest.fixture
def marked(app_env):
    """18 samples in 9 leaves; the fake judge will find the ones carrying its marker misfit."""
    pid = app_env.built()
    app_env.fake.misfit_every = 3
    assert app_env.run_job(pid, "generate", {"per_leaf": 2})["status"] == "complete"
    with app_env.store() as store:
        misfits = {s["id"] for s in store.samples(pid) if MISFIT_MARKER in s["data"]["question"]}
    assert 0 < len(misfits) < 18
    return pid, misfits


def judge_shown(at) -> None:
    at.button(key="samples_judge_run").click().run(timeout=60)


def test_judge_the_shown_leaves_fills_the_verdict_column(app_env, marked):
    pid, misfits = marked
    at = app_env.app(SAMPLES, pid)
    frame = at.dataframe[0].value
    assert set(frame["judge"]) == {"not judged"} and set(frame["misfit because"]) == {""}
    assert "18 live sample(s) of the 9 leaf/leaves shown have no verdict: 9 judge call(s)" in texts(at)
    assert at.button(key="samples_judge_run").label == "Judge the shown leaves (18 sample(s))"
    judge_shown(at)
    assert not errors(at)
    assert any(f"judged 18 sample(s) in 9 call(s): {len(misfits)} misfit(s)" in s.value for s in at.success)
    frame = at.dataframe[0].value
    words = dict(zip(frame["id"], frame["judge"]))
    assert {i for i, w in words.items() if w == "misfit"} == misfits and set(words.values()) == {"fits", "misfit"}
    why = dict(zip(frame["id"], frame["misfit because"]))
    assert all(why[i].startswith("difficulty = difficulty ") and MISFIT_MARKER in why[i] for i in misfits)
    assert at.button(key="samples_judge_run").disabled  # nothing left to judge
    with app_env.store() as store:
        assert {s["status"] for s in store.samples(pid)} == {"generated"}  # judging rejects nothing
        assert store.usage(pid)["calls"] == store.query("select count(*) as n from calls")[0]["n"]


def test_the_misfit_filter_and_bulk_reject_after_confirmation(app_env, marked):
    pid, misfits = marked
    at = app_env.app(SAMPLES, pid)
    judge_shown(at)
    at.toggle(key="samples_misfits").set_value(True).run()
    assert set(shown_ids(at)) == misfits
    before = status_of(app_env, pid)
    assert at.button(key="samples_misfit_reject").label == f"Reject the misfits shown ({len(misfits)} sample(s))…"
    at.button(key="samples_misfit_reject").click().run()
    assert status_of(app_env, pid) == before  # nothing happens before the confirmation
    assert f"Reject {len(misfits)} misfit sample(s): " + ", ".join(f"#{i}" for i in sorted(misfits)) \
        in at.warning[0].value
    at.button(key="samples_misfit_no").click().run()
    assert status_of(app_env, pid) == before and not at.warning
    at.button(key="samples_misfit_reject").click().run()
    at.button(key="samples_misfit_yes").click().run()
    assert not errors(at)
    after = status_of(app_env, pid)
    assert {i for i, s in after.items() if s == "rejected"} == misfits
    assert any(f"{len(misfits)} misfit sample(s) rejected" in s.value for s in at.success)
    assert "No misfit among the samples these filters show" in texts(at)


def test_the_misfit_filter_combines_with_the_attribute_filter(app_env, marked):
    pid, misfits = marked
    with app_env.store() as store:
        tree = store.tree(pid)
        topic_of = {s["id"]: tree.labelled_path(s["node_id"])[0][1] for s in store.samples(pid)}
    topic = topic_of[min(misfits)]
    in_topic = {i for i, t in topic_of.items() if t == topic}
    assert misfits - in_topic or len(in_topic & misfits) < len(in_topic)  # the filter leaves something out
    at = app_env.app(SAMPLES, pid)
    judge_shown(at)
    at.multiselect(key="samples_attrs").select(f"topic = {topic}").run()
    at.toggle(key="samples_misfits").set_value(True).run()
    assert set(shown_ids(at)) == misfits & in_topic
    at.button(key="samples_misfit_reject").click().run()
    at.button(key="samples_misfit_yes").click().run()
    assert {i for i, s in status_of(app_env, pid).items() if s == "rejected"} == misfits & in_topic


def test_judging_covers_only_the_leaves_shown_and_the_detail_says_why(app_env, marked):
    pid, misfits = marked
    with app_env.store() as store:
        sample = next(s for s in store.samples(pid) if s["id"] in misfits)
    at = app_env.app(SAMPLES, pid)
    at.selectbox(key="samples_under").set_value(sample["node_id"]).run()
    assert "2 live sample(s) of the 1 leaf/leaves shown have no verdict: 1 judge call(s)" in texts(at)
    judge_shown(at)
    with app_env.store() as store:
        assert set(store.verdicts(pid)) == {s["id"] for s in store.samples(pid, node_ids=[sample["node_id"]])}
    at.session_state["samples_table"] = {"selection": {"rows": [shown_ids(at).index(sample["id"])], "columns": []}}
    at.run()
    shown = " ".join(t.value for t in at.text)
    assert "misfit:\ndifficulty = difficulty " in shown and MISFIT_MARKER in shown
    assert any(c.value.startswith("Leaf-fit judge (call #") for c in at.caption)


def test_a_failing_judge_is_shown_with_what_to_do(app_env, marked):
    pid, _ = marked
    app_env.fake.fault_fn = lambda body: Scripted(status=500) if step_of(body) == "judge" else None
    at = app_env.app(SAMPLES, pid)
    judge_shown(at)
    assert any("judge failed repeatedly" in e for e in errors(at)), errors(at)
    assert any("judge again to continue" in e for e in errors(at))
    assert set(at.dataframe[0].value["judge"]) == {"not judged"}


def test_until_n_fit_runs_as_a_background_job_from_the_samples_page(app_env, marked):
    """The page plans 'until N fit' for the leaves shown, starts it as a judge job, and shows how it ended;
    afterwards every leaf has exactly N fitting live samples and the misfits are rejected."""
    from treesynth_core.judge import sample_verdicts

    pid, misfits = marked
    at = app_env.app(SAMPLES, pid)
    at.number_input(key="samples_until_n").set_value(3).run()
    assert "Hard budget" in texts(at)
    at.button(key="samples_until_run").click().run()
    assert not errors(at)
    job = app_env.wait(app_env.last_job(pid)["id"])
    assert job["kind"] == "judge" and job["status"] == "complete", job["message"]
    with app_env.store() as store:
        live = store.samples(pid, statuses=["generated", "accepted"])
        verdicts = sample_verdicts(store, pid, live)
        per_leaf: dict[str, int] = {}
        for sample in live:
            assert verdicts[sample["id"]].fits, sample
            per_leaf[sample["node_id"]] = per_leaf.get(sample["node_id"], 0) + 1
        rejected = {s["id"] for s in store.samples(pid, statuses=["rejected"])}
    assert set(per_leaf.values()) == {3} and len(per_leaf) == 9 and misfits <= rejected
    at.run()
    assert any("complete" in s.value for s in at.success)


# ------------------------------------------------------------------------ jobs you can watch (issue 8)
def test_the_samples_list_shows_a_running_job_with_its_progress(app_env, generated):
    import time

    from treesynth_core import jobs

    app_env.fake.latency = 0.3
    job_id = jobs.start_job(app_env.db, generated, "generate", {"per_leaf": 4, "samples_per_call": 1,
                                                                  "concurrency": 1}, app_env.fake.endpoint())
    try:
        time.sleep(0.6)
        at = app_env.app(SAMPLES, generated)
        assert not errors(at)
        bar = at.get("progress")
        assert bar and f"Generating samples (job #{job_id})" in bar[0].proto.text
        shown = texts(at)
        assert "running for " in shown and "tokens in" in shown and "they refresh when the job ends" in shown
        assert at.button(key=f"samples_job_cancel_{job_id}")
        assert at.button(key="samples_until_run").disabled  # one job at a time
    finally:
        with app_env.store() as store:
            jobs.request_cancel(store, job_id)
        app_env.wait(job_id)


def test_a_long_list_shows_a_table_window_that_follows_the_review(app_env, generated, monkeypatch):
    import treesynth_ui_review

    monkeypatch.setattr(treesynth_ui_review, "TABLE_ROWS", 5)
    at = app_env.app(SAMPLES, generated)
    with app_env.store() as store:
        ids = [r["id"] for r in store.samples(generated)]
    assert shown_ids(at) == ids[:5] and "table rows 1-5: it follows the sample you review" in texts(at)
    at = pick_row(at, 3)  # a click in the window picks that row's sample
    assert current_id(at) == ids[3]
    for _ in range(2):
        at.button(key="samples_one_accepted").click().run()
    assert current_id(at) == ids[5] and shown_ids(at) == ids[4:9]  # after a key press: on the second row
    at.button(key="samples_prev").click().run()
    assert current_id(at) == ids[4] and shown_ids(at) == ids[3:8]
    at = pick_row(at, 4)  # a click picks a row of the moved window, and the window stays put
    assert current_id(at) == ids[7] and shown_ids(at) == ids[3:8]
    at.run()
    assert current_id(at) == ids[7]  # the click is not taken again
    assert "16 of 18 shown still generated" in texts(at)
    at.button(key="samples_table_top").click().run()
    assert shown_ids(at) == ids[:5] and current_id(at) is None  # the current sample is below: still current
    assert any(m.value.startswith(f"**Sample #{ids[7]}**") for m in at.markdown)


def test_the_table_follows_key_presses_in_a_short_list_too(app_env, generated):
    at = app_env.app(SAMPLES, generated)
    ids = shown_ids(at)
    for _ in range(6):
        at.button(key="samples_next").click().run()
    assert current_id(at) == ids[5] and shown_ids(at)[:2] == ids[4:6]  # on the second row, in view
    assert shown_ids(at) == ids[4:]
    for _ in range(12):
        at.button(key="samples_next").click().run()
    assert current_id(at) == ids[-1] and shown_ids(at) == ids[-9:]  # a full table's height at the end


def test_excluded_and_imported_rows_filter_and_restore(app_env, generated):
    """Balancing's excluded rows are hidden by default, shown when filtered for, and U restores one to generated
    (one undoable event); the provenance column and filter tell imported rows from generated ones."""
    with app_env.store() as store:
        ids = [s["id"] for s in store.samples(generated)]
        with store.atomic():  # what an import and a balancing run leave (test_balance covers how they do it)
            store.update_samples(ids[:3], provenance="imported")
            store.update_samples(ids[1:3], status="excluded")
    at = app_env.app(SAMPLES, generated)
    assert not errors(at)
    assert ids[1] not in shown_ids(at) and len(shown_ids(at)) == 16  # the default statuses leave excluded out
    at.multiselect(key="samples_provenance").set_value(["imported"]).run()
    assert shown_ids(at) == [ids[0]] and list(at.dataframe[0].value["provenance"]) == ["imported"]
    at.multiselect(key="samples_status").set_value(["excluded"]).run()
    assert shown_ids(at) == [ids[1], ids[2]]
    at.multiselect(key="samples_provenance").set_value(["generated"]).run()
    assert at.info and "No sample matches" in at.info[0].value
    at.multiselect(key="samples_provenance").set_value([]).run()
    at = pick_row(at, 0)
    assert current_id(at) == ids[1] and "Set aside by balancing" in texts(at)
    at.button(key="samples_one_generated").click().run()
    assert not errors(at)
    with app_env.store() as store:
        rows = {s["id"]: s for s in store.samples(generated)}
        assert rows[ids[1]]["status"] == "generated" and rows[ids[2]]["status"] == "excluded"
        assert rows[ids[1]]["provenance"] == "imported"
        edits.undo(store, generated)
        assert store.samples(generated, statuses=["excluded"])[0]["id"] == ids[1]
