"""The tree's commands: init, projects, build, show, edit, export-tree and import-tree (registered by
``cli.parser``)."""

from __future__ import annotations

import sys

from pydantic import ValidationError

from . import edits
from .cli import NO_PRICES, _endpoint, _node, _open, _prices, _not_the_database, _report, _run, _update_settings, counted
from .cli_args import _first_error, existing_db
from .errors import ConfigError, NotFoundError
from .evidence import evidence
from .files import check_target
from .partition import check_buildable
from .spec import ProjectSpec, Settings
from .store import Store
from .treefile import import_tree, parse_tree_file, read_tree_file, write_tree_file


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
    existing_db(args.db)
    with Store(args.db) as store:
        for p in store.projects():
            print(f"{p['id']:>4}  {p['name']}")
    return 0


def cmd_build(args) -> int:
    with _open(args) as (store, project_id):
        tree = store.tree(project_id)
        under = _node(tree, args.under, "--under")
        check_buildable(tree, under)  # before the settings change and the job row
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


def cmd_edit(args) -> int:
    existing_db(args.db)
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
