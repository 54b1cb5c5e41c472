"""Home page: endpoint status, create / open / delete projects, settings and totals."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tests.app_support import FAKE_KEY, app_env, errors, texts  # noqa: F401
from treesynth_core import edits
from treesynth_core.config import mask_secret
from treesynth_core.samples import fingerprint


def create(at, name="support dialogues", task="customer support conversations for a bank"):
    at.text_input(key="home_new_name").input(name)
    at.text_area(key="home_new_task").input(task)
    return at.button(key="FormSubmitter:home_create-Create project").click().run()


def test_home_title_endpoint_and_masked_key(app_env):
    at = app_env.app()
    assert not errors(at)
    assert at.title[0].value == "TreeSynth Studio"
    shown = texts(at)
    assert app_env.fake.base_url in shown and "fake-model" in shown
    assert mask_secret(FAKE_KEY) in shown and FAKE_KEY not in shown
    assert any("Reachable" in s.value for s in at.success)
    assert "No project yet" in shown


def test_create_project_opens_it_and_shows_totals(app_env):
    at = app_env.app()
    at.number_input(key="home_new_per_leaf").set_value(7)
    at.number_input(key="home_new_price_in").set_value(0.15)
    at.number_input(key="home_new_price_out").set_value(0.6)
    at = create(at)
    assert not errors(at)
    pid = at.session_state["ts_project_id"]
    with app_env.store() as store:
        spec = store.project(pid)
    assert spec.name == "support dialogues" and spec.settings.per_leaf == 7
    assert spec.settings.price_input_per_m == 0.15 and spec.settings.price_output_per_m == 0.6
    assert [(f.name, f.role) for f in spec.fields] == [("question", "input"), ("answer", "output")]
    shown = texts(at)
    assert "Open project: support dialogues" in shown
    assert "Nodes 1" in shown and "$0.0000" in shown  # a price is set: cost is known (zero so far)


def test_create_with_custom_fields_and_unknown_price(app_env):
    at = app_env.app()
    at.session_state["home_new_fields"] = {
        "edited_rows": {0: {"name": "dialogue", "description": "the conversation"}, 1: {"name": "intent"}},
        "added_rows": [{"name": "notes", "description": "hidden notes", "role": "input"}], "deleted_rows": []}
    at = create(at)
    with app_env.store() as store:
        spec = store.project(at.session_state["ts_project_id"])
    assert [f.name for f in spec.fields] == ["dialogue", "intent", "notes"]
    assert [f.role for f in spec.fields] == ["input", "output", "input"]
    assert spec.settings.price_input_per_m is None
    assert "unknown price (set prices below, in Settings of this project)" in texts(at)
    assert "set prices on Home" not in texts(at)  # this is Home: point below, not to itself


def test_create_rejects_a_bad_spec_and_writes_nothing(app_env):
    at = app_env.app()
    at = create(at, name="x", task="")
    assert any("task" in e for e in errors(at))
    with app_env.store() as store:
        assert store.projects() == []


def test_open_and_delete_with_confirmation(app_env):
    first, second = app_env.project(), app_env.project()
    at = app_env.app()
    at.selectbox(key="home_choice").set_value(second)
    at.button(key="home_open").click().run()
    assert at.session_state["ts_project_id"] == second
    at.button(key="home_delete").click().run()
    assert any("**1 node(s) and 0 sample(s)**" in w.value and "Recently deleted" in w.value for w in at.warning)
    with app_env.store() as store:
        assert len(store.projects()) == 2  # nothing deleted before the confirmation
    at.button(key="home_delete_yes").click().run()
    with app_env.store() as store:
        assert [p["id"] for p in store.projects()] == [first]
    assert at.session_state["ts_project_id"] == first  # the remaining project is opened
    assert not errors(at)


def test_a_deleted_project_is_restored_exactly_or_removed_for_good_after_its_counts(app_env):
    """Delete moves a project to Recently deleted with every row intact; Restore gives it back as it was; Delete
    forever states what goes, then removes it."""
    first, second = app_env.project(), app_env.project()
    with app_env.store() as store:
        root = store.tree(second).root
        rows = [{"data": {"question": q, "answer": "a"}, "drawn": [],
                 "norm_hash": fingerprint({"question": q}, ["question"])} for q in ("q1?", "q2?")]
        edits.add_samples(store, second, root.id, rows, cap=None, call_id=None)
        before = (store.tree(second).nodes.keys(), sorted(s["id"] for s in store.samples(second)))
    at = app_env.app()
    at.selectbox(key="home_choice").set_value(second)
    at.button(key="home_delete").click().run()
    at.button(key="home_delete_yes").click().run()
    assert any("Recently deleted" in e.label for e in at.expander)
    with app_env.store() as store:
        assert [p["id"] for p in store.projects()] == [first] and store.deleted_projects()[0]["id"] == second
    at.button(key=f"home_restore_{second}").click().run()
    with app_env.store() as store:
        assert [p["id"] for p in store.projects()] == [first, second]
        assert (store.tree(second).nodes.keys(), sorted(s["id"] for s in store.samples(second))) == before
    at.selectbox(key="home_choice").set_value(second)
    at.button(key="home_delete").click().run()
    at.button(key="home_delete_yes").click().run()
    at.button(key=f"home_purge_{second}").click().run()
    assert any("**1 node(s) and 2 sample(s)**" in w.value and "cannot be undone" in w.value for w in at.warning)
    with app_env.store() as store:
        assert store.deleted_projects()[0]["id"] == second  # nothing removed before the confirmation
    at.button(key=f"home_purge_yes_{second}").click().run()
    with app_env.store() as store:
        assert store.deleted_projects() == [] and [p["id"] for p in store.projects()] == [first]
    assert not errors(at)


def test_the_open_project_survives_a_reload_through_the_url(app_env):
    first, second = app_env.project(), app_env.project()
    at = app_env.app(run=False)
    at.query_params["project"] = str(first)
    at.run()
    assert at.session_state["ts_project_id"] == first
    links = at.sidebar.get("page_link")
    assert links[1].proto.query_string == f"project={first}"  # page links carry it to every page
    fresh = app_env.app()  # no session, no URL: the most recently changed project
    assert fresh.session_state["ts_project_id"] == second


def test_nodes_and_leaves_count_the_live_tree_and_say_how_many_are_pruned(app_env):
    from treesynth_core import edits

    pid = app_env.built()
    with app_env.store() as store:
        tree = store.tree(pid)
        topic = next(kid for kid in tree.kids(tree.root.id) if tree.kids(kid.id))
        edits.prune(store, topic.id)  # itself and its 3 children
    shown = texts(app_env.app(project_id=pid))
    assert "Nodes 9" in shown and "Leaves 6" in shown  # 13 nodes, 4 pruned; 9 leaves, 3 pruned
    at = app_env.app(project_id=pid)
    nodes = next(m for m in at.metric if m.label == "Nodes")
    assert "4 more are pruned" in nodes.proto.help


def test_totals_count_nodes_samples_and_tokens(app_env):
    pid = app_env.built(price_input_per_m=1.0, price_output_per_m=2.0)
    app_env.run_job(pid, "generate", {"per_leaf": 2})
    at = app_env.app(project_id=pid)
    shown = texts(at)
    assert "Nodes 13" in shown and "Leaves 9" in shown and "Samples 18" in shown
    with app_env.store() as store:
        use = store.usage(pid)
    assert f"{use['prompt_tokens']:,} in / {use['completion_tokens']:,} out" in shown
    cost = (use["prompt_tokens"] * 1.0 + use["completion_tokens"] * 2.0) / 1e6
    assert f"${cost:,.4f}" in shown


def test_settings_can_be_changed(app_env):
    pid = app_env.project()
    at = app_env.app(project_id=pid)
    at.number_input(key=f"home_set_{pid}_price_in").set_value(2.5)
    at.number_input(key=f"home_set_{pid}_max_depth").set_value(4)
    at.button(key=f"FormSubmitter:home_settings_{pid}-Save settings").click().run()
    with app_env.store() as store:
        s = store.project(pid).settings
    assert s.price_input_per_m == 2.5 and s.max_depth == 4 and s.price_output_per_m is None


def test_settings_shown_and_saved_are_the_open_projects_own(app_env):
    """Opening another project shows its settings, and saving writes them to it, never another's values."""
    first = app_env.project(per_leaf=7, price_input_per_m=3.0)
    second = app_env.project(per_leaf=12)
    at = app_env.app(project_id=first)
    assert at.number_input(key=f"home_set_{first}_per_leaf").value == 7
    at.session_state["ts_project_id"] = second  # the same session opens the other project
    at.run()
    assert at.number_input(key=f"home_set_{second}_per_leaf").value == 12
    assert at.number_input(key=f"home_set_{second}_price_in").value is None
    at.button(key=f"FormSubmitter:home_settings_{second}-Save settings").click().run()
    with app_env.store() as store:
        one, two = store.project(first).settings, store.project(second).settings
    assert (one.per_leaf, one.price_input_per_m) == (7, 3.0) and (two.per_leaf, two.price_input_per_m) == (12, None)


