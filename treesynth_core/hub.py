"""Share a project on the Hugging Face Hub: the samples as Parquet and JSONL plus a generated dataset card.

The upload set is one folder, built the same way for a push and for ``--dry-run DIR``:

    README.md              the dataset card: YAML front matter (license, task categories, size, configs/data_files)
                           and the task, fields, tree (criteria, values, samples per leaf), model and settings,
                           review status counts, diversity figures (when the quality report's vectors are cached)
    data/train.parquet     the export's Parquet file (the `configs` entry points at it)
    data/train.jsonl       the export's JSON Lines file
    images/sunburst.svg    the tree as a sunburst, drawn here as SVG (plotly's static image export needs kaleido
                           and a Chrome, which this project does not install)

The push goes through ``huggingface_hub`` (an optional extra, requirements-hub.txt): ``create_repo`` (dataset,
private by default, ``exist_ok``) and ``upload_folder``, one commit. The token is read from ``HF_TOKEN`` only and
handed to the client; it is never stored, logged or shown, and every error message is scrubbed of it. ``HF_ENDPOINT``
points the client at another Hub (tests use a local fake of its HTTP API).
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

from .config import redact, redact_url
from .errors import ConfigError
from .export import export_file, iter_rows, pair_fields
from .files import atomic_file
from .outcome import Outcome
from .spec import ProjectSpec
from .store import Store
from .tree import Tree

DEFAULT_LICENSE = "other"
DEFAULT_STATUSES = ["accepted", "generated"]
UPLOAD_FILES = ("README.md", "data/train.parquet", "data/train.jsonl", "images/sunburst.svg")
REPO_ID = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/)?[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
MAX_LICENSE = 64
LICENSE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+_-]{0,%d}\Z" % (MAX_LICENSE - 1))  # no whitespace, no newline
MAX_CARD_LEAVES = 200  # leaves listed in the card's table (the rest are counted)
INSTALL_HINT = "install the optional extra: pip install -r requirements-hub.txt"


@dataclass(frozen=True)
class PushOptions:
    repo_id: str
    private: bool = True
    statuses: list[str] | None = None  # None: accepted and not yet reviewed (generated)
    license: str = DEFAULT_LICENSE

    @property
    def chosen_statuses(self) -> list[str]:
        return list(self.statuses) if self.statuses else list(DEFAULT_STATUSES)


@dataclass
class PushResult:
    outcome: Outcome
    repo_id: str
    rows: int
    files: list[str] = field(default_factory=list)
    url: str | None = None
    folder: str | None = None  # the dry run's folder
    error: str | None = None

    def text(self) -> str:
        if self.outcome is not Outcome.COMPLETE:
            return f"push failed: {self.error}"
        if self.folder:
            return (f"dry run: wrote the upload set for {self.repo_id} ({self.rows} samples) to {self.folder}: "
                    + ", ".join(self.files))
        return f"pushed {self.rows} samples to {self.url or self.repo_id}: " + ", ".join(self.files)


def check_license(license_id: str) -> str:
    """A license id as the card's YAML takes it (e.g. apache-2.0, cc-by-4.0, other): one word, bounded."""
    value = license_id if isinstance(license_id, str) else ""
    if not LICENSE_ID.match(value):
        shown = value if len(value) <= 40 else value[:39] + "…"
        raise ConfigError(f"{shown!r} is not a license id",
                          f"give one id such as apache-2.0, mit, cc-by-4.0 or other (letters, digits, - . + _; "
                          f"no spaces; at most {MAX_LICENSE} characters)")
    return value


def check_repo_id(repo_id: str) -> str:
    repo_id = (repo_id or "").strip()
    if not REPO_ID.match(repo_id) or ".." in repo_id or "--" in repo_id or repo_id.endswith((".", "-")):
        raise ConfigError(f"{repo_id!r} is not a Hub repository id",
                          "write it as owner/name (letters, digits, - _ .), e.g. me/my-dataset")
    return repo_id


# ----------------------------------------------------------------------------- the card


def _size_category(n: int) -> str:
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
              (10_000_000, "1M<n<10M")]
    return next((label for limit, label in bounds if n < limit), "10M<n<100M")


def _yaml_text(value: str) -> str:
    import json

    return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid YAML scalar


