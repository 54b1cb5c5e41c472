"""Generation throughput against the ideal (run on demand: `python bench/bench_generate.py`).

64 leaves (8 x 8, set by hand: no build), 10 samples per call, the fake server in its own process with a fixed
latency per call (bench/fake_process.py). The ideal rate is slots / latency calls per second: every slot always
busy and the client costing nothing. Printed per case: calls/s, samples/s, fraction of the ideal, and the
client's CPU per call (what limits it when the fraction falls) and the fake server's (it shares the machine: the
ideal rate needs slots / latency x (client + server CPU per call) cores). 50 vs 500 per leaf shows whether the cost of a
call grows with the leaf (it should not: the avoid list, the duplicate check and the quota check are bounded).

The floor (``--floor``, on by default): in the same run, what this machine allows whatever our code does. The same
number of threads send the same generation request (a real prompt of this project) through the ``openai`` SDK and
do nothing else ("SDK only"), or also do the least any generator must do with a reply: decode it, validate it
against the reply's pydantic model and insert its samples into SQLite in one transaction ("SDK + minimal work").
Our fraction of the ideal is then read against these, not against an ideal no Python client reaches on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import json
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fake_process import cpu_seconds, fake_server_process  # noqa: E402
from treesynth_core import edits  # noqa: E402
from treesynth_core.config import Endpoint  # noqa: E402
from treesynth_core.generate import generate  # noqa: E402
from treesynth_core.llm import LLM, _HttpClient  # noqa: E402
from treesynth_core.prompts import SamplesReply, samples_messages  # noqa: E402
from treesynth_core.spec import ProjectSpec, Settings, parse_fields  # noqa: E402
from treesynth_core.store import Store  # noqa: E402


def one(url: str, folder: Path, slots: int, latency: float, per_leaf: int, per_call: int, tag: str,
        server: int | None = None) -> dict:
    store = Store(folder / f"gen-{tag}.db")
    spec = ProjectSpec(name=tag, task="GSM8K-style grade-school math word problems",
                       fields=parse_fields("question,answer"),
                       settings=Settings(max_depth=2, per_leaf=per_leaf, samples_per_call=per_call, concurrency=slots))
    pid = store.create_project(spec)
    for topic in edits.set_split(store, store.tree(pid).root.id, "topic", [f"topic {i}" for i in range(8)]):
        edits.set_split(store, topic, "level", [f"level {i}" for i in range(8)])
    llm = LLM(Endpoint(base_url=url, api_key="bench", model="fake-model", timeout=60, max_retries=2), store, pid,
              concurrency=slots)
    served = cpu_seconds(server) if server else 0.0
    started, cpu = time.perf_counter(), time.process_time()
    report = generate(store, pid, llm, concurrency=slots)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    served = cpu_seconds(server) - served if server else 0.0
    calls = store.usage(pid)["calls"]
    llm.close()
    store.close()
    assert report.inserted == 64 * per_leaf and not report.failed_calls, report.summary()
    return {"wall": wall, "calls": calls, "samples": report.inserted, "cpu_ms": 1000 * cpu / calls,
            "server_ms": 1000 * served / calls,
            "fraction": calls / wall / (slots / latency)}


def floor(url: str, folder: Path, slots: int, latency: float, calls: int, minimal: bool, server: int) -> dict:
    """``calls`` identical generation requests from ``slots`` threads through the SDK: nothing else, or the
    minimal work on each reply (decode, validate, one insert transaction). See the module's docstring."""
    import openai

    spec = ProjectSpec(name="floor", task="GSM8K-style grade-school math word problems",
                       fields=parse_fields("question,answer"))
    body = {"model": "fake-model", "temperature": 0.7, "max_tokens": 4000, "response_format": {"type": "json_object"},
            "messages": samples_messages(spec, [("topic", "topic 1"), ("level", "level 2")], 10)}
    client = openai.OpenAI(base_url=url, api_key="bench", http_client=_HttpClient(), max_retries=2, timeout=60)
    db = sqlite3.connect(folder / f"floor-{minimal}-{slots}.db", check_same_thread=False, isolation_level=None)
    db.execute("pragma journal_mode = wal")
    db.execute("pragma synchronous = normal")
    db.execute("create table if not exists samples (id integer primary key, data text)")
    lock, left = threading.Lock(), iter(range(calls))

    def work() -> None:
        reply = client.post("/chat/completions", body=body, cast_to=dict)
        if minimal:
            samples = SamplesReply.model_validate(json.loads(reply["choices"][0]["message"]["content"])).samples
            rows = [(json.dumps(sample, ensure_ascii=False),) for sample in samples]
            with lock:
                db.execute("begin immediate")
                db.executemany("insert into samples (data) values (?)", rows)
                db.execute("commit")

    def worker() -> None:
        while next(left, None) is not None:
            work()

    work()  # a connection open before the clock starts, as in a run
    threads = [threading.Thread(target=worker) for _ in range(slots)]
    served, started, cpu = cpu_seconds(server), time.perf_counter(), time.process_time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    served = cpu_seconds(server) - served
    client.close()
    db.close()
    return {"wall": wall, "calls": calls, "cpu_ms": 1000 * cpu / calls, "server_ms": 1000 * served / calls,
            "fraction": calls / wall / (slots / latency)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--per-call", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3, help="runs per case at 50 per leaf (500: one run)")
    parser.add_argument("--no-floor", dest="floor", action="store_false", help="skip the SDK-only floor runs")
    args = parser.parse_args()
    print(f"load average at start {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; latency {args.latency}s, "
          f"{args.per_call} samples per call, 64 leaves")
    with fake_server_process(args.latency) as (url, server), tempfile.TemporaryDirectory() as tmp:
        for slots in (16, 64):
            for per_leaf in (50, 500):
                runs = [one(url, Path(tmp), slots, args.latency, per_leaf, args.per_call, f"{slots}-{per_leaf}-{r}",
                            server)
                        for r in range(args.repeats if per_leaf == 50 else 1)]
                med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
                print(f"{slots:>3} slots, {per_leaf:>3} per leaf: {med['calls'] / med['wall']:6.0f} calls/s, "
                      f"{med['samples'] / med['wall']:6.0f} samples/s, {med['fraction']:.2f} of the ideal "
                      f"({slots / args.latency:.0f} calls/s), client CPU {med['cpu_ms']:.2f} ms/call, "
                      f"the fake server's {med['server_ms']:.2f} ms/call "
                      f"(median of {len(runs)}; load {os.getloadavg()[0]:.2f})")
            if args.floor:  # as many requests as the 500-per-leaf run made: 64 x 500 / per_call
                for minimal in (False, True):
                    runs = [floor(url, Path(tmp), slots, args.latency, 64 * 500 // args.per_call, minimal, server)
                            for _ in range(args.repeats)]
                    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
                    print(f"{slots:>3} slots, floor, {'SDK + minimal work' if minimal else 'SDK only':<18}: "
                          f"{med['calls'] / med['wall']:6.0f} calls/s, {med['fraction']:.2f} of the ideal, client CPU "
                          f"{med['cpu_ms']:.2f} ms/call, the fake server's {med['server_ms']:.2f} ms/call "
                          f"(median of {len(runs)}; load {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
