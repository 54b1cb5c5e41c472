"""Balance a project's leaves to a target (issue 11, the paper's second variant): downsample what is over, top up
what is under.

Each leaf gets a target: one number for all (``target``) or its own (``targets``, by leaf id). A leaf's count is
its live samples, imported and generated alike (rejected and excluded ones do not count).

- **Over target**: samples are marked ``excluded`` until the leaf is at its target; never deleted, so a later run
  with a higher target brings them back first. Samples a human accepted are never excluded (a leaf with more
  accepted samples than its target stays over, and the report says so). Which ones stay: ``random`` (a seeded
  draw per leaf, so the same seed excludes the same samples) or ``diversity`` (the most different ones: greedy
  farthest-point selection on the offline encoder's embeddings, ``embed.py``; it starts from the accepted ones).
- **Under target**: excluded samples of the leaf come back first; what is still missing is generated through
  the normal generation path (``generate.generate``, the leaf's quota = its target); its prompt offers the
  leaf's imported rows as style examples (``seeds.style_examples``: the leaf's seeds first, then its imported
  rows, in a block marked "do not copy their content").

All status changes of a run are one transaction and one history event (``history.change``: undo brings the
excluded samples back). The plan (``plan_balance``) says what will be excluded,
restored and generated, and what the generation costs, before anything changes.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Callable

from .errors import Cancelled, ConfigError
from .generate import generate, plan_generation
from .history import Scope, change
from .outcome import Outcome, RunReport
from .spec import bounds
from .store import Store
from .tree import Tree, refuse_pruned

METHODS = ("random", "diversity")
LIVE = ("generated", "accepted")


@dataclass
class LeafBalance:
    node_id: str
    path: str
    target: int
    live: int  # imported + generated, not excluded
    imported: int
    generated: int
    excluded: int
    accepted: int

    @property
    def drop(self) -> int:
        """Samples to exclude (never the accepted ones)."""
        return max(0, min(self.live - self.target, self.live - self.accepted))

    @property
    def restore(self) -> int:
        return min(self.excluded, max(0, self.target - self.live))

    @property
    def add(self) -> int:
        return max(0, self.target - self.live - self.restore)

    @property
    def stays_over(self) -> int:
        return max(0, self.live - self.drop - self.target)


@dataclass
class BalancePlan:
    leaves: list[LeafBalance]
    method: str
    seed: int
    samples_per_call: int
    generation_calls: int
    prompt_tokens: int
    completion_tokens: int
    cost: float | None

    @property
    def drop(self) -> int:
        return sum(leaf.drop for leaf in self.leaves)

    @property
    def restore(self) -> int:
        return sum(leaf.restore for leaf in self.leaves)

    @property
    def add(self) -> int:
        return sum(leaf.add for leaf in self.leaves)

    def text(self) -> str:
        over = sum(1 for leaf in self.leaves if leaf.drop)
        under = sum(1 for leaf in self.leaves if leaf.add or leaf.restore)
        cost = "unknown (no prices set)" if self.cost is None else f"${self.cost:.4f}"
        return (f"plan: {len(self.leaves)} leaves; {over} over target: exclude {self.drop} sample(s) ({self.method}"
                + (f", seed {self.seed}" if self.method == "random" else "") + f"); {under} under target: restore "
                f"{self.restore} excluded sample(s), generate {self.add} ({self.generation_calls} call(s), "
                f"~{self.prompt_tokens + self.completion_tokens} tokens, cost {cost})")


@dataclass
class BalanceReport(RunReport):
    failed_field = "failed_calls"
    excluded: int = 0
    restored: int = 0
    wanted: int = 0  # samples to generate
    generated: int = 0
    failed_calls: int = 0
    errors: list[str] = field(default_factory=list)
    short: dict[str, int] = field(default_factory=dict)  # leaf -> samples still missing after top-up
    over: dict[str, int] = field(default_factory=dict)  # leaf -> samples over target (accepted ones kept)
    top_up: bool = True

    def verdict(self) -> Outcome:
        """complete: every leaf at its target (or only downsampling was asked for and is done); partial: leaves
        are short after top-up or stay over because of accepted samples; failed: generation was needed and
        nothing came of it (while nothing was excluded or restored either)."""
        if not (self.short and self.top_up) and not self.over:
            return Outcome.COMPLETE
        if self.wanted and not self.generated and not (self.excluded or self.restored) and self.failed_calls:
            return Outcome.FAILED
        return Outcome.PARTIAL

    def summary(self, for_cli: bool = True) -> str:
        text = f"excluded {self.excluded} sample(s), restored {self.restored}"
        if self.top_up:
            text += f", generated {self.generated} of {self.wanted}"
        if self.failed_calls:
            text += f" ({self.failed_calls} call(s) failed; first: {self.errors[0] if self.errors else '?'})"
        if self.short:
            text += (f"; {len(self.short)} leaf/leaves under target ({sum(self.short.values())} sample(s))"
                     + ("" if self.top_up else ": run with top-up to generate them"))
        if self.over:
            text += f"; {len(self.over)} leaf/leaves stay over target (accepted samples are never excluded)"
        if self.outcome is Outcome.PARTIAL and self.top_up and self.short:
            text += "; balance again to continue"
        return text + (" (cancelled)" if self.cancelled else "")


def _check(name: str, value, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{name} must be a whole number from {low} to {high}, not {value!r}",
                          f"pass {name} from {low} to {high}")
    return value


def leaf_targets(tree: Tree, target: int | None, targets: dict[str, int] | None, under: str | None = None
                 ) -> dict[str, int]:
    """leaf id -> its target: ``targets`` where given, else the leaf's own quota when it has one, else ``target``.
    A leaf with none of these is left alone. A target naming a node that is not a leaf here, or differing from
    the leaf's own quota (generation would fill it to the quota), is refused."""
    high = int(bounds("per_leaf")[1])
    if target is not None:
        _check("target", target, 0, high)
    if under in tree.nodes:
        refuse_pruned(tree.path(under), "its leaves are out of building, generation and export")
    leaves = [n.id for n in tree.leaves(under) if n.parent_id is not None]
    if not leaves:
        raise ConfigError("the tree has no leaves yet" + (" under that node" if under else ""),
                          "build the tree first (build, or the Tree page)")
    for node_id, value in (targets or {}).items():
        _check(f"the target of {node_id}", value, 0, high)
        if node_id not in leaves:
            raise ConfigError(f"{node_id!r} is not a leaf of this project (or not under the selection)",
                              "give targets for leaf ids from `show`")
    out = {}
    for leaf in leaves:
        own = tree.nodes[leaf].quota  # a leaf with its own quota keeps it, as generation does
        if targets and leaf in targets:
            if own is not None and own != targets[leaf]:
                raise ConfigError(f"leaf {tree.path_text(leaf)} has its own quota {own}, not {targets[leaf]}",
                                  f"give it the target {own}, or change its quota first (edit --quota)")
            out[leaf] = targets[leaf]
        elif own is not None and (target is not None or targets):
            out[leaf] = own
        elif target is not None:
            out[leaf] = target
    if not out:
        raise ConfigError("no target given", "pass --target N (every leaf) or --leaf-target LEAF=N")
    return out


