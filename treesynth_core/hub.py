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
private by default, ``exist_ok``), ``preupload_lfs_files`` (the files the Hub wants in LFS, streamed and counted
for progress) and ``create_commit``: one commit, so the repository gets all the files or none. The files are handed
over as open binary files, which keeps the client on the Hub's HTTP/LFS protocol (the Hub still takes it and moves
the files to Xet storage itself) rather than Xet, whose native client no local fake can stand in for. In the app it
runs as a background job (``push_job``, kind "push"). The token is read from ``HF_TOKEN`` only and
handed to the client; it is never stored, logged or shown, and every error message is scrubbed of it. ``HF_ENDPOINT``
points the client at another Hub (tests use a local fake of its HTTP API).
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .config import redact, redact_url
from .errors import ConfigError
from .export import export_file, iter_rows, pair_fields
from .files import atomic_file
from .hub_svg import sunburst_svg
from .hub_upload import Meter, Reader, Stopped, quiet_buffer_notice
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
    """How a push (or a dry run) ended. A push job's report: ``outcome``, ``summary()``, ``failed_count``."""

    outcome: Outcome
    repo_id: str
    rows: int
    files: list[str] = field(default_factory=list)
    url: str | None = None
    folder: str | None = None  # the dry run's folder
    error: str | None = None  # one line, the token scrubbed
    sent: int = 0  # bytes of the upload set that reached the Hub
    total_bytes: int = 0
    cancelled: bool = False

    @property
    def failed_count(self) -> int:
        """Files that did not reach the repository: one commit, so all of them or none."""
        return 0 if self.outcome is Outcome.COMPLETE else len(self.files or UPLOAD_FILES)

    def text(self) -> str:
        if self.cancelled:
            return f"push cancelled: {self.error}"
        if self.outcome is not Outcome.COMPLETE:
            return f"push failed: {self.error}"
        if self.folder:
            return (f"dry run: wrote the upload set for {self.repo_id} ({self.rows} samples) to {self.folder}: "
                    + ", ".join(self.files))
        return f"pushed {self.rows} samples to {self.url or self.repo_id}: " + ", ".join(self.files)

    def summary(self, for_cli: bool = True) -> str:
        """The job row's message (the CLI's words) or, ``for_cli=False``, the app's: the URL last, so the page can
        link it."""
        if for_cli:
            return self.text()
        if self.outcome is not Outcome.COMPLETE:
            return self.error or self.outcome.value
        return f"pushed {self.rows:,} samples ({size_text(self.total_bytes)}) to {self.url or self.repo_id}"


