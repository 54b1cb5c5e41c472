"""Home: the LLM endpoint, the projects (create, open, delete, settings) and the open project's totals."""

from __future__ import annotations

import pandas as pd
import streamlit as st
from pydantic import ValidationError

import treesynth_ui as ui
from treesynth_ui_seeds import seeds_panel
from treesynth_core import edits
from treesynth_core.config import mask_secret
from treesynth_core.errors import TreeSynthError
from treesynth_core.llm import LLM
from treesynth_core.spec import OutputField, ProjectSpec, Settings, local_settings

ui.page("Home", "🌳")
DEFAULT_FIELDS = pd.DataFrame([
    {"name": "question", "description": "the problem, self-contained", "role": "input"},
    {"name": "answer", "description": "the worked solution ending with the final answer", "role": "output"},
])


def ping(ep) -> dict:
    """Whether the endpoint answers, checked once per session (and on "Check again"), not on every rerun."""
    sig = (ep.base_url, ep.model, ep.masked_key())
    if st.session_state.get("home_ping", {}).get("sig") != sig or st.session_state.pop("home_recheck", False):
        try:
            models = LLM(ep).ping()
            st.session_state["home_ping"] = {"sig": sig, "ok": True, "detail": f"{len(models)} model(s) served"}
        except TreeSynthError as exc:
            st.session_state["home_ping"] = {"sig": sig, "ok": False, "detail": exc.message, "hint": exc.hint}
    return st.session_state["home_ping"]


def endpoint_panel() -> None:
    ep = ui.endpoint()
    st.header("LLM endpoint")
    state = ping(ep)
    c1, c2, c3, c4 = st.columns([3, 2, 2, 1])
    c1.markdown(f"**Base URL**  \n{ui.md_escape(ep.shown_url())}")
    c2.markdown(f"**Model**  \n{ui.md_escape(ep.model)}")
    c3.markdown(f"**API key**  \n`{mask_secret(ep.api_key)}`")
    if c4.button("Check again", key="home_recheck_btn"):
        st.session_state["home_recheck"] = True
        st.rerun()
    if ep.is_local:
        st.info("Provider: **local**, the bundled offline model (Qwen2.5-Coder 0.5B on llama.cpp). It proves the "
                "pipeline end to end but writes weak content. To use a remote model, start the app with "
                "`OPENAI_BASE_URL` (any OpenAI-compatible server) and/or `OPENAI_API_KEY` set.")
    else:
        st.caption("Provider: remote (OpenAI-compatible). Configure it with OPENAI_BASE_URL, OPENAI_API_KEY "
                   "(or OPENAI_API_KEY in .streamlit/secrets.toml) and TREESYNTH_MODEL.")
    if state["ok"]:
        st.success(f"Reachable: {ui.md_escape(state['detail'])}.")
    else:
        st.error(f"Not reachable: {ui.md_escape(state['detail'])}  \n**What to do:** "
                 f"{ui.md_escape(state.get('hint') or 'check the endpoint settings')}. To work offline instead, "
                 "unset OPENAI_BASE_URL and OPENAI_API_KEY and start the app with `make run`: it serves the bundled "
                 "local model.")


def project_table(store) -> list[dict]:
    """Each project with its node and sample counts (from the Store's own methods: pages hold no SQL)."""
    rows = []
    for p in store.projects():
        per_status: dict[str, int] = {}
        for per_node in store.sample_counts(p["id"]).values():
            for status, n in per_node.items():
                per_status[status] = per_status.get(status, 0) + n
        rows.append({"id": p["id"], "name": p["name"], "task": p["task"], "nodes": len(store.tree(p["id"])),
                     "samples": sum(per_status.values()), "accepted": per_status.get("accepted", 0),
                     "updated_at": p["updated_at"]})
    return rows


