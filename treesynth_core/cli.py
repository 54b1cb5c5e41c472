"""The command line: the same store and functions as the app, headless.

    python -m treesynth_core init --db my.db --task "GSM8K-style math word problems" --fields question,answer
    python -m treesynth_core build --db my.db --depth 3 --max-values 8
    python -m treesynth_core show --db my.db
    python -m treesynth_core generate --db my.db --per-leaf 20
    python -m treesynth_core run --db my.db --depth 3 --per-leaf 20     # build and generate, pipelined
    python -m treesynth_core export --db my.db --format jsonl --out data.jsonl

Every user mistake ends in one line on stderr and exit code 2, before anything is changed; `build`,
`generate` and `run` exit with their run's outcome (see EXIT_CODES below and ``outcome.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sqlite3
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from pydantic import ValidationError

from . import batch_cli, data_cli, edits, history_cli, jobs, judge_cli, quality_cli
from .config import endpoint_from_env
from .edits import SAMPLE_STATUSES
from .errors import Cancelled, ConfigError, NotFoundError, TreeSynthError
from .evidence import evidence
from .export import FORMATS, export_file
from .files import check_target
from .generate import generation_targets, no_leaves_reason, plan_generation
from .outcome import EXIT_USER_ERROR, Outcome
from .spec import ProjectSpec, Settings, bounds, parse_fields, parse_root_split
from .store import Store
from .tree import Tree
from .treefile import import_tree, parse_tree_file, read_tree_file, write_tree_file

EXIT_CODES = """\
exit codes:
  0    complete: everything asked for was done (also: --dry-run, nothing missing, other commands)
  2    a user error (bad option, path or file; nothing was changed) or a failed run (nothing usable came out)
  3    partial: some nodes or calls failed or leaves are short; what finished is kept, run again to retry
  130  cancelled or interrupted; what finished is kept, run again to resume
  141  the output's reader went away (e.g. `show | head`): stopped quietly, as a Unix tool stopped by SIGPIPE
  1    an internal error (a bug; please report it; TREESYNTH_DEBUG=1 shows the traceback)"""
EXIT_PARTIAL = Outcome.PARTIAL.exit_code
EXIT_INTERNAL = 1
EXIT_BROKEN_PIPE = 128 + 13  # 141: what a shell reports for a process ended by SIGPIPE (13), as `yes | head` is
CALLS_LIMIT = (1, 100_000)  # `calls --limit`: not a project setting, so its range lives here


class ProgressBar:
    """A one-line progress bar on stderr (plain lines when stderr is not a terminal)."""

    def __init__(self, label: str):
        self.label = label
        self.started = time.monotonic()
        self.last = -1.0
        self.tty = sys.stderr.isatty()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if not self.tty and now - self.last < 2 and done < total:
            return
        self.last = now
        width = 30
        filled = int(width * done / total) if total else width
        line = f"{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} {now - self.started:5.1f}s"
        sys.stderr.write(("\r" if self.tty else "") + line + ("" if self.tty else "\n"))
        sys.stderr.flush()

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\n")


# ----------------------------------------------------------------------------- argument types
# Each refuses a bad value while the arguments are parsed: before any file is opened or any call is paid for.


def _number(text: str, kind: type, low, high):
    try:
        value = kind(text)
    except ValueError:
        value = None
    in_range = value is not None and math.isfinite(value) and (low is None or value >= low) and (
        high is None or value <= high)
    if not in_range:
        what = "a whole number" if kind is int else "a number"
        show = (lambda v: f"{int(v)}") if kind is int else (lambda v: f"{v:g}")  # never 2.14748e+09
        span = f"from {show(low)} to {show(high)}" if high is not None else f"of at least {show(low)}"
        raise argparse.ArgumentTypeError(f"must be {what} {span} (got {text!r})")
    return value


def setting(name: str, low=None):
    """The argument type of a project setting: its range is the setting's (spec.Settings), optionally with a
    higher floor for this command."""
    floor, high = bounds(name)
    low = floor if low is None else max(low, floor)
    kind = int if Settings.model_fields[name].annotation is int else float
    return lambda text: _number(text, kind, low, high)


def count(low: int, high: int):
    return lambda text: _number(text, int, low, high)


def text(value: str) -> str:
    """Text that can be stored and written: refuses bytes that are not UTF-8 (lone surrogates in argv)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError("is not valid UTF-8 text") from None
    return value


