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
import os
import sqlite3
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from . import batch_cli, data_cli, history_cli, jobs, judge_cli, quality_cli
from .cli_args import (SAVED, THIS_RUN, Parser, _first_error, _number, count, db_options, fields, existing_db,  # noqa: F401
                       root_split, setting, setting_help, statuses, text)
from .config import endpoint_from_env
from .edits import SAMPLE_STATUSES
from .errors import Cancelled, ConfigError, NotFoundError, TreeSynthError
from .export import FORMATS
from .outcome import EXIT_USER_ERROR, Outcome
from .spec import ProjectSpec, Settings
from .store import Store
from .tree import Tree

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


# ----------------------------------------------------------------------------- shared steps


@contextlib.contextmanager
def _open(args):
    """The store and the project a command works on; both checked before anything is done."""
    existing_db(args.db)
    with Store(args.db) as store:
        project_id = args.project if getattr(args, "project", None) is not None else store.only_project_id()
        store.project(project_id)  # a project that does not exist is refused here, not silently empty
        if store.in_trash(project_id):  # not listed, not opened by the app: not changed from here either
            raise ConfigError(f"project {project_id} is in Recently deleted",
                              "restore it first (Home page, Recently deleted)")
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


def _not_the_database(args, out: str) -> None:
    """Refuse an output path that is the database itself (or its WAL files): it would be replaced."""
    db = Path(args.db).resolve()
    if Path(out).resolve() in {db, Path(f"{db}-wal"), Path(f"{db}-shm")}:
        raise ConfigError(f"--out {out} is the database itself", "write the export to another file")


# ----------------------------------------------------------------------------- the parser
# The commands themselves live by concept: the tree's in cli_tree.py, the samples' in cli_generate.py, the others in
# the *_cli.py modules that register their own.


def parser() -> argparse.ArgumentParser:
    from .cli_generate import cmd_calls, cmd_export, cmd_generate, cmd_run
    from .cli_tree import cmd_build, cmd_edit, cmd_export_tree, cmd_import_tree, cmd_init, cmd_projects, cmd_show

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