def projects_panel(store) -> None:
    st.header("Projects")
    rows = project_table(store)
    if not rows:
        st.info("No project yet. Create one below: describe the task and the fields of one sample.")
        return
    frame = pd.DataFrame(rows)
    frame["updated_at"] = frame["updated_at"].str.slice(0, 16).str.replace("T", " ")
    st.dataframe(frame, hide_index=True, width="stretch",
                 column_config={"id": st.column_config.NumberColumn("id", width="small"),
                                "task": st.column_config.TextColumn("task", width="large"),
                                "updated_at": "last change (UTC)"})
    names = {r["id"]: f"#{r['id']} {r['name']}" for r in rows}
    current = ui.current_project(store)
    ids = list(names)
    c1, c2, c3 = st.columns([3, 1, 1], vertical_alignment="bottom")
    choice = c1.selectbox("Project", ids, index=ids.index(current) if current in ids else 0,
                          format_func=names.get, key="home_choice")
    if c2.button("Open", type="primary", key="home_open", width="stretch"):
        ui.open_project(choice)
        ui.flash(f"Opened {names[choice]}.")
        st.rerun()
    if c3.button("Delete…", key="home_delete", width="stretch"):
        st.session_state["home_confirm_delete"] = choice
    doomed = st.session_state.get("home_confirm_delete")
    if doomed in names:
        held = edits.project_removal(store, doomed)
        st.warning(f"Delete **{ui.md_escape(names[doomed])}** with its **{held.text()}**? It moves to "
                   "*Recently deleted* below, from where you can restore it as it was.")
        d1, d2, _ = st.columns([1, 1, 4])
        if d1.button("Yes, delete it", type="primary", key="home_delete_yes"):
            edits.trash_project(store, doomed)
            if ui.current_project(store) is None:
                ui.open_project(None)
            st.session_state.pop("home_confirm_delete", None)
            ui.flash(f"Deleted {names[doomed]} ({held.text()}); restore it from Recently deleted.")
            st.rerun()
        if d2.button("Keep it", key="home_delete_no"):
            st.session_state.pop("home_confirm_delete", None)
            st.rerun()


def trash_panel(store) -> None:
    """Recently deleted projects: restore one as it was, or delete it for good (stating what that removes)."""
    gone = store.deleted_projects()
    if not gone:
        return
    with st.expander(f"Recently deleted · {len(gone)} project(s)"):
        for p in gone:
            label = f"#{p['id']} {p['name']}"
            held = edits.project_removal(store, p["id"])
            c1, c2, c3 = st.columns([4, 1, 1], vertical_alignment="center")
            when = p["deleted_at"][:16].replace("T", " ")
            c1.markdown(f"**{ui.md_escape(label)}** · {held.text()} · deleted {when} UTC")
            if c2.button("Restore", key=f"home_restore_{p['id']}", width="stretch"):
                edits.restore_project(store, p["id"])
                ui.flash(f"Restored {label}.")
                st.rerun()
            if c3.button("Delete forever…", key=f"home_purge_{p['id']}", width="stretch"):
                st.session_state["home_confirm_purge"] = p["id"]
            if st.session_state.get("home_confirm_purge") == p["id"]:
                st.warning(f"Remove **{ui.md_escape(label)}** and its **{held.text()}**, calls and history for good? "
                           "This cannot be undone.")
                y, n, _ = st.columns([1, 1, 4])
                if y.button("Yes, remove it", type="primary", key=f"home_purge_yes_{p['id']}"):
                    edits.purge_project(store, p["id"])
                    st.session_state.pop("home_confirm_purge", None)
                    ui.flash(f"Removed {label} for good.")
                    st.rerun()
                if n.button("Keep it", key=f"home_purge_no_{p['id']}"):
                    st.session_state.pop("home_confirm_purge", None)
                    st.rerun()


def totals_panel(store, pid: int) -> None:
    spec = store.project(pid)
    tree = store.tree(pid)
    by_status: dict[str, int] = {}
    for per_node in store.sample_counts(pid).values():
        for status, n in per_node.items():
            by_status[status] = by_status.get(status, 0) + n
    use = store.usage(pid)
    st.header(f"Open project: {ui.md_escape(spec.name)}")
    st.caption(f"Task: {ui.md_escape(spec.task)}")
    m = st.columns(7)
    pruned = sum(n.status == "pruned" for n in tree.nodes.values())
    m[0].metric("Nodes", len(tree) - pruned, help=f"Live nodes; {pruned} more are pruned (kept, excluded from building, "
                "generation and export)" if pruned else "Every node of the tree")
    m[1].metric("Leaves", len(tree.leaves()), help="Live leaves: where samples are generated")
    m[2].metric("Samples", sum(by_status.values()))
    m[3].metric("Generated", by_status.get("generated", 0), help="Generated and not reviewed yet")
    m[4].metric("Accepted", by_status.get("accepted", 0))
    m[5].metric("Rejected", by_status.get("rejected", 0))
    m[6].metric("LLM calls", use["calls"], help=f"{use['failed_calls']} failed")
    priced = spec.settings.price_input_per_m is not None and spec.settings.price_output_per_m is not None
    cost = ui.cost_text(use['prompt_tokens'], use['completion_tokens'], spec.settings) if priced else \
        "unknown price (set prices below, in Settings of this project)"  # this is Home: not "set prices on Home"
    st.markdown(f"**Tokens:** {use['prompt_tokens']:,} in / {use['completion_tokens']:,} out · **Cost so far:** "
                f"{cost}")
    if spec.settings.max_depth == 0:
        st.info("This project has no tree on purpose (depth 0): its samples come from the task alone. "
                "Next: open **Generate**.")
        st.page_link("pages/2_Generate.py", label="Go to Generate", icon=":material/bolt:")
    elif len(tree) == 1:
        st.info("Next: open **Tree** and let the LLM propose the tree (or set the first split by hand).")
        st.page_link("pages/1_Tree.py", label="Go to Tree", icon=":material/account_tree:")
    with st.expander("Settings of this project (quota, temperatures, prices…)"):
        # Widgets keyed by project: Streamlit keeps a widget's value across reruns by key, so a shared key would
        # show (and save) the previously opened project's settings.
        with st.form(f"home_settings_{pid}", enter_to_submit=False):
            values = ui.settings_inputs(f"home_set_{pid}", spec.settings)
            if st.form_submit_button("Save settings"):
                try:
                    spec.settings = Settings(**{**spec.settings.model_dump(), **values})
                    store.update_project(pid, spec)
                    ui.flash("Settings saved.")
                    st.rerun()
                except ValidationError as exc:
                    st.error(f"Invalid settings: {ui.md_escape(exc.errors()[0]['msg'])}")