def statuses(value: str) -> list[str]:
    wanted = [s.strip() for s in text(value).split(",") if s.strip()]
    unknown = [s for s in wanted if s not in SAMPLE_STATUSES]
    if unknown or not wanted:
        raise argparse.ArgumentTypeError(
            f"unknown sample status {', '.join(map(repr, unknown)) or '(none given)'}; "
            f"use one or more of {', '.join(SAMPLE_STATUSES)}, separated by commas")
    return wanted


def fields(value: str):
    try:
        parsed = parse_fields(text(value))
    except ValidationError as exc:
        raise argparse.ArgumentTypeError(_first_error(exc)) from None
    if not parsed:
        raise argparse.ArgumentTypeError("names no field; e.g. 'question,answer' or 'question: the problem, answer'")
    names = [f.name for f in parsed]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise argparse.ArgumentTypeError(f"field names must be unique; {', '.join(twice)} appears more than once")
    return parsed


def root_split(value: str):
    try:
        return parse_root_split(text(value))
    except ValidationError as exc:
        raise argparse.ArgumentTypeError(_first_error(exc)) from None
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    return first["msg"].removeprefix("Value error, ")


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (the error and where to read the help), exit code 2."""

    def error(self, message: str):
        sys.stderr.write(f"error: {message} (see `{self.prog} --help`)\n")
        raise SystemExit(EXIT_USER_ERROR)


# ----------------------------------------------------------------------------- shared steps


@contextlib.contextmanager
def _open(args):
    """The store and the project a command works on; both checked before anything is done."""
    db = Path(args.db)
    if not db.exists():
        raise ConfigError(f"{args.db} does not exist", "create it with `python -m treesynth_core init --db ...`")
    with Store(args.db) as store:
        project_id = args.project if getattr(args, "project", None) is not None else store.only_project_id()
        store.project(project_id)  # a project that does not exist is refused here, not silently empty
        yield store, project_id


def counted(n: int, word: str) -> str:
    """'1 node', '3 nodes': a count with its word, singular or plural (``word`` is the singular; plural adds s)."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def print_rows(args, rows_of: Callable[[Store, int], list], line: Callable[[Any], str], none: str) -> int:
    """A list command (`seed list`, `batch list`): the rows ``rows_of(store, project_id)`` gives, one ``line`` each,
    or the hint ``none`` when there are none."""
    with _open(args) as (store, project_id):
        rows = rows_of(store, project_id)
    if not rows:
        print(none)
    for row in rows:
        print(line(row))
    return 0


def _node(tree: Tree, node_id: str | None, flag: str) -> str | None:
    if node_id is not None and node_id not in tree.nodes:
        raise NotFoundError(f"{flag} {node_id!r}: no such node in this project",
                            "see the node ids with `python -m treesynth_core show --db ...`")
    return node_id


def _check_endpoint(args) -> None:
    """Refuse a run with no LLM endpoint configured, before anything is changed."""
    if args.local:
        return
    endpoint = endpoint_from_env(base_url=args.base_url, model=args.model)
    if not endpoint.api_key and not endpoint.base_url:
        raise ConfigError("no LLM endpoint is configured (OPENAI_API_KEY is not set)",
                          "export OPENAI_API_KEY=..., or OPENAI_BASE_URL for a local server, or pass --local")


@contextlib.contextmanager
def _endpoint(args):
    _check_endpoint(args)
    if args.local:
        from .local import LocalServer, resolve_model

        print("starting the bundled local model...", file=sys.stderr)
        with LocalServer(resolve_model(args.gguf), report=lambda msg: print(msg, file=sys.stderr)) as server:
            yield server.endpoint()
            server.check()  # a server that died for good says how, instead of only "could not connect"
        return
    yield endpoint_from_env(base_url=args.base_url, model=args.model)


def _outcome(job: dict) -> Outcome:
    """The outcome of a finished job row: jobs.run_job writes an Outcome value as its status."""
    return Outcome(job["status"])


def _run(args, store: Store, project_id: int, kind: str, params: dict, endpoint) -> tuple[dict, Outcome]:
    """Run build/generate as a job in this process: its progress is in the store, so the app sees it."""
    params = {k: v for k, v in params.items() if v is not None and v is not False}
    job_id = jobs.create_job(store, project_id, kind, params)
    bar = ProgressBar(kind)
    try:
        job = jobs.run_job(args.db, job_id, endpoint, echo=bar)
    finally:
        bar.close()
    return job, _outcome(job)


