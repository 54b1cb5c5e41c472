"""The naive baseline (issue 9): the same task, fields, constraints, model and temperatures generated without a
tree, to measure what the tree adds on the user's own task.

The baseline is a project of its own, linked to the tree project (``Store.link_baseline``), with ``max_depth``
0: the root is its only leaf and every sample comes from the root prompt at the project's generation
temperature (the paper's "temperature sampling"). Its quota is the tree project's live sample count, so the two
datasets are compared at equal size. Nothing is generated here: :func:`plan_baseline` gives the cost plan the
user confirms, and generation runs like any other (``generate.generate``, through a job).
"""

from __future__ import annotations

from .errors import ConfigError, NotFoundError
from .generate import Plan, plan_generation
from .spec import ProjectSpec, bounds
from .samples import NOT_CONTENT
from .store import Store

NAME_SUFFIX = " (naive baseline)"


def baseline_of(store: Store, project_id: int) -> int | None:
    """The naive baseline project of ``project_id``, or None when it has none yet."""
    return store.baseline_id(project_id)


def source_of(store: Store, baseline_id: int) -> int | None:
    """The tree project a baseline belongs to, or None when ``baseline_id`` is not a baseline."""
    return store.baseline_source(baseline_id)


def live_samples(store: Store, project_id: int) -> int:
    """The project's samples that are dataset content (not rejected, not excluded by balancing)."""
    return sum(n for by_status in store.sample_counts(project_id).values()
               for status, n in by_status.items() if status not in NOT_CONTENT)


def _target(store: Store, project_id: int, samples: int | None) -> int:
    low, high = (int(x) for x in bounds("per_leaf"))
    if samples is None:
        samples = live_samples(store, project_id)
        if samples == 0:
            raise ConfigError(f"project {project_id} has no samples yet, so the baseline has no size to match",
                              "generate the tree's samples first, or give the number of samples")
        if samples > high:
            raise ConfigError(f"project {project_id} has {samples:,} samples; a baseline is at most {high:,}",
                              f"give the number of samples (at most {high:,})")
    elif isinstance(samples, bool) or not isinstance(samples, int) or not low <= samples <= high:
        raise ConfigError(f"the baseline's samples must be a whole number from {low} to {high:,}, not {samples!r}",
                          f"give {low} to {high:,}")
    return samples


def baseline_spec(spec: ProjectSpec, samples: int) -> ProjectSpec:
    """The tree project's spec without the tree: same task, fields, constraints, model, temperatures and
    prices; ``max_depth`` 0, no hand-set root split, ``per_leaf`` = ``samples``."""
    settings = spec.settings.model_copy(update={"max_depth": 0, "per_leaf": samples})
    name = spec.name[: 200 - len(NAME_SUFFIX)] + NAME_SUFFIX
    return ProjectSpec(name=name, task=spec.task, fields=[f.model_copy() for f in spec.fields],
                       constraints=spec.constraints, settings=settings, root_split=None)


def create_baseline(store: Store, project_id: int, *, samples: int | None = None) -> int:
    """Create (or return the existing) naive baseline of ``project_id``; returns its project id.

    Its quota (``per_leaf``) is ``samples``, or the tree project's live sample count: set again on every call,
    so a tree that grew gets a baseline that grows with it. A baseline has no baseline of its own."""
    spec = store.project(project_id)
    if source_of(store, project_id) is not None:
        raise ConfigError(f"project {project_id} is itself a naive baseline",
                          f"create the baseline of its tree project {source_of(store, project_id)}")
    target = _target(store, project_id, samples)
    existing = baseline_of(store, project_id)
    if existing is not None:
        try:
            current = store.project(existing)
        except NotFoundError:  # cannot happen while the trigger holds; say so rather than guess
            raise ConfigError(f"the baseline {existing} of project {project_id} is gone",
                              "delete the link and create it again") from None
        if current.settings.per_leaf != target:
            current.settings = current.settings.model_copy(update={"per_leaf": target})
            store.update_project(existing, current)
        return existing
    with store.atomic():
        baseline_id = store.create_project(baseline_spec(spec, target))
        store.link_baseline(project_id, baseline_id)
    return baseline_id


def plan_baseline(store: Store, project_id: int, *, samples: int | None = None) -> Plan:
    """Create (or update) the baseline of ``project_id`` and return its generation plan: calls, tokens and
    cost of the samples it still misses (``generate.plan_generation`` on the baseline project). Nothing is
    generated: the user confirms this budget first."""
    baseline_id = create_baseline(store, project_id, samples=samples)
    return plan_generation(store, baseline_id)
