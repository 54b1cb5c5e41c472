"""The command line: the same store and functions as the app, headless.

    python -m treesynth_core init --db my.db --task "GSM8K-style math word problems" --fields question,answer
    python -m treesynth_core build --db my.db --depth 3 --max-values 8
    python -m treesynth_core show --db my.db
    python -m treesynth_core generate --db my.db --per-leaf 20
    python -m treesynth_core export --db my.db --format jsonl --out data.jsonl
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

from . import edits, jobs
from .config import endpoint_from_env
from .errors import Cancelled, ConfigError, TreeSynthError
from .export import FORMATS, export_file
from .generate import plan_generation
from .spec import ProjectSpec, RootSplit, Settings, parse_fields
from .store import Store
from .treefile import export_tree, import_tree


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


def _open(args) -> tuple[Store, int]:
    if not Path(args.db).exists():
        raise ConfigError(f"{args.db} does not exist", "create it with `python -m treesynth_core init --db ...`")
    store = Store(args.db)
    project_id = args.project or store.only_project_id()
    return store, project_id


@contextlib.contextmanager
def _endpoint(args):
    if args.local:
        from .local import LocalServer, resolve_model

        print("starting the bundled local model...", file=sys.stderr)
        with LocalServer(resolve_model(args.gguf)) as server:
            yield server.endpoint()
        return
    endpoint = endpoint_from_env(base_url=args.base_url, model=args.model)
    if not endpoint.api_key and not endpoint.base_url:
        raise ConfigError("no LLM endpoint is configured (OPENAI_API_KEY is not set)",
                          "export OPENAI_API_KEY=..., or OPENAI_BASE_URL for a local server, or pass --local")
    yield endpoint


def _run(args, store: Store, project_id: int, kind: str, params: dict) -> dict:
    """Run build/generate as a job in this process: its progress is in the store, so the app sees it."""
    params = {k: v for k, v in params.items() if v is not None and v is not False}
    with _endpoint(args) as endpoint:
        job_id = jobs.create_job(store, project_id, kind, params)
        bar = ProgressBar(kind)
        job = jobs.run_job(args.db, job_id, endpoint, echo=bar)
        bar.close()
    if job["status"] == "cancelled":
        raise Cancelled(job["message"])
    if job["status"] == "failed":
        raise TreeSynthError(job["message"])
    return job


def _update_settings(store: Store, project_id: int, **changes) -> ProjectSpec:
    spec = store.project(project_id)
    changes = {k: v for k, v in changes.items() if v is not None}
    if changes:
        spec.settings = Settings.model_validate({**spec.settings.model_dump(), **changes})
        store.update_project(project_id, spec)
    return spec


def cmd_init(args) -> None:
    settings = {k: v for k, v in dict(max_depth=args.depth, max_values=args.max_values, pivots=args.pivots,
                                      per_leaf=args.per_leaf, samples_per_call=args.samples_per_call,
                                      model=args.model, price_input_per_m=args.price_in,
                                      price_output_per_m=args.price_out).items() if v is not None}
    root_split = None
    if args.root_split:
        dimension, _, values = args.root_split.partition(":")
        root_split = RootSplit(dimension=dimension.strip(), values=[v.strip() for v in values.split(",") if v.strip()])
    spec = ProjectSpec(name=args.name or args.task[:60], task=args.task, fields=parse_fields(args.fields),
                       constraints=args.constraints or "", settings=Settings(**settings), root_split=root_split)
    with Store(args.db) as store:
        project_id = store.create_project(spec)
    print(f"created project {project_id} ({spec.name!r}) in {args.db}")


def _require_file(path, what: str, hint: str) -> None:
    if not Path(path).is_file():
        raise ConfigError(f"{what} {path} does not exist", hint)


def cmd_projects(args) -> None:
    _require_file(args.db, "database", "create it with `python -m treesynth_core init --db ...`")
    with Store(args.db) as store:
        for p in store.projects():
            print(f"{p['id']:>4}  {p['name']}")


def cmd_build(args) -> None:
    store, project_id = _open(args)
    spec = _update_settings(store, project_id, max_values=args.max_values, pivots=args.pivots,
                            max_depth=args.depth)
    job = _run(args, store, project_id, "build", dict(depth=spec.settings.max_depth, under=args.under,
                                                      approved_only=args.approved_only, concurrency=args.concurrency))
    tree = store.tree(project_id)
    print(f"{job['message']}; the tree has {len(tree)} nodes and {len(tree.leaves())} leaves")
    for node in tree.nodes.values():
        if node.status == "failed":
            print(f"  failed {tree.path_text(node.id)}: {node.failure}", file=sys.stderr)


def cmd_show(args) -> None:
    store, project_id = _open(args)
    tree = store.tree(project_id)
    counts = store.sample_counts(project_id)
    usage = store.usage_by_node(project_id)
    spec = store.project(project_id)
    print(f"{spec.name}: {spec.task}")
    start = args.under or tree.root.id

    def walk(node, indent):
        n_samples = sum(counts.get(node.id, {}).values())
        bits = [node.status]
        if node.locked:
            bits.append("locked")
        if n_samples:
            bits.append(f"{n_samples} samples")
        if usage.get(node.id, {}).get("failed"):
            bits.append(f"{usage[node.id]['failed']} failed calls")
        split = f"  -> split by [{node.dimension}]" if node.dimension else ""
        print(f"{'  ' * indent}{node.label}  ({', '.join(bits)}){split}")
        if node.failure:
            print(f"{'  ' * indent}  ! {node.failure}")
        if args.max_depth is None or node.depth < args.max_depth:
            for kid in tree.kids(node.id):
                walk(kid, indent + 1)

    walk(tree.nodes[start], 0)
    _print_usage(store, project_id, spec)


def _print_usage(store: Store, project_id: int, spec: ProjectSpec) -> None:
    u = store.usage(project_id)
    usd = spec.settings.cost(u["prompt_tokens"], u["completion_tokens"])
    cost = "unknown (set --price-in/--price-out)" if usd is None else f"${usd:.4f}"
    print(f"calls {u['calls']} ({u['failed_calls']} failed), tokens {u['prompt_tokens']} in / "
          f"{u['completion_tokens']} out, cost {cost}")


def cmd_generate(args) -> None:
    store, project_id = _open(args)
    plan = plan_generation(store, project_id, per_leaf=args.per_leaf, under=args.under,
                           approved_only=args.approved_only, samples_per_call=args.samples_per_call)
    cost = f"${plan.cost:.4f}" if plan.cost is not None else "unknown (no prices set)"
    print(f"plan: {len(plan.leaves)} leaves, {plan.missing} samples missing, {plan.calls} calls, "
          f"~{plan.prompt_tokens + plan.completion_tokens} tokens, cost {cost}")
    if args.dry_run or plan.missing == 0:
        return
    job = _run(args, store, project_id, "generate", dict(
        per_leaf=args.per_leaf, under=args.under, approved_only=args.approved_only,
        samples_per_call=args.samples_per_call, temperature=args.temperature, concurrency=args.concurrency))
    print(job["message"])
    for call in store.failed_calls(project_id, limit=5):
        print(f"  failed call {call['id']} ({call['purpose']}): {call['error']}", file=sys.stderr)


def cmd_export(args) -> None:
    store, project_id = _open(args)
    statuses = [s.strip() for s in args.status.split(",")] if args.status else None
    n = export_file(store, project_id, args.format, args.out, statuses=statuses, under=args.under,
                    system=args.system)
    print(f"wrote {n} rows to {args.out} ({FORMATS[args.format]})")


def cmd_export_tree(args) -> None:
    import json

    store, project_id = _open(args)
    Path(args.out).write_text(json.dumps(export_tree(store, project_id), indent=2, ensure_ascii=False))
    print(f"wrote the tree to {args.out}")


def cmd_import_tree(args) -> None:
    _require_file(args.file, "tree file", "pass the path of a file written by `export-tree`")
    with Store(args.db) as store:
        project_id = import_tree(store, Path(args.file).read_bytes(), name=args.name)
    print(f"imported {args.file} as project {project_id}")


def cmd_calls(args) -> None:
    store, project_id = _open(args)
    tree = store.tree(project_id)
    sql = ("select id, node_id, purpose, attempt, prompt_tokens, completion_tokens, duration_s, error, dropped "
           "from calls where project_id = ?" + (" and error is not null" if args.failed else "") +
           " order by id desc limit ?")
    for c in store.query(sql, [project_id, args.limit]):
        where = tree.path_text(c["node_id"]) if c["node_id"] in tree.nodes else "-"
        outcome = f"FAILED: {c['error']}" if c["error"] else "ok" + (f" (dropped: {c['dropped']})" if c["dropped"] else "")
        print(f"#{c['id']} {c['purpose']} try {c['attempt']} at {where}: {c['prompt_tokens']}+{c['completion_tokens']} "
              f"tokens, {c['duration_s']:.2f}s, {outcome}")


def cmd_edit(args) -> None:
    store, _ = _open(args)
    actions = {"approve": lambda: edits.approve(store, args.node, subtree=True),
               "prune": lambda: edits.prune(store, args.node),
               "restore": lambda: edits.restore(store, args.node),
               "lock": lambda: edits.lock(store, args.node, True),
               "unlock": lambda: edits.lock(store, args.node, False)}
    print(f"{args.action}: {actions[args.action]()}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m treesynth_core", description="TreeSynth Studio, headless.")
    sub = p.add_subparsers(dest="command", required=True)

    def command(name, func, help_text, llm=False):
        c = sub.add_parser(name, help=help_text)
        c.set_defaults(func=func)
        c.add_argument("--db", required=True, help="the project database file")
        if name != "init":
            c.add_argument("--project", type=int, help="project id (needed when the file holds several)")
        if llm:
            c.add_argument("--local", action="store_true", help="use the bundled local model (no API key)")
            c.add_argument("--gguf", help="with --local: another GGUF model file")
            c.add_argument("--base-url", help="OpenAI-compatible endpoint (default: $OPENAI_BASE_URL)")
            c.add_argument("--concurrency", type=int, help="parallel LLM calls")
        if llm or name == "init":
            c.add_argument("--model", help="model name (default: $TREESYNTH_MODEL)")
        return c

    c = command("init", cmd_init, "create a project")
    c.add_argument("--task", required=True, help="what one sample is")
    c.add_argument("--fields", required=True, help="e.g. question,answer or 'question: the problem, answer'")
    c.add_argument("--name")
    c.add_argument("--constraints", help="rules every sample must follow")
    c.add_argument("--root-split", help="hand-set first split, e.g. 'subject: algebra, geometry, statistics'")
    for flag in ("--depth", "--max-values", "--pivots", "--per-leaf", "--samples-per-call"):
        c.add_argument(flag, type=int)
    c.add_argument("--price-in", type=float, help="USD per million prompt tokens")
    c.add_argument("--price-out", type=float, help="USD per million completion tokens")

    c = sub.add_parser("projects", help="list the projects in a file")
    c.add_argument("--db", required=True)
    c.set_defaults(func=cmd_projects)

    c = command("build", cmd_build, "partition the data space into a tree (resumes)", llm=True)
    c.add_argument("--depth", type=int)
    c.add_argument("--max-values", type=int)
    c.add_argument("--pivots", type=int)
    c.add_argument("--under", help="expand only this node's subtree")
    c.add_argument("--approved-only", action="store_true", help="start only from approved nodes")

    c = command("show", cmd_show, "print the tree as an outline")
    c.add_argument("--under")
    c.add_argument("--max-depth", type=int)

    c = command("generate", cmd_generate, "fill the leaves with samples (resumes)", llm=True)
    c.add_argument("--per-leaf", type=int)
    c.add_argument("--samples-per-call", type=int)
    c.add_argument("--temperature", type=float)
    c.add_argument("--under")
    c.add_argument("--approved-only", action="store_true")
    c.add_argument("--dry-run", action="store_true", help="print the plan and cost, generate nothing")

    c = command("export", cmd_export, "write samples to a file")
    c.add_argument("--format", choices=list(FORMATS), default="jsonl")
    c.add_argument("--out", required=True)
    c.add_argument("--status", help="e.g. accepted or generated,accepted (default: all)")
    c.add_argument("--under")
    c.add_argument("--system", help="system message for --format chat")

    c = command("export-tree", cmd_export_tree, "write the tree as JSON")
    c.add_argument("--out", required=True)
    c = command("import-tree", cmd_import_tree, "create a project from a tree JSON file")
    c.add_argument("--file", required=True)
    c.add_argument("--name")

    c = command("calls", cmd_calls, "list the LLM call log (what each call cost, what failed and why)")
    c.add_argument("--failed", action="store_true", help="only failed calls")
    c.add_argument("--limit", type=int, default=50)

    c = command("edit", cmd_edit, "approve / prune / restore / lock / unlock a node's subtree")
    c.add_argument("action", choices=["approve", "prune", "restore", "lock", "unlock"])
    c.add_argument("--node", required=True)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.func(args)
    except Cancelled as exc:
        print(f"stopped: {exc.message}", file=sys.stderr)
        return 130
    except TreeSynthError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"  what to do: {exc.hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: everything finished so far is saved; run the same command to resume", file=sys.stderr)
        return 130
    return 0
