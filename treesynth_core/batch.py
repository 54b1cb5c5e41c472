"""Generation through batch files: OpenAI Batch JSONL, run by the OpenAI Batch API or ``vllm run-batch``.

One round at a time:

1. ``export_requests`` writes every missing generation unit of the chosen leaves as a request line:
   ``custom_id`` = project:leaf:unit:round, ``POST /v1/chat/completions`` with model, messages, temperature,
   max_tokens, a seed and the samples' JSON schema in ``response_format``. An infinite node's random value is
   drawn now and written into the prompt; the store keeps it with the line, so import knows the sample's path.
   A file holds at most 50,000 lines and 200 MB (OpenAI's limits; more makes parts ``NAME.part001.jsonl``...),
   written atomically; the round (its files and every line) is recorded in one transaction once the files exist.
2. The files run wherever the format is spoken: ``batch_api.submit`` uploads them through the ``openai`` SDK
   (Files with purpose "batch", Batches with a 24 h window) to the configured endpoint and ``batch_api.poll``
   downloads the output and error files when a batch has ended; or ``vllm run-batch -i req.jsonl -o res.jsonl
   --model M`` runs them on a GPU machine and ``import_file`` reads the result.
3. ``import_lines`` reads result lines in any order, keyed by custom_id. Each is cleaned and deduplicated as a
   live generation call is (``samples.clean_samples`` with max_field_chars, ``fingerprint``), capped at the leaf's
   quota inside the transaction that also closes the line, and logged as a call with its usage. A closed line is
   a no-op, so importing a file twice, or a line that appears twice, adds nothing. A line that failed or was
   unusable is closed too: its samples are missing again and go into the next round's file. A request file
   given as results is refused before anything changes (a stray request line is skipped, its request stays out).

Lines still out (pending) count as asked for: neither an export nor a live ``generate`` (``LeafPlan.out``) asks
for them again until their results are imported or ``batch_api.cancel`` releases them. Calls answered by batch
engines cost the project's prices times its ``batch_price_factor`` (``project_cost``).
"""

from __future__ import annotations

import json
import os
import random
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from pydantic import ValidationError

from .config import endpoint_from_env
from . import edits
from .errors import ConfigError, TreeSynthError
from .files import atomic_file, check_target
from .generate import call_units, generation_targets, no_leaves_reason, plan_generation, reply_tokens
from .outcome import Outcome, short_reason
from .prompts import SamplesReply, samples_messages, samples_schema
from .replies import bad_unicode, load_json, storable, validation_message
from .samples import clean_samples, fingerprint
from .seeds import style_examples
from .spec import Settings
from .store import Store
from .tree import Tree

MAX_LINES = 50_000  # OpenAI's Batch API: requests per file
MAX_BYTES = 200_000_000  # and bytes per file
URL = "/v1/chat/completions"
RESPONSE_FORMATS = ("json_schema", "json_object", "none")
AVOID = 3  # a leaf's newest samples quoted as "do not repeat", as generate does
IMPORT_CHUNK = 50  # result lines per store transaction


# ----------------------------------------------------------------------------- export


@dataclass
class ExportReport:
    round: int
    factor: float
    files: list[str] = field(default_factory=list)
    batch_ids: list[int] = field(default_factory=list)
    requests: int = 0
    samples: int = 0  # samples asked for
    leaves: int = 0
    pending: int = 0  # samples already out in earlier batch files, not asked for again
    prompt_tokens: int = 0
    completion_tokens: int = 0  # an estimate, from the samples made so far
    cost: float | None = None  # estimated USD at the batch price, None while a price is unknown

    def summary(self, for_cli: bool = True) -> str:
        """What the export wrote; ``for_cli`` names the commands (the app names its buttons)."""
        release = "`batch cancel` them" if for_cli else "release their lines"
        out = (f"; {self.pending} sample(s) are still out in earlier batch files (import their results, or "
               f"{release} to ask again)") if self.pending else ""
        if not self.requests:
            return "nothing to export: every selected leaf has its quota" + (
                " or has its missing samples out" if self.pending else "") + out
        cost = "unknown (no prices set)" if self.cost is None else f"${self.cost:.4f}"
        return (f"round {self.round}: {self.requests} request line(s) asking for {self.samples} sample(s) in "
                f"{self.leaves} leaf/leaves, in {len(self.files)} file(s): {', '.join(self.files)}; "
                f"~{self.prompt_tokens + self.completion_tokens:,} tokens, estimated cost {cost} at the batch price "
                f"(factor {self.factor:g})" + out)