def size_text(n: int) -> str:
    """Bytes as people read them: 812 B, 14.2 KB, 3.1 MB."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n:,} B"


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


def push(store: Store, project_id: int, options: PushOptions, env: dict[str, str] | None = None, *,
         on_progress: Callable[[int, int], None] | None = None,
         should_stop: Callable[[], bool] | None = None) -> PushResult:
    """Create the dataset repository (private unless asked) if needed and upload the set in one commit. A refusal
    before any upload (no extra, no token, bad id, nothing to push) raises ConfigError; a failure talking to the Hub
    is a failed PushResult with one scrubbed line; a stop asked by ``should_stop`` before the commit is a cancelled
    one (nothing committed). ``on_progress(sent, total)`` counts bytes: the LFS files' as they stream out, the rest
    when the commit lands. Both callbacks run on the calling thread (the upload runs on a helper thread)."""
    env = os.environ if env is None else env
    repo_id = check_repo_id(options.repo_id)
    check_license(options.license)
    try:
        from huggingface_hub import CommitOperationAdd, HfApi
        from huggingface_hub.utils import disable_progress_bars
    except ImportError:
        raise ConfigError("pushing to the Hub needs huggingface_hub, which is not installed", INSTALL_HINT) from None
    token = (env.get("HF_TOKEN") or "").strip()
    if not token:
        raise ConfigError("HF_TOKEN is not set", "export HF_TOKEN=hf_... (a write token); it is never stored")
    endpoint = (env.get("HF_ENDPOINT") or "").strip() or None
    quiet_buffer_notice()
    disable_progress_bars()  # the client's tqdm bars on stderr: progress is ours (on_progress, the job's row)
    with tempfile.TemporaryDirectory(prefix="treesynth-hub-") as folder:
        rows, files = write_upload_set(store, project_id, options, folder)
        meter = Meter([Path(folder) / name for name in files])
        ended: dict = {}

        def upload() -> None:  # the helper thread: only the Hub client and the meter, never the store
            try:
                api = HfApi(endpoint=endpoint, token=token)
                ended["url"] = str(api.create_repo(repo_id, repo_type="dataset", private=options.private,
                                                   exist_ok=True))
                with contextlib.ExitStack() as stack:
                    readers = [stack.enter_context(Reader(path, meter, i)) for i, path in enumerate(meter.paths)]
                    ops = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=reader)
                           for name, reader in zip(files, readers)]
                    meter.counting = True  # from here a read is the upload's (the hashing above is not counted)
                    api.preupload_lfs_files(repo_id, additions=ops, repo_type="dataset", free_memory=False)
                    meter.counting = False  # the commit reads the regular files to inline them: counted when it lands
                    if meter.stop.is_set():
                        raise Stopped()
                    ended["committing"] = True
                    api.create_commit(repo_id, ops, repo_type="dataset",
                                      commit_message=f"TreeSynth Studio: {rows} samples and the dataset card")
                meter.landed()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                ended["error"] = exc

        worker = threading.Thread(target=upload, daemon=True, name="treesynth-hub-push")
        worker.start()
        stop_asked = None
        while worker.is_alive():
            worker.join(PROGRESS_POLL)
            if on_progress:
                on_progress(meter.sent(), meter.total)
            if stop_asked is None and should_stop and should_stop():
                stop_asked = time.monotonic()
                meter.stop.set()
            if stop_asked is not None and time.monotonic() - stop_asked > STOP_GRACE:
                break  # a request the Hub does not answer: leave it to its daemon thread
        if on_progress:
            on_progress(meter.sent(), meter.total)
    result = PushResult(Outcome.COMPLETE, repo_id, rows, list(files), url=ended.get("url"), sent=meter.sent(),
                        total_bytes=meter.total)
    if worker.is_alive() or (meter.stop.is_set() and "error" in ended):
        result.outcome, result.cancelled = Outcome.CANCELLED, True
        result.error = ("stopped while the commit was sent and not answered: the commit may still land, check the "
                        "repository" if worker.is_alive() and ended.get("committing") else
                        "stopped before the commit: nothing was committed"
                        + (" (a request to the Hub was still open and was abandoned)" if worker.is_alive() else ""))
    elif "error" in ended:
        result.outcome, result.error = Outcome.FAILED, hub_error(ended["error"], token, endpoint)
    return result


def push_job(store: Store, project_id: int, llm=None, *, on_progress=None, should_stop=None, repo_id: str,
             private: bool = True, statuses: list[str] | None = None, license: str = DEFAULT_LICENSE) -> PushResult:
    """``push`` as a background job (jobs.ACTIONS["push"], the Export page). Its params are the options only: the
    token is read from HF_TOKEN in this process's environment when it runs, never stored with the job. A stop
    before the commit raises Cancelled with the report; anything unforeseen ends as a failed report with one
    scrubbed line, never a traceback in the log (it could hold a request's headers)."""
    from .errors import Cancelled

    options = PushOptions(repo_id=repo_id, private=private, statuses=statuses, license=license)
    try:
        result = push(store, project_id, options, on_progress=on_progress, should_stop=should_stop)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - e.g. the upload folder could not be written
        return PushResult(Outcome.FAILED, repo_id, 0, error=hub_error(exc, os.environ.get("HF_TOKEN", ""), None))
    if result.cancelled:
        raise Cancelled(f"push cancelled: {result.error}", "push again when ready", report=result)
    return result


PROGRESS_POLL = 0.25  # seconds between two progress reports (and stop checks) of a push
STOP_GRACE = 10.0  # seconds a stopped push waits for the request in flight before giving up on it


def hub_error(exc: BaseException, token: str, endpoint: str | None) -> str:
    """One line on why the Hub call failed, without the token (or anything shaped like one). The HTTP answer is
    looked for down the chain of causes (an LFS upload's error wraps the request's)."""
    answered = next((e for e in _chain(exc) if getattr(getattr(e, "response", None), "status_code", None)), exc)
    status = getattr(getattr(answered, "response", None), "status_code", None)
    said = getattr(answered, "server_message", None)  # what the Hub said, rather than the client's status line
    first = ((said or str(answered)).strip().splitlines() or [type(answered).__name__])[0][:300]
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


def _chain(exc: BaseException | None, limit: int = 10) -> list[BaseException]:
    """The exception and its causes (at most ``limit``)."""
    out: list[BaseException] = []
    while exc is not None and len(out) < limit:
        out.append(exc)
        exc = exc.__cause__ or exc.__context__
    return out


def _is_network(exc: BaseException) -> bool:
    return any(isinstance(e, (ConnectionError, TimeoutError, OSError)) or type(e).__name__ in (
        "ConnectError", "ConnectTimeout", "ReadTimeout", "NetworkError", "OfflineModeIsEnabled",
        "RemoteProtocolError", "ConnectionError", "Timeout") for e in _chain(exc))