def plan_balance(store: Store, project_id: int, *, target: int | None = None, targets: dict[str, int] | None = None,
                 under: str | None = None, method: str = "random", seed: int = 0,
                 samples_per_call: int | None = None) -> BalancePlan:
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}", f"use one of {', '.join(METHODS)}")
    tree = store.tree(project_id)
    wanted = leaf_targets(tree, target, targets, under)
    by_node = store.provenance_counts(project_id)
    counts = store.sample_counts(project_id)
    leaves = []
    for node_id, t in wanted.items():
        c = by_node.get(node_id, {})
        leaves.append(LeafBalance(node_id, tree.path_text(node_id), t, c.get("imported", 0) + c.get("generated", 0),
                                  c.get("imported", 0), c.get("generated", 0), c.get("excluded", 0),
                                  counts.get(node_id, {}).get("accepted", 0)))
    gen = plan_generation(store, project_id, per_leaf=0, leaf_ids=list(wanted), samples_per_call=samples_per_call)
    spc = gen.samples_per_call
    calls = sum(math.ceil(leaf.add / spc) for leaf in leaves)
    prompt, completion = calls * gen.prompt_tokens_per_call, sum(leaf.add for leaf in leaves) * gen.tokens_per_sample
    return BalancePlan(leaves, method, seed, spc, calls, prompt, completion, gen.settings.cost(prompt, completion))