def request_path(folder: str | Path, project_id: int, round_no: int) -> Path:
    """Where a round's request file goes by default."""
    return Path(folder) / f"project{project_id}-round{round_no}.jsonl"


def default_folder(db: str | Path) -> Path:
    """The batch files' default folder: ``<name>-batches`` beside the database file."""
    db = Path(db).resolve()
    return db.parent / f"{db.stem}-batches"


def part_path(out: Path, part: int) -> Path:
    return out.with_name(f"{out.stem}.part{part:03d}{out.suffix}")


def export_requests(store: Store, project_id: int, out: str | Path, *, per_leaf: int | None = None,
                    under: str | None = None, approved_only: bool = False, samples_per_call: int | None = None,
                    temperature: float | None = None, model: str | None = None, response_format: str = "json_schema",
                    max_lines: int = MAX_LINES, max_bytes: int = MAX_BYTES) -> ExportReport:
    """Write the next round's request file(s) for the missing samples of the chosen leaves and record them.

    ``per_leaf`` and ``samples_per_call`` default to the settings (refused out of range, as generate does);
    ``model`` to the project's model, else $TREESYNTH_MODEL: it must be the name the engine serves.
    ``response_format``: "json_schema" (the samples' schema; OpenAI and vLLM enforce it), "json_object" or
    "none". Writes nothing and returns a report with no requests when nothing is missing.
    """
    if response_format not in RESPONSE_FORMATS:
        raise ConfigError(f"response format {response_format!r} is unknown",
                          f"use one of {', '.join(RESPONSE_FORMATS)}")
    if not (1 <= max_lines <= MAX_LINES and 1 <= max_bytes <= MAX_BYTES):
        raise ConfigError(f"a batch file holds 1 to {MAX_LINES:,} lines and 1 to {MAX_BYTES:,} bytes",
                          "choose limits inside those")
    out = check_target(Path(out).resolve(), "batch request file")
    for record in store.batches(project_id):
        same = Path(record["path"]) == out or Path(record["path"]).name.startswith(f"{out.stem}.part")
        if same and Path(record["path"]).parent == out.parent and record["state"] not in ("imported", "cancelled"):
            raise ConfigError(f"{out.name} would replace the request file of batch {record['id']} (round "
                              f"{record['round']}), whose results are not all imported",
                              "choose another file name, or import or `batch cancel` that batch first")
    spec = store.project(project_id)
    s = spec.settings
    model = model or s.model or endpoint_from_env().model
    temperature = s.generation_temperature if temperature is None else temperature
    plan = plan_generation(store, project_id, per_leaf=per_leaf, under=under, approved_only=approved_only,
                           samples_per_call=samples_per_call)
    tree = store.tree(project_id)
    if not plan.leaves:
        raise TreeSynthError(no_leaves_reason(tree, generation_targets(tree, s, under, approved_only)[1]))
    round_no = store.next_batch_round(project_id)
    report = ExportReport(round_no, s.batch_price_factor)
    report.pending = plan.awaited  # the plan's missing counts leave out what earlier files still have out
    missing = {leaf.node_id: leaf.missing for leaf in plan.leaves if leaf.missing}
    if not missing:
        return report
    params = {"per_leaf": s.per_leaf if per_leaf is None else per_leaf, "under": under,
              "approved_only": approved_only, "samples_per_call": plan.samples_per_call, "temperature": temperature,
              "max_tokens": s.max_tokens, "response_format": response_format}

    def lines():
        rng = random.Random()
        units: dict[str, int] = {}
        avoid: tuple[str, list[dict], list[dict]] = ("", [], [])  # a leaf's avoid list and style examples
        for leaf_id, count in call_units(missing, plan.samples_per_call):
            unit = units[leaf_id] = units.get(leaf_id, -1) + 1
            if avoid[0] != leaf_id:
                avoid = (leaf_id, store.recent_samples(leaf_id, AVOID), style_examples(store, project_id,
                                                                                       tree.path(leaf_id)))
            attributes = tree.attributes(leaf_id, rng)  # an infinite node's draw is frozen into this line
            messages = samples_messages(spec, attributes, count, avoid[1], examples=avoid[2])
            body = {"model": model, "messages": messages, "temperature": temperature,
                    "max_tokens": reply_tokens(s.max_tokens, count, avoid[1]),  # as a live call asks
                    "seed": rng.randrange(2**31)}
            if response_format == "json_schema":
                body["response_format"] = {"type": "json_schema", "json_schema": {
                    "name": "samples", "schema": samples_schema(spec, count), "strict": False}}
            elif response_format == "json_object":
                body["response_format"] = {"type": "json_object"}
            custom_id = f"{project_id}:{leaf_id}:{unit}:{round_no}"
            text = json.dumps({"custom_id": custom_id, "method": "POST", "url": URL, "body": body},
                              ensure_ascii=False)
            report.prompt_tokens += sum(len(m["content"]) for m in messages) // 4 + 20
            report.completion_tokens += count * plan.tokens_per_sample
            report.samples += count
            yield {"custom_id": custom_id, "node_id": leaf_id, "unit": unit, "count": count,
                   "attributes": json.dumps(attributes, ensure_ascii=False)}, (text + "\n").encode("utf-8")

    parts = _write_parts(lines(), out, max_lines, max_bytes)
    token = uuid.uuid4().hex
    records = [{"part": n, "path": str(p["path"]), "lines": len(p["metas"]),
                "samples": sum(m["count"] for m in p["metas"]), "bytes": p["bytes"], "model": model,
                "params": json.dumps(params), "token": f"{token}-{n}", "state": "exported"}
               for n, p in enumerate(parts, 1)]
    requests = [{**meta, "part": n} for n, p in enumerate(parts, 1) for meta in p["metas"]]
    try:
        report.batch_ids = store.add_batch_round(project_id, round_no, records, requests)
    except BaseException:
        _remove(p["path"] for p in parts)
        raise
    report.files = [r["path"] for r in records]
    report.requests, report.leaves = len(requests), len(missing)
    cost = s.cost(report.prompt_tokens, report.completion_tokens)
    report.cost = None if cost is None else cost * s.batch_price_factor
    return report


