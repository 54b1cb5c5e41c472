"""The ``judge`` command (issue 9); ``cli.parser()`` registers it with ``register``.

    python -m treesynth_core judge --db my.db                          # judge the samples not judged yet
    python -m treesynth_core judge --db my.db --until 20               # print the plan and the budget
    python -m treesynth_core judge --db my.db --until 20 --yes         # fill every leaf until 20 samples fit

Exit codes as for ``generate``: 0 complete, 3 partial (a leaf short, a call failed, the budget spent: run it
again to continue), 2 failed or a user error, 130 interrupted. Arguments reuse cli's checked types: a bad value is
one line and exit 2 before anything is read or written.
"""

from __future__ import annotations

import argparse
import sys

from .errors import TreeSynthError
from .judge import BUDGET_RANGE, CHUNK_RANGE, JUDGE_CHUNK, JudgePlan, judge_samples, judge_until, plan_judge
from .llm import LLM
from .outcome import Outcome

SHORT_SHOWN = 5  # short leaves listed after a partial run


def register(sub) -> None:
    """Add ``judge`` to the CLI's subparsers."""
    from . import cli

    text = ("check every live sample against the task and each attribute on its leaf's path (one batched LLM call "
            "per leaf); with --until N, reject misfits and refill each leaf until N samples fit, within --budget")
    c = sub.add_parser("judge", help=text, description=text, epilog=cli.EXIT_CODES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    c.set_defaults(func=cmd_judge)
    cli.db_options(c)
    c.add_argument("--under", type=cli.text, help="only the leaves under this node")
    c.add_argument("--until", type=cli.setting("per_leaf"), metavar="N",
                   help="fill each leaf until N samples fit (a leaf with its own quota: that many); needs --yes")
    c.add_argument("--budget", type=cli.count(*BUDGET_RANGE), metavar="CALLS",
                   help="the most LLM calls the run may make, every attempt counted (default: the plan's "
                        "calls x 3 with --until, else the plan's worst case)")
    c.add_argument("--chunk", type=cli.count(*CHUNK_RANGE), default=JUDGE_CHUNK,
                   help=f"samples judged per call (default {JUDGE_CHUNK})")
    c.add_argument("--samples-per-call", type=cli.setting("samples_per_call"), help="with --until: when refilling")
    c.add_argument("--yes", action="store_true", help="with --until: generate and reject without asking")
    c.add_argument("--local", action="store_true", help="use the bundled local model (no API key)")
    c.add_argument("--gguf", help="with --local: another GGUF model file")
    c.add_argument("--base-url", type=cli.text, help="OpenAI-compatible endpoint (default: $OPENAI_BASE_URL)")
    c.add_argument("--model", type=cli.text, help="model name (default: $TREESYNTH_MODEL)")
    c.add_argument("--concurrency", type=cli.setting("concurrency"), help="parallel LLM calls")


def plan_text(plan: JudgePlan, budget: int | None = None) -> str:
    """The plan in one line: what is to judge and generate, its calls, tokens and cost, and the budget (with what
    it costs at most at the plan's tokens per call)."""
    budget = plan.default_budget if budget is None else budget
    s = plan.settings
    cost = "unknown (no prices set)" if plan.cost is None else f"${plan.cost:.4f}"
    per_call = (plan.prompt_tokens / plan.calls, plan.completion_tokens / plan.calls) if plan.calls else (0, 0)
    worst = s.cost(int(per_call[0] * budget), int(per_call[1] * budget))
    line = f"plan: {len(plan.leaves)} leaves, {plan.unjudged} sample(s) to judge ({plan.judge_calls} judge call(s))"
    if plan.until is not None:
        line += (f"; until {plan.until} fit per leaf: {plan.missing} sample(s) to generate ({plan.generation_calls} "
                 f"call(s)) and judge ({plan.new_judge_calls} call(s)), more for each misfit")
    return line + (f"; {plan.calls} call(s), ~{plan.prompt_tokens + plan.completion_tokens} tokens, cost {cost}; "
                   f"budget {budget} call(s) at most" + ("" if worst is None else f" (~${worst:.4f})"))


def cmd_judge(args) -> int:
    from . import cli

    with cli._open(args) as (store, project_id):
        under = cli._node(store.tree(project_id), args.under, "--under")
        plan = plan_judge(store, project_id, until=args.until, under=under, chunk=args.chunk,
                          samples_per_call=args.samples_per_call)
        print(plan_text(plan, args.budget))
        if not plan.leaves:
            raise TreeSynthError("no leaf to judge: the tree has no leaves under the selection yet",
                                 "run build first, or pick another --under")
        if args.until is None and not plan.unjudged:
            print("nothing to judge: every live sample has a verdict")
            return 0
        if args.until is not None and not any(leaf.fitting < leaf.target for leaf in plan.leaves):
            print(f"nothing to do: every leaf has its {args.until} fitting sample(s)")
            return 0
        if args.until is not None and not args.yes:
            print("nothing done: run again with --yes to accept this plan and its budget", file=sys.stderr)
            return 0
        with cli._endpoint(args) as endpoint:
            settings = store.project(project_id).settings
            llm = LLM(endpoint, store, project_id, concurrency=args.concurrency or settings.concurrency)
            bar = cli.ProgressBar("judge" if args.until is None else "fit")
            try:
                common = dict(under=under, budget=args.budget, chunk=args.chunk, concurrency=args.concurrency,
                              on_progress=bar)
                if args.until is None:
                    report = judge_samples(store, project_id, llm, **common)
                else:
                    report = judge_until(store, project_id, llm, per_leaf=args.until,
                                         samples_per_call=args.samples_per_call, **common)
            finally:
                bar.close()
                llm.close()
    outcome = report.outcome
    if outcome is Outcome.COMPLETE:
        print(report.summary())
    elif outcome is Outcome.PARTIAL:
        print(report.summary())
        paths = {leaf.node_id: leaf.path for leaf in plan.leaves}
        for leaf_id, missing in list(report.short.items())[:SHORT_SHOWN]:
            print(f"  short: {paths.get(leaf_id, leaf_id)}: {missing} fitting sample(s) missing"
                  + (" (no new fitting sample in the last rounds)" if leaf_id in report.stalled else ""),
                  file=sys.stderr)
        print(f"warning: partial judge ({report.failed_count} call(s) failed, {len(report.short)} leaf/leaves short, "
              f"{report.unjudged} sample(s) not judged); what finished is kept: run the same command again to "
              "continue", file=sys.stderr)
    else:
        print(f"error: judge failed: {report.summary()}", file=sys.stderr)
    return outcome.exit_code
