"""Export: samples as JSONL, CSV, Parquet, OpenAI chat, ShareGPT or Alpaca JSONL; push to the Hugging Face Hub with a
dataset card; the tree as JSON; import a tree file."""

from __future__ import annotations

import io
import json
import logging
import re

import pandas as pd
import streamlit as st

import treesynth_ui as ui
from treesynth_ui_share import hub_panel
from treesynth_core.errors import TreeSynthError
from treesynth_core.export import EXTENSIONS, FORMATS, PAIR_FORMATS, SMALL_EXPORT_ROWS, count_rows, write_export
from treesynth_core.treefile import export_tree, import_tree

ui.page("Export", "📦")
log = logging.getLogger(__name__)
# None: every status but excluded (export.ALL_BUT_EXCLUDED): rows balancing set aside are not dataset content and
# leave only when asked for by their own scope.
SCOPES = {"Accepted only": ["accepted"], "Accepted and not yet reviewed": ["accepted", "generated"],
          "All, including rejected": None, "Excluded by balancing only": ["excluded"]}
MIME = {"jsonl": "application/jsonl", "csv": "text/csv", "parquet": "application/vnd.apache.parquet",
        "chat": "application/jsonl", "sharegpt": "application/jsonl", "alpaca": "application/jsonl"}


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "project"


def samples_panel(store, pid: int, name: str) -> None:
    """The file is built once per choice and project state and kept in the session: reruns never rebuild it.
    The project's state is ``Store.export_stamp`` (three index lookups per run); what is counted for a stamp
    is kept too. A project of at most SMALL_EXPORT_ROWS samples is counted and prepared at once; a bigger
    one is built when the user asks, and never counted or read before."""
    tree = store.tree(pid)
    st.header("Samples")
    c1, c2 = st.columns(2)
    fmt = c1.selectbox("Format", list(FORMATS), format_func=FORMATS.get, key="export_format")
    which = c2.radio("Samples", list(SCOPES), key="export_statuses")
    whole = st.radio("From", ["Whole tree", "One subtree"], key="export_scope", horizontal=True)
    under = ui.node_picker(tree, "Subtree", "export_under") if whole == "One subtree" else None
    system = None
    if fmt in PAIR_FORMATS:
        system = st.text_area("System message (optional, added to every conversation)", key="export_system") or None
    statuses = SCOPES[which]
    stamp = store.export_stamp(pid)
    census = st.session_state.get("export_census")
    if census is None or census["key"] != (pid, stamp):
        total = store.sample_total(pid)
        counts = store.sample_counts(pid) if total <= SMALL_EXPORT_ROWS else None
        census = st.session_state["export_census"] = {"key": (pid, stamp), "total": total, "counts": counts}
    key = (pid, fmt, tuple(statuses or ()), under, system, stamp)
    prepared = st.session_state.get("export_prepared")
    if prepared is not None and prepared["key"] != key:
        prepared = st.session_state["export_prepared"] = None  # other choices, or the project changed
    file_name = f"{slug(name)}.{EXTENSIONS[fmt]}"
    if prepared is None and census["counts"] is None:
        st.caption(f"{census['total']:,} samples in the project; the file holds those these choices select "
                   "· pruned subtrees are never exported")
        st.info(f"A file from {census['total']:,} samples takes a while to build and is held in memory for the "
                "download. The command line streams big exports straight to a file:", icon=":material/info:")
        st.code(f"python -m treesynth_core export --db {ui.db_path()} --project {pid} --format {fmt} "
                f"--out {file_name}" + (" --status " + ",".join(statuses) if statuses else "") +
                (f" --under {under}" if under else ""), language="bash", wrap_lines=True)
        if not st.button("Prepare download", key="export_prepare", type="primary", icon=":material/build:"):
            return
    if prepared is None:
        count = None if census["counts"] is None else count_rows(store, pid, statuses=statuses, under=under,
                                                                  counts=census["counts"])
        if count == 0:
            prepared = {"key": key, "data": b"", "count": 0}
        else:
            buffer = io.BytesIO()
            with st.spinner(f"Building the {FORMATS[fmt]} file..."):
                rows = write_export(store, pid, fmt, buffer, statuses=statuses, under=under, system=system)
            prepared = {"key": key, "data": buffer.getvalue(), "count": rows}
            del buffer
        st.session_state["export_prepared"] = prepared
    data = prepared["data"]
    if not prepared["count"]:
        st.caption("0 sample(s) · pruned subtrees are never exported")
        st.info("Nothing to export with these choices: accept samples on the Samples page, or widen the choice.")
        st.download_button(f"Download {FORMATS[fmt]}", b"", file_name=file_name, mime=MIME[fmt], type="primary",
                           disabled=True, key="export_download", icon=":material/download:")
        return
    st.caption(f"{prepared['count']:,} sample(s) · {len(data):,} bytes · pruned subtrees are never exported")
    st.download_button(f"Download {FORMATS[fmt]}", data, file_name=file_name, mime=MIME[fmt], type="primary",
                       key="export_download", icon=":material/download:")
    st.caption("Preview (first 3)")
    preview(data, fmt)