def _write_parts(lines: Iterable[tuple[dict, bytes]], out: Path, max_lines: int, max_bytes: int) -> list[dict]:
    """Stream the lines into files of at most ``max_lines`` lines and ``max_bytes`` bytes, each written
    atomically. One file is named ``out``; several are ``out``'s name with .part001, .part002..."""
    parts: list[dict] = []
    writer = handle = None  # the open part: its atomic_file context and file

    def close() -> None:
        nonlocal writer
        closing, writer = writer, None
        if closing is not None:
            closing.__exit__(None, None, None)  # fsync and rename; on failure it removes its temporary file
            parts[-1]["written"] = True

    try:
        for meta, data in lines:
            if len(data) > max_bytes:
                raise ConfigError(f"one request line has {len(data):,} bytes, more than a batch file may hold",
                                  "shorten the task, constraints or samples per call")
            current = parts[-1] if parts else None
            if current is None or len(current["metas"]) >= max_lines or current["bytes"] + len(data) > max_bytes:
                close()
                parts.append({"path": part_path(out, len(parts) + 1), "metas": [], "bytes": 0})
                writer = atomic_file(parts[-1]["path"], "batch request file")
                handle = writer.__enter__()
                current = parts[-1]
            handle.write(data)
            current["metas"].append(meta)
            current["bytes"] += len(data)
        close()
    except BaseException as exc:
        if writer is not None:
            writer.__exit__(type(exc), exc, exc.__traceback__)  # removes the unfinished temporary file
        _remove(p["path"] for p in parts if p.get("written"))  # a failed export leaves none of its files
        raise
    if len(parts) == 1:
        os.replace(parts[0]["path"], out)
        parts[0]["path"] = out
    return parts


