"""Samples per generation call: what 1, 5, 10 and 20 cost and lose (run on demand).

    python bench/bench_per_call.py --fake                       # the fake server: requests and tokens only
    python bench/bench_per_call.py --local --leaves 2 --per-leaf 10 --per-call 1,5,10   # the bundled 0.5B model

For each setting, a fresh project (the root split set by hand over ``--leaves`` topics, so no tree call) is
filled to ``--per-leaf`` samples per leaf. Printed per setting: generation requests (every attempt logged),
attempts that failed and why (cut off at ``max_tokens``, unusable JSON, no usable sample), prompt and
completion tokens per stored sample, the duplicates dropped, leaves at quota and the wall time. The
settings are the project's defaults but for the samples per call (and, with --local, the local model's).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from treesynth_core.fakellm import FakeLLM  # noqa: E402
from treesynth_core.generate import duplicate_rate, generate  # noqa: E402
from treesynth_core.llm import LLM  # noqa: E402
from treesynth_core.partition import build  # noqa: E402
from treesynth_core.spec import ProjectSpec, RootSplit, Settings, local_settings, parse_fields  # noqa: E402
from treesynth_core.store import Store, now  # noqa: E402

TASK = "Short grade-school math word problems with a worked solution"
FIELDS = "question: the problem, answer: the worked solution ending in the number"
TOPICS = ["fractions", "percentages", "ratios", "speed", "money", "area", "averages",
          "measurement"]


@contextlib.contextmanager
def endpoint_for(local: bool):
    if not local:
        with FakeLLM() as fake:
            yield fake.endpoint(max_retries=1, timeout=10)
        return
    from treesynth_core.local import LocalServer, resolve_model

    print("starting the bundled local model...", file=sys.stderr)
    with LocalServer(resolve_model(None), report=lambda m: print(m, file=sys.stderr)) as server:
        yield server.endpoint()


def measure(store: Store, endpoint, args, per_call: int) -> dict:
    base = local_settings() if args.local else Settings()
    settings = base.model_copy(update={"max_depth": 1, "per_leaf": args.per_leaf, "samples_per_call": per_call})
    spec = ProjectSpec(name=f"per call {per_call}", task=TASK, fields=parse_fields(FIELDS), settings=settings,
                       root_split=RootSplit(dimension="topic", values=TOPICS[: args.leaves]))
    pid = store.create_project(spec)
    llm = LLM(endpoint, store, pid)
    build(store, pid, llm)  # the hand-set root split: no call
    since, started = now(), time.monotonic()
    report = generate(store, pid, llm, max_rounds=args.rounds)
    seconds = time.monotonic() - started
    row = store.query(
        "select count(*) as attempts, coalesce(sum(error is not null), 0) as failed, "
        "coalesce(sum(finish_reason = 'length'), 0) as cut, coalesce(sum(prompt_tokens), 0) as prompt, "
        "coalesce(sum(completion_tokens), 0) as completion from calls where project_id = ? and purpose = 'samples'",
        [pid])[0]
    rate = duplicate_rate(store.sample_call_notes(pid, since))
    stored = max(1, report.inserted)
    at_quota = sum(store.live_count(leaf.id) >= args.per_leaf for leaf in store.tree(pid).leaves())
    llm.close()
    return {"per_call": per_call, "attempts": row["attempts"], "failed": row["failed"], "cut": row["cut"],
            "prompt": row["prompt"] / stored, "completion": row["completion"] / stored,
            "dups": f"{rate.duplicates}/{rate.returned}", "stored": report.inserted,
            "at_quota": f"{at_quota}/{args.leaves}", "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser()
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--fake", action="store_true")
    where.add_argument("--local", action="store_true")
    parser.add_argument("--leaves", type=int, default=8)
    parser.add_argument("--per-leaf", type=int, default=20)
    parser.add_argument("--per-call", default="1,5,10,20")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--db", default=None, help="keep the projects in this database (default: a temp file)")
    args = parser.parse_args()
    db = Path(args.db) if args.db else Path(f"/tmp/bench_per_call_{int(time.time())}.db")
    print("| per call | attempts | failed (cut at max_tokens) | prompt tok / sample | completion tok / sample | "
          "duplicates / returned | stored | leaves at quota | s |\n|---|---|---|---|---|---|---|---|---|", flush=True)
    with endpoint_for(args.local) as endpoint, Store(db) as store:
        for per_call in (int(x) for x in args.per_call.split(",")):
            r = measure(store, endpoint, args, per_call)
            print(f"| {r['per_call']} | {r['attempts']} | {r['failed']} ({r['cut']}) | {r['prompt']:.0f} | "
                  f"{r['completion']:.0f} | {r['dups']} | {r['stored']} | {r['at_quota']} | {r['seconds']:.0f} |",
                  flush=True)


if __name__ == "__main__":
    main()
