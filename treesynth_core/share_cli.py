"""The ``seed`` command group and the ``push`` command (issue 11 parts 5 and 6).

    python -m treesynth_core seed add --db my.db --file seeds.jsonl            # task-wide style examples
    python -m treesynth_core seed add --db my.db --node ID --json '{"question": "...", "answer": "..."}'
    python -m treesynth_core seed list --db my.db
    python -m treesynth_core seed rm --db my.db --id 3
    python -m treesynth_core push --db my.db --repo me/my-dataset --dry-run out/   # the exact upload set
    python -m treesynth_core push --db my.db --repo me/my-dataset                   # HF_TOKEN from the environment

``cli.parser()`` registers both with ``register``; bad values are one line and exit 2 before anything changes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import seeds
from .errors import ConfigError
from .outcome import Outcome


def register(sub) -> None:
    from . import cli

    examples = "examples:\n" + "\n".join("  " + line.strip().removeprefix("python -m treesynth_core ")
                                          for line in __doc__.splitlines() if "treesynth_core seed" in line)
    group = sub.add_parser("seed", help="seed examples: a few samples shown in prompts as style examples",
                           description="Hold a few example samples per node or for the whole task; pivot and leaf "
                                       "prompts show them as style examples (not to be copied).",
                           epilog=f"{examples}\n\n{cli.EXIT_CODES}",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = group.add_subparsers(dest="seed_command", required=True)
    c = commands.add_parser("add", help="add examples from a JSONL file or one JSON object (all or nothing)",
                            epilog=cli.EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.db_options(c)
    source = c.add_mutually_exclusive_group(required=True)
    source.add_argument("--file", type=cli.text, help="a JSONL file: one object with the project's fields a line")
    source.add_argument("--json", type=cli.text, help="one example as a JSON object with the project's fields")
    c.add_argument("--node", type=cli.text, help="the node whose subtree's prompts show them (default: the whole task)")
    c.set_defaults(func=cmd_seed_add)
    c = commands.add_parser("list", help="list the seed examples", epilog=cli.EXIT_CODES,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.db_options(c)
    c.set_defaults(func=cmd_seed_list)
    c = commands.add_parser("rm", help="remove seed examples by id", epilog=cli.EXIT_CODES,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.db_options(c)
    c.add_argument("--id", type=cli.count(1, 2**62), action="append", required=True,
                   help="a seed's id (see `seed list`); repeat for several")
    c.set_defaults(func=cmd_seed_rm)

    c = sub.add_parser("push", help="push the dataset and a generated dataset card to the Hugging Face Hub",
                       description="Upload the samples as Parquet and JSONL plus a dataset card (task, fields, tree "
                                   "with counts and a sunburst image, model and settings, review counts, diversity) "
                                   "to a Hugging Face dataset repository. The token is read from HF_TOKEN only and "
                                   "never stored, logged or shown. Needs the optional extra: pip install -r "
                                   "requirements-hub.txt.",
                       epilog=cli.EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.db_options(c)
    c.add_argument("--repo", type=cli.text, required=True, help="the dataset repository id, e.g. me/my-dataset")
    vis = c.add_mutually_exclusive_group()
    vis.add_argument("--private", dest="private", action="store_true", default=True,
                     help="create the repository private (default)")
    vis.add_argument("--public", dest="private", action="store_false", help="create the repository public")
    c.add_argument("--status", type=cli.statuses,
                   help="sample statuses to include, comma-separated (default: accepted,generated)")
    c.add_argument("--license", type=license_id, default=None,
                   help="the card's license id, e.g. apache-2.0, mit, cc-by-4.0 (default: other)")
    c.add_argument("--dry-run", metavar="DIR", type=cli.text,
                   help="write the exact upload set to this folder instead of uploading (no token needed)")
    c.set_defaults(func=cmd_push)


def license_id(value: str) -> str:
    from . import hub

    try:
        return hub.check_license(value)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(f"{exc.message}; {exc.hint}") from None


def _ids(ids: list[int]) -> str:
    """'id 3', 'ids 3, 4'."""
    return f"id {ids[0]}" if len(ids) == 1 else f"ids {', '.join(map(str, ids))}"


def cmd_seed_add(args) -> int:
    from . import cli

    with cli._open(args) as (store, project_id):
        node = cli._node(store.tree(project_id), args.node, "--node")
        if args.file is not None:
            ids = seeds.import_seed_file(store, project_id, args.file, node_id=node)
            rows = [row for _, row in seeds.read_seed_file(Path(args.file).read_bytes(), Path(args.file).name)]
        else:
            try:
                value = json.loads(args.json)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"--json is not JSON: {exc}", "pass one JSON object with the project's fields")
            if not isinstance(value, dict):
                raise ConfigError("--json is not a JSON object", "pass one JSON object with the project's fields")
            ids = seeds.add_seeds(store, project_id, [value], node_id=node)
            rows = [value]
        ignored = seeds.ignored_fields(store, project_id, rows)
    print(f"added {cli.counted(len(ids), 'seed example')} ({_ids(ids)}) "
          f"{'on node ' + node if node else 'for the whole task'}"
          + (f"; fields not kept (not fields of the project): {', '.join(map(repr, ignored[:8]))}"
             + (f" and {len(ignored) - 8} more" if len(ignored) > 8 else "") if ignored else ""))
    return 0


def cmd_seed_list(args) -> int:
    from . import cli

    def line(s: seeds.Seed) -> str:
        scope = f"node {s.node_id}" if s.node_id else "whole task"
        return f"#{s.id} [{scope}, from {s.source}] {json.dumps(s.data, ensure_ascii=False)[:300]}"

    return cli.print_rows(args, seeds.list_seeds, line, "no seed examples: `seed add --file seeds.jsonl` adds some")


def cmd_seed_rm(args) -> int:
    from . import cli

    with cli._open(args) as (store, project_id):
        n = seeds.delete_seeds(store, project_id, args.id)
    print(f"removed {cli.counted(n, 'seed example')} ({_ids(list(dict.fromkeys(args.id)))})")
    return 0


def cmd_push(args) -> int:
    from . import cli, hub

    with cli._open(args) as (store, project_id):
        options = hub.PushOptions(repo_id=args.repo, private=args.private, statuses=args.status,
                                  license=args.license or hub.DEFAULT_LICENSE)
        if args.dry_run is not None:
            result = hub.dry_run(store, project_id, options, args.dry_run)
        else:
            result = hub.push(store, project_id, options)
    print(result.text(), file=sys.stdout if result.outcome is Outcome.COMPLETE else sys.stderr)
    return result.outcome.exit_code