def _cell(text) -> str:
    """Text safe inside a Markdown table cell: one line, pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


@dataclass
class CardFacts:
    """What the card says, read from the store once (tests compare the card against these and the store)."""

    spec: ProjectSpec
    rows: int
    per_leaf: dict[str, int]  # exported samples per node
    statuses: dict[str, int]  # every sample of the project by status
    models: dict[str, int]  # model -> calls
    usage: dict
    seeds: int
    diversity: dict | None
    endpoint: str | None


def gather(store: Store, project_id: int, options: PushOptions) -> CardFacts:
    spec = store.project(project_id)
    per_leaf: dict[str, int] = {}
    rows = 0
    for row in iter_rows(store, project_id, statuses=options.chosen_statuses):
        per_leaf[row["leaf_id"]] = per_leaf.get(row["leaf_id"], 0) + 1
        rows += 1
    statuses: dict[str, int] = {}
    for by_status in store.sample_counts(project_id).values():
        for status, n in by_status.items():
            statuses[status] = statuses.get(status, 0) + n
    return CardFacts(spec=spec, rows=rows, per_leaf=per_leaf, statuses=dict(sorted(statuses.items())),
                     models=store.call_models(project_id), usage=store.usage(project_id),
                     seeds=len(store.seed_rows(project_id)), diversity=_diversity(store, project_id, options),
                     endpoint=redact_url(os.environ.get("OPENAI_BASE_URL")) or None)


def _diversity(store: Store, project_id: int, options: PushOptions) -> dict | None:
    """The dataset's diversity figures from the cached vectors of the offline encoder (nothing is embedded
    here: a push must not take minutes); None when no vector is cached or the encoder is not installed."""
    if not store.embedding_count(project_id):
        return None
    try:
        from .quality import quality_report

        report = quality_report(store, project_id, statuses=options.chosen_statuses, embed_missing=False)
    except Exception:  # noqa: BLE001 - optional figures: an encoder that cannot load leaves them out
        return None
    m = report.dataset
    if not m.n:
        return None
    return {"model": report.model, "measured": m.n, "missing": report.missing_embeddings,
            "mean_cosine": m.mean_cosine, "near_dup_pairs": m.near_dup_pairs, "near_dup_rate": m.near_dup_rate,
            "distinct_2": m.distinct_2, "compression_ratio": m.compression_ratio, "coverage": m.coverage}


def card_text(store: Store, project_id: int, options: PushOptions, facts: CardFacts | None = None) -> str:
    facts = facts or gather(store, project_id, options)
    spec, s = facts.spec, facts.spec.settings
    tree = store.tree(project_id)
    try:
        inputs, outputs = pair_fields(spec)
        category = "text-generation"
    except Exception:  # noqa: BLE001 - a single-field project has no prompt/answer sides
        inputs, outputs, category = spec.field_names, [], "text-generation"
    front = "\n".join([
        "---",
        f"pretty_name: {_yaml_text(spec.name)}",
        f"license: {_yaml_text(options.license)}",
        "task_categories:", f"- {category}",
        "tags:", "- synthetic", "- treesynth",
        "size_categories:", f"- {_size_category(facts.rows)}",
        "configs:", "- config_name: default", "  data_files:", "  - split: train", "    path: data/train.parquet",
        "---",
    ])
    out = [front, "", f"# {spec.name}", "",
           f"A synthetic dataset of {facts.rows:,} samples made with TreeSynth Studio: an LLM partitioned the task "
           "into a tree of attribute values (TreeSynth, arXiv 2503.17195), a curator reviewed the tree, and each "
           "leaf was filled with samples constrained by every attribute on its path.", "",
           "## Task", "", spec.task.strip(), ""]
    if spec.constraints.strip():
        out += ["Constraints every sample respects:", "", spec.constraints.strip(), ""]
    out += ["## Fields", "", "| field | side | description |", "|---|---|---|"]
    for f in spec.fields:
        side = "prompt" if f.name in inputs and outputs else ("answer" if f.name in outputs else "text")
        out.append(f"| `{f.name}` | {side} | {_cell(f.description or '')} |")
    out += ["", "Each row also carries `path` (the leaf's attributes, a list of `{dimension, value}`), `leaf_id`, "
            "`status`, `sample_id`, `provenance` (generated or imported), `edited` (changed by a reviewer), and the "
            "reviewer's `reason` and `note`.", "",
            "## Files", "",
            f"- `data/train.parquet` and `data/train.jsonl`: {facts.rows:,} samples with status "
            f"{' or '.join(options.chosen_statuses)} (pruned subtrees left out)", ""]
    out += _tree_section(tree, facts)
    out += ["## Model and settings", ""]
    models = ", ".join(f"`{m}` ({n:,} calls)" for m, n in facts.models.items()) or "no call logged"
    out.append(f"- models used: {models}")
    if facts.endpoint:
        out.append(f"- endpoint (at push time): `{facts.endpoint}`")
    u = facts.usage
    out.append(f"- LLM calls: {u['calls']:,} ({u['failed_calls']:,} failed attempts), "
               f"{u['prompt_tokens']:,} prompt and {u['completion_tokens']:,} completion tokens")
    for name in ("max_depth", "pivots", "max_values", "per_leaf", "samples_per_call", "pivot_temperature",
                 "criterion_temperature", "coverage_temperature", "generation_temperature", "max_tokens",
                 "avoid_list"):
        out.append(f"- `{name}`: {getattr(s, name)}")
    if facts.seeds:
        out.append(f"- seed examples shown in prompts as style examples: {facts.seeds}")
    out += ["", "## Review status", "", "| status | samples |", "|---|---|"]
    out += [f"| {status} | {n:,} |" for status, n in facts.statuses.items()] or ["| (none) | 0 |"]
    if facts.statuses.get("excluded") and "excluded" not in options.chosen_statuses:
        out += ["", f"The {facts.statuses['excluded']:,} `excluded` samples were set aside by balancing (their leaf "
                "was over its target): kept in the project, not in the files above."]
    out += ["", "## Diversity", ""]
    d = facts.diversity
    if d:
        def fmt(x):
            return "n/a" if x is None else f"{x:.3f}"
        out += [f"Measured on {d['measured']:,} samples with `{d['model']}` embeddings "
                f"({d['missing']:,} without a cached vector left out).", "",
                "| metric | value |", "|---|---|",
                f"| mean pairwise cosine (lower: more diverse) | {fmt(d['mean_cosine'])} |",
                f"| near-duplicate pairs | {d['near_dup_pairs']:,} |",
                f"| near-duplicate rate | {fmt(d['near_dup_rate'])} |",
                f"| distinct-2 | {fmt(d['distinct_2'])} |",
                f"| compression ratio (higher: more repetitive) | {fmt(d['compression_ratio'])} |",
                f"| leaves at quota | {fmt(d['coverage'])} |", ""]
    else:
        out += ["Not measured: run `python -m treesynth_core quality` before pushing to add the figures.", ""]
    return "\n".join(out) + "\n"


def _tree_section(tree: Tree, facts: CardFacts) -> list[str]:
    out = ["## The tree", ""]
    root = tree.root
    if root is None or not tree.kids(root.id, include_pruned=False):
        return out + ["No tree: samples were generated from the task alone.", ""]
    out += ["![The tree as a sunburst: each ring is one split, sizes are samples per leaf](images/sunburst.svg)", "",
            "### Criteria", ""]
    stack = [root]
    while stack:
        node = stack.pop()
        kids = tree.kids(node.id, include_pruned=False)
        if not kids:
            continue
        where = tree.path_text(node.id) if node.parent_id else "the whole task"
        values = ", ".join(k.label for k in kids)
        mark = " (open-ended)" if node.infinite else ""
        out.append(f"- {_cell(where)}: split by **{_cell(node.dimension or '')}**{mark} into {_cell(values)}")
        stack.extend(reversed(kids))
    leaves = [n for n in tree.leaves() if n.parent_id is not None]
    out += ["", "### Samples per leaf", "", "| leaf | samples |", "|---|---|"]
    for leaf in leaves[:MAX_CARD_LEAVES]:
        out.append(f"| {_cell(tree.path_text(leaf.id))} | {facts.per_leaf.get(leaf.id, 0):,} |")
    if len(leaves) > MAX_CARD_LEAVES:
        rest = sum(facts.per_leaf.get(n.id, 0) for n in leaves[MAX_CARD_LEAVES:])
        out.append(f"| ... {len(leaves) - MAX_CARD_LEAVES:,} more leaves | {rest:,} |")
    return out + [""]


# ----------------------------------------------------------------------------- the sunburst image


PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
           "#bab0ac"]
MAX_RINGS = 5
CHAR_PX = 6.2  # the width of one character of the labels (11 px sans-serif), to decide whether a label fits


def sunburst_svg(tree: Tree, per_leaf: dict[str, int], size: int = 640) -> str:
    """The live tree as an SVG sunburst: one ring per level, each node's angle proportional to its subtree's
    samples (its leaves' count; every leaf counts 1 while there are no samples), colour by top-level branch,
    lighter further out; labels where the sector is wide enough, every sector's path in its tooltip."""
    root = tree.root
    if root is None:
        return f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}"></svg>\n'
    total_samples = sum(per_leaf.values())

    weights: dict[str, float] = {}

    def fill(node_id: str) -> float:
        kids = tree.kids(node_id, include_pruned=False)
        w = (float(per_leaf.get(node_id, 0)) if total_samples else 1.0) if not kids else sum(fill(k.id) for k in kids)
        weights[node_id] = w
        return w

    fill(root.id)
    live = [n for n in tree.nodes.values() if not tree.is_pruned(n.id)]
    rings = max(1, min(MAX_RINGS, max((n.depth for n in live), default=1)))
    c = size / 2
    ring = (size / 2 - 4) / (rings + 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {size} {size}" width="{size}" height="{size}" '
             'font-family="sans-serif" font-size="11">',
             f'<circle cx="{c}" cy="{c}" r="{ring:.1f}" fill="#eeeeee"><title>{escape(tree.root.label)}: '
             f'{int(weights[root.id]) if total_samples else 0} samples</title></circle>',
             f'<text x="{c}" y="{c + 4}" text-anchor="middle">{total_samples:,}</text>']

    def point(r: float, a: float) -> tuple[float, float]:
        return c + r * math.sin(a), c - r * math.cos(a)

    def draw(node_id: str, start: float, span: float, depth: int, colour: str | None) -> None:
        kids = tree.kids(node_id, include_pruned=False)
        total = weights[node_id]
        a = start
        for i, kid in enumerate(kids):
            share = weights[kid.id] / total if total else 1 / len(kids)
            sweep = span * share
            if sweep <= 0:
                continue
            hue = colour or PALETTE[i % len(PALETTE)]
            r0, r1 = ring * depth, ring * (depth + 1)
            large = 1 if sweep > math.pi else 0
            end = a + min(sweep, 2 * math.pi - 1e-6)
            (x0, y0), (x1, y1) = point(r1, a), point(r1, end)
            (x2, y2), (x3, y3) = point(r0, end), point(r0, a)
            opacity = max(0.35, 1 - 0.15 * (depth - 1))
            samples = int(weights[kid.id]) if total_samples else 0
            parts.append(f'<path d="M{x0:.1f},{y0:.1f} A{r1:.1f},{r1:.1f} 0 {large} 1 {x1:.1f},{y1:.1f} '
                         f'L{x2:.1f},{y2:.1f} A{r0:.1f},{r0:.1f} 0 {large} 0 {x3:.1f},{y3:.1f} Z" fill="{hue}" '
                         f'fill-opacity="{opacity:.2f}" stroke="#ffffff" stroke-width="1">'
                         f'<title>{escape(tree.path_text(kid.id))}: {samples:,} samples</title></path>')
            label = kid.label if len(kid.label) <= 14 else kid.label[:13] + "…"
            if sweep * (r0 + r1) / 2 >= CHAR_PX * len(label) + 4:  # the label fits along the arc's middle
                tx, ty = point((r0 + r1) / 2, a + sweep / 2)
                parts.append(f'<text x="{tx:.1f}" y="{ty:.1f}" text-anchor="middle" dominant-baseline="middle">'
                             f'{escape(label)}</text>')
            if depth < rings:
                draw(kid.id, a, sweep, depth + 1, hue)
            a += sweep

    draw(root.id, 0.0, 2 * math.pi, 1, None)
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


