"""The bring-your-own-data commands (issue 11); ``cli.parser()`` registers them with ``register``.

    python -m treesynth_core import-data --db my.db --file tickets.csv --map question=body --map answer=reply
    python -m treesynth_core route --db my.db                  # the plan: rows, calls, tokens, cost
    python -m treesynth_core route --db my.db --yes            # route every waiting row down the tree
    python -m treesynth_core balance --db my.db --target 50    # the plan: exclude, restore, generate
    python -m treesynth_core balance --db my.db --target 50 --yes

Exit codes as for the other commands: 0 complete, 3 partial (bad rows skipped, calls failed, leaves short), 2
failed or a user error, 130 interrupted (run the same command again to resume).
"""

from __future__ import annotations

import argparse
import sys

from .balance import METHODS, BalancePlan, balance, plan_balance
from .errors import ConfigError
from .importer import FORMATS, import_file, parse_mapping
from .outcome import Outcome
from .routing import ROWS_PER_CALL, ROWS_RANGE, RoutePlan, plan_routing

PROBLEMS_SHOWN = 10


def register(sub) -> None:
    from . import cli

    text = ("import a CSV, JSONL or Parquet file as samples (provenance 'imported'): columns mapped to the fields, "
            "every row validated (bad rows skipped with their line number), duplicates skipped; resumes")
    c = sub.add_parser("import-data", help=text, description=text, epilog=cli.EXIT_CODES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    c.set_defaults(func=cmd_import)
    cli.db_options(c)
    c.add_argument("--file", required=True, help="the CSV, JSONL or Parquet file")
    c.add_argument("--format", choices=FORMATS, help="the file's format (default: from its extension)")
    c.add_argument("--map", action="append", metavar="FIELD=COLUMN", type=cli.text,
                   help="the column a field comes from (repeatable; default: the column named like the field)")
    c.add_argument("--node", type=cli.text, help="where the rows land (default: the root; route moves them down)")

    text = ("route rows waiting at a split down the tree with the LLM, one classification per level, several rows "
            "per call; 'none of these' is recorded. Without --yes: print the plan")
    c = sub.add_parser("route", help=text, description=text, epilog=cli.EXIT_CODES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    c.set_defaults(func=cmd_route)
    _llm_options(c, cli)
    c.add_argument("--under", type=cli.text, help="only rows at this node or below it")
    c.add_argument("--retry-none", action="store_true",
                   help="ask again for the rows answered 'none of these' (e.g. after adding a value to their split)")
    c.add_argument("--rows-per-call", type=cli.count(*ROWS_RANGE), default=ROWS_PER_CALL,
                   help=f"rows classified in one call; {ROWS_RANGE[0]} to {ROWS_RANGE[1]} (default {ROWS_PER_CALL})")

    text = ("balance the leaves to a target: exclude the surplus of over-full leaves (never delete), restore or "
            "generate what under-full leaves miss. Without --yes: print the plan")
    c = sub.add_parser("balance", help=text, description=text, epilog=cli.EXIT_CODES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    c.set_defaults(func=cmd_balance)
    _llm_options(c, cli)
    c.add_argument("--target", type=cli.count(0, 10_000), help="samples per leaf, for every leaf")
    c.add_argument("--leaf-target", action="append", metavar="LEAF=N", type=cli.text,
                   help="one leaf's own target (repeatable; overrides --target for it)")
    c.add_argument("--under", type=cli.text, help="only the leaves under this node")
    c.add_argument("--method", choices=METHODS, default="random",
                   help="which samples an over-full leaf keeps: a seeded random draw, or the most different "
                        "ones (offline encoder) (default: random)")
    c.add_argument("--seed", type=cli.count(0, 2**31), default=0, help="the random draw's seed (default 0)")
    c.add_argument("--no-top-up", action="store_true", help="only downsample and restore; generate nothing")
    c.add_argument("--samples-per-call", type=cli.setting("samples_per_call"), help="when topping up")


def _llm_options(c, cli) -> None:
    cli.db_options(c)
    c.add_argument("--plan", action="store_true", help="print the plan and cost, change nothing")
    c.add_argument("--yes", action="store_true", help="run without asking")
    c.add_argument("--local", action="store_true", help="use the bundled local model (no API key)")
    c.add_argument("--gguf", help="with --local: another GGUF model file")
    c.add_argument("--base-url", type=cli.text, help="OpenAI-compatible endpoint (default: $OPENAI_BASE_URL)")
    c.add_argument("--model", type=cli.text, help="model name (default: $TREESYNTH_MODEL)")
    c.add_argument("--concurrency", type=cli.setting("concurrency"), help="parallel LLM calls")


def cmd_import(args) -> int:
    from . import cli

    with cli._open(args) as (store, project_id):
        node = cli._node(store.tree(project_id), args.node, "--node")
        bar = cli.ProgressBar("import")
        try:
            report = import_file(store, project_id, args.file, fmt=args.format, mapping=parse_mapping(args.map),
                                 node_id=node, on_progress=bar)
        finally:
            bar.close()
        tree = store.tree(project_id)
        split = tree.root is not None and bool(tree.kids(tree.root.id))
    outcome = report.outcome
    shown = report.problems[:PROBLEMS_SHOWN]
    for problem in shown:
        print(f"  skipped: {problem}", file=sys.stderr)
    if report.skipped > len(shown):  # more bad rows than reasons shown (or kept: lines lost to a quote have none)
        print(f"  ... and {report.skipped - len(shown)} more bad row(s) (the import record keeps the first 100 "
              "reasons)", file=sys.stderr)
    if outcome is Outcome.FAILED:
        print(f"error: import failed: no row could be imported; {report.summary()}", file=sys.stderr)
    else:
        print(report.summary())
        if outcome is Outcome.PARTIAL:
            print(f"warning: partial import ({report.skipped} bad row(s) skipped); fix them and import those rows "
                  "in a new file", file=sys.stderr)
        elif not report.already_complete and report.imported and not split:
            print("next: build the tree from these rows, a level at a time (`build --db ... --depth 1`: the rows "
                  "are the root's pivots), then `route --db ... --yes` and the next level")
        elif not report.already_complete and report.imported:
            print("next: route the rows down the tree with `route --db ...`")
    return outcome.exit_code


def route_plan_text(plan: RoutePlan) -> str:
    cost = "unknown (no prices set)" if plan.cost is None else f"${plan.cost:.4f}"
    return (f"plan: {plan.rows} row(s) to route over {plan.levels} level(s), {plan.rows_per_call} per call: about "
            f"{plan.calls} call(s) (at most {plan.calls * (plan.reasks + 1)} with re-asks), "
            f"~{plan.prompt_tokens + plan.completion_tokens} tokens, cost {cost}")


def cmd_route(args) -> int:
    from . import cli

    with cli._open(args) as (store, project_id):
        under = cli._node(store.tree(project_id), args.under, "--under")
        plan = plan_routing(store, project_id, start_node_id=under, rows_per_call=args.rows_per_call,
                            retry_none=args.retry_none)
        print(route_plan_text(plan))
        if not plan.rows:
            print("nothing to route: every row is at a leaf or has a decision at its node")
            return 0
        if args.plan or not args.yes:
            if not args.plan:
                print("nothing done: run again with --yes to route", file=sys.stderr)
            return 0
        with cli._endpoint(args) as endpoint:
            params = {"start_node_id": under, "rows_per_call": args.rows_per_call, "concurrency": args.concurrency,
                      "retry_none": args.retry_none}
            job, outcome = cli._run(args, store, project_id, "route", params, endpoint)
    return cli._report(job, outcome, "route", job["message"])


def _targets(pairs: list[str] | None) -> dict[str, int]:
    out = {}
    for pair in pairs or []:
        leaf, eq, number = pair.partition("=")
        if not eq or not number.strip().isdigit():
            raise ConfigError(f"--leaf-target {pair!r} is not LEAF=N", "e.g. --leaf-target 3f2a9c1b0d4e=40")
        out[leaf.strip()] = int(number)
    return out


def balance_plan_text(plan: BalancePlan) -> str:
    lines = [plan.text()]
    for leaf in plan.leaves:
        if leaf.drop or leaf.add or leaf.restore:
            lines.append(f"  {leaf.path}: {leaf.live} -> {leaf.target}"
                         + (f" (exclude {leaf.drop})" if leaf.drop else "")
                         + (f" (restore {leaf.restore})" if leaf.restore else "")
                         + (f" (generate {leaf.add})" if leaf.add else ""))
    return "\n".join(lines)


def cmd_balance(args) -> int:
    from . import cli

    targets = _targets(args.leaf_target)
    with cli._open(args) as (store, project_id):
        under = cli._node(store.tree(project_id), args.under, "--under")
        common = dict(target=args.target, targets=targets or None, under=under, method=args.method, seed=args.seed,
                      samples_per_call=args.samples_per_call)
        plan = plan_balance(store, project_id, **common)
        print(balance_plan_text(plan))
        if not (plan.drop or plan.restore or (plan.add and not args.no_top_up)):
            print("nothing to do: every leaf is at its target")
            return 0
        if args.plan or not args.yes:
            if not args.plan:
                print("nothing done: run again with --yes to balance", file=sys.stderr)
            return 0
        if args.no_top_up or not plan.add:
            report = balance(store, project_id, None, top_up=False, **common)
            print(report.summary())
            return report.outcome.exit_code
        with cli._endpoint(args) as endpoint:
            params = {**common, "targets": targets or None, "top_up": True, "concurrency": args.concurrency}
            job, outcome = cli._run(args, store, project_id, "balance", params, endpoint)
    return cli._report(job, outcome, "balance", job["message"])


__all__ = ["register", "cmd_import", "cmd_route", "cmd_balance"]
