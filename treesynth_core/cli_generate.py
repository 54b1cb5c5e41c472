"""The sample commands: generate, run (build and generate, pipelined), export and calls (registered by
``cli.parser``)."""

from __future__ import annotations

import sys

from .cli import (EXIT_PARTIAL, NO_PRICES, _check_endpoint, _endpoint, _node, _not_the_database, _open, _prices,
                  _report, _run, _update_settings)
from .errors import TreeSynthError
from .export import FORMATS, export_file
from .files import check_target
from .generate import generation_targets, no_leaves_reason, plan_generation
from .outcome import Outcome


def cmd_generate(args) -> int:
    with _open(args) as (store, project_id):
        tree = store.tree(project_id)
        under = _node(tree, args.under, "--under")
        if any(v is not None for v in _prices(args).values()):
            if not args.dry_run:
                _check_endpoint(args)  # a missing endpoint is refused before the prices change
            _update_settings(store, project_id, **_prices(args))
        plan = plan_generation(store, project_id, per_leaf=args.per_leaf, under=under,
                               approved_only=args.approved_only, samples_per_call=args.samples_per_call)
        cost = f"${plan.cost:.4f}" if plan.cost is not None else f"unknown ({NO_PRICES})"
        out = f" ({plan.awaited} more out in batch files, not asked for again)" if plan.awaited else ""
        print(f"plan: {len(plan.leaves)} leaves, {plan.missing} samples missing{out}, {plan.calls} calls, "
              f"~{plan.prompt_tokens + plan.completion_tokens} tokens, cost {cost}")
        failed_nodes = generation_targets(tree, store.project(project_id).settings, under, args.approved_only)[1]
        if not plan.leaves:
            reason = no_leaves_reason(tree, failed_nodes)
            if args.dry_run:
                print(f"warning: {reason}", file=sys.stderr)
                return 0
            raise TreeSynthError(reason)
        if args.dry_run:
            return 0
        if plan.missing == 0:
            if failed_nodes:  # the selected leaves are full, but failed nodes in the selection have nothing
                print(f"warning: nothing missing in the leaves, but {len(failed_nodes)} failed node(s) have no "
                      "samples: run build again to retry them, or prune them", file=sys.stderr)
                return EXIT_PARTIAL
            print("nothing missing: every selected leaf has its quota" + (
                f" or has its missing samples out in batch files (`batch import` their results, or `batch cancel` "
                "them to generate them here)" if plan.awaited else ""))
            return 0
        with _endpoint(args) as endpoint:
            job, outcome = _run(args, store, project_id, "generate", dict(
                per_leaf=args.per_leaf, under=under, approved_only=args.approved_only,
                samples_per_call=args.samples_per_call, temperature=args.temperature,
                concurrency=args.concurrency), endpoint)
        if outcome is not Outcome.COMPLETE:
            for call in store.failed_calls(project_id, limit=5):
                print(f"  failed call {call['id']} ({call['purpose']}): {call['error']}", file=sys.stderr)
        return _report(job, outcome, "generate", job["message"])


def cmd_run(args) -> int:
    """Build and generate in one pipelined pass: a leaf's samples are asked for as soon as the leaf is stored."""
    with _open(args) as (store, project_id):
        under = _node(store.tree(project_id), args.under, "--under")
        with _endpoint(args) as endpoint:  # refuses a missing endpoint before the settings change
            spec = _update_settings(store, project_id, max_values=args.max_values, pivots=args.pivots,
                                    max_depth=args.depth, **_prices(args))
            job, outcome = _run(args, store, project_id, "run", dict(
                depth=spec.settings.max_depth, under=under, approved_only=args.approved_only,
                per_leaf=args.per_leaf, samples_per_call=args.samples_per_call, temperature=args.temperature,
                concurrency=args.concurrency), endpoint)
        tree = store.tree(project_id)
        for node in tree.nodes.values():
            if node.status == "failed":
                print(f"  failed {tree.path_text(node.id)}: {node.failure}", file=sys.stderr)
        if outcome is not Outcome.COMPLETE:
            for call in store.failed_calls(project_id, limit=5):
                print(f"  failed call {call['id']} ({call['purpose']}): {call['error']}", file=sys.stderr)
        summary = f"{job['message']}; the tree has {len(tree)} nodes and {len(tree.leaves())} leaves"
        return _report(job, outcome, "run", summary)


def cmd_export(args) -> int:
    check_target(args.out, "output file")
    _not_the_database(args, args.out)
    with _open(args) as (store, project_id):
        under = _node(store.tree(project_id), args.under, "--under")
        n = export_file(store, project_id, args.format, args.out, statuses=args.status, under=under,
                        system=args.system)
    print(f"wrote {n} rows to {args.out} ({FORMATS[args.format]})")
    return 0


def cmd_calls(args) -> int:
    with _open(args) as (store, project_id):
        tree = store.tree(project_id)
        for c in store.call_log(project_id, failed_only=args.failed, limit=args.limit):
            where = tree.path_text(c["node_id"]) if c["node_id"] in tree.nodes else "-"
            outcome = f"FAILED: {c['error']}" if c["error"] else "ok" + (
                " (JSON mended by json-repair, no re-ask)" if c["repaired"] else "") + (
                f" (dropped: {c['dropped']})" if c["dropped"] else "")
            print(f"#{c['id']} {c['purpose']} try {c['attempt']} at {where}: {c['prompt_tokens']}+"
                  f"{c['completion_tokens']} tokens, {c['duration_s'] or 0:.2f}s, {outcome}")
    return 0