def test_a_project_without_a_tree_points_to_generate(app_env):
    pid = app_env.project(max_depth=0)
    shown = texts(app_env.app(project_id=pid))
    assert "no tree on purpose" in shown and "let the LLM propose the tree" not in shown


def test_unreachable_endpoint_says_what_to_do(app_env, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    at = app_env.app()
    assert "not reachable" in at.warning[0].value  # said at the top too
    problem = " ".join(e.value for e in at.error)
    assert "Not reachable" in problem and "could not connect" in problem
    assert "OPENAI\\_BASE\\_URL" in problem and "make run" in problem  # what to do


def test_local_provider_is_explained(app_env, monkeypatch):
    monkeypatch.setenv("TREESYNTH_PROVIDER", "local")
    at = app_env.app()
    note = " ".join(i.value for i in at.info)
    assert "bundled offline model" in note and "OPENAI_BASE_URL" in note and "OPENAI_API_KEY" in note


def test_api_key_falls_back_to_streamlit_secrets(app_env, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    at = app_env.app(run=False)
    at.secrets["OPENAI_API_KEY"] = "sk-from-secrets-9876"
    at.run()
    shown = texts(at)
    assert mask_secret("sk-from-secrets-9876") in shown and "sk-from-secrets-9876" not in shown


def test_every_page_without_a_project_points_home(app_env):
    for page in ("pages/1_Tree.py", "pages/2_Generate.py", "pages/3_Samples.py"):
        at = app_env.app(page)
        assert not errors(at), page
        assert any("No project is open" in i.value for i in at.info), page


def test_sidebar_links_name_each_page(app_env):
    at = app_env.app()
    labels = [link.label for link in at.sidebar.get("page_link")]
    assert labels[0].startswith("Home") and "app" not in [label.lower() for label in labels]
    pages = sorted(p.name for p in (Path(__file__).resolve().parent.parent / "pages").glob("*.py"))
    assert len(labels) == 1 + len(pages) == 7, (labels, pages)  # Home and every file in pages/


def test_projects_table_lists_projects(app_env):
    app_env.project()
    at = app_env.app()
    frame = at.dataframe[0].value
    assert isinstance(frame, pd.DataFrame) and list(frame["name"]) == ["math"]


HOSTILE_NAME = "**bold** [x](javascript:alert(1))"
MARKDOWN_KINDS = ("markdown", "caption", "title", "subheader", "header", "success", "info", "warning", "error")


def test_a_project_name_is_shown_literally_on_every_page(app_env):
    from treesynth_core.spec import ProjectSpec

    pid = app_env.built()
    with app_env.store() as store:
        spec = store.project(pid)
        store.update_project(pid, ProjectSpec(**{**spec.model_dump(), "name": HOSTILE_NAME}))
    for page in (None, "pages/1_Tree.py", "pages/2_Generate.py", "pages/3_Samples.py", "pages/4_Export.py"):
        at = app_env.app(page, pid)
        assert not errors(at), page
        rendered = [str(e.value) for kind in MARKDOWN_KINDS for e in getattr(at, kind)]
        rendered += [e.label for e in at.expander] + [b.label for b in at.button]
        assert not [r for r in rendered if "**bold**" in r or "[x](" in r], page  # never live Markdown
        assert HOSTILE_NAME in [t.value for t in at.sidebar.text], page  # the sidebar shows it as plain text
    at = app_env.app(project_id=pid)
    assert "Open project: \\*\\*bold\\*\\* \\[x\\](javascript:alert(1))" in [s.value for s in at.header]


def test_credentials_in_the_base_url_are_never_shown(app_env, monkeypatch):
    url = app_env.fake.base_url.replace("http://", "http://alice:s3cr3t-pass@")
    monkeypatch.setenv("OPENAI_BASE_URL", url)
    app_env.project()
    for page in (None, "pages/1_Tree.py", "pages/4_Export.py"):
        at = app_env.app(page)
        shown = texts(at) + " ".join(str(e.value) for e in at.sidebar.caption)
        assert "s3cr3t" not in shown and "alice" not in shown, page
    assert "\\*\\*\\*@127.0.0.1" in texts(app_env.app())


def test_number_inputs_use_the_limits_of_the_settings(app_env):
    from treesynth_ui import setting_range

    pid = app_env.built()
    at = app_env.app(project_id=pid)
    for key, name in [(f"home_set_{pid}_pivots", "pivots"), (f"home_set_{pid}_max_values", "max_values"),
                      (f"home_set_{pid}_max_depth", "max_depth"), (f"home_set_{pid}_per_leaf", "per_leaf"),
                      (f"home_set_{pid}_samples_per_call", "samples_per_call"), (f"home_set_{pid}_concurrency", "concurrency"),
                      (f"home_set_{pid}_t_generation", "generation_temperature")]:
        box = at.number_input(key=key)
        assert (box.min, box.max) == setting_range(name), key
    gen = app_env.app("pages/2_Generate.py", pid)
    for key, name in [("gen_per_leaf", "per_leaf"), ("gen_per_call", "samples_per_call"),
                      ("gen_conc", "concurrency")]:
        box = gen.number_input(key=key)
        assert (box.min, box.max) == setting_range(name), key
    tree = app_env.app("pages/1_Tree.py", pid)
    assert (tree.number_input(key="tree_all_depth").min, tree.number_input(key="tree_all_depth").max) == \
        (1, setting_range("max_depth")[1])  # a build adds at least one level


def test_a_setting_outside_the_limits_never_reaches_the_store(app_env):
    pid = app_env.project()
    at = app_env.app(project_id=pid)
    at.number_input(key=f"home_set_{pid}_per_leaf").set_value(0)
    at.button(key=f"FormSubmitter:home_settings_{pid}-Save settings").click().run()
    assert not at.exception
    with app_env.store() as store:
        assert store.project(pid).settings.per_leaf == 3  # unchanged


def test_a_hostile_project_in_the_url_is_ignored(app_env):
    pid = app_env.project()
    for raw in ("²", "9" * 5000, "-1", "1e3", "<script>"):
        at = app_env.app(run=False)
        at.query_params["project"] = raw
        at.run()
        assert not at.exception, raw
        assert at.session_state["ts_project_id"] == pid, raw


def test_the_avoid_list_is_a_project_setting_on_home(app_env):
    pid = app_env.project()
    at = app_env.app(project_id=pid)
    box = at.selectbox(key=f"home_set_{pid}_avoid_list")
    assert box.value == "auto" and set(box.options) == {"auto", "samples", "topics", "off"}
    box.set_value("off")
    at.button(key=f"FormSubmitter:home_settings_{pid}-Save settings").click().run()
    with app_env.store() as store:
        assert store.project(pid).settings.avoid_list == "off"
