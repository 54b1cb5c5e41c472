"""The Home page's seed examples box (issue 11 part 5): a few example samples per node or for the whole task,
written by hand or imported from a JSONL file, shown in pivot and leaf prompts as style examples. Streamlit only
here; the rules (fields, sizes, all or nothing) live in ``treesynth_core.seeds``."""

from __future__ import annotations

import pandas as pd
import streamlit as st

import treesynth_ui as ui
from treesynth_core import seeds
from treesynth_core.errors import TreeSynthError

WHOLE_TASK = ""  # the scope choice for task-wide seeds (a node id otherwise)
CLEAR_KEY = "home_seeds_clear_form"  # set once an example is added: the next run empties the form
MAX_SCOPES = 3000  # nodes offered in the scope box (a bigger tree lists its first ones, in tree order)


def seeds_panel(store, pid: int) -> None:
    spec = store.project(pid)
    tree = store.tree(pid)
    held = seeds.list_seeds(store, pid)
    with st.expander(f"Seed examples ({len(held)})", icon=":material/format_quote:"):
        st.caption(f"A few example samples that pivot and leaf prompts show as **style examples** (their format, "
                   f"length and tone; the model is told not to copy their content). A node's prompts show its "
                   f"own examples first, then its ancestors', then the whole task's; at most "
                   f"{seeds.MAX_EXAMPLES} per prompt.")
        paths = {n.id: tree.path_text(n.id) or "(root)" for n in tree.subtree(tree.root.id)[:MAX_SCOPES]} \
            if tree.root else {}
        paths.update({s.node_id: tree.path_text(s.node_id) for s in held if s.node_id in tree.nodes})
        if held:
            frame = pd.DataFrame([{"id": s.id, "scope": paths.get(s.node_id, "?") if s.node_id else "whole task",
                                   **{f: s.data.get(f, "") for f in spec.field_names}, "from": s.source}
                                  for s in held])
            st.dataframe(frame, hide_index=True, width="stretch", key="home_seeds_table")
            c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
            doomed = c1.multiselect("Remove examples", [s.id for s in held], key="home_seeds_remove",
                                    format_func=lambda i: f"#{i}")
            if c2.button("Remove", key="home_seeds_remove_btn", disabled=not doomed, width="stretch"):
                with ui.guard():
                    n = seeds.delete_seeds(store, pid, doomed)
                    ui.flash(f"Removed {n} seed example(s).")
                    st.rerun()
        nodes = [n.id for n in tree.subtree(tree.root.id)] if tree.root else []
        scopes = [WHOLE_TASK] + nodes[:MAX_SCOPES]
        if len(nodes) > MAX_SCOPES:
            st.caption(f"The first {MAX_SCOPES:,} of {len(nodes):,} nodes are offered here; "
                       "`python -m treesynth_core seed add --node ID` reaches any node.")

        def scope_label(node_id: str) -> str:
            return "Whole task" if node_id == WHOLE_TASK else paths.get(node_id, node_id)

        scope = st.selectbox("For", scopes, format_func=scope_label, key="home_seeds_scope")
        node_id = scope or None
        if st.session_state.pop(CLEAR_KEY, False):  # the last example was added: start the next one empty
            for f in spec.fields:
                st.session_state.pop(f"home_seed_field_{f.name}", None)
        # not clear_on_submit: a refused example keeps what was typed; it is emptied only once it is added
        with st.form("home_seeds_add"):
            st.markdown("**Write an example**")
            values = {f.name: st.text_area(f"{f.name}" + (f" ({f.description})" if f.description else ""),
                                           key=f"home_seed_field_{f.name}") for f in spec.fields}
            if st.form_submit_button("Add the example"):
                try:
                    seeds.add_seeds(store, pid, [values], node_id=node_id)
                except TreeSynthError as exc:
                    ui.show_error(exc)
                else:
                    st.session_state[CLEAR_KEY] = True
                    ui.flash(f"Added a seed example ({scope_label(scope)}).")
                    st.rerun()
        upload = st.file_uploader("Or import examples from a JSONL file (one object with the fields a line)",
                                  type=["jsonl", "json"], key="home_seeds_upload")
        if st.button("Import the examples", key="home_seeds_import", disabled=upload is None):
            try:
                ids = seeds.import_seed_bytes(store, pid, upload.getvalue(), upload.name, node_id=node_id)
            except TreeSynthError as exc:
                ui.show_error(exc)
            else:
                ignored = seeds.ignored_fields(store, pid, [r for _, r in seeds.read_seed_file(upload.getvalue())])
                ui.flash(f"Imported {len(ids)} seed example(s) from {upload.name}."
                         + (f" Not kept (not fields of the project): {', '.join(ignored[:8])}"
                            + (f" and {len(ignored) - 8} more" if len(ignored) > 8 else "") + "." if ignored else ""))
                st.rerun()
