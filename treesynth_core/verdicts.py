"""A sample's leaf-fit verdict (issue 9) and the check of a judge's reply; the judge run is in ``judge.py``.

A sample is judged against the task itself and every (dimension, value) on its leaf's path: an infinite node's
value is the one drawn for the sample. Verdicts are stored per sample and attribute with the call's id; a sample
*fits* when every attribute fits. A verdict is current only while the sample's text and its attributes are what
was judged (an edit or a renamed value makes the sample unjudged again).
"""

from __future__ import annotations

from dataclasses import dataclass

from .prompts import JudgeReply
from .spec import ProjectSpec
from .store import Store
from .tree import Node, Tree

TASK = "task"  # the first attribute of every sample: the project's task itself

Attributes = tuple[tuple[str, str], ...]


# ----------------------------------------------------------------------------- verdicts


@dataclass(frozen=True)
class Verdict:
    """A sample's current verdict: ``fits`` is None while it is not judged (or its verdict is stale)."""

    fits: bool | None
    failing: tuple[tuple[str, str, str], ...] = ()  # (dimension, value, reason) of each attribute that misfits
    call_id: int | None = None

    @property
    def word(self) -> str:
        return "not judged" if self.fits is None else "fits" if self.fits else "misfit"

    @property
    def why(self) -> str:
        """The failing attributes and their reasons, one line."""
        return "; ".join(f"{dim} = {value}: {reason}" if reason else f"{dim} = {value}"
                         for dim, value, reason in self.failing)


NOT_JUDGED = Verdict(None)


def sample_attributes(spec: ProjectSpec, path: list[Node], drawn: list | None = None) -> Attributes:
    """What a sample is judged against: the task, then each (dimension, value) of its path, root first. A fixed
    node gives its current value; an infinite node the value drawn for this sample (while it is still one of the
    node's values), else its label."""
    out = [(TASK, " ".join(spec.task.split()))]
    drawn = drawn or []
    for i, (parent, child) in enumerate(zip(path, path[1:])):
        value = child.value or ""
        if child.infinite:
            picked = drawn[i][1] if i < len(drawn) and len(drawn[i]) == 2 else None
            value = picked if picked in child.values else child.label
        out.append((parent.dimension or "", value))
    return tuple(out)


def current_verdict(rows: list[dict] | None, attributes: Attributes) -> Verdict:
    """The verdict the stored rows give, or NOT_JUDGED when there are none or they judged other attributes."""
    if not rows or [(r["dimension"], r["value"]) for r in rows] != list(attributes):
        return NOT_JUDGED
    failing = tuple((r["dimension"], r["value"], r["reason"] or "") for r in rows if not r["fits"])
    return Verdict(not failing, failing, rows[0]["call_id"])


def sample_verdicts(store: Store, project_id: int, samples: list[dict], *, tree: Tree | None = None,
                    spec: ProjectSpec | None = None) -> dict[int, Verdict]:
    """The current verdict of each sample (rows as ``Store.samples`` returns them), by sample id."""
    if not samples:
        return {}
    tree = tree or store.tree(project_id)
    spec = spec or store.project(project_id)
    stored = store.verdicts(project_id, node_ids=sorted({s["node_id"] for s in samples}))
    paths: dict[str, list[Node]] = {}
    out = {}
    for s in samples:
        if s["node_id"] not in paths:
            paths[s["node_id"]] = tree.path(s["node_id"])
        out[s["id"]] = current_verdict(stored.get(s["id"]), sample_attributes(spec, paths[s["node_id"]], s["drawn"]))
    return out


def check_reply(reply: JudgeReply, samples: int, attributes: int) -> None:
    """Every sample 1..``samples`` exactly once, each with exactly ``attributes`` verdicts; else a ValueError
    whose text the model is shown on the re-ask."""
    numbers = [v.sample for v in reply.verdicts]
    wanted = set(range(1, samples + 1))
    missing = sorted(wanted - set(numbers))
    unknown = sorted(set(numbers) - wanted)
    twice = sorted({n for n in numbers if numbers.count(n) > 1})
    problems = ([f"no verdict for sample(s) {', '.join(map(str, missing))}"] if missing else []) + (
        [f"there is no sample {', '.join(map(str, unknown))}"] if unknown else []) + (
        [f"sample(s) {', '.join(map(str, twice))} judged more than once"] if twice else [])
    if problems:
        raise ValueError(f"give exactly one verdict for each sample 1 to {samples}: " + "; ".join(problems))
    for v in reply.verdicts:
        if len(v.attributes) != attributes:
            raise ValueError(f"sample {v.sample} has {len(v.attributes)} attribute verdict(s); give exactly "
                             f"{attributes}, one for each attribute [A1] to [A{attributes}] in order")


__all__ = ["TASK", "Attributes", "Verdict", "NOT_JUDGED", "sample_attributes", "current_verdict", "sample_verdicts",
           "check_reply"]
