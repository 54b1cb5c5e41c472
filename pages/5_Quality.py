"""Quality: how diverse the samples are, where they repeat, which splits overlap, and the tree against a naive
baseline. Everything is computed on a click and kept for the session (treesynth_ui's quality section).

Sample text is shown as text only (st.text, tables): never as Markdown or HTML.
"""

from __future__ import annotations

import json

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import treesynth_ui as ui
from treesynth_core import baseline, quality
from treesynth_core.generate import plan_generation
from treesynth_core.sunburst import build_figure, path_texts
from treesynth_core.tree import Tree

ui.page("Quality", "📏")
STATUSES = ["generated", "accepted", "rejected"]
STATUS_WORDS = {"generated": "generated", "accepted": "accepted", "rejected": "rejected"}
MEAN_COSINE = "paper-style mean cosine (lower = more diverse)"
SPLITS_SHOWN = 10
PAIRS_PER_SPLIT = 5
SAMPLES_PAGE = "pages/3_Samples.py"
COMPARE_KEY = "quality_compare"  # {tree project id: the last comparison with its baseline}
GOTO_KEY = "samples_goto"  # read (and cleared) by the Samples page before it draws its filters
n_ = ui.quality_number


def controls() -> tuple[float, tuple[str, ...], bool]:
    c1, c2, c3 = st.columns([2, 2, 1])
    threshold = c1.slider("Near-duplicate threshold (cosine)", 0.50, 0.99, float(quality.DEFAULT_THRESHOLD), 0.01,
                          key="quality_threshold",
                          help="Two samples at or above this cosine count as near-duplicates")
    statuses = c2.multiselect("Samples measured", STATUSES, default=["generated", "accepted"],
                              key="quality_statuses", format_func=STATUS_WORDS.get)
    c3.write("")
    clicked = c3.button("Compute quality", type="primary", key="quality_compute", width="stretch",
                        disabled=not statuses, help="Embeds samples that have no vector yet (kept in the file), "
                                                    "then measures")
    return threshold, tuple(s for s in STATUSES if s in statuses), clicked


def overview(m) -> None:
    c = st.columns([2, 1, 1])
    c[0].metric(MEAN_COSINE, n_(m.mean_cosine), help="Mean cosine similarity over all pairs of samples (MiniLM "
                "embeddings). Like the TreeSynth paper's diversity score in spirit, not its exact metric.")
    c[1].metric("near-duplicate pairs", n_(m.near_dup_pairs))
    c[2].metric("near-duplicate clusters", n_(m.near_dup_clusters))
    c = st.columns([2, 1, 1])
    c[0].metric("distinct-2 (higher = more varied wording)", n_(m.distinct_2))
    c[1].metric("compression ratio", n_(m.compression_ratio, 2), help="zlib: higher = more repetitive")
    c[2].metric("samples measured", n_(m.n))
    c = st.columns([2, 1, 1])
    c[0].metric("coverage (share of leaves at quota)",
                "not enough data" if m.coverage is None else f"{m.coverage:.0%}")
    c[1].metric("leaves at quota", "not enough data" if m.leaves is None else
                f"{n_(m.leaves_at_quota)} of {n_(m.leaves)}")


def metric_rows(metrics: dict, tree: Tree, paths: dict) -> pd.DataFrame:
    """One row per node, worst (highest mean cosine) first; nodes without a figure last. Numbers are shown as
    text so a missing one reads "not enough data", never NaN."""
    items = sorted(metrics.items(), key=lambda kv: (kv[1].mean_cosine is None, -(kv[1].mean_cosine or 0.0)))
    rows = [{"path": paths.get(nid, "(deleted)"), "samples": m.n, "mean cosine": n_(m.mean_cosine),
             "near-dup pairs": n_(m.near_dup_pairs), "clusters": n_(m.near_dup_clusters),
             "distinct-2": n_(m.distinct_2), "compression": n_(m.compression_ratio, 2)}
            for nid, m in items if nid in tree.nodes]
    return pd.DataFrame(rows, columns=["path", "samples", "mean cosine", "near-dup pairs", "clusters",
                                       "distinct-2", "compression"])


def tables(report, tree: Tree, paths: dict) -> None:
    st.markdown("**Leaves, worst first** (highest mean cosine = least diverse)")
    leaves = metric_rows(report.by_leaf, tree, paths)
    st.dataframe(leaves, hide_index=True, width="stretch", height=table_height(len(leaves), 420),
                 key="quality_leaves")
    inner = metric_rows({nid: m for nid, m in report.by_node.items() if nid not in report.by_leaf}, tree, paths)
    st.markdown("**Subtrees, worst first**")
    st.dataframe(inner, hide_index=True, width="stretch", height=table_height(len(inner), 320),
                 key="quality_subtrees")


