"""What does history cost per edit? On a ~5,000-node tree with samples on every leaf, times each edit through
``edits`` (checks + the write + its history event with the rows before and after, one transaction) against the
same Store writes without an event (what the edit cost before history: the checks and the bare writes in one
transaction). Prints the median per edit of each, the overhead and the event's size.

    python bench/bench_history.py                  # branching 17 (5,220 nodes, 2 samples per leaf), 30 edits each
    python bench/bench_history.py --edits 50 --branching 10
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

from treesynth_core import edits  # noqa: E402
from treesynth_core.samples import fingerprint  # noqa: E402
from treesynth_core.spec import ProjectSpec, Settings, parse_fields  # noqa: E402
from treesynth_core.store import Store  # noqa: E402

DIMENSIONS = ["topic", "difficulty", "setting"]


def make_tree(store: Store, branching: int, samples_per_leaf: int) -> int:
    spec = ProjectSpec(name="bench", task="benchmark tree for history", fields=parse_fields("question,answer"),
                       settings=Settings())
    pid = store.create_project(spec)
    level = [store.tree(pid).root]
    with store.atomic():
        for depth, dimension in enumerate(DIMENSIONS):
            nxt = []
            for node in level:
                store.update_node(node.id, dimension=dimension)
                ids = store.add_children(node, [{"value": f"{dimension} {i}"} for i in range(branching)],
                                         provenance="llm")
                nxt += [store.node(i) for i in ids]
            level = nxt
        n = 0
        for leaf in level:
            rows = []
            for _ in range(samples_per_leaf):
                n += 1
                data = {"question": f"question {n}", "answer": f"answer {n}"}
                rows.append({"data": data, "norm_hash": fingerprint(data, ["question", "answer"])})
            store.add_samples(pid, leaf.id, rows, cap=None, call_id=None)
    return pid


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--branching", type=int, default=17)
    ap.add_argument("--samples-per-leaf", type=int, default=2)
    ap.add_argument("--edits", type=int, default=30)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, Store(os.path.join(tmp, "bench.db")) as store:
        pid = make_tree(store, args.branching, args.samples_per_leaf)
        tree = store.tree(pid)
        inner = [n for n in tree.nodes.values() if n.depth == 2]  # each with `branching` leaves below
        leaves = [n for n in tree.nodes.values() if n.depth == 3]
        samples = [s["id"] for s in store.samples(pid)]
        print(f"tree: {len(tree)} nodes, {len(samples)} samples; {args.edits} edits of each kind, median ms per edit")
        k = args.edits

        def bare_rename(node, value):  # the old path: check, then the bare write
            edits._check_value(value)
            edits._sibling_clash(store, node.parent_id, value, except_id=node.id)
            store.update_node(node.id, value=value, provenance="human", status="edited")

        def bare_prune(node):
            store.update_nodes(store.subtree_ids([node.id]), status="pruned")

        def bare_status(ids):
            store.set_sample_status(ids, "accepted")

        def bare_delete(node):
            store.delete_nodes(store.subtree_ids([node.id]))

        cases = [
            ("rename a value", lambda i: bare_rename(leaves[i], f"bare {i}"),
             lambda i: edits.rename_value(store, leaves[k + i].id, f"recorded {i}")),
            ("set a quota", lambda i: store.update_node(leaves[2 * k + i].id, quota=5),
             lambda i: edits.set_quota(store, leaves[3 * k + i].id, 5)),
            (f"prune a subtree ({args.branching + 1} nodes)", lambda i: bare_prune(inner[i]),
             lambda i: edits.prune(store, inner[k + i].id)),
            ("review 20 samples", lambda i: bare_status(samples[40 * i:40 * i + 20]),
             lambda i: edits.set_sample_status(store, samples[40 * i + 20:40 * i + 40], "accepted")),
            (f"delete a subtree ({args.branching + 1} nodes, {args.branching * args.samples_per_leaf} samples)",
             lambda i: bare_delete(inner[2 * k + i]), lambda i: edits.delete_subtree(store, inner[3 * k + i].id)),
        ]
        for name, bare, recorded in cases:
            without = statistics.median(timed(lambda: bare(i)) for i in range(k))
            count = len(edits.history(store, pid, limit=10**6, payloads=False))
            with_event = statistics.median(timed(lambda: recorded(i)) for i in range(k))
            newest = edits.history(store, pid, limit=1)[0]
            size = len(json.dumps(newest.before)) + len(json.dumps(newest.after))
            assert len(edits.history(store, pid, limit=10**6, payloads=False)) == count + k
            print(f"{name:52s} without event {without:7.2f} ms   with event {with_event:7.2f} ms   "
                  f"overhead {with_event - without:+7.2f} ms   event {size / 1024:6.1f} KiB")
        start = time.perf_counter()
        edits.undo(store, pid)
        print(f"undo of the last delete: {(time.perf_counter() - start) * 1000:.1f} ms")
        root = store.tree(pid).root.id
        for name, fn in (("approve the whole tree", lambda: edits.approve(store, root, subtree=True)),
                         ("set the root's split (deletes everything below)",
                          lambda: edits.set_split(store, root, "subject", ["arithmetic", "probability"]))):
            nodes, samples_left = len(store.tree(pid)), store.sample_total(pid)
            took = timed(fn)
            newest = edits.history(store, pid, limit=1)[0]
            size = len(json.dumps(newest.before)) + len(json.dumps(newest.after))
            undo = timed(lambda: edits.undo(store, pid))
            print(f"{name} ({nodes} nodes, {samples_left} samples): {took:.0f} ms with its event "
                  f"({size / 2**20:.1f} MiB), undo {undo:.0f} ms")


if __name__ == "__main__":
    main()
