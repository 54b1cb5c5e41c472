"""Bring your own data (issue 11): upload a dataset, map its columns, route its rows down the tree (a background
job), see the imbalance against a target on the sunburst and in a table (with the rows answered "none of these"
per split), then balance and export.

Row text is shown as text only (tables), never as Markdown or HTML.
"""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

import treesynth_ui as ui
from treesynth_core import importer
from treesynth_core.balance import METHODS, balance, imbalance_paint, leaf_targets, plan_balance
from treesynth_core.partition import MIN_DATA_PIVOTS
from treesynth_core.routing import ROWS_PER_CALL, ROWS_RANGE, plan_routing
from treesynth_core.sunburst import build_figure

ui.page("Bring your own data", "📥")
UPLOADS = ui.REPO / "data" / "uploads"  # an upload waits here for its import job (removed when it ends)
NONE_SHOWN = 200
PROBLEMS_SHOWN = 20


def import_section(store, pid: int, busy: bool) -> None:
    st.header("1. Import a dataset")
    spec = store.project(pid)
    upload = st.file_uploader("A CSV, JSONL or Parquet file", type=["csv", "tsv", "jsonl", "ndjson", "parquet"],
                              key="data_upload",
                              help="Each row becomes a sample (provenance 'imported') at the root of the tree; "
                                   "bad rows are skipped and listed with their line numbers. Uploads are capped "
                                   "by the app's upload limit: import bigger files with `import-data` on the "
                                   "command line (it streams any size)")
    if upload is not None:
        data = upload.getvalue()
        with ui.guard() as guarded:
            columns, preview = importer.peek_columns(data, upload.name)
        if guarded.failed:
            return
        st.caption(f"{upload.name}: {len(data):,} bytes; columns: {', '.join(columns) or 'none found'}")
        if preview:
            st.dataframe(pd.DataFrame(preview).astype(str), hide_index=True, width="stretch", height=180,
                         key="data_preview")
        mapping = {}
        cols = st.columns(max(1, len(spec.fields)))
        folded = {c.casefold(): c for c in columns}
        for col, f in zip(cols, spec.fields):
            default = folded.get(f.name.casefold())
            options = columns
            mapping[f.name] = col.selectbox(f"Field {f.name} comes from", options,
                                            index=options.index(default) if default in options else None,
                                            key=f"data_map_{pid}_{f.name}", placeholder="choose a column")
        missing = [name for name, column in mapping.items() if not column]
        if st.button("Import", type="primary", key="data_import", disabled=bool(missing) or not columns or busy,
                     help="Map every field to a column first" if missing else "Validates and imports every row, "
                                                                              "in the background"):
            with ui.guard():
                saved = importer.save_upload(data, upload.name, UPLOADS)
                if ui.start_job(pid, "import", {"path": str(saved), "name": upload.name, "mapping": mapping,
                                                "remove": True}):
                    st.rerun()
                saved.unlink(missing_ok=True)
    if not busy:
        ui.job_status(store, pid, "import", key="data_import_job")
    done = store.imports(pid)
    problems = json.loads(done[0]["problems"] or "[]") if done else []
    if problems:
        st.dataframe(pd.DataFrame({"skipped row": problems[:PROBLEMS_SHOWN]}), hide_index=True, width="stretch",
                     key="data_problems")
    if done:
        st.caption("Imports so far: " + "; ".join(
            f"{r['name']}: {r['imported']:,} imported, {r['duplicates']:,} duplicates, {r['skipped']:,} bad "
            f"({r['status']})"
            for r in done[:5]))