# ----------------------------------------------------------------------------- the upload set


def write_upload_set(store: Store, project_id: int, options: PushOptions, folder: str | Path) -> tuple[int, list[str]]:
    """Write the card, the data files and the image into ``folder`` (each atomically); returns (rows, files)."""
    folder = Path(folder)
    facts = gather(store, project_id, options)
    statuses = options.chosen_statuses
    if not facts.rows:
        raise ConfigError(f"nothing to push: no sample with status {' or '.join(statuses)} outside pruned subtrees",
                          "generate or accept samples first, or choose other statuses (--status)")
    try:
        (folder / "data").mkdir(parents=True, exist_ok=True)
        (folder / "images").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot make the upload folder {folder}: {exc.strerror or exc}",
                          "pass a folder you can write to") from None
    rows = export_file(store, project_id, "parquet", folder / "data/train.parquet", statuses=statuses)
    export_file(store, project_id, "jsonl", folder / "data/train.jsonl", statuses=statuses)
    with atomic_file(folder / "images/sunburst.svg", "sunburst image") as handle:
        handle.write(sunburst_svg(store.tree(project_id), facts.per_leaf).encode())
    facts.rows = rows
    with atomic_file(folder / "README.md", "dataset card") as handle:
        handle.write(card_text(store, project_id, options, facts).encode())
    return rows, list(UPLOAD_FILES)