def _report(job: dict, outcome: Outcome, kind: str, summary: str) -> int:
    """Print how the run ended (the summary names what failed and how to retry) and return its exit code."""
    if outcome is Outcome.COMPLETE:
        print(summary)
    elif outcome is Outcome.PARTIAL:
        print(summary)
        unit = {"build": "node(s)", "run": "node(s) and call(s)"}.get(kind, "call(s)")
        what = f"{job.get('failed') or 0} {unit} failed"
        print(f"warning: partial {kind} ({what}); what finished is kept: run the same command again to retry",
              file=sys.stderr)
    elif outcome is Outcome.FAILED:
        print(f"error: {kind} failed: {summary}", file=sys.stderr)
    else:
        print(f"stopped ({outcome.value}): {job['message']}; run the same command again to resume", file=sys.stderr)
    return outcome.exit_code


NO_PRICES = "no prices set: pass --price-in and --price-out to generate, build or run, or set them on the app's Home"


def _prices(args) -> dict:
    """The prices given on the command line, as settings (None: not given, the project's stay)."""
    return {"price_input_per_m": args.price_in, "price_output_per_m": args.price_out}


def _update_settings(store: Store, project_id: int, **changes) -> ProjectSpec:
    spec = store.project(project_id)
    changes = {k: v for k, v in changes.items() if v is not None}
    if changes:
        spec.settings = Settings.model_validate({**spec.settings.model_dump(), **changes})
        store.update_project(project_id, spec)
    return spec


# ----------------------------------------------------------------------------- commands


def cmd_init(args) -> int:
    settings = {k: v for k, v in dict(max_depth=args.depth, max_values=args.max_values, pivots=args.pivots,
                                      per_leaf=args.per_leaf, samples_per_call=args.samples_per_call,
                                      model=args.model, price_input_per_m=args.price_in,
                                      price_output_per_m=args.price_out, avoid_list=args.avoid_list).items()
                if v is not None}
    flags = {"name": "--name", "task": "--task", "fields": "--fields", "constraints": "--constraints",
             "root_split": "--root-split", "max_depth": "--depth", "price_input_per_m": "--price-in",
             "price_output_per_m": "--price-out"}
    try:
        default_name = " ".join(args.task.split())[:60] or "untitled"
        spec = ProjectSpec(name=args.name if args.name is not None else default_name, task=args.task,
                           fields=args.fields, constraints=args.constraints or "", settings=Settings(**settings),
                           root_split=args.root_split)
    except ValidationError as exc:  # what argparse could not check alone: lengths, duplicate field names...
        first = exc.errors()[0]
        loc = [str(p) for p in first["loc"] if p != "settings"]
        flag = flags.get(loc[0], "--" + loc[0].replace("_", "-")) if loc else "the project"
        raise ConfigError(f"{flag}: {_first_error(exc)}", "fix it and run init again") from None
    with Store(args.db) as store:
        project_id = store.create_project(spec)
    print(f"created project {project_id} ({spec.name!r}) in {args.db}")
    return 0


def cmd_projects(args) -> int:
    if not Path(args.db).is_file():
        raise ConfigError(f"database {args.db} does not exist", "create it with `python -m treesynth_core init --db ...`")
    with Store(args.db) as store:
        for p in store.projects():
            print(f"{p['id']:>4}  {p['name']}")
    return 0


def cmd_build(args) -> int:
    with _open(args) as (store, project_id):
        under = _node(store.tree(project_id), args.under, "--under")
        with _endpoint(args) as endpoint:  # refuses a missing endpoint before the settings change
            spec = _update_settings(store, project_id, max_values=args.max_values, pivots=args.pivots,
                                    max_depth=args.depth, pivots_from_data=args.pivots_from_data, **_prices(args))
            job, outcome = _run(args, store, project_id, "build", dict(
                depth=spec.settings.max_depth, under=under, approved_only=args.approved_only,
                concurrency=args.concurrency), endpoint)
        tree = store.tree(project_id)
        for node in tree.nodes.values():
            if node.status == "failed":
                print(f"  failed {tree.path_text(node.id)}: {node.failure}", file=sys.stderr)
        summary = f"{job['message']}; the tree has {len(tree)} nodes and {len(tree.leaves())} leaves"
        return _report(job, outcome, "build", summary)