def _remove(paths: Iterable[Path]) -> None:
    for path in paths:
        try:
            os.unlink(path)
        except OSError:
            pass


# ----------------------------------------------------------------------------- import


@dataclass
class ImportReport:
    lines: int = 0  # result lines read
    done: int = 0  # request lines whose reply was used
    failed: int = 0  # lines with an error (HTTP status other than 200, or an engine error)
    invalid: int = 0  # 200 lines with no usable reply (not JSON, wrong shape, cut off, no usable sample...)
    repeated: int = 0  # lines of requests already imported: no-ops
    ignored: int = 0  # lines of requests released by cancel (asked for again elsewhere): no-ops
    unknown: int = 0  # lines that name no request of this project
    unreadable: int = 0  # lines that are not JSON or carry no custom_id
    lost: int = 0  # requests with no result line when their batch ended: closed, missing again
    inserted: int = 0
    duplicates: int = 0
    dropped: int = 0  # invalid samples inside usable replies
    over_quota: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    errors: list[str] = field(default_factory=list)  # the first reasons, one line each
    short: dict[str, int] = field(default_factory=dict)  # leaf -> samples missing with nothing out for them
    batch_ids: set[int] = field(default_factory=set)
    per_leaf: dict[str, int] = field(default_factory=dict)  # leaves touched -> the quota their export used

    @property
    def problems(self) -> int:
        return self.failed + self.invalid + self.unknown + self.unreadable + self.lost

    @property
    def outcome(self) -> Outcome:
        """complete: every line was used (or already imported) and no touched leaf is short; failed: nothing
        usable came out; partial otherwise."""
        if not self.problems and not self.short and (self.lines or self.done):
            return Outcome.COMPLETE
        return Outcome.PARTIAL if self.done else Outcome.FAILED

    def note(self, reason: str) -> None:
        if len(self.errors) < 20:
            self.errors.append(reason)

    def summary(self, for_cli: bool = True) -> str:
        """What the import did; ``for_cli`` names the command that asks again and keeps the first problem whole
        (the app cuts it short and says "the next request file")."""
        if not self.lines and not self.lost:
            return "no result lines to import"
        text = (f"{self.lines} result line(s): {self.done} used, {self.failed} failed, {self.invalid} unusable"
                + (f", {self.repeated} already imported (no-op)" if self.repeated else "")
                + (f", {self.ignored} of released lines (ignored)" if self.ignored else "")
                + (f", {self.unknown} not of this project" if self.unknown else "")
                + (f", {self.unreadable} unreadable" if self.unreadable else "")
                + (f"; {self.lost} request(s) had no result when their batch ended" if self.lost else "")
                + f"; {self.inserted} new sample(s), {self.duplicates} duplicate(s) and {self.dropped} invalid "
                  f"dropped" + (f", {self.over_quota} beyond quota" if self.over_quota else ""))
        if self.errors:
            text += f" (first problem: {self.errors[0] if for_cli else short_reason(self.errors[0])})"
        if self.short:
            text += (f"; {len(self.short)} leaf/leaves still short ({sum(self.short.values())} samples): "
                     + ("`batch export` writes them into the next round's file" if for_cli else
                        "the next request file asks for them"))
        return text