# ----------------------------------------------------------------------------- choosing who stays


def _random_keep(rows: list[dict], keep: int, seed: int, node_id: str) -> list[dict]:
    """``keep`` of ``rows`` by a seeded draw for this leaf (the same seed keeps the same rows)."""
    rng = random.Random(f"{seed}:{node_id}")
    order = sorted(rows, key=lambda r: r["id"])
    return rng.sample(order, keep) if keep < len(order) else order


def _text(row: dict) -> str:
    return " ".join(str(v) for v in row["data"].values())


def _diverse_keep(rows: list[dict], keep: int, fixed: list[dict], encoder) -> list[dict]:
    """Greedy farthest-point selection: start from ``fixed`` (or the row least like the others) and add, each
    time, the row whose nearest kept row is farthest (cosine), until ``keep`` rows are chosen."""
    import numpy as np

    if keep >= len(rows):
        return rows
    if keep <= 0:
        return []
    vectors = encoder.encode([_text(r) for r in fixed + rows])
    anchor, pool = vectors[:len(fixed)], vectors[len(fixed):]
    if len(anchor):
        chosen: list[int] = []
        nearest = (pool @ anchor.T).max(axis=1)
    else:
        first = int(np.argmin((pool @ pool.T).mean(axis=1)))
        chosen, nearest, keep = [first], pool @ pool[first], keep - 1
    nearest = nearest.astype(np.float64)
    nearest[chosen] = np.inf
    for _ in range(keep):
        pick = int(np.argmin(nearest))
        chosen.append(pick)
        nearest = np.maximum(nearest, pool @ pool[pick])
        nearest[chosen] = np.inf
    return [rows[i] for i in sorted(chosen)]


def _order_for_restore(rows: list[dict], seed: int, node_id: str) -> list[dict]:
    rng = random.Random(f"{seed}:{node_id}:restore")
    order = sorted(rows, key=lambda r: r["id"])
    rng.shuffle(order)
    return order


# ----------------------------------------------------------------------------- the run