def cmd_show(args) -> int:
    with _open(args) as (store, project_id):
        tree = store.tree(project_id)
        start = _node(tree, args.under, "--under") or tree.root.id
        counts = store.sample_counts(project_id)
        usage = store.usage_by_node(project_id)
        stranded = edits.stranded(store, project_id)  # issue 8: samples left on a node that got children
        spec = store.project(project_id)
        print(f"{spec.name}: {spec.task}")
        stack = [(tree.nodes[start], 0)]
        while stack:  # depth-first, children in order, without recursion
            node, indent = stack.pop()
            pad = "  " * indent
            n_samples = sum(counts.get(node.id, {}).values())
            bits = [node.status]
            if node.locked:
                bits.append("locked")
            if n_samples:
                bits.append(f"{n_samples} samples")
            if usage.get(node.id, {}).get("failed"):
                bits.append(f"{usage[node.id]['failed']} failed calls")
            split = f"  -> split by [{node.dimension}]" if node.dimension else ""
            print(f"{pad}{node.label}  ({', '.join(bits)}){split}  id={node.id}")
            if node.failure:
                print(f"{pad}  ! failed: {node.failure}")
            if node.note:
                print(f"{pad}  ! needs review: {node.note}")
            if stranded.get(node.id):  # see `move-stranded` and `route --under`
                print(f"{pad}  ! {stranded[node.id]} stranded samples (route: `route --under {node.id}`; "
                      f"or `move-stranded --node {node.id} --to CHILD`)")
            if args.evidence and (node.pivots or usage.get(node.id)):  # issue 8, H2: the evidence of the split
                for line in evidence(store, tree, node.id, spec.settings, call_rows=0).lines(pad + "  ", notes=False):
                    print(line)
            if args.max_depth is None or node.depth < args.max_depth:
                stack.extend((kid, indent + 1) for kid in reversed(tree.kids(node.id)))
        _print_usage(store, project_id, spec)
    return 0


def _print_usage(store: Store, project_id: int, spec: ProjectSpec) -> None:
    u = store.usage(project_id)
    usd = spec.settings.cost(u["prompt_tokens"], u["completion_tokens"])
    cost = f"unknown ({NO_PRICES})" if usd is None else f"${usd:.4f}"
    mended = f", {u['repaired']} mended by json-repair instead of a re-ask" if u["repaired"] else ""
    print(f"calls {u['calls']} ({u['failed_calls']} failed{mended}), tokens {u['prompt_tokens']} in / "
          f"{u['completion_tokens']} out, cost {cost}")


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


def _not_the_database(args, out: str) -> None:
    """Refuse an output path that is the database itself (or its WAL files): it would be replaced."""
    db = Path(args.db).resolve()
    if Path(out).resolve() in {db, Path(f"{db}-wal"), Path(f"{db}-shm")}:
        raise ConfigError(f"--out {out} is the database itself", "write the export to another file")


def cmd_export(args) -> int:
    check_target(args.out, "output file")
    _not_the_database(args, args.out)
    with _open(args) as (store, project_id):
        under = _node(store.tree(project_id), args.under, "--under")
        n = export_file(store, project_id, args.format, args.out, statuses=args.status, under=under,
                        system=args.system)
    print(f"wrote {n} rows to {args.out} ({FORMATS[args.format]})")
    return 0


def cmd_export_tree(args) -> int:
    check_target(args.out, "output file")
    _not_the_database(args, args.out)
    with _open(args) as (store, project_id):
        write_tree_file(store, project_id, args.out)
    print(f"wrote the tree to {args.out}")
    return 0


def cmd_import_tree(args) -> int:
    data = read_tree_file(args.file)
    parse_tree_file(data)  # a bad file is refused before the database is opened (or created)
    with Store(args.db) as store:
        project_id = import_tree(store, data, name=args.name)
    print(f"imported {args.file} as project {project_id}")
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


