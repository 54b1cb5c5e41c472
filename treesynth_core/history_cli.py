"""The ``history``, ``undo``, ``redo`` and ``move-stranded`` commands, and the ``--quota`` option of ``edit``
(see history.py).

    python -m treesynth_core history --db my.db                  # the newest 50 changes, newest first
    python -m treesynth_core history --db my.db --node 3f2a9c  # one node's changes
    python -m treesynth_core undo --db my.db                     # undo the newest change not undone
    python -m treesynth_core redo --db my.db                     # apply again the change undone last
    python -m treesynth_core edit --db my.db --node 3f2a9c --quota 40     # this leaf's own quota (none: the default)
    python -m treesynth_core move-stranded --db my.db --node 3f2a9c --to 7b1e04  # stranded samples to one leaf

``cli.parser()`` registers them with ``register``. Nothing to undo or redo is not an error (exit 0, says so); an
undo that would lose work made since (e.g. samples generated under the nodes it would delete) is refused with
one line and exit 2, and nothing is changed.
"""

from __future__ import annotations

import argparse

from . import edits
from .errors import TreeEditError
from .history import Event
from .spec import bounds

HISTORY_LIMIT = (1, 10_000)


def quota(text: str) -> int | None:
    """``--quota``: a number of samples in the per-leaf range, or ``none`` for the project's default."""
    if text.strip().lower() == "none":
        return None
    low, high = bounds("per_leaf")
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number from 0 to {int(high)}, or none (got {text!r})") from None
    if not 0 <= value <= high:
        raise argparse.ArgumentTypeError(f"must be from 0 to {int(high)}, or none (got {text!r})")
    return value


def quota_option(c) -> None:
    c.add_argument("--quota", type=quota, default=argparse.SUPPRESS, metavar="N|none",
                   help=f"set the node's own quota of samples (0 to {int(bounds('per_leaf')[1])}; none: back to the "
                        "project's samples per leaf); with or without an action")


def line(e: Event) -> str:
    who = "LLM" if e.actor == "llm" else "human"
    return f"#{e.id} {e.created_at[:19].replace('T', ' ')} {who}: {e.summary}" + (" (undone)" if e.undone else "") + (
        " (cannot be undone)" if not e.undoable else "")


def register(sub) -> None:
    """Add ``history``, ``undo`` and ``redo`` to the CLI's subparsers."""
    from . import cli

    def command(name: str, func, help_text: str):
        c = sub.add_parser(name, help=help_text, description=help_text, epilog=cli.EXIT_CODES,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        c.set_defaults(func=func)
        cli.db_options(c)
        return c

    c = command("history", cmd_history, "list the changes to the tree and the samples, newest first (who, when, "
                                         "what; undone ones marked)")
    c.add_argument("--node", type=cli.text, help="only this node's changes (a node id, see `show`)")
    c.add_argument("--limit", type=cli.count(*HISTORY_LIMIT), default=50,
                   help=f"the newest this many; {HISTORY_LIMIT[0]} to {HISTORY_LIMIT[1]:,} (default: 50)")
    command("undo", cmd_undo, "undo the newest change not undone (exactly: its nodes and samples as they were)")
    command("redo", cmd_redo, "apply again the change undone last (a new change after an undo clears this)")
    c = command("move-stranded", cmd_move_stranded,
                "move the stranded samples of a node (left there when it got children; `show` marks them) to one "
                "leaf below it, as one change (undo brings them back); to let the LLM pick each one's child, use "
                "`route --under NODE`")
    c.add_argument("--node", required=True, type=cli.text, help="the node holding stranded samples (see `show`)")
    c.add_argument("--to", required=True, type=cli.text, help="a leaf below that node (a node id, see `show`)")


def cmd_history(args) -> int:
    from . import cli

    with cli._open(args) as (store, project_id):
        node = cli._node(store.tree(project_id), args.node, "--node")
        events = edits.history(store, project_id, node_id=node, limit=args.limit, payloads=False)
    if not events:
        print("no changes recorded" + (" for this node" if node else ""))
    for e in events:
        print(line(e))
    return 0


def cmd_undo(args) -> int:
    from . import cli

    with cli._open(args) as (store, project_id):
        e = edits.undo(store, project_id)
    print(f"undone: #{e.id} {e.summary}" if e else "nothing to undo")
    return 0


def cmd_redo(args) -> int:
    from . import cli

    with cli._open(args) as (store, project_id):
        e = edits.redo(store, project_id)
    print(f"redone: #{e.id} {e.summary}" if e else "nothing to redo")
    return 0


def cmd_move_stranded(args) -> int:
    from . import cli

    with cli._open(args) as (store, project_id):
        tree = store.tree(project_id)
        node = cli._node(tree, args.node, "--node")
        target = cli._node(tree, args.to, "--to")
        if target == node or node not in [n.id for n in tree.path(target)]:
            raise TreeEditError(f"--to {target!r} is not below --node {node!r}", "pick a leaf under that node; see "
                                "`show --under NODE`")
        held = edits.stranded(store, project_id).get(node, 0)
        if not held:
            print("nothing to move: no stranded samples on this node")
            return 0
        moved = edits.move_samples(store, store.sample_ids_on(node), target)
    print(f"moved {moved} stranded sample(s) to {tree.nodes[target].label} (undo: `undo --db ...`)")
    return 0
