"""Build-speed benchmark on a latency-injecting fake endpoint (run on demand: `make bench`).

Critical-path bound = dependent calls from root to leaf x latency. Every internal node makes 3 dependent
calls (pivots -> criterion -> coverage), so a depth-d build cannot finish faster than 3 * d * latency.
Compares: sequential (one node at a time), level-parallel with a per-level barrier (the reference code's
shape), and ours (a child starts as soon as its parent is stored). Latency is jittered per call so the
barrier's cost shows: a level waits for its slowest node. The jitter is a fixed function of the call's step
and subspace, so every mode sees the same delays, and the exact bound is the slowest root-to-leaf sum.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import hashlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fake_process import production_like  # noqa: E402
from treesynth_core.fakellm import FakeLLM  # noqa: E402
from treesynth_core.llm import LLM  # noqa: E402
from treesynth_core.partition import Partitioner, build  # noqa: E402
from treesynth_core.prompts import describe_subspace  # noqa: E402
from treesynth_core.spec import ProjectSpec, Settings, parse_fields  # noqa: E402
from treesynth_core.store import Store  # noqa: E402


def new_project(folder: Path, name: str, depth: int) -> tuple[Store, int]:
    store = Store(folder / f"{name}.db")
    spec = ProjectSpec(name=name, task="GSM8K-style grade-school math word problems", fields=parse_fields("question,answer"),
                       settings=Settings(max_depth=depth, pivots=6, concurrency=32))
    return store, store.create_project(spec)


def level_barrier_build(store: Store, project_id: int, llm: LLM, depth: int) -> None:
    partitioner = Partitioner(store, project_id, llm)
    level = [store.tree(project_id).root.id]
    with cf.ThreadPoolExecutor(max_workers=32) as pool:
        for _ in range(depth):
            children = [c for ids in pool.map(partitioner.expand, level) for c in ids]
            level = children


def call_delay(step: str, subspace: str, latency: float, jitter: float) -> float:
    digest = hashlib.sha256(f"{step}|{subspace}".encode()).digest()
    return latency * (1 + jitter * (digest[0] / 127.5 - 1))


def exact_bound(store: Store, project_id: int, latency: float, jitter: float) -> float:
    """The slowest chain of dependent calls from the root to a deepest expanded node."""
    tree = store.tree(project_id)

    def node_cost(node) -> float:
        subspace = describe_subspace(tree.attributes(node.id))
        return sum(call_delay(step, subspace, latency, jitter) for step in ("pivots", "criterion", "coverage"))

    expanded = [n for n in tree.nodes.values() if tree.kids(n.id)]
    return max(sum(node_cost(p) for p in tree.path(n.id)) for n in expanded)


def run(mode: str, fake: FakeLLM, folder: Path, depth: int, tag: str) -> tuple[float, int, Store, int]:
    store, pid = new_project(folder, f"{mode}-{tag}", depth)
    llm = LLM(fake.endpoint(timeout=30), store, pid, concurrency=32)
    start = time.perf_counter()
    if mode == "sequential":
        build(store, pid, llm, depth=depth, concurrency=1)
    elif mode == "level-barrier":
        level_barrier_build(store, pid, llm, depth)
    else:
        build(store, pid, llm, depth=depth)
    wall = time.perf_counter() - start
    return wall, store.usage(pid)["calls"], store, pid


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency", type=float, default=0.3, help="mean seconds per call")
    parser.add_argument("--jitter", type=float, default=0.5, help="+- fraction of the latency, uniform")
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-sequential", action="store_true")
    args = parser.parse_args()
    def delay(body: dict) -> float:
        step = body["messages"][0]["content"].rsplit("Step: ", 1)[1].split("\n")[0]
        subspace = body["messages"][1]["content"].split("\n\n")[0]
        return call_delay(step, subspace, args.latency, args.jitter)

    with FakeLLM(values_per_split=3) as fake, tempfile.TemporaryDirectory() as tmp:
        fake.delay_fn = delay
        production_like(fake)  # keep-alive and a deep listen backlog: 32 connects at once wait no SYN retry
        print(f"depth {args.depth}, branching 3, latency {args.latency}s +-{args.jitter:.0%} (fixed per call)")
        modes = ["ours", "level-barrier"] + ([] if args.skip_sequential else ["sequential"])
        results = {m: [] for m in modes}
        for r in range(args.repeats):
            for mode in modes:
                if mode == "sequential" and r > 0:
                    continue  # slow and deterministic enough once
                results[mode].append(run(mode, fake, Path(tmp), args.depth, str(r)))
        _, _, store, pid = results["ours"][0]
        bound = exact_bound(store, pid, args.latency, args.jitter)
        print(f"critical-path bound {bound:.2f}s (slowest root-to-leaf chain of 3 dependent calls per level)")
        for mode, rows in results.items():
            wall = statistics.median(r[0] for r in rows)
            print(f"{mode:>14}: median wall {wall:6.2f}s over {len(rows)} run(s), {rows[0][1]} calls, "
                  f"{wall / bound:.2f}x the bound")


if __name__ == "__main__":
    main()
