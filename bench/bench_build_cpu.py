"""Build CPU per request as the tree grows (run on demand: `python bench/bench_build_cpu.py`).

Depth-3 trees of about 1,000, 5,000 and 20,000 nodes (10, 17 and 27 values per split: 111, 307 and 757
expansions of 3 calls each) built at 0 ms latency, each in a fresh process so its peak RSS is its own, against
the fake server in another process (bench/fake_process.py), so the CPU is the client's. An expansion reads
only its node's path and whether it has children, so CPU per request should not grow with the tree.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SIZES = {1_000: 10, 5_000: 17, 20_000: 27}  # about this many nodes: values per split (depth 3)


def child(values: int, concurrency: int) -> None:
    from bench.fake_process import fake_server
    from treesynth_core.config import Endpoint
    from treesynth_core.llm import LLM
    from treesynth_core.partition import build
    from treesynth_core.spec import ProjectSpec, Settings, parse_fields
    from treesynth_core.store import Store

    with fake_server(0.0, values=values, extra=values - 10) as url, tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "cpu.db")
        spec = ProjectSpec(name="cpu", task="GSM8K-style grade-school math word problems",
                           fields=parse_fields("question,answer"),
                           settings=Settings(max_depth=3, pivots=10, max_values=50, concurrency=concurrency))
        pid = store.create_project(spec)
        llm = LLM(Endpoint(base_url=url, api_key="bench", model="fake-model", timeout=60, max_retries=2), store,
                  pid, concurrency=concurrency)
        started, cpu = time.perf_counter(), time.process_time()
        report = build(store, pid, llm)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        requests = store.usage(pid)["calls"]
        assert not report.failed, report.summary()
        print(json.dumps({"nodes": len(store.tree(pid)), "requests": requests, "wall": wall, "cpu": cpu,
                          "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.concurrency)
        return
    print(f"load average at start {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; depth 3, 0 ms latency, "
          f"concurrency {args.concurrency}")
    per_request = []
    for size, values in SIZES.items():
        out = subprocess.run([sys.executable, __file__, "--child", str(values), "--concurrency",
                              str(args.concurrency)], capture_output=True, text=True, cwd=ROOT, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        per_request.append(1000 * r["cpu"] / r["requests"])
        print(f"~{size:>6,} nodes ({r['nodes']:,}): {r['requests']:,} requests in {r['wall']:.1f} s, client CPU "
              f"{per_request[-1]:.2f} ms/request, peak RSS {r['rss_mb']:.0f} MB (load {os.getloadavg()[0]:.2f})")
    print(f"CPU per request, largest / smallest tree: {per_request[-1] / per_request[0]:.2f}x")


if __name__ == "__main__":
    main()