def table_height(rows: int, most: int) -> int:
    return min(most, 38 + 35 * max(rows, 1))


def sample_texts(store, pid: int, report, ids: set[int], fields: list[str]) -> dict[int, str]:
    leaves = sorted({report.leaf_of.get(i) for i in ids} - {None})
    rows = store.samples(pid, node_ids=leaves) if leaves else []
    found = {r["id"]: "\n".join(f"{k}: {r['data'].get(k, '')}" for k in fields) for r in rows if r["id"] in ids}
    return {**{i: report.snippets[i] for i in ids if i in report.snippets}, **found}


def show_pair(texts: dict[int, str], a: int, b: int, cosine: float) -> None:
    left, right = st.columns(2)
    for col, sid in ((left, a), (right, b)):
        col.caption(f"sample #{sid}")
        col.text(texts.get(sid, "(no longer in the project)"))
    st.caption(f"cosine {cosine:.3f}")


def counted(total: int, kept: int, noun: str) -> str:
    """"9,787 pairs (the 2,000 most similar kept)": a count and, when the report kept fewer, how many it kept."""
    return f"{total:,} {noun}" + (f" (the {kept:,} most similar kept)" if total > kept else "")


def worst_splits(store, pid: int, report, tree: Tree, paths: dict, fields: list[str]) -> None:
    splits = [s for s in report.splits if s.node_id in tree.nodes][:SPLITS_SHOWN]
    if not splits:
        st.info("No split has two siblings with samples yet: generate samples under a split to measure its overlap.")
        return
    st.caption("A split whose values are mutually exclusive has low centroid cosines between siblings, separation "
               "well below 1 and no near-duplicates across siblings. Worst first.")
    ids = {i for s in splits for a, b, _ in s.cross_pairs[:PAIRS_PER_SPLIT] for i in (a, b)}
    texts = sample_texts(store, pid, report, ids, fields)
    for index, s in enumerate(splits):
        title = (f"{paths.get(s.node_id, '')}  ·  {s.dimension}: {s.value_a} vs {s.value_b}  ·  centroid cosine "
                 f"{s.centroid_cosine:.3f}  ·  separation {n_(s.separation, 2)}  ·  "
                 f"{counted(s.cross_pair_count, len(s.cross_pairs), 'cross-sibling near-duplicate pair(s)')}")
        with st.expander(ui.md_escape(title), expanded=index == 0):
            if not s.cross_pairs:
                st.caption("No near-duplicate pair across these two siblings.")
            for a, b, cosine in s.cross_pairs[:PAIRS_PER_SPLIT]:
                show_pair(texts, a, b, cosine)
            if s.cross_pair_count > PAIRS_PER_SPLIT:
                st.caption(f"… and {s.cross_pair_count - PAIRS_PER_SPLIT:,} more on the Samples page")
            if st.button("See these samples on the Samples page", key=f"quality_goto_{index}",
                         icon=":material/fact_check:"):
                st.session_state[GOTO_KEY] = {"project": pid, "under": s.node_id, "near_dups": True}
                st.switch_page(SAMPLES_PAGE)


def painted(store, pid: int, report, tree: Tree) -> None:
    c1, c2 = st.columns([2, 1])
    mode = c1.segmented_control("Paint the tree by", ["diversity", "overlap"], default="diversity",
                                key="quality_paint", required=True)
    rings = c2.slider("Rings shown", 2, 6, 4, key="quality_rings")
    st.caption(ui.QUALITY_LEGEND[mode])
    fig = build_figure(tree, store.sample_counts(pid), color_by=mode, quality=report, maxdepth=rings,
                       per_leaf=store.project(pid).settings.per_leaf, height=560)
    st.plotly_chart(fig, key="quality_sunburst", config={"displaylogo": False})


# ----------------------------------------------------------------------------------------- baseline


def show_plan(plan) -> None:
    m = st.columns(4)
    m[0].metric("Samples to generate", n_(plan.missing))
    m[1].metric("LLM calls", n_(plan.calls))
    m[2].metric("Est. tokens in / out", f"{plan.prompt_tokens:,} / {plan.completion_tokens:,}")
    m[3].metric("Est. cost", "unknown" if plan.cost is None else f"${plan.cost:,.4f}",
                help=None if plan.cost is not None else "The price is unknown: set prices on Home to see a cost "
                                                        "(we never guess prices)")