def preview(data: bytes, fmt: str) -> None:
    """The first rows of the prepared file, read from the file (no second pass over the store)."""
    if fmt == "parquet":
        import pyarrow.parquet as pq
        head = pq.ParquetFile(io.BytesIO(data)).iter_batches(batch_size=3)
        st.dataframe(next(head).to_pandas(), hide_index=True, width="stretch")
    elif fmt == "csv":
        st.dataframe(pd.read_csv(io.BytesIO(data), nrows=3, encoding="utf-8-sig", dtype=str, keep_default_na=False),
                     hide_index=True, width="stretch")
    else:  # JSON Lines: a raw newline only ends a line
        end = -1
        for _ in range(3):
            end = data.find(b"\n", end + 1)
            if end < 0:
                break
        st.code(data[: end + 1 if end >= 0 else len(data)].decode(), language="json", wrap_lines=True)


def tree_panel(store, pid: int, name: str) -> None:
    st.header("Tree file")
    st.caption("The tree with its criteria, statuses and provenance, plus the project's task and settings: "
               "a file you can version, share, hand-edit and import again.")
    doc = export_tree(store, pid)
    st.download_button("Download tree JSON", json.dumps(doc, indent=2, ensure_ascii=False).encode(),
                       file_name=f"{slug(name)}-tree.json", mime="application/json", key="export_tree", icon=":material/account_tree:")


def import_panel(store) -> None:
    st.header("Import a tree file")
    st.caption("Creates a new project from a TreeSynth tree JSON. A bad file changes nothing.")
    upload = st.file_uploader("Tree JSON", type=["json"], key="export_upload")
    name = st.text_input("Name of the new project (optional)", key="export_import_name")
    if st.button("Import as a new project", key="export_import", disabled=upload is None):
        try:
            pid = import_tree(store, upload.getvalue(), name=name.strip() or None)
        except TreeSynthError as exc:
            ui.show_error(exc)
            return
        except Exception as exc:  # noqa: BLE001 - a hostile file must end in one line, never a traceback
            log.warning("tree import failed", exc_info=True)
            st.error(f"Could not import this file: {ui.md_escape(unreadable(exc))}  \n**What to do:** import a "
                     "tree JSON exported by TreeSynth Studio (UTF-8, at most 12 levels deep).",
                     icon=":material/warning:")
            return
        ui.open_project(pid)
        ui.flash(f"Imported as project #{pid} and opened it.")
        st.rerun()


def unreadable(exc: Exception) -> str:
    """One line on why a file could not be read, for errors the importer did not name itself."""
    if isinstance(exc, RecursionError):
        return "it is nested too deeply to read"
    if isinstance(exc, MemoryError):
        return "it is too large to read"
    if isinstance(exc, UnicodeError):
        return "it is not UTF-8 text"
    first = (str(exc).splitlines() or [""])[0][:200]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


with ui.open_store() as store:
    pid = ui.frame(store, "Export & import", need_project=False)
    if pid is None:
        st.info("No project is open: open one on Home to export it, or import a tree file below.")
    else:
        name = store.project(pid).name
        with ui.guard():
            samples_panel(store, pid, name)
        with ui.guard():
            hub_panel(store, pid)
        st.divider()
        with ui.guard():
            tree_panel(store, pid, name)
    st.divider()
    import_panel(store)