def cmd_edit(args) -> int:
    if not Path(args.db).exists():
        raise ConfigError(f"{args.db} does not exist", "create it with `python -m treesynth_core init --db ...`")
    with Store(args.db) as store:
        if args.node not in store.node_ids():
            raise NotFoundError(f"--node {args.node!r}: no such node in {args.db}",
                                "see the node ids with `python -m treesynth_core show --db ...`")
        node = store.node(args.node)
        if args.project is not None and node.project_id != args.project:
            raise NotFoundError(f"--node {args.node!r} belongs to project {node.project_id}, not {args.project}",
                                "pass the right --project, or leave it out")
        if "quota" in args:  # --quota N|none (history_cli.quota_option)
            edits.set_quota(store, args.node, args.quota)
            print(f"quota: {'the project default' if args.quota is None else args.quota}")
            if args.action is None:
                return 0
        elif args.action is None:
            raise ConfigError("say what to do: an action (approve, prune, restore, lock, unlock) or --quota",
                              "see `edit --help`")
        actions = {"approve": lambda: edits.approve(store, args.node, subtree=True),
                   "prune": lambda: edits.prune(store, args.node),
                   "restore": lambda: edits.restore(store, args.node),
                   "lock": lambda: edits.lock(store, args.node, True),
                   "unlock": lambda: edits.lock(store, args.node, False)}
        result = actions[args.action]()
    what = "the root" if node.parent_id is None else repr(node.label)
    done = {"approve": "approved", "prune": "pruned", "restore": "restored", "lock": "locked",
            "unlock": "unlocked"}[args.action]
    below = 0 if result is None else result - 1  # the count is the node's and those under it (lock: no count)
    print(f"{done} {what}" + (f" and {counted(below, 'node')} under it" if below else ""))
    return 0


# ----------------------------------------------------------------------------- the parser


SAVED = "the project's setting; a value given is saved in the project"
THIS_RUN = "the project's setting; a value given is for this run only"


def setting_help(name: str, what: str, *, low=None, default: str | None = None) -> str:
    """An option's help: what it sets, its range (spec.bounds, as its argument type checks) and its default
    (``default``; None: the Settings field's default, for init)."""
    floor, high = bounds(name)
    floor = floor if low is None else max(low, floor)
    show = (lambda v: f"{int(v)}") if Settings.model_fields[name].annotation is int else (lambda v: f"{v:g}")
    return f"{what}; {show(floor)} to {show(high)} (default: {default or Settings.model_fields[name].default})"


