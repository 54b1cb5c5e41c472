"""TreeSynth against naive temperature sampling on one task, at equal sample counts (issue 9), on whatever endpoint
is configured: ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY`` (and ``TREESYNTH_MODEL``), ``--local`` for the bundled
0.5B model, or ``--fake`` for the fake server (plumbing only: its texts say nothing about diversity).

    python bench/diversity.py --fake
    python bench/diversity.py --local --depth 2 --samples 20          # slow: minutes on 2 cores
    python bench/diversity.py --task "customer support emails about a broken order" --fields email,reply
    python bench/diversity.py --scale 10000      # no LLM: time embedding and the quality report on N samples

One project is built (``--depth``) and filled to about ``--samples`` samples (``ceil(samples / leaves)`` per
leaf); its naive baseline (``treesynth_core.baseline``: same task, fields, model and temperatures, no tree) is
filled to the tree's count; both are measured with the offline encoder and printed side by side (metric, naive,
tree, relative difference). Mean pairwise cosine is paper-style, not the paper's exact metric. The database
stays (``--db``, default a temporary file) for `python -m treesynth_core quality --db ...`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import re
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from treesynth_core import baseline, quality  # noqa: E402
from treesynth_core.config import endpoint_from_env  # noqa: E402
from treesynth_core.embed import default_encoder  # noqa: E402
from treesynth_core.fakellm import FakeLLM  # noqa: E402
from treesynth_core.generate import duplicate_rate  # noqa: E402
from treesynth_core.generate import generate  # noqa: E402
from treesynth_core.llm import LLM  # noqa: E402
from treesynth_core.partition import build  # noqa: E402
from treesynth_core.quality_cli import format_comparison  # noqa: E402
from treesynth_core.spec import ProjectSpec, Settings, local_settings, parse_fields  # noqa: E402
from treesynth_core.store import Store  # noqa: E402

TASK = "GSM8K-style grade-school math word problems"
FIELDS = "question: the problem, answer: the worked solution ending in the number"
DIGIT = re.compile(r"\d")


@contextlib.contextmanager
def endpoint_for(args):
    if args.fake:
        with FakeLLM(sample_style=args.style) as fake:
            yield fake.endpoint(max_retries=1, timeout=10), "fake server" + (f" ({args.style})" if args.style else "")
    elif args.local:
        from treesynth_core.local import LocalServer, resolve_model

        print("starting the bundled local model...", file=sys.stderr)
        with LocalServer(resolve_model(None), report=lambda m: print(m, file=sys.stderr)) as server:
            yield server.endpoint(), "bundled local model (Qwen2.5-Coder 0.5B, llama.cpp)"
    else:
        endpoint = endpoint_from_env()
        if not endpoint.api_key and not endpoint.base_url:
            raise SystemExit("no endpoint: set OPENAI_BASE_URL / OPENAI_API_KEY, or pass --local or --fake")
        yield endpoint, f"{endpoint.base_url or 'OpenAI'} ({endpoint.model})"


def settings_for(args) -> Settings:
    base = local_settings() if args.local else Settings()
    changes = {"max_depth": args.depth, "max_values": args.max_values, "pivots": args.pivots,
               "samples_per_call": args.samples_per_call, "generation_temperature": args.temperature,
               "concurrency": args.concurrency}
    return base.model_copy(update={k: v for k, v in changes.items() if v is not None})


def arm(store: Store, project_id: int, llm: LLM) -> dict:
    started = time.monotonic()
    report = generate(store, project_id, llm)
    return {"seconds": time.monotonic() - started, "inserted": report.inserted, "duplicates": report.duplicates,
            "invalid": report.invalid, "failed_calls": report.failed_calls, "outcome": report.outcome.value,
            "calls": store.usage(project_id)["calls"]}


def at_size(store: Store, report, k: int, draws: int = 50, seed: int = 1) -> dict:
    """The report's dataset metrics on ``draws`` random subsets of ``k`` samples, averaged: the larger arm seen at
    the smaller arm's size (near-duplicate counts grow with n squared, distinct-2 falls as n grows)."""
    import numpy as np

    from treesynth_core import diversity as dv

    spec = store.project(report.project_id)
    texts = {r["id"]: quality.sample_text(r["data"], spec.dedup_fields)
             for r in store.iter_samples(report.project_id, statuses=list(report.statuses))}
    cached = store.embedding_vectors(report.project_id, report.model)
    ids = [i for i in report.sample_ids if i in cached]
    e = np.vstack([np.frombuffer(cached[i][1], dtype="<f4") for i in ids])
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(draws):
        pick = rng.choice(len(ids), size=k, replace=False)
        s = dv.summarize([texts[ids[i]] for i in pick], e[pick], threshold=report.threshold)
        rows.append((s.mean_cosine, s.near_duplicate_rate, s.distinct_2))
    mean = [None if any(v is None for v in col) else float(np.mean(col)) for col in zip(*rows)]
    return dict(zip(("mean_cosine", "near_dup_rate", "distinct_2"), mean))


