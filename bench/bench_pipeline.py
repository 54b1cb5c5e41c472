"""Build + generate against the critical-path bound (run on demand: `python bench/bench_pipeline.py`).

The reference code's own workload: depth 3, 4 values per split, 10 pivots, 10 samples per leaf in one call:
21 internal nodes x 3 calls + 64 leaves x 1 call = 127 requests, 640 samples. The critical path is 10 dependent
calls (pivots, criterion, coverage at each of 3 levels, then the leaf's call), so no schedule beats 10 x latency.

Compared, at 100 and 300 ms per call: ``run`` (pipelined: a leaf's call is queued the moment the leaf is stored)
and build-then-generate (the two commands one after the other: generation waits for the whole tree), each at the
default concurrency (the project setting) and at 64. Then the hang case: 2% of the requests take 30 s more
(each arrival draws by a hash of the request and a seed, so one seed hangs the same requests in every run; a
hedge or a retry draws anew, as a stalled server's next request would); one run per seed, several seeds.

The fake server runs in its own process, with keep-alive and a deep listen backlog as production servers have
(bench/fake_process.py), so the figures are the client's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fake_process import fake_server  # noqa: E402
from treesynth_core.config import Endpoint  # noqa: E402
from treesynth_core.generate import generate, run  # noqa: E402
from treesynth_core.llm import LLM  # noqa: E402
from treesynth_core.outcome import Outcome  # noqa: E402
from treesynth_core.partition import build  # noqa: E402
from treesynth_core.spec import ProjectSpec, Settings, parse_fields  # noqa: E402
from treesynth_core.store import Store  # noqa: E402

CRITICAL_PATH = 10  # dependent calls from the root's pivots to a leaf's samples


def hedging(store: Store, pid: int, hang: float) -> tuple[int, int]:
    """(requests that ran into a hang, as the call log shows them: answered after ``hang`` or abandoned for a
    hedge; hedges sent)."""
    row = store.query("select coalesce(sum(duration_s >= ?), 0) as slow, coalesce(sum(finish_reason = 'hedged'), 0) "
                      "as hedges, coalesce(sum(finish_reason = 'hedged' and dropped like '%first request%'), 0) "
                      "as beaten from calls where project_id = ?", [hang * 0.9, pid])[0]
    return row["slow"] + row["beaten"], row["hedges"]


def one(url: str, folder: Path, mode: str, concurrency: int | None, tag: str, hang: float | None = None
        ) -> tuple[float, int, tuple[int, int] | None]:
    store = Store(folder / f"{tag}.db")
    settings = Settings(max_depth=3, pivots=10, per_leaf=10, samples_per_call=10)
    spec = ProjectSpec(name=tag, task="GSM8K-style grade-school math word problems",
                       fields=parse_fields("question,answer"), settings=settings)
    pid = store.create_project(spec)
    endpoint = Endpoint(base_url=url, api_key="bench", model="fake-model", timeout=60, max_retries=2)
    llm = LLM(endpoint, store, pid, concurrency=concurrency or settings.concurrency)
    started = time.perf_counter()
    if mode == "run":
        complete = run(store, pid, llm).outcome is Outcome.COMPLETE
    else:
        complete = build(store, pid, llm).outcome is generate(store, pid, llm).outcome is Outcome.COMPLETE
    wall = time.perf_counter() - started
    assert complete and sum(store.live_count(leaf.id) for leaf in store.tree(pid).leaves()) == 640
    requests = store.usage(pid)["calls"]
    hedges = hedging(store, pid, hang) if hang else None
    llm.close()
    store.close()
    return wall, requests, hedges


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hang-rate", type=float, default=0.02)
    parser.add_argument("--hang", type=float, default=30.0)
    parser.add_argument("--skip-hang", action="store_true")
    parser.add_argument("--only-hang", action="store_true")
    parser.add_argument("--hang-barrier", action="store_true", help="also time build-then-generate with hangs")
    parser.add_argument("--seeds", type=int, default=3, help="hang draws (one run each)")
    args = parser.parse_args()
    default = Settings().concurrency
    print(f"load average at start {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; reference workload: depth 3, "
          f"4 values per split, 10 pivots, 10 samples per leaf in 1 call; default concurrency {default}")
    with tempfile.TemporaryDirectory() as tmp:
        for latency in () if args.only_hang else (0.1, 0.3):
            bound = CRITICAL_PATH * latency
            with fake_server(latency, values=4) as url:
                for concurrency in (None, 64):
                    for mode in ("run", "build-then-generate"):
                        rows = [one(url, Path(tmp), mode, concurrency, f"{mode}-{latency}-{concurrency}-{r}")
                                for r in range(args.repeats)]
                        wall = statistics.median(r[0] for r in rows)
                        label = f"concurrency {concurrency or default}{' (default)' if concurrency is None else ''}"
                        print(f"{latency * 1000:4.0f} ms, {label:>24}, {mode:>19}: {wall:6.2f} s = "
                              f"{wall / bound:.2f}x the bound ({bound:.1f} s), {rows[0][1]} requests, median of "
                              f"{len(rows)} (load {os.getloadavg()[0]:.2f})")
        if not args.skip_hang:
            for mode in ("run",) + (("build-then-generate",) if args.hang_barrier else ()):
                walls = []
                for seed in range(args.seeds):
                    with fake_server(0.1, values=4, hang_rate=args.hang_rate, hang=args.hang, seed=seed) as url:
                        wall, requests, (hung, hedges) = one(url, Path(tmp), mode, None, f"hang-{mode}-{seed}",
                                                             args.hang)
                    walls.append(wall)
                    print(f"hang case ({args.hang_rate:.0%} of requests take {args.hang:.0f} s more, 100 ms otherwise; "
                          f"default concurrency), {mode}, seed {seed}: {wall:.2f} s, {requests} requests logged, "
                          f"{hung} ran into a hang, {hedges} hedge(s) sent (load {os.getloadavg()[0]:.2f})")
                print(f"hang case, {mode}: median {statistics.median(walls):.2f} s, worst {max(walls):.2f} s over "
                      f"{len(walls)} seeds (target <= 35 s)")


if __name__ == "__main__":
    main()