def db_options(c: argparse.ArgumentParser, *, project: bool = True, db_help: str = "the project database file",
               project_help: str = "project id (needed when the file holds several)") -> None:
    """--db (required) and, with ``project``, --project: the file and the project in it, as every command takes
    them."""
    c.add_argument("--db", required=True, help=db_help)
    if project:
        c.add_argument("--project", type=count(1, 2**62), help=project_help)


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m treesynth_core", description="TreeSynth Studio, headless.", epilog=EXIT_CODES,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    concurrency = setting("concurrency")

    def command(name, func, help_text, llm=False):
        c = sub.add_parser(name, help=help_text, epilog=EXIT_CODES if llm else None,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        c.set_defaults(func=func)
        db_options(c, project=name != "init")
        if llm:
            c.add_argument("--local", action="store_true", help="use the bundled local model (no API key)")
            c.add_argument("--gguf", help="with --local: another GGUF model file")
            c.add_argument("--base-url", type=text, help="OpenAI-compatible endpoint (default: $OPENAI_BASE_URL)")
            c.add_argument("--concurrency", type=concurrency, help="parallel LLM calls at the start (adaptive)")
        if llm or name == "init":
            c.add_argument("--model", type=text, help="model name (default: $TREESYNTH_MODEL)")
            prices = "unknown: no cost is shown" if name == "init" else SAVED + (
                ", also by --dry-run" if name == "generate" else "")
            c.add_argument("--price-in", type=setting("price_input_per_m"), help=setting_help(
                "price_input_per_m", "USD per million prompt tokens", default=prices))
            c.add_argument("--price-out", type=setting("price_output_per_m"), help=setting_help(
                "price_output_per_m", "USD per million completion tokens", default=prices))
        return c

    def tree_options(c, default: str | None) -> None:
        """--depth, --max-values and --pivots: how the tree is built (``default`` None: init's)."""
        low = None if default is None else 1  # init may set 0 (no tree); a build adds at least one level
        depth = "depth of the tree, counted from the root" + ("; 0: no tree, samples from the task itself"
                                                            if low is None else "")
        c.add_argument("--depth", type=setting("max_depth", low=low), help=setting_help(
            "max_depth", depth, low=low, default=default))
        c.add_argument("--max-values", type=setting("max_values"), help=setting_help(
            "max_values", "values a criterion may have; beyond that a node becomes open-ended (a value drawn at "
            "random for each call)", default=default))
        c.add_argument("--pivots", type=setting("pivots"), help=setting_help(
            "pivots", "example samples the LLM writes for a node before it proposes the node's criterion",
            default=default))

    def sample_options(c, default: str | None) -> None:
        """--per-leaf and --samples-per-call, and --temperature but for init (``default`` None): how leaves are
        filled."""
        c.add_argument("--per-leaf", type=setting("per_leaf"), help=setting_help(
            "per_leaf", "samples per leaf, the quota (a leaf with its own quota keeps it)", default=default))
        c.add_argument("--samples-per-call", type=setting("samples_per_call"), help=setting_help(
            "samples_per_call", "samples asked for in one LLM call", default=default))
        if default is not None:
            c.add_argument("--temperature", type=setting("generation_temperature"), help=setting_help(
                "generation_temperature", "sampling temperature of the generation calls", default=default))

    c = command("init", cmd_init, "create a project")
    c.add_argument("--task", required=True, type=text, help="what one sample is")
    c.add_argument("--avoid-list", choices=Settings.model_fields["avoid_list"].annotation.__args__,
                   help="show the model a leaf's recent samples so it writes something else: auto (default: off "
                        "for the bundled local model, which copies the list; samples elsewhere), samples, topics, off")
    c.add_argument("--fields", required=True, type=fields,
                   help="e.g. question,answer or 'question: the problem, answer'")
    c.add_argument("--name", type=text, help="the project's name (default: the task's first 60 characters)")
    c.add_argument("--constraints", type=text, help="rules every sample must follow")
    c.add_argument("--root-split", type=root_split,
                   help="hand-set first split, e.g. 'subject: algebra, geometry, statistics'")
    tree_options(c, None)
    sample_options(c, None)

    c = sub.add_parser("projects", help="list the projects in a file")
    db_options(c, project=False, db_help="the database file")
    c.set_defaults(func=cmd_projects)

    c = command("build", cmd_build, "partition the data space into a tree (resumes)", llm=True)
    tree_options(c, SAVED)
    c.add_argument("--under", type=text, help="expand only this node's subtree (a node id, see `show`)")
    c.add_argument("--approved-only", action="store_true", help="start only from approved nodes")
    c.add_argument("--pivots-from-data", action=argparse.BooleanOptionalAction, help="a node holding imported "
                   "rows takes a seeded sample of them as its pivots, no pivots call (saved; default: on)")

    c = command("show", cmd_show, "print the tree as an outline (with node ids, failures and review notes)")
    c.add_argument("--under", type=text, help="print only this node's subtree (a node id; default: the whole tree)")
    c.add_argument("--max-depth", type=setting("max_depth"),
                   help=setting_help("max_depth", "print nodes down to this depth", default="every level"))
    c.add_argument("--evidence", action="store_true", help="also print each split's pivot samples (with the value "
                   "the criterion gave each), and each node's LLM calls, tokens and cost")

    c = command("generate", cmd_generate, "fill the leaves with samples (resumes)", llm=True)
    sample_options(c, THIS_RUN)
    c.add_argument("--under", type=text, help="fill only the leaves under this node (a node id, see `show`)")
    c.add_argument("--approved-only", action="store_true", help="fill only approved or edited leaves")
    c.add_argument("--dry-run", action="store_true", help="print the plan and cost, generate nothing")

    c = command("run", cmd_run, "build and generate in one pipelined pass: each leaf is filled as soon as it "
                "exists (resumes)", llm=True)
    tree_options(c, SAVED)
    c.add_argument("--under", type=text, help="build and fill only this node's subtree")
    c.add_argument("--approved-only", action="store_true",
                   help="start only from approved nodes; fill only approved leaves and those grown from them")
    sample_options(c, THIS_RUN)

    c = command("export", cmd_export, "write samples to a file (atomically: an old file survives any failure)")
    c.add_argument("--format", choices=list(FORMATS), default="jsonl",
                   help="; ".join(f"{name}: {what}" for name, what in FORMATS.items()) + " (default: jsonl)")
    c.add_argument("--out", required=True, help="the file to write (replaced atomically)")
    c.add_argument("--status", type=statuses,
                   help=f"one or more of {', '.join(SAMPLE_STATUSES)} (default: all but excluded)")
    c.add_argument("--under", type=text, help="only the samples under this node (a node id, see `show`)")
    c.add_argument("--system", type=text, help="system message for --format chat, sharegpt or alpaca")

    c = command("export-tree", cmd_export_tree, "write the tree as JSON")
    c.add_argument("--out", required=True, help="the JSON file to write")
    c = command("import-tree", cmd_import_tree, "create a project from a tree JSON file")
    c.add_argument("--file", required=True, help="a file written by export-tree")
    c.add_argument("--name", type=text, help="the new project's name (default: the one in the file)")

    c = command("calls", cmd_calls, "list the LLM call log (what each call cost, what failed and why)")
    c.add_argument("--failed", action="store_true", help="only failed calls")
    c.add_argument("--limit", type=count(*CALLS_LIMIT), default=50,
                   help=f"the newest this many calls; {CALLS_LIMIT[0]} to {CALLS_LIMIT[1]:,} (default: 50)")

    c = command("edit", cmd_edit, "approve / prune / restore / lock / unlock a node's subtree, or set its --quota")
    c.add_argument("action", nargs="?", choices=["approve", "prune", "restore", "lock", "unlock"],
                   help="approve: the node and its subtree; prune / restore: exclude the subtree from building, "
                        "generation and export, or bring it back; lock / unlock: keep the LLM from changing it")
    c.add_argument("--node", required=True, type=text, help="the node's id (see `show`)")
    history_cli.quota_option(c)  # --quota N|none (issue 8)
    history_cli.register(sub)  # history, undo, redo (issue 8)
    batch_cli.register(sub)  # batch export / submit / poll / import / list / cancel
    quality_cli.register(sub)  # quality, baseline (issue 9)
    judge_cli.register(sub)  # judge, judge --until N (issue 9)
    data_cli.register(sub)  # import-data, route, balance (issue 11)
    from . import share_cli  # seed add/list/rm, push (issue 11)
    share_cli.register(sub)
    return p


def _broken_pipe() -> int:
    """The reader of our output went away (`show | head`): stop quietly with 141, the Unix convention (a tool
    killed by SIGPIPE exits 128 + 13; Python ignores the signal and raises BrokenPipeError instead, so we say it
    ourselves). Nothing is printed: the reader got what it wanted, and an error line would only be noise. stdout is
    pointed at /dev/null so the interpreter's final flush of what is still buffered cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no real file behind stdout (an embedding, a test's capture)
        pass
    return EXIT_BROKEN_PIPE


def main(argv: list[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage mistake, already printed as one line (2)
        try:
            sys.stdout.flush()
        except BrokenPipeError:  # `--help | head`
            return _broken_pipe()
        return exc.code if isinstance(exc.code, int) else EXIT_USER_ERROR
    except BrokenPipeError:
        return _broken_pipe()
    try:
        code = args.func(args)
        sys.stdout.flush()  # a reader that went away shows here, inside the try, not at the interpreter's exit
        return code
    except BrokenPipeError:
        return _broken_pipe()
    except Cancelled as exc:
        print(f"stopped: {exc.message}", file=sys.stderr)
        return Outcome.CANCELLED.exit_code
    except TreeSynthError as exc:
        print(f"error: {exc.message}" + (f" ({exc.hint})" if exc.hint else ""), file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("\ninterrupted: everything finished so far is saved; run the same command to resume", file=sys.stderr)
        return Outcome.INTERRUPTED.exit_code
    except sqlite3.Error as exc:  # the file went bad or away under us (disk full, locked, deleted)
        print(f"error: the database {args.db} could not be read or written: {exc} (check the file, its folder "
              "and the free disk space)", file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception as exc:  # a last resort: one line, the traceback only when asked for
        if os.environ.get("TREESYNTH_DEBUG"):
            traceback.print_exc()
        print(f"internal error: {type(exc).__name__}: {exc} (please report it with the command you ran; "
              "TREESYNTH_DEBUG=1 shows the details)", file=sys.stderr)
        return EXIT_INTERNAL
