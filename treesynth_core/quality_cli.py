"""The ``quality`` and ``baseline`` commands (issue 9); ``cli.parser()`` registers them with ``register``.

    python -m treesynth_core quality --db my.db                       # dataset, worst splits, worst leaves
    python -m treesynth_core quality --db my.db --format json --out quality.json
    python -m treesynth_core baseline --db my.db                      # create the naive project, print the plan
    python -m treesynth_core baseline --db my.db --yes                # ... generate it and compare

Arguments reuse cli's checked types: a bad value is one line and exit 2 before anything is read or written.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys

from .cli_args import existing_db
from .errors import ConfigError, NotFoundError
from .files import atomic_write, check_target
from .outcome import Outcome
from .store import Store

FORMATS = ("table", "json", "csv")
WORST_SPLITS = 10
PAIRS_PER_SPLIT = 3
WORST_LEAVES = 20
SHOWN_CHARS = 80
NOT_ENOUGH = "-"  # a metric without enough data (fewer than 2 samples, no bigram, too little text)


def register(sub) -> None:
    """Add ``quality`` and ``baseline`` to the CLI's subparsers."""
    from . import cli

    def common(name: str, func, help_text: str) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help_text, description=help_text, epilog=cli.EXIT_CODES,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        c.set_defaults(func=func)
        cli.db_options(c, project_help="the tree project's id (default: the file's only project that is not a "
                                       "baseline)")
        c.add_argument("--threshold", type=threshold, default=None,
                       help="cosine at or above which two samples are near-duplicates (default 0.85)")
        return c

    c = common("quality", cmd_quality, "measure diversity and near-duplicates per dataset, subtree, leaf and "
                                       "split (offline embeddings, cached per sample)")
    c.add_argument("--embedding-model", type=cli.text,
                   help="embed through the endpoint's /v1/embeddings with this model (e.g. text-embedding-3-small; "
                        "endpoint from $OPENAI_BASE_URL / $OPENAI_API_KEY) instead of the offline MiniLM; vectors "
                        "are cached per model, so the two never mix")
    c.add_argument("--under", type=cli.text, help="only this node's subtree")
    c.add_argument("--status", type=cli.statuses, help="sample statuses to measure (default: generated,accepted)")
    c.add_argument("--format", choices=FORMATS, default="table", help="table (default), json (the full report) "
                                                                     "or csv (one row per scope)")
    c.add_argument("--out", help="write the report to this file (atomically) instead of printing it")

    c = common("baseline", cmd_baseline, "create the naive baseline (same task, no tree, as many samples), print "
                                         "its cost plan, generate it with --yes and compare it with the tree")
    c.add_argument("--samples", type=cli.setting("per_leaf"),
                   help="samples in the baseline (default: the tree project's live samples)")
    c.add_argument("--yes", action="store_true", help="generate without asking: you accept the plan's cost")
    c.add_argument("--local", action="store_true", help="use the bundled local model (no API key)")
    c.add_argument("--gguf", help="with --local: another GGUF model file")
    c.add_argument("--base-url", type=cli.text, help="OpenAI-compatible endpoint (default: $OPENAI_BASE_URL)")
    c.add_argument("--model", type=cli.text, help="model name (default: $TREESYNTH_MODEL)")
    c.add_argument("--concurrency", type=cli.setting("concurrency"), help="parallel LLM calls at the start")


def threshold(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 < value <= 1):
        raise argparse.ArgumentTypeError(f"must be a cosine above 0 and at most 1 (got {text!r})")
    return value


# ----------------------------------------------------------------------------------------- shared steps
def _open_store(args) -> Store:
    existing_db(args.db)
    return Store(args.db)


def tree_project(store: Store, project: int | None) -> int:
    """``project``, or the file's only project that is not a naive baseline."""
    if project is not None:
        store.project(project)
        return project
    rows = [p["id"] for p in store.projects() if store.baseline_source(p["id"]) is None]
    if not rows:
        raise NotFoundError("this database holds no project", "run `python -m treesynth_core init` first")
    if len(rows) > 1:
        raise NotFoundError(f"this database holds {len(rows)} projects", "pass --project ID (see `projects`)")
    return rows[0]


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return NOT_ENOUGH
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _short(text: str, n: int = SHOWN_CHARS) -> str:
    text = " ".join(text.split())
    return json.dumps(text if len(text) <= n else text[: n - 3] + "...", ensure_ascii=False)