def build_panel(store, pid: int, busy: bool) -> None:
    """Build the tree from the data, one level at a time (issue 11 part 2): a node holding imported rows (the root
    after an import, a node rows were routed to) takes a seeded sample of them as its pivots, so the LLM writes no
    pivots there. Build a level, route the rows, build the next: each level's pivots are the rows routed to it."""
    tree = store.tree(pid)
    settings = store.project(pid).settings
    leaves = [n for n in tree.leaves() if not n.locked]
    level = max((n.depth for n in leaves), default=0) + 1
    if tree.root is None or level > settings.max_depth:
        return
    frontier = [n for n in leaves if n.depth == level - 1]
    holding = sum(len(store.imported_ids_on(n.id)) >= MIN_DATA_PIVOTS for n in frontier)
    with st.expander(f"Build level {level} of {settings.max_depth} from the data", expanded=level == 1):
        use = st.checkbox("Use the imported rows as pivots", value=settings.pivots_from_data,
                          key=f"data_pivots_from_data_{pid}",
                          help="A node holding at least 2 imported rows takes a seeded sample of them as its pivots "
                               "(one LLM call less per node); the others get pivots written by the LLM. Saved as "
                               "the project's setting (also for the Tree page's builds)")
        st.caption(f"{len(frontier):,} node(s) to split at level {level - 1}; {holding:,} of them hold imported rows"
                   + (" (route the rows first to bring them down to this level)" if level > 1 and not holding
                      else "") + ". Build a level, route the rows, then build the next.")
        if st.button(f"Build level {level}", key="data_build_level", disabled=busy or not frontier,
                     icon=":material/account_tree:", type="primary" if level == 1 else "secondary"):
            with ui.guard():
                if use != settings.pivots_from_data:
                    spec = store.project(pid)
                    spec.settings = spec.settings.model_copy(update={"pivots_from_data": use})
                    store.update_project(pid, spec)
                if ui.start_job(pid, "build", {"depth": level}):
                    st.rerun()


def route_section(store, pid: int, busy: bool) -> None:
    st.header("2. Route the rows down the tree")
    tree = store.tree(pid)
    if tree.root is None or not tree.kids(tree.root.id):
        st.info("The tree has no split yet: build it from the data here (level by level), or on the Tree page "
                "first, then route the rows.")
        st.page_link("pages/1_Tree.py", label="Go to the Tree page", icon=":material/account_tree:")
        build_panel(store, pid, busy)
        return
    build_panel(store, pid, busy)
    if busy:
        st.caption("A job is running (see the top of the page): routing can start when it has finished.")
        return
    ui.job_status(store, pid, "route", key="data_route")
    k = st.number_input("Rows per call", ROWS_RANGE[0], ROWS_RANGE[1], ROWS_PER_CALL, key="data_rows_per_call")
    plan = plan_routing(store, pid, rows_per_call=int(k))
    if not plan.rows:
        st.caption("No row is waiting at a split: every row is at a leaf or was answered \"none of these\".")
        return
    s = store.project(pid).settings
    st.write(f"{plan.rows:,} row(s) wait at a split: about {plan.calls:,} call(s) over {plan.levels} level(s), "
             f"{ui.cost_text(plan.prompt_tokens, plan.completion_tokens, s)}.")
    if st.button(f"Route {plan.rows:,} row(s)", type="primary", key="data_route_start", icon=":material/alt_route:"):
        if ui.start_job(pid, "route", {"rows_per_call": int(k)}):
            st.rerun()


def targets_input(store, pid: int) -> dict[str, int]:
    s = store.project(pid).settings
    target = ui.number_setting(st, "Target per leaf", "per_leaf", s.per_leaf, key=f"data_target_{pid}",
                               low=0, help="Every leaf is balanced to this many samples")
    return leaf_targets(store.tree(pid), int(target), None)


