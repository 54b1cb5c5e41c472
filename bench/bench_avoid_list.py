"""The generation prompt's avoid list, measured (issue 9 part 6): the duplicate and near-duplicate rate per call
with the leaf's newest samples listed ("samples"), with only their openings listed as "topics already covered"
("topics"), and without a list ("off").

    python bench/bench_avoid_list.py --fake              # the fake server as a copier (copies its avoid list)
    python bench/bench_avoid_list.py --fake --honest     # the fake's well-behaved model (never copies)
    python bench/bench_avoid_list.py --local             # the bundled 0.5B model: slow, keep it tiny
    python bench/bench_avoid_list.py --local --leaves 2 --per-leaf 4 --modes samples,off

Each mode gets its own project with the same hand-set root split (``--leaves`` values, no build call) and is
filled to ``--per-leaf`` samples per leaf, ``--per-call`` samples per call, in at most ``--rounds`` refill rounds.
Per mode: calls, usable samples returned, duplicates among them (exact: the fingerprint; near: cut-off or
prefixed copies, caught by ``samples.near_copies``), calls that returned only duplicates, leaves at quota, the
outcome, and copies that got past both checks (``diversity.lexical_copies`` over each leaf's stored samples).
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from treesynth_core.diversity import lexical_copies  # noqa: E402
from treesynth_core.fakellm import FakeLLM  # noqa: E402
from treesynth_core.generate import duplicate_rate, generate  # noqa: E402
from treesynth_core.llm import LLM  # noqa: E402
from treesynth_core.partition import build  # noqa: E402
from treesynth_core.samples import copy_text  # noqa: E402
from treesynth_core.spec import ProjectSpec, RootSplit, Settings, local_settings, parse_fields  # noqa: E402
from treesynth_core.store import Store, now  # noqa: E402

TASK = "GSM8K-style grade-school math word problems"
FIELDS = "question: the problem, answer: the worked solution ending in the number"
TOPICS = ["fractions", "percentages", "ratios", "time and speed", "money", "area and perimeter"]
NEAR = re.compile(r"\((\d+) near:")


@contextlib.contextmanager
def endpoint_for(args):
    if args.fake:
        with FakeLLM(copy_avoid=not args.honest) as fake:
            yield fake.endpoint(max_retries=1, timeout=10), "fake server" + (" (honest)" if args.honest else
                                                                             " (copier)")
    else:
        from treesynth_core.local import LocalServer, resolve_model

        print("starting the bundled local model...", file=sys.stderr)
        with LocalServer(resolve_model(None), report=lambda m: print(m, file=sys.stderr)) as server:
            yield server.endpoint(), "bundled local model (Qwen2.5-Coder 0.5B, llama.cpp)"


def measure(store: Store, endpoint, args, mode: str) -> dict:
    base = local_settings() if args.local else Settings()
    settings = base.model_copy(update={"max_depth": 1, "per_leaf": args.per_leaf, "samples_per_call": args.per_call,
                                       "avoid_list": mode, "concurrency": args.concurrency})
    spec = ProjectSpec(name=f"avoid {mode}", task=TASK, fields=parse_fields(FIELDS), settings=settings,
                       root_split=RootSplit(dimension="topic", values=TOPICS[: args.leaves]))
    pid = store.create_project(spec)
    llm = LLM(endpoint, store, pid)
    build(store, pid, llm)  # the hand-set root split: no call
    since, started = now(), time.monotonic()
    report = generate(store, pid, llm, max_rounds=args.rounds, concurrency=args.concurrency)
    seconds = time.monotonic() - started
    rows = store.sample_call_notes(pid, since)
    rate = duplicate_rate(rows)
    near = sum(int(m[1]) for r in rows if (m := NEAR.search(r["dropped"] or "")))
    tree = store.tree(pid)
    leaves = tree.leaves()
    counts = store.sample_counts(pid)
    at_quota = sum(sum(counts.get(leaf.id, {}).values()) >= args.per_leaf for leaf in leaves)
    slipped = 0
    for leaf in leaves:
        texts = [copy_text(s["data"], spec.dedup_fields) for s in store.samples(pid, node_ids=[leaf.id])]
        slipped += len({j for _, j, _ in lexical_copies(texts)})
    return {"mode": mode, "calls": rate.calls, "returned": rate.returned, "dups": rate.duplicates, "near": near,
            "all_dup_calls": rate.all_duplicates, "rate": rate.rate, "at_quota": f"{at_quota}/{len(leaves)}",
            "stored": report.inserted, "slipped": slipped, "outcome": report.outcome.value, "seconds": seconds}


def table(results: list[dict]) -> str:
    head = ("mode", "calls", "returned", "dup (near)", "rate", "all-dup calls", "leaves at quota", "stored",
            "copies past checks", "outcome", "s")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        rate = "-" if r["rate"] is None else f"{r['rate']:.0%}"
        cells = (r["mode"], r["calls"], r["returned"], f"{r['dups']} ({r['near']})", rate,
                 f"{r['all_dup_calls']}/{r['calls']}", r["at_quota"], r["stored"], r["slipped"], r["outcome"],
                 f"{r['seconds']:.0f}")
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--fake", action="store_true")
    where.add_argument("--local", action="store_true")
    parser.add_argument("--honest", action="store_true", help="the fake's well-behaved model, not the copier")
    parser.add_argument("--modes", default="samples,topics,off")
    parser.add_argument("--leaves", type=int, default=3)
    parser.add_argument("--per-leaf", type=int, default=10)
    parser.add_argument("--per-call", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=2, help="calls at once (the local model's default: a "
                        "call sees the samples stored before it starts, so more at once copy less)")
    parser.add_argument("--db", help="keep the projects in this file (default: a temporary one)")
    args = parser.parse_args(argv)
    if args.local and args.leaves == 3 and args.per_leaf == 10:
        args.leaves, args.per_leaf = 2, 4  # tiny by default on the CPU model
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    with tempfile.TemporaryDirectory() as tmp, endpoint_for(args) as (endpoint, name):
        db = args.db or str(Path(tmp) / "avoid.db")
        with Store(db) as store:
            results = []
            for mode in modes:
                results.append(measure(store, endpoint, args, mode))
                print(f"{mode}: done", file=sys.stderr, flush=True)
        print(f"{name}: {args.leaves} leaves x {args.per_leaf} samples, {args.per_call} per call, "
              f"at most {args.rounds} rounds")
        print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