# ------------------------------------------------------------------------------------------- quality
def format_report(report, name: str) -> str:
    """The report as text: the dataset, the worst splits with their offending pairs, the worst leaves."""
    d = report.dataset
    out = [f"project {report.project_id} ({name}): {d.n} samples ({', '.join(report.statuses)})"
           + (f" under {report.labels.get(report.under, report.under)}" if report.under else "")
           + f"; embeddings {report.model} ({report.computed} computed now); near-duplicate threshold "
             f"{report.threshold:g}"]
    if report.missing_embeddings:
        out.append(f"  note: {report.missing_embeddings} sample(s) without a current embedding were left out")
    cov = (f"{d.leaves_at_quota}/{d.leaves} leaves at quota" if report.has_tree else "no tree")
    rate = f" ({d.near_dup_rate:.0%} of samples redundant)" if d.near_dup_rate is not None else ""
    out += ["", "dataset",
            f"  mean pairwise cosine   {_fmt(d.mean_cosine)}   (paper-style diversity: lower = more diverse)",
            f"  mean nearest cosine    {_fmt(d.mean_nearest_cosine)}",
            f"  near-duplicates        {d.near_dup_pairs} pair(s) in {d.near_dup_clusters} cluster(s){rate}",
            f"  distinct-2             {_fmt(d.distinct_2)}   (higher = more varied wording)",
            f"  compression ratio      {_fmt(d.compression_ratio, 2)}   (higher = more repetitive)",
            f"  coverage               {cov}"]
    if d.n < 2:
        out.append(f"  ({NOT_ENOUGH} = not enough data: fewer than 2 samples)")
    if report.splits:
        out += ["", f"worst splits (sibling values whose samples overlap: centroid cosine near 1 and separation "
                    f"near or above 1 mean the values do not separate the samples; {WORST_SPLITS} shown)"]
        for s in report.splits[:WORST_SPLITS]:
            where = report.labels.get(s.node_id, s.node_id)
            out.append(f"  [{s.dimension}] at {where}: {s.value_a!r} ({s.n_a}) vs {s.value_b!r} ({s.n_b}): "
                       f"centroid {s.centroid_cosine:.3f}, separation {_fmt(s.separation, 2)}, "
                       f"{s.cross_pair_count} cross near-duplicate(s)")
            for a, b, cos in s.cross_pairs[:PAIRS_PER_SPLIT]:
                out.append(f"      #{a} ~ #{b} ({cos:.3f}): {_short(report.snippets.get(a, ''))} | "
                           f"{_short(report.snippets.get(b, ''))}")
    elif report.has_tree:
        out += ["", "no split has two values with samples yet"]
    if report.pairs and not report.splits:
        out += ["", "most similar pairs"]
        for a, b, cos in report.pairs[:5]:
            out.append(f"  #{a} ~ #{b} ({cos:.3f}): {_short(report.snippets.get(a, ''))} | "
                       f"{_short(report.snippets.get(b, ''))}")
    leaves = sorted(report.by_leaf.items(), key=lambda kv: _leaf_rank(kv[1]))
    if leaves:
        out += ["", f"leaves, least diverse first ({min(WORST_LEAVES, len(leaves))} of {len(leaves)}; "
                    f"{NOT_ENOUGH} = not enough data)",
                f"  {'n':>5} {'cosine':>7} {'nearest':>7} {'dups':>5} {'clust':>5} {'dist-2':>6} {'compr':>6} "
                f"{'quota':>5}  path"]
        for node_id, m in leaves[:WORST_LEAVES]:
            quota = ("yes" if m.leaves_at_quota else "no") if m.leaves else NOT_ENOUGH
            out.append(f"  {m.n:>5} {_fmt(m.mean_cosine):>7} {_fmt(m.mean_nearest_cosine):>7} {m.near_dup_pairs:>5} "
                       f"{m.near_dup_clusters:>5} {_fmt(m.distinct_2, 2):>6} {_fmt(m.compression_ratio, 2):>6} "
                       f"{quota:>5}  {report.labels.get(node_id, node_id)}  id={node_id}")
    return "\n".join(out) + "\n"


def _leaf_rank(m) -> tuple:
    """Least diverse first; leaves without enough data last."""
    return (m.mean_cosine is None, -(m.mean_cosine or 0.0), -(m.near_dup_rate or 0.0), -m.n)


def report_csv(report) -> str:
    """One row per scope: the dataset, each internal node's subtree, each leaf."""
    from .quality import Metrics

    columns = list(Metrics.__dataclass_fields__)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["scope", "node_id", "path", *columns])
    rows = [("dataset", report.under or "", report.labels.get(report.under, "") if report.under else "",
             report.dataset)]
    rows += [("subtree", k, report.labels.get(k, ""), m) for k, m in report.by_node.items()]
    rows += [("leaf", k, report.labels.get(k, ""), m) for k, m in report.by_leaf.items()]
    for scope, node_id, path, m in rows:
        row = m.as_row()
        writer.writerow([scope, node_id, _cell(path)] + ["" if row[c] is None else row[c] for c in columns])
    return buffer.getvalue()


def _cell(text: str) -> str:
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text  # no formula injection in a spreadsheet