def imbalance_section(store, pid: int, targets: dict[str, int]) -> None:
    tree = store.tree(pid)
    counts = store.provenance_counts(pid)
    paths = {leaf: tree.path_text(leaf) for leaf in targets}
    others = any(counts.get(leaf, {}).get(k) for leaf in targets for k in ("generated", "excluded"))
    which = st.radio("Colour by", ["imported rows", "all samples (after balancing)"], horizontal=True,
                     key=f"data_colour_{int(others)}", index=1 if others else 0,  # a new widget once balanced
                     help="The colours and the table below count the same: imported rows only, or every live "
                          "sample (imported and generated). Generated or balanced leaves start on the second")
    imported_only = which == "imported rows"
    paint = imbalance_paint(store, pid, targets, imported_only=imported_only)
    figure = build_figure(tree, store.sample_counts(pid), color_by="imbalance", quality=paint, height=520)
    st.plotly_chart(figure, key="data_sunburst", width="stretch")
    st.caption("Blue: under target, pale yellow: at target, red: over (twice the target or more). "
               "Hover a sector for its counts. The table below counts the same "
               + ("imported rows only." if imported_only else "samples: imported and generated."))
    rows = []
    for leaf, t in targets.items():
        c = counts.get(leaf, {})
        live = c.get("imported", 0) + (0 if imported_only else c.get("generated", 0))  # as the colours count
        state = "over" if live > t else "under" if live < t else "at target"
        rows.append({"leaf": paths[leaf], "imported": c.get("imported", 0), "generated": c.get("generated", 0),
                     "excluded": c.get("excluded", 0), "target": t, "difference": live - t, "state": state})
    frame = pd.DataFrame(rows, columns=["leaf", "imported", "generated", "excluded", "target", "difference", "state"])
    frame = frame.sort_values("difference", key=abs, ascending=False)
    st.markdown(f"**Leaves over and under target** ({(frame['state'] == 'over').sum()} over, "
                f"{(frame['state'] == 'under').sum()} under)")
    st.dataframe(frame, hide_index=True, width="stretch", key="data_leaves", height=min(420, 38 + 35 * len(frame)))
    nones = {nid: c["none"] for nid, c in store.route_counts(pid).items() if c["none"] and nid in tree.nodes}
    if nones:
        st.markdown('**Rows answered "none of these"** (evidence that a split misses values)')
        splits = sorted(nones, key=lambda nid: -nones[nid])
        labels = {nid: f"{tree.path_text(nid)} · splits on {tree.nodes[nid].dimension}: {nones[nid]:,} row(s)"
                  for nid in splits}
        for nid in splits[:10]:
            if st.button(labels[nid], key=f"data_none_{nid}", icon=":material/help:"):
                st.session_state["data_none_open"] = nid
        shown = st.session_state.get("data_none_open")
        if shown in nones:
            rows = store.none_rows(pid, shown, limit=NONE_SHOWN)
            table = pd.DataFrame([{**{k: str(v) for k, v in r["data"].items()}, "answer": r["answer"],
                                   "sample id": r["sample_id"]} for r in rows])
            st.caption(f"The rows at {tree.path_text(shown)} (first {NONE_SHOWN}); add a value on the Tree page "
                       "and route again, or leave them out")
            st.dataframe(table, hide_index=True, width="stretch", key="data_none_rows")
            if st.button("Ask again for these rows", key="data_none_retry", icon=":material/replay:",
                         help="After you added a value to this split on the Tree page: the rows are routed again "
                              "from here"):
                if ui.start_job(pid, "route", {"start_node_id": shown, "retry_none": True}):
                    st.rerun()


def balance_section(store, pid: int, targets: dict[str, int], busy: bool) -> None:
    st.header("4. Balance")
    if busy:
        st.caption("A job is running (see the top of the page): balancing can start when it has finished.")
        return
    ui.job_status(store, pid, "balance", key="data_balance")
    c1, c2, c3 = st.columns(3)
    method = c1.selectbox("Over-full leaves keep", METHODS, key="data_method",
                          format_func={"random": "a seeded random draw", "diversity": "the most different ones"}.get)
    seed = c2.number_input("Seed", 0, 2**31, 0, key="data_seed", disabled=method != "random")
    top_up = c3.checkbox("Top up under-full leaves", True, key="data_top_up",
                         help="Generate what they miss; their imported rows are offered as style examples")
    plan = plan_balance(store, pid, targets=targets, method=method, seed=int(seed))
    st.write(ui.md_escape(plan.text()))
    todo = plan.drop or plan.restore or (plan.add and top_up)
    if not todo:
        st.success("Every leaf is at its target.")
    elif st.button("Balance", type="primary", key="data_balance_start", icon=":material/balance:"):
        if top_up and plan.add:
            if ui.start_job(pid, "balance", {"targets": targets, "method": method, "seed": int(seed)}):
                st.rerun()
        else:
            with ui.guard():
                report = balance(store, pid, None, targets=targets, method=method, seed=int(seed), top_up=False)
                ui.flash(report.summary())
                st.rerun()
    st.page_link("pages/4_Export.py", label="Export the balanced dataset", icon=":material/download:")
    st.caption("Excluded samples stay in the project (status 'excluded') and are in no export unless you choose "
               "'Excluded by balancing only'; the Samples page lists them (Status: excluded), and U restores one to "
               "generated.")


with ui.open_store() as store:
    pid = ui.frame(store, "Bring your own data")
    busy = ui.running_job(store, pid, "data_job") is not None  # one job at a time per project, shown here once
    import_section(store, pid, busy)
    route_section(store, pid, busy)
    tree = store.tree(pid)
    if tree.root is not None and tree.kids(tree.root.id):
        st.header("3. See the imbalance")
        with ui.guard() as guarded:
            targets = targets_input(store, pid)
        if not guarded.failed:
            imbalance_section(store, pid, targets)
            balance_section(store, pid, targets, busy)