def balance(store: Store, project_id: int, llm=None, *, target: int | None = None,
            targets: dict[str, int] | None = None, under: str | None = None, method: str = "random", seed: int = 0,
            top_up: bool = True, samples_per_call: int | None = None, concurrency: int | None = None,
            encoder=None, on_progress: Callable[[int, int], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> BalanceReport:
    """Bring every targeted leaf to its target: exclude the surplus, restore excluded samples where short, then
    (``top_up`` with an ``llm``) generate what is still missing. Runs again safely: it does only what is left."""
    plan = plan_balance(store, project_id, target=target, targets=targets, under=under, method=method, seed=seed,
                        samples_per_call=samples_per_call)
    report = BalanceReport(top_up=top_up)
    if top_up and llm is None and plan.add:
        raise ConfigError("topping up needs an LLM endpoint", "configure one, or balance with --no-top-up")
    if method == "diversity" and encoder is None and plan.drop:
        from .embed import default_encoder

        encoder = default_encoder()
    to_exclude: list[int] = []
    to_restore: list[int] = []
    for leaf in plan.leaves:
        if not leaf.drop and not leaf.restore:
            continue
        rows = store.balance_candidates(leaf.node_id)
        if leaf.drop:
            live = [r for r in rows if r["status"] in LIVE]
            fixed = [r for r in live if r["status"] == "accepted"]
            free = [r for r in live if r["status"] != "accepted"]
            room = max(0, leaf.target - len(fixed))
            kept = (_random_keep(free, room, seed, leaf.node_id) if method == "random"
                    else _diverse_keep(free, room, fixed, encoder))
            kept_ids = {r["id"] for r in kept}
            to_exclude += [r["id"] for r in free if r["id"] not in kept_ids]
        if leaf.restore:
            excluded = [r for r in rows if r["status"] == "excluded"]
            to_restore += [r["id"] for r in _order_for_restore(excluded, seed, leaf.node_id)[:leaf.restore]]
    if to_exclude or to_restore:  # one change of the project, one history event (undoable): all of it, or none
        summary = f"balance: excluded {len(to_exclude)} sample(s), restored {len(to_restore)}"
        with change(store, project_id=project_id, action="balance", summary=summary,
                    scope=Scope(sample_ids=to_exclude + to_restore)):
            excluded = store.change_status_from(to_exclude, "generated", "excluded") if to_exclude else 0
            restored = store.change_status_from(to_restore, "excluded", "generated") if to_restore else 0
        report.excluded, report.restored = excluded, restored
    short = {leaf.node_id: leaf.add for leaf in plan.leaves if leaf.add}
    report.wanted = sum(short.values()) if top_up else 0
    if top_up and short:
        groups: dict[int, list[str]] = {}
        for leaf in plan.leaves:
            if leaf.add:
                groups.setdefault(leaf.target, []).append(leaf.node_id)
        for quota, ids in groups.items():
            try:
                gen = generate(store, project_id, llm, per_leaf=quota, leaf_ids=ids, samples_per_call=samples_per_call,
                               concurrency=concurrency, on_progress=on_progress, should_stop=should_stop)
            except Cancelled as exc:
                report.cancelled = True
                gen = exc.report
            if gen is not None:
                report.generated += gen.inserted
                report.failed_calls += gen.failed_calls
                report.errors += gen.errors
            if report.cancelled:
                break
    after = plan_balance(store, project_id, target=target, targets=targets, under=under, method=method, seed=seed,
                         samples_per_call=samples_per_call)
    report.short = {leaf.node_id: leaf.target - leaf.live for leaf in after.leaves if leaf.live < leaf.target}
    report.over = {leaf.node_id: leaf.stays_over for leaf in after.leaves if leaf.stays_over}
    if report.cancelled:
        raise Cancelled(f"balancing cancelled: {report.summary()}", "balance again to continue", report=report)
    return report


def balance_job(store: Store, project_id: int, llm, *, on_progress=None, should_stop=None, **params) -> BalanceReport:
    """``balance`` with the job runner's argument order (jobs.ACTIONS["balance"])."""
    return balance(store, project_id, llm, on_progress=on_progress, should_stop=should_stop, **params)


__all__ = ["METHODS", "LeafBalance", "BalancePlan", "BalanceReport", "plan_balance", "balance", "leaf_targets"]


# ----------------------------------------------------------------------------- the imbalance, as figures


IMBALANCE_SPAN = (0.0, 2.0)  # a leaf's count over its target: 0 empty (blue), 1 at target, 2 or more (red)


def imbalance_paint(store: Store, project_id: int, targets: dict[str, int], *, imported_only: bool = True):
    """A sunburst paint (``sunburst.Paint``, colour mode "imbalance") of each targeted leaf's count against its
    target, and of each inner node's summed count against its leaves' summed targets: 0 empty, 1 at target, 2 or
    more twice the target. ``imported_only``: count imported rows (the dataset as it came); else every live
    sample (after balancing). The hover names the counts and the rows answered "none of these" at a split."""
    from .sunburst import Paint

    tree = store.tree(project_id)
    by_node = store.provenance_counts(project_id)
    nones = {node_id: c["none"] for node_id, c in store.route_counts(project_id).items() if c["none"]}
    have: dict[str, int] = {}
    want: dict[str, int] = {}
    for leaf_id, t in targets.items():
        c = by_node.get(leaf_id, {})
        n = c.get("imported", 0) + (0 if imported_only else c.get("generated", 0))
        for node in tree.path(leaf_id):
            have[node.id] = have.get(node.id, 0) + n
            want[node.id] = want.get(node.id, 0) + t
    values, notes = {}, {}
    word = "imported rows" if imported_only else "samples"
    for node_id, t in want.items():
        values[node_id] = (have[node_id] / t) if t else (0.0 if not have[node_id] else IMBALANCE_SPAN[1])
        lines = [f"{word}: {have[node_id]:,} against a target of {t:,}"
                 + ("" if not t else f" ({have[node_id] / t:.0%})")]
        if nones.get(node_id):
            lines.append(f'{nones[node_id]:,} row(s) answered "none of these" at this split')
        notes[node_id] = lines
    return Paint(values, notes, f"{word}<br>/ target", IMBALANCE_SPAN, ("empty", "2x target"))