def import_file(store: Store, project_id: int, path: str | Path, report: ImportReport | None = None) -> ImportReport:
    """Import a results file (an OpenAI Batch output or error file, or ``vllm run-batch``'s output)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"the results file {path} does not exist or is not a file", "pass the file run-batch wrote")
    with open(path, "rb") as handle:
        return import_lines(store, project_id, handle, report)


def import_lines(store: Store, project_id: int, lines: Iterable[bytes | str],
                 report: ImportReport | None = None) -> ImportReport:
    """Import result lines (see the module docstring); safe to repeat and to kill: a line's samples and its
    closing are one transaction, so a line is imported wholly once or not at all."""
    spec = store.project(project_id)
    ctx = _ImportContext(store, project_id, spec.field_names, spec.dedup_fields, spec.settings, store.tree(project_id))
    report = report or ImportReport()
    chunk: list = []
    first = True
    for raw in lines:
        if raw.strip():
            if first and _is_request(raw):  # before anything is changed
                raise ConfigError(REQUEST_FILE, "import the results the batch engine wrote: the Batch API's output "
                                                "or error file, or the file `vllm run-batch -o` wrote")
            first = False
            chunk.append(raw)
        if len(chunk) >= IMPORT_CHUNK:
            ctx.import_chunk(chunk, report)
            chunk = []
    if chunk:
        ctx.import_chunk(chunk, report)
    for batch_id in report.batch_ids:
        refresh(store, batch_id)
    measure_short(store, project_id, report)
    return report


REQUEST_FILE = "this is a request file, not a results file"


def _is_request(raw: bytes | str | dict) -> bool:
    """A request line (custom_id, method, url, body) rather than a result (which has a response or an error)."""
    try:
        line = raw if isinstance(raw, dict) else json.loads(raw)
    except ValueError:
        return False
    return (isinstance(line, dict) and ("body" in line or "method" in line)
            and "response" not in line and "error" not in line)


def measure_short(store: Store, project_id: int, report: ImportReport) -> None:
    """The touched leaves still short of quota with nothing out for them: the next round's work."""
    tree = store.tree(project_id)
    out = store.pending_batch_samples(project_id)
    report.short = {}
    for leaf_id, per_leaf in report.per_leaf.items():
        node = tree.nodes.get(leaf_id)
        if node is None or tree.is_pruned(leaf_id) or tree.kids(leaf_id, include_pruned=False):
            continue
        quota = node.quota if node.quota is not None else per_leaf
        gap = quota - store.live_count(leaf_id) - out.get(leaf_id, 0)
        if gap > 0:
            report.short[leaf_id] = gap


@dataclass
class _Result:
    kind: str  # "done", "failed" or "invalid"
    reason: str | None = None
    content: str | None = None
    finish: str | None = None
    model: str | None = None
    usage: tuple[int, int] = (0, 0)