def dry_run(store: Store, project_id: int, options: PushOptions, folder: str | Path) -> PushResult:
    """The exact upload set in ``folder`` (created if missing; refused when it holds other files)."""
    check_repo_id(options.repo_id)
    check_license(options.license)
    target = Path(folder)
    if target.exists() and not target.is_dir():
        raise ConfigError(f"--dry-run {folder} is not a folder", "pass a folder (it is created when missing)")
    if not target.parent.is_dir():
        raise ConfigError(f"the folder above {folder} does not exist", "create it first")
    if target.is_dir():
        ours = {Path(f) for f in UPLOAD_FILES} | {Path("data"), Path("images")}
        other = [p for p in target.rglob("*") if p.relative_to(target) not in ours and not p.name.endswith(".tmp")]
        if other:
            raise ConfigError(f"--dry-run {folder} holds other files ({other[0].relative_to(target)})",
                              "pass an empty or new folder, so it holds exactly the upload set")
    rows, files = write_upload_set(store, project_id, options, target)
    return PushResult(Outcome.COMPLETE, options.repo_id, rows, files, folder=str(target))


def push(store: Store, project_id: int, options: PushOptions, env: dict[str, str] | None = None) -> PushResult:
    """Create the dataset repository (private unless asked) if needed and upload the set in one commit. A refusal
    before any upload (no extra, no token, bad id) raises ConfigError; a failure talking to the Hub is a failed
    PushResult with one scrubbed line."""
    env = os.environ if env is None else env
    repo_id = check_repo_id(options.repo_id)
    check_license(options.license)
    try:
        from huggingface_hub import HfApi
    except ImportError:
        raise ConfigError("pushing to the Hub needs huggingface_hub, which is not installed", INSTALL_HINT) from None
    token = (env.get("HF_TOKEN") or "").strip()
    if not token:
        raise ConfigError("HF_TOKEN is not set", "export HF_TOKEN=hf_... (a write token); it is never stored")
    endpoint = (env.get("HF_ENDPOINT") or "").strip() or None
    with tempfile.TemporaryDirectory(prefix="treesynth-hub-") as folder:
        rows, files = write_upload_set(store, project_id, options, folder)
        try:
            api = HfApi(endpoint=endpoint, token=token)
            url = api.create_repo(repo_id, repo_type="dataset", private=options.private, exist_ok=True)
            api.upload_folder(repo_id=repo_id, repo_type="dataset", folder_path=folder,
                              commit_message=f"TreeSynth Studio: {rows} samples and the dataset card")
        except Exception as exc:  # noqa: BLE001 - every client, HTTP and network error ends in one scrubbed line
            return PushResult(Outcome.FAILED, repo_id, rows, error=hub_error(exc, token, endpoint))
    return PushResult(Outcome.COMPLETE, repo_id, rows, files, url=str(url))


def hub_error(exc: BaseException, token: str, endpoint: str | None) -> str:
    """One line on why the Hub call failed, without the token (or anything shaped like one)."""
    status = getattr(getattr(exc, "response", None), "status_code", None)
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    where = redact_url(endpoint) or "huggingface.co"
    if status == 401 or status == 403:
        text = f"the Hub at {where} refused HF_TOKEN ({status}): check that it is a write token for this repository"
    elif status is not None:
        text = f"the Hub at {where} answered {status}: {first}"
    elif _is_network(exc):
        text = f"cannot reach the Hub at {where} ({type(exc).__name__}): check the network or HF_ENDPOINT"
    else:
        text = f"{type(exc).__name__}: {first}"
    text = redact(text, [token]) or text
    return re.sub(r"hf_[A-Za-z0-9]{6,}", "***", text)


def _is_network(exc: BaseException) -> bool:
    seen = 0
    while exc is not None and seen < 10:
        name = type(exc).__name__
        if isinstance(exc, (ConnectionError, TimeoutError, OSError)) or name in (
                "ConnectError", "ConnectTimeout", "ReadTimeout", "NetworkError", "OfflineModeIsEnabled",
                "RemoteProtocolError", "ConnectionError", "Timeout"):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False
