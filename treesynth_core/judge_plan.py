"""The plan of a judge run (issue 9): what judging a selection of leaves, and with ``until`` filling them to N
fitting samples, asks for when every call succeeds at its first try, its cost and its default budget; and the
state of those leaves (live samples, verdicts, misfits) that the plan and the run (``judge.py``) read."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .errors import ConfigError
from .generate import plan_generation
from .spec import ProjectSpec, Settings, bounds
from .store import Store
from .tree import Node
from .verdicts import Attributes, current_verdict, sample_attributes

JUDGE_CHUNK = 10  # samples judged in one call
BUDGET_FACTOR = 3  # the default budget: this many times the plan's calls (refills after misfits, re-asks)
MIN_BUDGET = 10
LIVE = ["generated", "accepted"]  # the statuses that count towards a quota (all but rejected)
JUDGE_PROMPT_TOKENS = 450  # the judge prompt without its samples (system prompt, instructions)
VERDICT_TOKENS = 25  # one attribute's verdict in the reply


# ----------------------------------------------------------------------------- the plan


@dataclass
class LeafTarget:
    node_id: str
    path: str
    target: int  # fitting samples wanted (the leaf's own quota, else N)
    own_quota: bool
    live: int = 0
    fitting: int = 0
    unjudged: int = 0


@dataclass
class JudgePlan:
    """What a run will ask for when every call succeeds at its first try; the budget caps what it may spend."""

    leaves: list[LeafTarget]
    until: int | None
    unjudged: int
    judge_calls: int  # for the samples unjudged now
    missing: int  # samples to generate (until N): to each leaf's target once the known misfits are rejected
    generation_calls: int
    new_judge_calls: int  # for the samples to generate
    prompt_tokens: int
    completion_tokens: int
    reasks: int
    default_budget: int  # until N: BUDGET_FACTOR x the calls (at least MIN_BUDGET); plain: the worst case
    settings: Settings

    @property
    def calls(self) -> int:
        return self.judge_calls + self.generation_calls + self.new_judge_calls

    @property
    def cost(self) -> float | None:
        return self.settings.cost(self.prompt_tokens, self.completion_tokens)


def _check_count(name: str, value, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{name} must be a whole number from {low} to {high}, not {value!r}",
                          f"pass {name} from {low} to {high}")
    return value


BUDGET_RANGE = (1, 1_000_000)
CHUNK_RANGE = (1, 50)


def plan_judge(store: Store, project_id: int, *, until: int | None = None, under: str | None = None,
               leaf_ids: list[str] | None = None, chunk: int = JUDGE_CHUNK,
               samples_per_call: int | None = None) -> JudgePlan:
    """The calls, tokens and cost of judging what is unjudged in the selection and, with ``until``, of filling
    every leaf to ``until`` fitting samples (a leaf with its own quota: to that quota) when nothing misfits."""
    if until is not None:
        _check_count("until", until, 1, int(bounds("per_leaf")[1]))
    _check_count("chunk", chunk, *CHUNK_RANGE)
    spec = store.project(project_id)
    s = spec.settings
    gen_plan = plan_generation(store, project_id, per_leaf=until, under=under, leaf_ids=leaf_ids)
    tree = store.tree(project_id)
    leaves = [LeafTarget(leaf.node_id, leaf.path, leaf.quota, tree.nodes[leaf.node_id].quota is not None)
              for leaf in gen_plan.leaves]
    spc = samples_per_call or s.samples_per_call
    snapshot = _snapshot(store, project_id, spec, {leaf.node_id: tree.path(leaf.node_id) for leaf in leaves})
    unjudged = judge_calls = missing = gen_calls = new_judge = chars = 0
    for leaf in leaves:
        state = snapshot.leaf(leaf.node_id)
        leaf.live, leaf.fitting, leaf.unjudged = state.live, state.fitting, state.unjudged
        unjudged += state.unjudged
        judge_calls += sum(math.ceil(len(group) / chunk) for group in state.groups.values())
        if until is not None:
            m = max(0, leaf.target - (state.live - len(state.misfit_ids)))  # the known misfits will go
            missing += m
            gen_calls += math.ceil(m / spc)
            new_judge += math.ceil(m / chunk)
        chars += state.chars
    per_sample = (chars / unjudged / 4) if unjudged else gen_plan.tokens_per_sample
    attrs = max((len(a) for st in snapshot.leaves.values() for a in st.groups), default=3)
    judge_prompt = (judge_calls + new_judge) * JUDGE_PROMPT_TOKENS + int((unjudged + missing) * per_sample)
    judge_reply = (unjudged + missing) * (attrs * VERDICT_TOKENS + 8)
    prompt = judge_prompt + gen_calls * gen_plan.prompt_tokens_per_call
    completion = judge_reply + missing * gen_plan.tokens_per_sample
    planned = judge_calls + gen_calls + new_judge
    # until N: room for refills and re-asks; a plain run: its worst case (every call re-asked to the end)
    budget = max(MIN_BUDGET, BUDGET_FACTOR * planned) if until is not None else max(1, judge_calls * (s.reasks + 1))
    return JudgePlan(leaves, until, unjudged, judge_calls, missing, gen_calls, new_judge, prompt, completion,
                     s.reasks, min(budget, BUDGET_RANGE[1]), s)


# ----------------------------------------------------------------------------- the state of the selection


@dataclass
class _LeafState:
    live: int = 0
    fitting: int = 0  # fits, or accepted by a human
    unjudged: int = 0
    misfit_ids: list[int] = field(default_factory=list)  # live "generated" samples that misfit (to reject)
    groups: dict[Attributes, list[dict]] = field(default_factory=dict)  # unjudged samples by what they are judged on
    chars: int = 0  # text of the unjudged samples (the plan's token estimate)


@dataclass
class _Snapshot:
    leaves: dict[str, _LeafState]

    def leaf(self, node_id: str) -> _LeafState:
        return self.leaves.get(node_id) or _LeafState()


def _snapshot(store: Store, project_id: int, spec: ProjectSpec, paths: dict[str, list[Node]]) -> _Snapshot:
    """The state of these leaves (leaf id -> its path): their live samples and verdicts, one query each."""
    out = {leaf_id: _LeafState() for leaf_id in paths}
    if not paths:
        return _Snapshot(out)
    stored = store.verdicts(project_id, node_ids=list(paths))
    for s in store.samples(project_id, node_ids=list(paths), statuses=LIVE):
        state = out[s["node_id"]]
        attributes = sample_attributes(spec, paths[s["node_id"]], s["drawn"])
        verdict = current_verdict(stored.get(s["id"]), attributes)
        state.live += 1
        if verdict.fits is None:
            state.unjudged += 1
            state.groups.setdefault(attributes, []).append(s)
            state.chars += sum(len(str(v)) for v in s["data"].values())
        if s["status"] == "accepted" or verdict.fits:
            state.fitting += 1
        elif verdict.fits is False:
            state.misfit_ids.append(s["id"])
    return _Snapshot(out)
