"""How fast and how lean is export? Builds a database of N samples (default 100,000 and 1,000,000), then
exports it once per format, each in a fresh child process through the product path (``export_file``, as
the CLI calls it), and prints wall time, CPU time, the part of the wall time spent in fsync (the atomic
write making the file durable: disk, not code) and the child's peak RSS (VmHWM from /proc, which equals
``getrusage(RUSAGE_SELF).ru_maxrss`` here because the parent stays small; "base" is the peak after the
child's imports, before the export). The load average is printed too: on a busy machine wall time grows
with the load while CPU time does not.

    python bench/bench_export.py                       # 100k and 1M samples, every format
    python bench/bench_export.py --sizes 100000 --formats jsonl,csv
    python bench/bench_export.py --sizes 100000 --before    # also the export as it was before streaming
    python bench/bench_export.py --tracemalloc         # add Python's traced peak (slower: every allocation)
    python bench/bench_export.py --sizes 100000 --runs 3    # median time of 3 runs, highest peak

The databases are cached in --dir (default: the system temp folder) and reused when they already hold the
right number of samples; building 1M takes about a minute. Samples are ~700 characters of text (a GSM8K-like
question and answer, some non-ASCII), spread over a depth-3 tree of 8 x 8 x 8 leaves; one leaf in 16 is
open-ended and its samples carry the value drawn for them. Targets (issue 10): 100k under 3 s per format,
1M under 300 MB peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

FORMATS = ["jsonl", "csv", "chat", "parquet"]
TARGET_SECONDS, TARGET_MB = 3.0, 300.0
BEFORE_COMMIT = "ed4e1cb"  # export.py as it was before streaming (built every row twice, all in memory)


# ----------------------------------------------------------------------------- the database


def make_db(path: Path, n: int) -> int:
    """A project with a depth-3 tree (512 leaves) and ``n`` samples; returns the project id."""
    from treesynth_core.spec import ProjectSpec, Settings, parse_fields
    from treesynth_core.store import Store, now

    with Store(path) as store:
        rows = store.projects()
        if rows:
            got = store.query("select count(*) as n from samples")[0]["n"]
            if got == n:
                return rows[0]["id"]
            raise SystemExit(f"{path} holds {got} samples, not {n}: delete it or pass another --dir")
        spec = ProjectSpec(name=f"bench export {n}", task="GSM8K-style grade-school math word problems",
                           fields=parse_fields("question: the problem, answer: the worked solution"),
                           settings=Settings())
        pid = store.create_project(spec)
        level = [store.tree(pid).root]
        for depth, dimension in enumerate(["topic", "difficulty", "setting"]):
            nxt = []
            for k, node in enumerate(level):
                store.update_node(node.id, dimension=dimension)
                kids = [{"value": f"{dimension} {i + 1}"} for i in range(8)]
                if depth == 2 and k % 2 == 0:  # one leaf in 16 is open-ended
                    kids[-1] = {"infinite": True, "values": ["Oslo", "Lima", "Hanoi", "Lagos"]}
                ids = store.add_children(node, kids, provenance="llm")
                nxt += [store.node(i) for i in ids]
            level = nxt
        tree = store.tree(pid)
        leaves = tree.leaves()
        rng = random.Random(7)
        words = ("apples pears train minutes Zoë's café garden litres €4.50 total each twice half more than "
                 "fewer spends saves walks km hours per day week profit").split()
        stamp = now()

        def text(k: int) -> str:
            return " ".join(rng.choice(words) for _ in range(k))

        batch = []
        for i in range(n):
            leaf = leaves[i % len(leaves)]
            drawn = [list(p) for p in tree.attributes(leaf.id, rng)] if leaf.infinite else []
            batch.append({"project_id": pid, "node_id": leaf.id,
                          "data": json.dumps({"question": f"Q{i}: " + text(40) + "?",
                                              "answer": text(70) + f" The answer is {i % 97}."}, ensure_ascii=False),
                          "drawn": json.dumps(drawn, ensure_ascii=False), "norm_hash": f"h{i}",
                          "status": ("generated", "accepted", "accepted", "rejected")[i % 4], "call_id": None,
                          "created_at": stamp, "updated_at": stamp})
            if len(batch) == 50_000:
                with store.atomic():
                    store.db["samples"].insert_all(batch, batch_size=5_000)
                batch = []
        if batch:
            with store.atomic():
                store.db["samples"].insert_all(batch, batch_size=5_000)
        return pid


# ----------------------------------------------------------------------------- the child: one export


def child(db: str, pid: int, fmt: str, out: str, before: bool, traced: bool) -> None:
    import resource

    from treesynth_core.store import Store

    if before:
        import importlib.util
        source = subprocess.run(["git", "-C", str(REPO), "show", f"{BEFORE_COMMIT}:treesynth_core/export.py"],
                                capture_output=True, text=True, check=True).stdout
        path = Path(out).with_suffix(".before_export.py")
        path.write_text(source)
        spec = importlib.util.spec_from_file_location("treesynth_core.export_before", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        export_file = module.export_file
        path.unlink()
    else:
        from treesynth_core.export import export_file
    if fmt == "parquet":  # its imports are part of the base, not of the export
        import pandas  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    base = peak_rss_mb()
    if traced:
        import tracemalloc
        tracemalloc.start()
    from treesynth_core import files

    real_fsync, synced = files.os.fsync, []

    def timed_fsync(fd):  # the durability step of the atomic write, timed apart: it waits on the disk
        began = time.perf_counter()
        real_fsync(fd)
        synced.append(time.perf_counter() - began)

    files.os.fsync = timed_fsync
    with Store(db) as store:
        started, cpu = time.perf_counter(), time.process_time()
        count = export_file(store, pid, fmt, out)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    traced_mb = tracemalloc.get_traced_memory()[1] / 2**20 if traced else None
    peak = peak_rss_mb()
    print(json.dumps({"rows": count, "seconds": seconds, "cpu_s": cpu, "fsync_s": sum(synced), "peak_mb": peak, "base_mb": base, "traced_mb": traced_mb,
                      "bytes": os.path.getsize(out), "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def peak_rss_mb() -> float:
    """This process's peak RSS in MB: VmHWM from /proc (Linux), else getrusage's ru_maxrss.

    ru_maxrss is kept across execve on Linux, so a child started by a big parent starts at the parent's
    size; VmHWM belongs to the new program alone. The parent here stays small anyway (it builds the
    databases in a child too), and the two agree (both are printed in --json)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(db: Path, pid: int, fmt: str, folder: Path, before: bool, traced: bool) -> dict:
    out = folder / f"bench-export.{fmt}"
    command = [sys.executable, __file__, "--child", str(db), str(pid), fmt, str(out)]
    command += ["--before"] if before else []
    command += ["--tracemalloc"] if traced else []
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        return {"error": (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    out.unlink(missing_ok=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000", help="sample counts, comma-separated")
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where the databases and outputs go")
    parser.add_argument("--before", action="store_true", help="also time the pre-streaming export")
    parser.add_argument("--tracemalloc", action="store_true", help="also report Python's traced peak")
    parser.add_argument("--runs", type=int, default=1, help="runs per export: median time, highest peak")
    parser.add_argument("--json", action="store_true", help="also print each measurement as JSON")
    parser.add_argument("--child", nargs=4, metavar=("DB", "PID", "FORMAT", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--make", nargs=2, metavar=("DB", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.make:
        print(make_db(Path(args.make[0]), int(args.make[1])))
        return
    if args.child:
        db, pid, fmt, out = args.child
        child(db, int(pid), fmt, out, args.before, args.tracemalloc)
        return

    folder = Path(args.dir)
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
          "one child process per export\n")
    header = f"{'samples':>9} {'format':8} {'code':7} {'rows':>9} {'MB out':>8} {'time s':>7} {'CPU s':>6} {'fsync s':>7} {'peak RSS MB':>11} " \
             f"{'base MB':>7}" + (f" {'traced MB':>9}" if args.tracemalloc else "") + "  verdict"
    for n in [int(s) for s in args.sizes.split(",")]:
        db = folder / f"treesynth-bench-export-{n}.db"
        started = time.perf_counter()
        done = subprocess.run([sys.executable, __file__, "--make", str(db), str(n)], capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(done.stderr.strip() or f"building {db} failed")
        pid = int(done.stdout.split()[-1])
        print(f"database of {n:,} samples ready in {time.perf_counter() - started:.1f} s: {db}")
        print(header)
        for fmt in formats:
            for before in ([False, True] if args.before else [False]):
                runs = [measure(db, pid, fmt, folder, before, args.tracemalloc) for _ in range(args.runs)]
                code = "before" if before else "stream"
                failed = [r for r in runs if "error" in r]
                if failed:
                    print(f"{n:>9,} {fmt:8} {code:7} failed: {failed[0]['error']}")
                    continue
                r = dict(runs[0], seconds=statistics.median(x["seconds"] for x in runs),
                         cpu_s=statistics.median(x["cpu_s"] for x in runs),
                         fsync_s=statistics.median(x["fsync_s"] for x in runs), peak_mb=max(x["peak_mb"] for x in runs))
                checks = []
                if n <= 100_000:
                    checks.append(r["seconds"] < TARGET_SECONDS)
                if n >= 1_000_000:
                    checks.append(r["peak_mb"] < TARGET_MB)
                verdict = "" if before or not checks else ("ok" if all(checks) else "MISSED")
                verdict = "(traced: slower)" if args.tracemalloc and verdict else verdict
                print(f"{n:>9,} {fmt:8} {code:7} {r['rows']:>9,} {r['bytes'] / 2**20:>8.1f} {r['seconds']:>7.2f} "
                      f"{r['cpu_s']:>6.2f} {r['fsync_s']:>7.2f} {r['peak_mb']:>11.0f} {r['base_mb']:>7.0f}"
                      + (f" {r['traced_mb']:>9.1f}" if args.tracemalloc else "") + f"  {verdict}")
                if args.json:
                    print(json.dumps({"samples": n, "format": fmt, "code": code, "runs": runs}))
        print()


if __name__ == "__main__":
    main()