class _ImportContext:
    """What every line of one import needs: the project's fields and settings, its tree, each batch's params."""

    def __init__(self, store: Store, project_id: int, fields, dedup, settings: Settings, tree: Tree):
        self.store, self.project_id, self.fields, self.dedup, self.settings, self.tree = (
            store, project_id, fields, dedup, settings, tree)
        self.batches: dict[int, tuple[dict, dict]] = {}  # batch id -> (its record, its params)

    def quota(self, leaf_id: str, per_leaf: int) -> int:
        node = self.tree.nodes.get(leaf_id)
        return node.quota if node is not None and node.quota is not None else per_leaf

    def import_chunk(self, chunk: list, report: ImportReport) -> None:
        with self.store.atomic():
            for raw in chunk:
                self.import_line(raw, report)

    def import_line(self, raw: bytes | str, report: ImportReport) -> None:
        report.lines += 1
        try:
            line = json.loads(raw)
            custom_id = line["custom_id"]
            if not isinstance(custom_id, str):
                raise TypeError("custom_id is not text")
        except (ValueError, KeyError, TypeError) as exc:
            report.unreadable += 1
            report.note(f"a line is not a batch result ({type(exc).__name__}: {str(exc)[:80]})")
            return
        if _is_request(line):  # a request line among results: its request stays out, not failed
            report.unreadable += 1
            report.note(f"{custom_id[:80]!r} is a request line, not a result")
            return
        request = self.store.batch_request(custom_id)
        if request is None or request["project_id"] != self.project_id:
            report.unknown += 1
            report.note(f"{custom_id[:80]!r} is no request of this project")
            return
        if request["state"] != "pending":
            if request["state"] == "cancelled":
                report.ignored += 1
            else:
                report.repeated += 1
            return
        batch_id, leaf_id = request["batch_id"], request["node_id"]
        if batch_id not in self.batches:
            record = self.store.batch(batch_id)
            self.batches[batch_id] = (record, json.loads(record["params"]))
        record, params = self.batches[batch_id]
        report.batch_ids.add(batch_id)
        report.per_leaf[leaf_id] = params["per_leaf"]
        result = self.read(line)
        rows, problems = [], []
        if result.kind == "done":
            result, rows, problems = self.check(result, leaf_id, json.loads(request["attributes"]))
        call_id = self.store.log_call(
            project_id=self.project_id, node_id=leaf_id, purpose="samples", model=result.model or record["model"],
            params=json.dumps({"temperature": params["temperature"], "max_tokens": params["max_tokens"],
                               "purpose": "samples", "custom_id": custom_id}),
            response=storable(result.content), finish_reason=result.finish, prompt_tokens=result.usage[0],
            completion_tokens=result.usage[1], attempt=1, valid=int(result.kind == "done"),
            error=None if result.kind == "done" else storable(result.reason), batch_id=batch_id)
        report.prompt_tokens += result.usage[0]
        report.completion_tokens += result.usage[1]
        if result.kind != "done":
            setattr(report, result.kind, getattr(report, result.kind) + 1)
            report.note(f"{custom_id}: {result.reason}")
            self.store.close_batch_request(custom_id, state=result.kind, call_id=call_id, note=result.reason)
            return
        inserted, duplicates = edits.add_samples(self.store, self.project_id, leaf_id, rows,
                                                 cap=self.quota(leaf_id, params["per_leaf"]), call_id=call_id)
        over = len(rows) - inserted - duplicates
        notes = problems + ([f"{duplicates} duplicate(s)"] if duplicates else []) + (
            [f"{over} beyond the leaf's quota"] if over else [])
        if notes:
            self.store.note_call(call_id, "; ".join(notes))
        report.done += 1
        report.inserted += inserted
        report.duplicates += duplicates
        report.dropped += len(problems)
        report.over_quota += over
        self.store.close_batch_request(custom_id, state="done", inserted=inserted, call_id=call_id,
                                       note="; ".join(notes) or None)

    @staticmethod
    def read(line: dict) -> _Result:
        """The reply inside a result line, or why there is none (failed: the request failed at the engine)."""
        response = line.get("response") if isinstance(line.get("response"), dict) else {}
        status, body, error = response.get("status_code"), response.get("body"), line.get("error")
        if error or status != 200:
            detail = error if error else (body.get("error") if isinstance(body, dict) else body)
            if isinstance(detail, dict):  # OpenAI's {"error": {...}} body, or vLLM's ErrorResponse
                inner = detail["error"] if isinstance(detail.get("error"), dict) else detail
                detail = inner.get("message") or inner.get("code") or json.dumps(detail)[:200]
            shown = "-" if status is None else status
            return _Result("failed", f"HTTP {shown}: {str(detail or 'no detail')[:240]}")
        try:
            choice = body["choices"][0]
            content, finish = choice["message"]["content"], choice.get("finish_reason")
            if not isinstance(content, str):
                raise TypeError("the message content is not text")
        except (KeyError, IndexError, TypeError) as exc:
            return _Result("invalid", f"the response body is not a chat completion ({type(exc).__name__})")
        usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
        tokens = (int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
        return _Result("done", content=content, finish=finish, model=body.get("model"), usage=tokens)

    def check(self, result: _Result, leaf_id: str, attributes: list) -> tuple[_Result, list[dict], list[str]]:
        """The reply's usable samples as rows for add_samples, and what was dropped, or an invalid result."""
        node = self.tree.nodes.get(leaf_id)
        reason = None
        if node is None:
            reason = "the leaf no longer exists"
        elif self.tree.is_pruned(leaf_id):
            reason = "the leaf was pruned after the export"
        elif self.tree.kids(leaf_id, include_pruned=False):
            reason = "the leaf was split after the export; its samples belong to its children"
        elif result.finish == "length":
            reason = "the reply was cut off at max_tokens"
        if reason is None:
            try:
                value, _ = load_json(result.content)
                if bad_unicode(value):
                    raise ValueError("the reply contains invalid Unicode")
                reply = SamplesReply.model_validate(value)
                good, problems = clean_samples(reply.samples, self.fields, self.settings.max_field_chars)
                if not good:
                    raise ValueError("no usable sample: " + "; ".join(problems[:3]))
                rows = [{"data": g, "drawn": attributes, "norm_hash": fingerprint(g, self.dedup)} for g in good]
                return result, rows, problems
            except ValidationError as exc:
                reason = f"the JSON does not have the expected shape ({validation_message(exc)})"
            except ValueError as exc:
                reason = str(exc)
        result.kind, result.reason = "invalid", storable(reason)[:300]
        return result, [], []


def refresh(store: Store, batch_id: int) -> dict[str, int]:
    """Count a batch file's lines by state; once none is pending the file is ``imported``."""
    counts = store.batch_request_counts(batch_id)
    record = store.batch(batch_id)
    message = (f"{counts.get('done', 0)} used, {counts.get('failed', 0)} failed, {counts.get('invalid', 0)} unusable, "
               f"{counts.get('pending', 0)} pending; {counts['inserted']} sample(s) added")
    state = record["state"]
    if not counts.get("pending") and state not in ("cancelled",):
        state = "imported"
    store.update_batch(batch_id, state=state, message=message)
    return counts


# ----------------------------------------------------------------------------- views and cost


def records(store: Store, project_id: int) -> list[dict]:
    """The project's batch files with their lines by state, newest round first (for the CLI and the app)."""
    out = []
    for r in store.batches(project_id):
        counts = store.batch_request_counts(r["id"])
        out.append({"batch": r["id"], "round": r["round"], "part": r["part"], "file": r["path"], "lines": r["lines"],
                    "state": r["state"], "remote": r["remote_status"] or "", "pending": counts.get("pending", 0),
                    "used": counts.get("done", 0), "failed": counts.get("failed", 0) + counts.get("invalid", 0),
                    "samples added": counts["inserted"], "samples out": counts["out"]})
    return out


def project_cost(store: Store, project_id: int) -> float | None:
    """USD spent so far: live calls at the project's prices, batch calls at the prices times the batch price
    factor; None while a price is unknown."""
    s = store.project(project_id).settings
    everything, batched = store.usage(project_id), store.batch_usage(project_id)
    live = s.cost(everything["prompt_tokens"] - batched["prompt_tokens"],
                  everything["completion_tokens"] - batched["completion_tokens"])
    batch = s.cost(batched["prompt_tokens"], batched["completion_tokens"])
    return None if live is None or batch is None else live + batch * s.batch_price_factor


def set_price_factor(store: Store, project_id: int, factor: float) -> None:
    """Save the project's batch price factor (refused out of range, as any setting)."""
    spec = store.project(project_id)
    spec.settings = Settings.model_validate({**spec.settings.model_dump(), "batch_price_factor": factor})
    store.update_project(project_id, spec)