def spec_from_form(name: str, task: str, fields: pd.DataFrame, constraints: str, settings: dict) -> ProjectSpec:
    rows = [r for r in fields.to_dict("records") if isinstance(r.get("name"), str) and r["name"].strip()]
    out = [OutputField(name=r["name"], description=r.get("description") or "",
                       role=r.get("role") if r.get("role") in ("input", "output") else "input") for r in rows]
    return ProjectSpec(name=name.strip(), task=task.strip(), fields=out, constraints=constraints,
                       settings=Settings(**settings))


def create_panel(store, expanded: bool) -> None:
    with st.expander("Create a project", expanded=expanded, icon=":material/add:"):
        with st.form("home_create", enter_to_submit=False):  # Enter in a field must not create it half-filled
            name = st.text_input("Name", key="home_new_name", placeholder="e.g. grade-school math")
            task = st.text_area("Task: what is one data sample?", key="home_new_task",
                                placeholder="e.g. GSM8K-style grade-school math word problems with worked solutions")
            st.markdown("**Fields of one sample** · *input* fields form the user message, *output* fields the "
                        "assistant reply in chat fine-tuning exports")
            fields = st.data_editor(
                DEFAULT_FIELDS, num_rows="dynamic", hide_index=True, key="home_new_fields", width="stretch",
                column_config={"name": st.column_config.TextColumn("name", required=True),
                               "description": st.column_config.TextColumn("description", width="large"),
                               "role": st.column_config.SelectboxColumn("role", options=["input", "output"],
                                                                        required=True)})
            constraints = st.text_area("Constraints every sample must respect (optional)", key="home_new_cons")
            local = ui.endpoint().is_local
            st.markdown("**Settings** · they can be changed later" + (
                " · smaller defaults for the bundled CPU model" if local else ""))
            settings = ui.settings_inputs("home_new", local_settings() if local else Settings())
            if st.form_submit_button("Create project", type="primary"):
                try:
                    spec = spec_from_form(name, task, fields, constraints, settings)
                except ValidationError as exc:
                    err = exc.errors()[0]
                    where = ".".join(str(p) for p in err["loc"])
                    st.error(f"Cannot create the project: {ui.md_escape(where)}: {ui.md_escape(err['msg'])}")
                    return
                pid = store.create_project(spec)
                ui.open_project(pid)
                ui.flash(f"Created and opened project #{pid} {spec.name}. Next: build its tree on the Tree page.")
                st.rerun()


with ui.open_store() as store:
    ui.sidebar(store)
    st.title("TreeSynth Studio")
    st.caption("Let the LLM propose a tree of the data space, review and fix it, then pay only for generating "
               "what you approved: **Home** → **Tree** → **Generate** → **Samples** → **Export**.")
    ui.show_flash()
    if not ping(ui.endpoint())["ok"]:
        st.warning("The LLM endpoint is not reachable: see **LLM endpoint** at the bottom of this page.")
    with ui.guard():
        projects_panel(store)
        trash_panel(store)
        pid = ui.current_project(store)
        if pid is not None:
            st.divider()
            totals_panel(store, pid)
            seeds_panel(store, pid)  # seed examples (issue 11)
        st.divider()
        create_panel(store, expanded=not store.projects())
    st.divider()
    endpoint_panel()