def cmd_quality(args) -> int:
    from . import cli
    from .quality import DEFAULT_STATUSES, DEFAULT_THRESHOLD, quality_report

    if args.out is not None:
        check_target(args.out, "output file")
        cli._not_the_database(args, args.out)
    with _open_store(args) as store:
        project_id = tree_project(store, args.project)
        encoder = None
        if args.embedding_model:
            from .config import endpoint_from_env
            from .embed import EndpointEncoder

            endpoint = endpoint_from_env()
            if not endpoint.api_key and not endpoint.base_url:
                raise cli.ConfigError("--embedding-model needs an endpoint (OPENAI_API_KEY is not set)",
                                      "export OPENAI_API_KEY=..., or OPENAI_BASE_URL, or drop --embedding-model")
            encoder = EndpointEncoder(endpoint, model=args.embedding_model)
        bar = cli.ProgressBar("embed")
        try:
            report = quality_report(store, project_id, under=args.under, statuses=args.status or DEFAULT_STATUSES,
                                    threshold=args.threshold or DEFAULT_THRESHOLD, encoder=encoder,
                                    on_progress=lambda done, total: bar(done, total) if total else None)
        finally:
            bar.close()
        name = store.project(project_id).name
    if args.format == "json":
        text = json.dumps(report.to_json(), ensure_ascii=False, indent=1) + "\n"
    elif args.format == "csv":
        text = report_csv(report)
    else:
        text = format_report(report, name)
    if args.out is None:
        sys.stdout.write(text)
    else:
        atomic_write(args.out, (("\ufeff" if args.format == "csv" else "") + text).encode("utf-8"))
        d = report.dataset
        print(f"wrote the {args.format} report of {d.n} samples to {args.out} (mean cosine {_fmt(d.mean_cosine)}, "
              f"{d.near_dup_pairs} near-duplicate pair(s), {len(report.splits)} sibling pair(s))")
    return 0


# ------------------------------------------------------------------------------------------- baseline
def format_comparison(frame, tree_label: str, naive_label: str) -> str:
    """``compare(naive, tree)`` as text: the naive column first, the tree's, and the tree's relative change."""
    lines = [f"{'metric':<20} {naive_label:>14} {tree_label:>14} {'tree vs naive':>14}  more diverse"]
    for metric, row in frame.iterrows():
        rel = row["relative difference"]
        digits = 0 if metric in ("n", "near_dup_pairs", "near_dup_clusters") else 3
        lines.append(f"{metric:<20} {_num(row['a'], digits):>14} {_num(row['b'], digits):>14} "
                     f"{(NOT_ENOUGH if rel is None else f'{rel:+.1%}'):>14}  {row['more diverse']}")
    return "\n".join(lines) + f"\n({NOT_ENOUGH} = not enough data; mean cosine is paper-style, not the paper's " \
                              "exact metric: compare numbers from the same encoder only)\n"


def _num(value, digits: int) -> str:
    if value is None:
        return NOT_ENOUGH
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def cmd_baseline(args) -> int:
    from . import cli
    from .baseline import baseline_of, plan_baseline
    from .quality import DEFAULT_THRESHOLD, compare, quality_report

    with _open_store(args) as store:
        project_id = tree_project(store, args.project)
        if store.baseline_source(project_id) is not None:
            raise ConfigError(f"project {project_id} is a naive baseline",
                              f"pass its tree project: --project {store.baseline_source(project_id)}")
        if args.yes and not args.local:
            with cli._endpoint(args):  # a missing endpoint is refused before the baseline is created or changed
                pass
        plan = plan_baseline(store, project_id, samples=args.samples)
        baseline_id = baseline_of(store, project_id)
        cost = f"${plan.cost:.4f}" if plan.cost is not None else "unknown (no prices set)"
        print(f"naive baseline: project {baseline_id} ({store.project(baseline_id).name}), "
              f"{plan.leaves[0].quota if plan.leaves else 0} samples from the root prompt")
        print(f"plan: {plan.missing} samples missing, {plan.calls} calls, "
              f"~{plan.prompt_tokens + plan.completion_tokens} tokens, cost {cost}")
        outcome = Outcome.COMPLETE
        if plan.missing:
            if not args.yes:
                print("nothing generated: run again with --yes to accept this plan and generate the baseline",
                      file=sys.stderr)
                return 0
            with cli._endpoint(args) as endpoint:
                job, outcome = cli._run(args, store, baseline_id, "generate",
                                        {"concurrency": args.concurrency}, endpoint)
            code = cli._report(job, outcome, "generate", job["message"])
            if outcome in (Outcome.FAILED, Outcome.CANCELLED, Outcome.INTERRUPTED):
                return code
        bar = cli.ProgressBar("embed")
        try:
            progress = lambda done, total: bar(done, total) if total else None  # noqa: E731
            th = args.threshold or DEFAULT_THRESHOLD
            tree = quality_report(store, project_id, threshold=th, on_progress=progress)
            naive = quality_report(store, baseline_id, threshold=th, on_progress=progress)
        finally:
            bar.close()
    print()
    print(format_comparison(compare(naive, tree), f"tree (#{project_id})", f"naive (#{baseline_id})"), end="")
    return outcome.exit_code