def digit_share(store: Store, project_id: int) -> float | None:
    spec = store.project(project_id)
    texts = [quality.sample_text(r["data"], spec.dedup_fields)
             for r in store.iter_samples(project_id, statuses=list(quality.DEFAULT_STATUSES))]
    return sum(bool(DIGIT.search(t)) for t in texts) / len(texts) if texts else None


WORDS = {
    "who": ["Tom", "Sara", "a baker", "a farmer", "the class", "a train", "Mei", "a shop", "the team", "a pilot",
            "Omar", "a library", "the city", "a cyclist", "Lena", "a factory"],
    "verb": ["buys", "sells", "collects", "loses", "shares", "plants", "bakes", "reads", "builds", "paints",
             "saves", "spends", "travels", "fills", "cuts", "counts"],
    "what": ["apples", "cookies", "kilometres", "books", "tickets", "litres of water", "bricks", "stamps", "coins",
             "seeds", "pages", "boxes", "marbles", "minutes", "dollars", "tiles"],
    "ask": ["How many are left?", "What is the total?", "How much does each get?", "What fraction remains?",
            "How long will it take?", "What is the average per day?", "How many more are needed?",
            "What percentage is that?"],
}


def synthetic(n: int, seed: int = 7) -> list[str]:
    """``n`` word problems from random words: varied enough that few are near-duplicates, like real data."""
    import random

    rng = random.Random(seed)
    return [f"{rng.choice(WORDS['who'])} {rng.choice(WORDS['verb'])} {rng.randint(2, 999)} "
            f"{rng.choice(WORDS['what'])} on {rng.choice(['Monday', 'a trip', 'the farm', 'sale', 'holiday'])} and "
            f"{rng.choice(WORDS['verb'])} {rng.randint(2, 99)} {rng.choice(WORDS['what'])}. {rng.choice(WORDS['ask'])}"
            for _ in range(n)]