def baseline_section(store, pid: int, threshold: float, statuses: tuple[str, ...]) -> None:
    source = baseline.source_of(store, pid)
    if source is not None:
        st.info(f"This project is the naive baseline of project #{source} "
                f"({ui.md_escape(store.project(source).name)}): open that one to compare the two.")
        return
    st.markdown("TreeSynth should make data more diverse than asking the same model for samples at a high "
                "temperature. The **naive baseline** is that: same model, task, fields and temperatures, no tree, "
                "every sample from the root prompt, the same number of samples, in a linked project of its own.")
    bid = baseline.baseline_of(store, pid)
    live = baseline.live_samples(store, pid)
    if bid is None:
        low, high = (int(x) for x in ui.setting_range("per_leaf"))
        samples = st.number_input("Samples in the baseline (default: as many as the tree has)", low, high,
                                  min(max(live, low), high), key="quality_base_samples")
        if st.button("Create the baseline and plan its cost", key="quality_base_create", icon=":material/add:",
                     help="Creates the linked project and shows what generating it would cost; nothing is "
                          "generated until you confirm"):
            with ui.guard():
                baseline.plan_baseline(store, pid, samples=int(samples))
                ui.flash("Baseline project created: check its cost plan, then confirm its generation.")
                st.rerun()
        return
    spec = store.project(bid)
    st.caption(f"Baseline: project #{bid} ({ui.md_escape(spec.name)}), {spec.settings.per_leaf:,} samples "
               f"wanted; the tree has {live:,} live sample(s).")
    job = ui.job_status(store, bid, "generate", key="quality_base_job")
    running = job is not None and job.get("status") == "running"
    if not running:
        if live and spec.settings.per_leaf != live and st.button(
                f"Match the tree's current size ({live:,} samples)", key="quality_base_resize"):
            with ui.guard():
                baseline.create_baseline(store, pid)
                st.rerun()
        plan = plan_generation(store, bid)
        if plan.missing:
            st.markdown("**Cost plan of the baseline's generation** (nothing is generated until you confirm)")
            show_plan(plan)
            if st.button(f"Generate {plan.missing:,} naive sample(s): I accept this cost", type="primary",
                         key="quality_base_start", icon=":material/bolt:"):
                if ui.start_job(bid, "generate", {}):
                    st.rerun()
    if store.sample_total(bid) == 0:
        st.info("The baseline has no samples yet.")
        return
    compare_section(store, pid, bid, threshold, statuses, running)


def compare_section(store, pid: int, bid: int, threshold: float, statuses: tuple[str, ...], running: bool) -> None:
    st.markdown("**TreeSynth against the naive baseline**")
    key = (pid, bid, threshold, statuses)
    cached = st.session_state.get(COMPARE_KEY, {}).get(pid)  # per tree project
    fresh = cached is not None and cached["key"] == key and cached["stamps"] == (store.export_stamp(pid),
                                                                                 store.export_stamp(bid))
    if st.button("Compare the two" if cached is None else "Compare again", key="quality_compare_go",
                 disabled=running, help="Embeds what is missing in both projects, then measures both"):
        with ui.guard():
            tree_entry = ui.last_quality(pid)
            if not (tree_entry and ui.quality_is_current(store, pid, tree_entry)
                    and tree_entry.threshold == threshold and tree_entry.statuses == statuses):
                tree_entry = ui.compute_quality(store, pid, threshold=threshold, statuses=statuses)
            base_entry = ui.compute_quality(store, bid, threshold=threshold, statuses=statuses)
            with st.spinner("Projecting both datasets to 2-D…"):
                points = quality.projection_2d(store, [pid, bid])
            st.session_state.setdefault(COMPARE_KEY, {})[pid] = cached = {
                "key": key, "stamps": (tree_entry.stamp, base_entry.stamp), "points": points,
                "table": quality.compare(tree_entry.report, base_entry.report)}
            fresh = True
    if cached is None:
        return
    if not fresh:
        st.caption("One of the projects changed since this comparison (or the threshold did): compare again.")
    st.dataframe(compare_table(cached["table"]), width="stretch", key="quality_compare_table")
    colour = st.segmented_control("Colour the map by", ["source", "top-level value"], default="source",
                                  key="quality_map_colour", required=True)
    st.caption("Both datasets' embeddings projected on their two main axes (PCA): close points are similar "
               "samples; a wider spread is more diverse. Hover a point to read it.")
    st.plotly_chart(projection_figure(cached["points"], pid, colour), key="quality_map",
                    config={"displaylogo": False})


