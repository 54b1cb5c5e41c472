"""The ``batch`` command group: generation through batch files (see batch.py).

    python -m treesynth_core batch export --db my.db --out req.jsonl       # the missing samples as request lines
    python -m treesynth_core batch submit --db my.db                       # OpenAI Batch API (Files + Batches)
    python -m treesynth_core batch poll --db my.db --wait                  # download and import when done
    python -m treesynth_core batch import --db my.db --file res.jsonl      # e.g. from `vllm run-batch`
    python -m treesynth_core batch list --db my.db
    python -m treesynth_core batch cancel --db my.db --batch 3             # its pending lines are missing again

``cli.parser()`` registers the group with ``register``; the arguments reuse cli's checked types, so a bad value
is one line and exit 2 before anything is read or written.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import batch, batch_api
from .config import endpoint_from_env
from .errors import ConfigError
from .files import check_target
from .outcome import Outcome

POLL_INTERVAL = (1, 3600)  # seconds between polls with --wait


def register(sub) -> None:
    """Add ``batch`` and its commands to the CLI's subparsers."""
    from . import cli

    examples = "examples:\n" + "\n".join(line.replace("python -m treesynth_core ", "  ")
                                          for line in __doc__.splitlines() if "treesynth_core batch" in line)
    group = sub.add_parser("batch", help="generate through batch files: OpenAI Batch API or vllm run-batch",
                           description="Write the missing samples as OpenAI Batch request lines, run them through "
                                       "the Batch API (submit, poll) or `vllm run-batch`, and import the results.",
                           epilog=f"{examples}\n\n{cli.EXIT_CODES}",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = group.add_subparsers(dest="batch_command", required=True)

    def command(name: str, func, help_text: str, remote: bool = False):
        c = commands.add_parser(name, help=help_text, description=help_text, epilog=cli.EXIT_CODES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
        c.set_defaults(func=func)
        cli.db_options(c)
        if remote:
            c.add_argument("--base-url", type=cli.text, help="OpenAI-compatible endpoint with the Batch API "
                                                             "(default: $OPENAI_BASE_URL)")
        return c

    def batch_ids(c, required: bool = False):
        c.add_argument("--batch", type=cli.count(1, 2**62), action="append", required=required,
                       help="a batch file's id (see `batch list`); repeat for several" + ("" if required else
                                                                                         "; default: all"))

    c = command("export", cmd_export, "write the missing samples of the chosen leaves as OpenAI Batch request "
                                      "lines (the next round)")
    c.add_argument("--out", help="request file (default: <db name>-batches/projectP-roundN.jsonl beside the "
                                 "database); over 50,000 lines or 200 MB it is split into NAME.part001.jsonl, ...")
    c.add_argument("--per-leaf", type=cli.setting("per_leaf"))
    c.add_argument("--samples-per-call", type=cli.setting("samples_per_call"))
    c.add_argument("--temperature", type=cli.setting("generation_temperature"))
    c.add_argument("--under", type=cli.text, help="only the leaves under this node")
    c.add_argument("--approved-only", action="store_true", help="only approved or edited leaves")
    c.add_argument("--model", type=cli.text, help="the model name written into the lines: the one the engine "
                                                  "serves (default: the project's, else $TREESYNTH_MODEL)")
    c.add_argument("--response-format", choices=batch.RESPONSE_FORMATS, default="json_schema",
                   help="json_schema (default: the samples' schema, enforced by OpenAI and vLLM), json_object, "
                        "or none")
    c.add_argument("--max-lines", type=cli.count(1, batch.MAX_LINES), default=batch.MAX_LINES,
                   help="request lines per file (default and most: 50,000)")

    c = command("submit", cmd_submit, "upload exported request files and start their batches (Files + Batches "
                                      "API of the configured endpoint)", remote=True)
    batch_ids(c)
    c = command("poll", cmd_poll, "check submitted batches; download and import the results of those that "
                                  "ended", remote=True)
    batch_ids(c)
    c.add_argument("--wait", action="store_true", help="poll until every batch has ended")
    c.add_argument("--interval", type=cli.count(*POLL_INTERVAL), default=60, help="seconds between polls with "
                                                                                  "--wait (default 60)")
    c.add_argument("--no-import", action="store_true", help="download the result files, do not import them")
    c = command("import", cmd_import, "import a results file (a Batch API output or error file, or what "
                                      "`vllm run-batch` wrote); importing a line twice is a no-op")
    c.add_argument("--file", required=True, type=cli.text)
    command("list", cmd_list, "list the batch files with their state and counts")
    c = command("cancel", cmd_cancel, "release a batch file's pending lines (missing again, asked for by the "
                                      "next export); cancels it at the provider when it runs there", remote=True)
    batch_ids(c, required=True)


def _endpoint(args):
    endpoint = endpoint_from_env(base_url=args.base_url)
    if not endpoint.api_key and not endpoint.base_url:
        raise ConfigError("no endpoint is configured for the Batch API (OPENAI_API_KEY is not set)",
                          "export OPENAI_API_KEY (and OPENAI_BASE_URL for another provider), or run the files with "
                          "`vllm run-batch` and `batch import --file`")
    return endpoint


def _finish(outcome: Outcome, summary: str, what: str) -> int:
    if outcome is Outcome.FAILED:
        print(f"error: {what} failed: {summary}", file=sys.stderr)
    else:
        print(summary)
        if outcome is Outcome.PARTIAL:
            print(f"warning: partial {what}; what was usable is kept: `batch export` asks again for what is "
                  "missing", file=sys.stderr)
    return outcome.exit_code


def cmd_export(args) -> int:
    from . import cli

    with cli._open(args) as (store, project_id):
        under = cli._node(store.tree(project_id), args.under, "--under")
        if args.out is None:
            folder = batch.default_folder(args.db)
            folder.mkdir(parents=True, exist_ok=True)
            out = batch.request_path(folder, project_id, store.next_batch_round(project_id))
        else:
            out = check_target(args.out, "batch request file")
            cli._not_the_database(args, args.out)
        report = batch.export_requests(store, project_id, out, per_leaf=args.per_leaf, under=under,
                                       approved_only=args.approved_only, samples_per_call=args.samples_per_call,
                                       temperature=args.temperature, model=args.model,
                                       response_format=args.response_format, max_lines=args.max_lines)
    print(report.summary())
    return 0


def cmd_submit(args) -> int:
    from . import cli

    endpoint = _endpoint(args)
    with cli._open(args) as (store, project_id):
        report = batch_api.submit(store, project_id, endpoint, args.batch)
    print("\n".join(report.lines) or "nothing to submit: no exported batch file waits (see `batch list`)")
    return 0


def cmd_poll(args) -> int:
    from . import cli

    endpoint = _endpoint(args)
    imported = None
    with cli._open(args) as (store, project_id):
        while True:
            report = batch_api.poll(store, project_id, endpoint, args.batch, do_import=not args.no_import,
                                into=imported)
            imported = report.imported
            print("\n".join(report.lines) or "nothing to poll: no submitted batch (see `batch list`)", flush=True)
            if not args.wait or not report.running:
                break
            time.sleep(args.interval)
    if imported is None:
        return 0
    return _finish(imported.outcome, imported.summary(), "import")


def cmd_import(args) -> int:
    from . import cli

    if not Path(args.file).is_file():
        raise ConfigError(f"--file {args.file} does not exist or is not a file", "pass the results file")
    with cli._open(args) as (store, project_id):
        report = batch.import_file(store, project_id, args.file)
    return _finish(report.outcome, report.summary(), "import")


def cmd_list(args) -> int:
    from . import cli

    def line(r: dict) -> str:
        remote = f" ({r['remote']})" if r["remote"] else ""
        return (f"#{r['batch']} round {r['round']} part {r['part']}: {r['state']}{remote}, {r['lines']} lines: "
                f"{r['used']} used, {r['failed']} failed, {r['pending']} pending; {r['samples added']} samples "
                f"added; {r['file']}")

    return cli.print_rows(args, batch.records, line, "no batch files yet: `batch export` writes the first round")


def cmd_cancel(args) -> int:
    from . import cli

    with cli._open(args) as (store, project_id):
        for batch_id in args.batch:
            record = store.batch(batch_id)
            running = record["state"] == "submitted" and record["remote_status"] not in batch_api.REMOTE_ENDED
            print(batch_api.cancel(store, project_id, batch_id, _endpoint(args) if running else None))
    return 0