def scale(n: int, db: Path) -> int:
    """Time the quality path at ``n`` samples in a depth-3 tree (4 x 4 x 4 = 64 leaves), no LLM: embedding
    from cold, the report from the cache, and the update after 100 new samples. Peak RSS of the process."""
    import resource

    from treesynth_core import edits

    encoder = default_encoder()
    texts = synthetic(n + 100)
    with Store(db) as store:
        spec = ProjectSpec(name="scale", task=TASK, fields=parse_fields("question,answer"),
                           settings=Settings(max_depth=3, per_leaf=max(1, n // 64)))
        pid = store.create_project(spec)
        level = [store.tree(pid).root.id]
        for dim in ("topic", "setting", "difficulty"):
            level = [kid for node in level for kid in edits.set_split(store, node, dim, [f"{dim} {c}" for c in "ABCD"])]
        leaves = level

        def add(batch: list[str], offset: int) -> None:
            by_leaf: dict[str, list[dict]] = {}
            for i, text in enumerate(batch):
                by_leaf.setdefault(leaves[(offset + i) % len(leaves)], []).append(
                    {"data": {"question": text, "answer": "42"}, "norm_hash": f"s{offset + i}"})
            for leaf, rows in by_leaf.items():
                store.add_samples(pid, leaf, rows, cap=None, call_id=None)

        add(texts[:n], 0)
        timings = {}
        started = time.perf_counter()
        computed = quality.embed_samples(store, pid, encoder=encoder)
        timings["embed (cold)"] = time.perf_counter() - started
        started = time.perf_counter()
        report = quality.quality_report(store, pid, encoder=encoder)
        timings["report (cached vectors)"] = time.perf_counter() - started
        add(texts[n:], n)
        started = time.perf_counter()
        after = quality.quality_report(store, pid, encoder=encoder)
        timings["report after +100 samples"] = time.perf_counter() - started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{n:,} samples in 64 leaves (depth 3), {encoder.name}, {default_encoder().threads} thread(s)")
    print(f"  embed (cold)                 {timings['embed (cold)']:7.2f} s  ({computed / timings['embed (cold)']:,.0f} "
          "samples/s)")
    print(f"  report (cached vectors)      {timings['report (cached vectors)']:7.2f} s  "
          f"(mean cosine {report.dataset.mean_cosine:.3f}, {report.dataset.near_dup_pairs} near-dup pairs, "
          f"{len(report.splits)} sibling pairs)")
    print(f"  report after +100 samples    {timings['report after +100 samples']:7.2f} s  ({after.computed} embedded)")
    print(f"  peak RSS                     {rss:7.0f} MB")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    where = p.add_mutually_exclusive_group()
    where.add_argument("--fake", action="store_true", help="the fake server (plumbing, not a measurement)")
    where.add_argument("--local", action="store_true", help="the bundled 0.5B model (slow)")
    p.add_argument("--style", choices=["templated", "varied"], help="with --fake: the fake's sample style")
    p.add_argument("--task", default=TASK)
    p.add_argument("--fields", default=FIELDS)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--samples", type=int, default=20, help="samples per arm (the tree's leaves share them)")
    p.add_argument("--max-values", type=int)
    p.add_argument("--pivots", type=int)
    p.add_argument("--samples-per-call", type=int)
    p.add_argument("--temperature", type=float, help="generation temperature of both arms")
    p.add_argument("--concurrency", type=int)
    p.add_argument("--threshold", type=float, default=quality.DEFAULT_THRESHOLD)
    p.add_argument("--db", help="keep the projects in this file (default: a temporary one)")
    p.add_argument("--json", help="also write both reports and the table here")
    p.add_argument("--judge", action="store_true",
                   help="also judge both arms (judge.judge_samples; the naive arm against the task only) and print "
                        "the share of samples whose verdict fits, and each arm's per-call duplicate rate")
    p.add_argument("--scale", type=int, help="no LLM: time embedding and the quality report on this many samples")
    args = p.parse_args(argv)

    db = Path(args.db) if args.db else Path(tempfile.mkdtemp(prefix="treesynth-diversity-")) / "diversity.db"
    if args.scale:
        return scale(args.scale, db)
    encoder = default_encoder()
    with endpoint_for(args) as (endpoint, label), Store(db) as store:
        spec = ProjectSpec(name="diversity bench", task=args.task, fields=parse_fields(args.fields),
                           settings=settings_for(args))
        pid = store.create_project(spec)
        concurrency = spec.settings.concurrency
        llm = LLM(endpoint, store, pid, concurrency=concurrency)
        started = time.monotonic()
        built = build(store, pid, llm)
        build_s = time.monotonic() - started
        leaves = [n for n in store.tree(pid).leaves() if n.status != "failed" and n.parent_id is not None]
        print(f"endpoint: {label}; database {db}", file=sys.stderr)
        print(f"tree: {built.summary()} in {build_s:.1f}s; {len(leaves)} leaves", file=sys.stderr)
        if not leaves:
            print("error: the build produced no leaf; nothing to compare", file=sys.stderr)
            return 2
        per_leaf = max(1, math.ceil(args.samples / len(leaves)))
        spec.settings = spec.settings.model_copy(update={"per_leaf": per_leaf})
        store.update_project(pid, spec)
        tree_arm = arm(store, pid, llm)
        llm.close()
        print(f"tree arm: {tree_arm}", file=sys.stderr)
        bid = baseline.create_baseline(store, pid)
        naive_llm = LLM(endpoint, store, bid, concurrency=concurrency)
        naive_arm = arm(store, bid, naive_llm)
        naive_llm.close()
        print(f"naive arm: {naive_arm}", file=sys.stderr)
        judged = judge_arms(store, endpoint, concurrency, pid, bid) if args.judge else None
        tree = quality.quality_report(store, pid, encoder=encoder, threshold=args.threshold)
        naive = quality.quality_report(store, bid, encoder=encoder, threshold=args.threshold)
        table = quality.compare(naive, tree)

        print(f"\nTreeSynth vs naive on {label}: task {args.task!r}, depth {args.depth}, {len(leaves)} leaves, "
              f"{per_leaf} per leaf, generation temperature {spec.settings.generation_temperature}")
        if tree.dataset.n != naive.dataset.n:
            print(f"note: unequal counts (tree {tree.dataset.n}, naive {naive.dataset.n}): a leaf or the naive "
                  "arm fell short after its refill rounds (duplicates or failed calls)")
        print(format_comparison(table, "tree", "naive"), end="")
        small, big = sorted([naive, tree], key=lambda r: r.dataset.n)
        if small.dataset.n != big.dataset.n and small.dataset.n >= 2:
            sub = at_size(store, big, small.dataset.n)
            which = "tree" if big is tree else "naive"
            print(f"the {which} arm at the other's size ({small.dataset.n} of its {big.dataset.n} samples, mean of "
                  f"50 random draws): " + ", ".join(f"{k} {'-' if v is None else f'{v:.3f}'}" for k, v in sub.items()))
        rows = []
        for name, a, r in (("naive", naive_arm, naive), ("tree", tree_arm, tree)):
            valid = a["inserted"] + a["duplicates"]
            share = f" ({a['duplicates'] / valid:.0%} of valid samples)" if valid else ""
            rows.append(f"  {name:<6} {a['calls']:>4} calls ({a['failed_calls']} failed), {a['inserted']} stored, "
                        f"{a['duplicates']} exact duplicate(s) dropped{share}, {a['invalid']} invalid, "
                        f"{a['seconds']:.1f}s; samples with a digit: {pct(digit_share(store, r.project_id))}")
        print("generation (calls include the tree's build for the tree arm):")
        print("\n".join(rows))
        for name, project_id in (("naive", bid), ("tree", pid)):
            print(f"  {name:<6} per-call duplicate rate: "
                  f"{duplicate_rate(store.sample_call_notes(project_id, '')).text()}")
        if judged:
            print("leaf-fit judge (share of samples whose verdict fits; naive judged against the task only):")
            for name in ("naive", "tree"):
                j = judged[name]
                print(f"  {name:<6} {j['fits']} fit / {j['misfits']} misfit / {j['not_judged']} not judged of "
                      f"{j['n']} ({pct(j['share'])}); {j['calls']} judge call(s), {j['seconds']:.1f}s")
        if tree.splits:
            s = tree.splits[0]
            print(f"worst split: [{s.dimension}] {s.value_a!r} vs {s.value_b!r}: centroid {s.centroid_cosine:.3f}, "
                  f"{s.cross_pair_count} cross near-duplicate(s)")
        if args.json:
            Path(args.json).write_text(json.dumps({"endpoint": label, "tree": tree.to_json(), "naive": naive.to_json(),
                                                   "arms": {"tree": tree_arm, "naive": naive_arm},
                                                   "judge": judged,
                                                   "table": json.loads(table.to_json(orient="index"))}, indent=1))
    return 0


def judge_arms(store: Store, endpoint, concurrency, *project_ids: int) -> dict:
    """judge.judge_samples on each project (tree first, then naive), then the share of live samples that fit."""
    from treesynth_core import judge

    out = {}
    for name, project_id in zip(("tree", "naive"), project_ids):
        started = time.monotonic()
        llm = LLM(endpoint, store, project_id, concurrency=concurrency)
        try:
            report = judge.judge_samples(store, project_id, llm)
        finally:
            llm.close()
        samples = store.samples(project_id, statuses=list(quality.DEFAULT_STATUSES))
        verdicts = judge.sample_verdicts(store, project_id, samples)
        fits = sum(v.fits is True for v in verdicts.values())
        misfits = sum(v.fits is False for v in verdicts.values())
        out[name] = {"n": len(samples), "fits": fits, "misfits": misfits, "not_judged": len(samples) - fits - misfits,
                     "share": fits / len(samples) if samples else None, "calls": report.judge_calls,
                     "summary": report.summary(), "seconds": time.monotonic() - started}
        print(f"judge {name}: {report.summary()}", file=sys.stderr)
    return out


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


if __name__ == "__main__":
    raise SystemExit(main())
