"""Routing throughput against the ideal (run on demand: `python bench/bench_routing.py`).

A two-level tree set by hand (8 x 8 = 64 leaves), N imported rows that name their leaf, the fake server in its own
process with a fixed latency per call (bench/fake_process.py). The ideal is concurrency x rows per call / latency
row classifications a second: every slot busy with a full batch, the client costing nothing. A row needs one
classification per level, so the ideal for rows through the whole tree is that divided by the levels. Printed:
rows/s, classifications/s, their fraction of the ideal, calls, and calls beyond the minimum (partial batches).
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fake_process import fake_server  # noqa: E402
from treesynth_core import edits  # noqa: E402
from treesynth_core.config import Endpoint  # noqa: E402
from treesynth_core.importer import import_file  # noqa: E402
from treesynth_core.llm import LLM  # noqa: E402
from treesynth_core.routing import route_samples  # noqa: E402
from treesynth_core.spec import ProjectSpec, Settings, parse_fields  # noqa: E402
from treesynth_core.store import Store  # noqa: E402

WIDTH = 8


def one(url: str, folder: Path, rows: int, concurrency: int, per_call: int, tag: str) -> dict:
    store = Store(folder / f"route-{tag}.db")
    spec = ProjectSpec(name=tag, task="customer support emails", fields=parse_fields("question,answer"),
                       settings=Settings(max_depth=2, concurrency=concurrency))
    pid = store.create_project(spec)
    for topic in edits.set_split(store, store.tree(pid).root.id, "topic", [f"topic {i}" for i in range(WIDTH)]):
        edits.set_split(store, topic, "level", [f"level {i}" for i in range(WIDTH)])
    path = folder / f"rows-{tag}.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["question", "answer"])
        for i in range(rows):
            writer.writerow([f"ticket {i} on topic {i % 5 * i % WIDTH} at level {i * 7 % WIDTH}", f"reply {i}"])
    import_file(store, pid, path)
    llm = LLM(Endpoint(base_url=url, api_key="bench", model="fake-model", timeout=60, max_retries=2), store, pid,
              concurrency=concurrency)
    started = time.perf_counter()
    report = route_samples(store, llm, pid, rows_per_call=per_call, concurrency=concurrency)
    seconds = time.perf_counter() - started
    llm.close()
    store.close()
    assert report.to_leaf == rows, report.summary()
    return {"seconds": seconds, "calls": report.calls, "decisions": report.decisions}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--rows-per-call", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with fake_server(latency=args.latency) as url, tempfile.TemporaryDirectory() as tmp:
        print(f"{args.rows} rows, 2 levels of {WIDTH} values, {args.rows_per_call} rows per call, latency "
              f"{args.latency * 1000:.0f} ms; medians of {args.repeat}")
        for slots in args.concurrency:
            runs = [one(url, Path(tmp), args.rows, slots, args.rows_per_call, f"{slots}-{i}")
                    for i in range(args.repeat)]
            seconds = statistics.median(r["seconds"] for r in runs)
            calls = statistics.median(r["calls"] for r in runs)
            ideal = slots * args.rows_per_call / args.latency
            minimum = 2 * -(-args.rows // args.rows_per_call)
            print(f"concurrency {slots:>3}: {args.rows / seconds:8.0f} rows/s, {2 * args.rows / seconds:8.0f} "
                  f"classifications/s = {2 * args.rows / seconds / ideal:.2f} of the ideal {ideal:.0f}/s "
                  f"(c x k / latency); {calls:.0f} calls ({calls / minimum:.2f}x the full-batch minimum {minimum}); "
                  f"{seconds:.2f} s")


if __name__ == "__main__":
    main()