def compare_table(frame: pd.DataFrame) -> pd.DataFrame:
    """quality.compare's frame as shown: readable metric names, numbers as text ("not enough data" for None), the
    difference in %."""
    shown = pd.DataFrame(index=pd.Index(list(frame["label"]), name="metric"))
    shown["TreeSynth (this project)"] = [n_(v) for v in frame["a"]]
    shown["naive baseline"] = [n_(v) for v in frame["b"]]
    shown["naive vs tree"] = ["not enough data" if v is None else f"{v:+.1%}" for v in frame["relative difference"]]
    shown["more diverse"] = list(frame["more diverse"])
    shown["meaning"] = list(frame["meaning"])
    return shown


SOURCE_COLOURS = {"TreeSynth": "#1f77b4", "naive baseline": "#ff7f0e"}
NAIVE_GROUP = "(no tree: naive)"


def projection_figure(points: pd.DataFrame, pid: int, colour: str) -> go.Figure:
    """The 2-D map: one trace per source (tree vs naive) or per top-level value (the naive samples grey);
    hover shows the text."""
    from plotly.colors import qualitative

    frame = points.copy()
    frame["source"] = ["TreeSynth" if p == pid else "naive baseline" for p in frame["project_id"]]
    frame["group"] = frame["source"] if colour == "source" else [
        v if isinstance(v, str) and v and v != quality.NO_TREE else NAIVE_GROUP for v in frame["top_value"]]
    palette = qualitative.Safe + qualitative.Vivid
    if colour == "source":
        colours = SOURCE_COLOURS
    else:
        values = sorted(g for g in frame["group"].unique() if g != NAIVE_GROUP)
        colours = {NAIVE_GROUP: "#adb5bd", **{v: palette[i % len(palette)] for i, v in enumerate(values)}}
    fig = go.Figure()
    for name, part in frame.groupby("group", sort=True):
        hover = [ui_text(t) for t in part["text"]]
        fig.add_trace(go.Scattergl(x=part["x"], y=part["y"], mode="markers", name=ui_text(str(name), 40),
                                   text=hover, hoverinfo="text",
                                   marker=dict(size=8, opacity=0.8, color=colours.get(name, "#495057"))))
    axis = dict(showticklabels=False, showgrid=False, zeroline=False, title=None)
    fig.update_layout(height=520, margin=dict(t=10, b=10, l=10, r=10), legend=dict(orientation="h"),
                      xaxis=axis, yaxis=axis)
    return fig


def ui_text(text: str, limit: int = 200) -> str:
    import html

    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return html.escape(text, quote=False)


# ------------------------------------------------------------------------------------------- page


with ui.open_store() as store:
    pid = ui.frame(store, "Quality: diversity, near-duplicates, overlap")
    spec, tree = store.project(pid), store.tree(pid)
    paths = path_texts(tree)
    threshold, statuses, clicked = controls()
    slot = st.empty()  # progress goes here, so the tabs below keep their place (and their open tab)
    if clicked:
        with slot.container(), ui.guard() as computing:
            ui.compute_quality(store, pid, threshold=threshold, statuses=statuses)
        if computing.failed is None:
            slot.empty()
    entry = ui.last_quality(pid)
    measured, paint, splits, base = st.tabs(["Dataset, leaves & subtrees", "Tree painted by quality",
                                             "Worst splits", "Naive baseline"], key="quality_tab",
                                            on_change="rerun")
    if entry is None:
        for tab in (measured, paint, splits):
            with tab:
                st.info("Nothing measured yet in this session: click **Compute quality**. Samples are embedded "
                        "offline (all-MiniLM-L6-v2), once each.")
    else:
        notes = []
        if not ui.quality_is_current(store, pid, entry):
            notes.append("the project changed since (samples added, reviewed or edited)")
        if entry.threshold != threshold or entry.statuses != statuses:
            notes.append(f"it was measured at threshold {entry.threshold:.2f} over "
                         f"{', '.join(STATUS_WORDS[s] for s in entry.statuses)}")
        with measured:
            st.caption(f"Measured at {entry.at} over {entry.report.dataset.n:,} sample(s)."
                       + (f" Note: {'; '.join(notes)}. Click Compute quality to update." if notes else ""))
            with ui.guard():
                overview(entry.report.dataset)
                st.download_button("Download the report (JSON)",
                                   json.dumps(entry.report.to_json(), ensure_ascii=False, indent=1),
                                   file_name=f"quality-project-{pid}.json", mime="application/json",
                                   key="quality_download", icon=":material/download:")
                tables(entry.report, tree, paths)
        with paint, ui.guard():
            painted(store, pid, entry.report, tree)
        with splits, ui.guard():
            worst_splits(store, pid, entry.report, tree, paths, spec.field_names)
    with base, ui.guard():
        baseline_section(store, pid, threshold, statuses)
