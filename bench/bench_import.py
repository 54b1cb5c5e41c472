"""Import throughput and memory (run on demand: `python bench/bench_import.py`).

Writes a file of N rows (CSV, JSONL and Parquet; two fields of ~80 and ~40 characters, one extra column) and
imports it into a fresh database in a child process, which reports its wall time and peak RSS (ru_maxrss), so
the figures are the import's alone. The peak is compared with the same import of N/10 rows: a streaming reader
holds a bounded number of rows, so the two peaks should be close.
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def write(path: Path, rows: int) -> None:
    records = ({"question": f"Customer {i} asks how to return order #{i * 7919 % 1000003} bought on day {i % 365}.",
                "answer": f"Reply {i}: send it back within 30 days.", "channel": "email"} for i in range(rows))
    if path.suffix == ".csv":
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, ["question", "answer", "channel"])
            writer.writeheader()
            writer.writerows(records)
    elif path.suffix == ".jsonl":
        with open(path, "w") as handle:
            handle.writelines(json.dumps(r) + "\n" for r in records)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows_list = list(records)
        pq.write_table(pa.Table.from_pylist(rows_list), path, row_group_size=10_000)


def child(db: str, path: str) -> None:
    from treesynth_core.importer import import_file
    from treesynth_core.spec import ProjectSpec, parse_fields
    from treesynth_core.store import Store

    store = Store(db)
    pid = store.create_project(ProjectSpec(name="bench", task="support emails", fields=parse_fields("question,answer")))
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    report = import_file(store, pid, path)
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "imported": report.imported, "peak_mb": resource.getrusage(
        resource.RUSAGE_SELF).ru_maxrss / 1024, "before_mb": base / 1024}))


def measure(folder: Path, path: Path, tag: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", str(folder / f"{tag}.db"), str(path)],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--formats", nargs="+", default=["csv", "jsonl", "parquet"])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        print(f"import of {args.rows:,} rows (and {args.rows // 10:,} for the memory comparison); medians of "
              f"{args.repeat}, each in a fresh process and database")
        for fmt in args.formats:
            big, small = folder / f"big.{fmt}", folder / f"small.{fmt}"
            write(big, args.rows)
            write(small, args.rows // 10)
            runs = [measure(folder, big, f"{fmt}-{i}") for i in range(args.repeat)]
            tenth = measure(folder, small, f"{fmt}-small")
            assert all(r["imported"] == args.rows for r in runs), runs
            seconds = statistics.median(r["seconds"] for r in runs)
            peak = statistics.median(r["peak_mb"] for r in runs)
            print(f"{fmt:>8}: {seconds:6.2f} s ({args.rows / seconds:,.0f} rows/s), "
                  f"file {big.stat().st_size / 1e6:.1f} MB, "
                  f"peak RSS {peak:.0f} MB (process before the import: {runs[0]['before_mb']:.0f} MB; "
                  f"{args.rows // 10:,} rows: peak {tenth['peak_mb']:.0f} MB)")


if __name__ == "__main__":
    main()
