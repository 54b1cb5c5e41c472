"""How fast is the Tree page on big trees? Builds ~5,000 and ~20,000 node trees directly in a store (no LLM),
then times (median of a few runs) reading the tree, the sunburst figure, a first AppTest run of the Tree page and
a rerun (what a click costs), and measures the figure the page ships (the plotly JSON inside the page's chart).
Targets (issue 8): at 20,000 nodes a rerun under 0.5 s and a figure under 1 MB.

    python bench/bench_tree_page.py            # 5,220 and 20,440 nodes, 5 runs each
    python bench/bench_tree_page.py --runs 3 --branching 10 17 27
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from streamlit.testing.v1 import AppTest  # noqa: E402

from treesynth_core.spec import ProjectSpec, Settings, parse_fields  # noqa: E402
from treesynth_core.store import Store, new_id  # noqa: E402
from treesynth_core.sunburst import build_figure  # noqa: E402

DIMENSIONS = ["topic", "difficulty", "setting"]


def make_tree(db: str, branching: int, samples_per_leaf: int = 2) -> int:
    """A three-level tree with ``branching`` values per node (1 + b + b^2 + b^3 nodes)."""
    with Store(db) as store:
        spec = ProjectSpec(name=f"bench {branching}", task="benchmark tree for the Tree page",
                           fields=parse_fields("question,answer"), settings=Settings())
        pid = store.create_project(spec)
        level = [store.tree(pid).root]
        for depth, dimension in enumerate(DIMENSIONS):
            nxt = []
            for node in level:
                store.update_node(node.id, dimension=dimension)
                ids = store.add_children(node, [{"value": f"{dimension} {i + 1}"} for i in range(branching)],
                                         provenance="llm")
                nxt += [store.node(i) for i in ids] if depth < len(DIMENSIONS) - 1 else []
                if depth == len(DIMENSIONS) - 1:
                    with store.atomic():
                        for leaf in ids:
                            rows = [{"data": {"question": "q", "answer": "a"}, "norm_hash": new_id()}
                                    for _ in range(samples_per_leaf)]
                            store.add_samples(pid, leaf, rows, cap=None, call_id=None)
            level = nxt
        return pid


def median_time(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bench(branching: int, runs: int, folder: str) -> dict:
    db = os.path.join(folder, f"bench-{branching}.db")
    pid = make_tree(db, branching)
    os.environ["TREESYNTH_DB"] = db
    with Store(db) as store:
        tree = store.tree(pid)
        counts = store.sample_counts(pid)
        usage = store.usage_by_node(pid)
        load = median_time(lambda: (store.tree(pid), store.sample_counts(pid), store.usage_by_node(pid)), runs)
    figure = median_time(lambda: build_figure(tree, counts, usage), runs)

    def page_run():
        at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
        at.session_state["ts_project_id"] = pid
        at.switch_page("pages/1_Tree.py")
        at.run()
        assert not at.exception, at.exception
        return at

    first = median_time(page_run, runs)
    at = page_run()
    rerun = median_time(lambda: at.run(), runs)
    charts = at.get("plotly_chart")
    size = len(charts[0].proto.spec) if charts else 0  # what the page ships to the browser
    sectors = len(json.loads(charts[0].proto.spec)["data"][0]["ids"]) if charts else 0
    return {"nodes": len(tree), "load": load, "figure": figure, "json_kb": size / 1024, "page": first,
            "rerun": rerun, "sectors": sectors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--branching", type=int, nargs="*", default=[17, 27], help="values per node")
    args = parser.parse_args()
    os.environ.setdefault("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # the Tree page never calls it
    with tempfile.TemporaryDirectory() as folder:
        print(f"{'nodes':>6} {'load s':>8} {'figure s':>9} {'fig JSON KB':>12} {'sectors':>8} {'page run s':>11} "
              f"{'rerun s':>8}")
        for b in args.branching:
            r = bench(b, args.runs, folder)
            print(f"{r['nodes']:>6} {r['load']:>8.3f} {r['figure']:>9.3f} {r['json_kb']:>12.0f} {r['sectors']:>8} "
                  f"{r['page']:>11.3f} {r['rerun']:>8.3f}", flush=True)


if __name__ == "__main__":
    main()
