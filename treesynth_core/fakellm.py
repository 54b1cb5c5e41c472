"""A real OpenAI-compatible HTTP server for tests, demos and benchmarks (stdlib only).

It answers ``POST /v1/chat/completions`` and ``GET /v1/models``, and the Batch API's files and batches (see
below). By default it plays a well-behaved model
that reads our prompts (the step, the counts, the already-used dimensions) and answers valid JSON, so a
whole build + generate runs on it. Tests script faults ahead of the defaults: raw reply texts, truncated
replies (``finish_reason="length"``), HTTP errors (429, 500...) and slow replies; latency can be injected
on every call. Two endpoint behaviours can be switched on: ``max_in_flight`` (a rate limit: a request beyond
that many in flight gets 429 with ``retry-after``) and ``reject_response_format`` (HTTP 400 for any request
with ``response_format``, as servers without JSON mode answer). Run it alone with
``python -m treesynth_core.fakellm --port 8765``.

The Batch API: ``POST /v1/files`` (multipart upload), ``GET /v1/files/{id}`` and ``/v1/files/{id}/content``,
``POST /v1/batches``, ``GET /v1/batches`` (list), ``GET /v1/batches/{id}`` and ``POST /v1/batches/{id}/cancel``.
A batch answers ``in_progress`` to its first ``batch_polls`` retrieves, then runs its request lines through the
well-behaved model (``run_batch``) and is ``completed`` with an output file and an error file (HTTP 500s), as
OpenAI's is. ``batch_faults`` (``BatchFaults``) scripts what a real engine does to results: lines in reverse
order, some 500s, some unusable bodies, a repeated line. ``batch_create_delay`` holds the create call's answer
after the batch exists, so a test can kill a client that never learns its id. ``FakeModel`` is the
well-behaved model alone (no server), for ``tests/fake_run_batch.py``.

The leaf-fit judge (issue 9): the well-behaved model answers the judge step too. A sample whose text contains
``misfit_marker`` (default ``MISFIT_MARKER``) fails its last attribute (the leaf's own value); every other sample
fits every attribute. ``misfit_every=k`` puts the marker into about one generated sample in k (chosen by a hash of
its running number, so no pattern of calls can make one leaf draw the marker every time), and a test knows which
samples the judge rejects from their text alone. A judge prompt it cannot read (no numbered
attributes or samples) gets a reply without verdicts, which fails validation: never a silent default.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import threading
import time
import uuid
import zlib
from collections import deque
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterable
from urllib.parse import urlsplit

from .config import Endpoint

# sample_style (issue 9): samples of one frame ("templated", near-duplicates of each other, as a model copying
# its "do not repeat" list writes them) or of many unrelated frames ("varied"); the first field gets the text,
# the others a short answer. Numbers come from the running number, so no two samples are exact duplicates.
SAMPLE_STYLES = (None, "templated", "varied")
TEMPLATED_NAMES = ["Tom", "Sara", "Ali", "Mei", "Lena", "Omar"]
VARIED_FRAMES = [
    "A train leaves at {a} pm and travels {b}0 km at 90 km/h. When does it arrive?",
    "A rectangle is {a} cm long and {b} cm wide. What is its perimeter?",
    "Sara saves ${a} a week. How many weeks until she can buy a ${b}00 bike?",
    "A recipe needs {a}/4 cup of sugar per cake. How much sugar do {b} cakes need?",
    "The temperature fell from {a} degrees to -{b} degrees overnight. By how much did it fall?",
    "A class of {a}{b} students splits into teams of 4. How many full teams are there?",
    "A jacket costs ${a}{b} and is on sale for 20% off. What is the sale price?",
    "Ali reads {a}5 pages a day. How long will a {b}20-page novel take him?",
    "A water tank holds {a}00 litres and leaks {b} litres an hour. How much is left after a day?",
    "Mei is twice as old as her brother, who is {a}. How old will she be in {b} years?",
    "A farmer plants {a} rows of {b}4 tomato plants. How many plants is that?",
    "Write a Python function that returns the {a} largest values of a list of {b} numbers.",
    "In how many ways can {a} people sit around a round table with {b} chairs?",
    "A bacteria culture doubles every {a} hours. How many cells are there after {b} days?",
    "Which prime numbers lie between {a}0 and {b}0?",
    "A cyclist climbs a hill at {a} km/h and descends at {b}0 km/h. What is her average speed?",
    "The probability of rain is 0.{a} each day. What is the chance of {b} dry days in a row?",
    "A chessboard has {a} knights on it. Can {b} more be placed so that none attack each other?",
    "A loan of ${a},000 grows at {b}% interest a year, compounded. What is owed after 3 years?",
    "How many litres of paint cover a wall {a} m high and {b} m wide at 8 square metres a litre?",
    "A clock loses {a} minutes every day. After {b} days, what time does it show at noon?",
    "A pizza is cut into {a} slices and {b} friends share it equally. How much does each get?",
    "The ratio of cats to dogs at a shelter is {a}:{b}. If there are 40 animals, how many are cats?",
    "A ladder {a} m long leans against a wall with its foot {b} m out. How high does it reach?",
]


class _Server(ThreadingHTTPServer):
    """A deep listen backlog: with the default of 5, a burst of connects (64 parallel calls) loses SYNs and
    each lost one waits a second for its retry, which made timing tests flaky and benchmarks slow."""

    request_queue_size = 1024
    daemon_threads = True


def styled_sample(style: str, n: int, fields: list[str]) -> dict:
    """Sample number ``n`` in a ``sample_style`` (see SAMPLE_STYLES)."""
    a, b = 2 + n % 7, 3 + (n // 7) % 9
    if style == "templated":
        name = TEMPLATED_NAMES[n % len(TEMPLATED_NAMES)]
        text = f"{name} has {a + n} apples and buys {b} more. How many apples does {name} have now?"
    else:
        frame = VARIED_FRAMES[(n * 7) % len(VARIED_FRAMES)]  # 7 is coprime to 24: every frame before a repeat
        text = frame.format(a=a + n // 24, b=b)
    return {f: text if k == 0 else f"The answer to #{n} is {a * b}." for k, f in enumerate(fields)}


ROUTE_NONE_MARKER = "OFF-TREE"  # the fake router answers "none of these" for a row containing it
MISFIT_MARKER = "OFF-PATH"  # the fake judge rejects a sample whose text contains it (see the module docstring)
DIMENSIONS = ["topic", "difficulty", "setting", "format", "audience", "length", "tone", "domain", "style"]
FAKE_MODEL = "fake-model"


@dataclass
class Scripted:
    """One scripted answer. ``status`` other than 200 returns an API error with that code."""

    content: str | None = None
    finish_reason: str = "stop"
    status: int = 200
    delay: float = 0.0
    step: str | None = None  # only answer a request of this step (pivots/criterion/coverage/samples)
    headers: dict | None = None  # extra response headers (e.g. {"retry-after": "2"} on a 429)
    error: str | None = None  # the error message of a non-200 answer (default "scripted error <status>")
    code: str | None = None  # the error code of a non-200 answer (default the status; e.g. "insufficient_quota")


def step_of(body: dict) -> str:
    system = next((m["content"] for m in body.get("messages", []) if m.get("role") == "system"), "")
    match = re.search(r"^Step: (\w+)", system, re.M)
    return match.group(1) if match else "unknown"


def _field_names(body: dict) -> list[str]:
    system = next((m["content"] for m in body.get("messages", []) if m.get("role") == "system"), "")
    block = system.split("string fields:\n", 1)[-1]
    return re.findall(r"^- (\w+):", block.split("\n\n")[0].split("Step:")[0], re.M) or ["text"]


def _first_user(body: dict) -> str:
    return next((m["content"] for m in body.get("messages", []) if m.get("role") == "user"), "")


@dataclass
class BatchFaults:
    """What a fake batch engine does to its results. Line numbers count request lines from 1."""

    reverse: bool = False  # results in the reverse order of the requests
    server_error_every: int = 0  # every k-th request fails with HTTP 500 (k = 0: none)
    invalid_every: int = 0  # every k-th request gets a 200 whose body is unusable (not JSON / not a completion)
    duplicate: bool = False  # the first result line appears a second time at the end


class FakeModel:
    """The well-behaved model alone: reads our prompts and answers valid JSON. Sample texts carry a running
    number from ``first_number`` on, so two models started at different numbers never write duplicates."""

    def __init__(self, *, extra_values: int = 0, open_ended: bool = False, values_per_split: int = 3,
                 first_number: int = 1, sample_style: str | None = None, misfit_every: int = 0,
                 misfit_marker: str = MISFIT_MARKER, copy_avoid: bool = False):
        if sample_style not in SAMPLE_STYLES:
            raise ValueError(f"sample_style must be one of {SAMPLE_STYLES}, not {sample_style!r}")
        self.sample_style = sample_style  # None: "<field> #n about <path>"; see styled_sample
        self.extra_values = extra_values
        self.open_ended = open_ended
        self.values_per_split = values_per_split
        self.counter = itertools.count(first_number)
        self.misfit_every = misfit_every  # about one generated sample in k carries misfit_marker (0: none)
        self.misfit_marker = misfit_marker
        self.copy_avoid = copy_avoid  # a "copier": answers with the prompt's avoid list (see copied_samples)

    def default_reply(self, body: dict) -> str:
        step = step_of(body)
        user = _first_user(body)
        count = int((re.search(r"^Count: (\d+)", user, re.M) or [0, 3])[1])
        if step in ("pivots", "samples"):
            attrs = re.findall(r"^- ([^:\n]+): (.+)$", user.split("\n\n")[0], re.M)
            where = ", ".join(f"{d}={v}" for d, v in attrs) or "anything"
            samples = []
            copies = copied_samples(user, _field_names(body)) if self.copy_avoid and step == "samples" else []
            for _ in range(count):
                n = next(self.counter)
                if copies:
                    samples.append(copy_variant(copies[n % len(copies)], n, _field_names(body)))
                elif self.sample_style and step == "samples":
                    samples.append(styled_sample(self.sample_style, n, _field_names(body)))
                else:
                    samples.append({f: f"{f} #{n} about {where}" for f in _field_names(body)})
                if step == "samples" and self.misfit_every and zlib.crc32(b"%d" % n) % self.misfit_every == 0:
                    first = next(iter(samples[-1]))
                    samples[-1][first] += f" {self.misfit_marker}"
            return json.dumps({"samples": samples})
        if step == "judge":
            return self.judge_reply(user)
        if step == "route":
            return self.route_reply(user)
        if step == "criterion":
            used_line = re.search(r"Already used dimensions[^:]*: (.*)", user)
            used = {u.strip().lower() for u in (used_line[1] if used_line else "").split(";")}
            dim = next(d for d in DIMENSIONS if d not in used)
            pivots = int((re.search(r"\(sample 1 to (\d+)\)", user) or [0, 3])[1])
            k = min(self.values_per_split, pivots)
            return json.dumps({"dimension": dim, "labels": [f"{dim} {chr(65 + i % k)}" for i in range(pivots)]})
        if step == "coverage":
            dim = (re.search(r"^Dimension: (.+)$", user, re.M) or [0, "x"])[1]
            so_far = (re.search(r"^Values so far: (.+)$", user, re.M) or [0, ""])[1].split("; ")
            start = len(so_far)
            new = [f"{dim} {chr(65 + start + i)}" for i in range(self.extra_values)] if (
                self.open_ended or start <= self.values_per_split) else []
            return json.dumps({"new_values": new, "open_ended": self.open_ended})
        return json.dumps({"error": "unknown step"})

    # Routing (issue 11): a row goes to the offered value its text names (the longest one named), else to one picked
    # by a hash of its text; a row containing ROUTE_NONE_MARKER gets "none of these". ``route_invalid``: every row
    # is answered with a value that does not exist (a model that invents values). A prompt without numbered rows or
    # values gets a reply without routes, which fails validation.
    route_invalid = False

    def route_reply(self, user: str) -> str:
        block = re.search(r"^Values \(.*\):\n((?:- .*\n?)+)", user, re.M)
        rows = re.findall(r"^\[(\d+)\] (.*)$", user.split("\nRows:\n", 1)[-1], re.M)
        if not block or not rows:
            return json.dumps({"error": "no values or rows in the routing prompt"})
        values = [line[2:].strip() for line in block[1].splitlines() if line.startswith("- ")]
        routes = []
        for number, text in rows:
            named = [v for v in values if v.lower() in text.lower()]
            if self.route_invalid:
                value = f"not-a-value {number}"
            elif ROUTE_NONE_MARKER in text:
                value = "none of these"
            elif named:
                value = max(named, key=len)
            else:
                value = values[zlib.crc32(text.encode()) % len(values)]
            routes.append({"row": int(number), "value": value})
        return json.dumps({"routes": routes})

    def judge_reply(self, user: str) -> str:
        """Verdicts for the judge prompt's numbered samples: a sample containing ``misfit_marker`` fails the last
        attribute, with a reason that names it; all else fits."""
        attributes = re.findall(r"^\[A\d+\] ([^:\n]+): (.*)$", user, re.M)
        samples = re.findall(r"^\[(\d+)\] (.*)$", user, re.M)
        if not attributes or not samples:
            return json.dumps({"error": "no numbered attributes or samples in the judge prompt"})
        verdicts = []
        for number, text in samples:
            misfit = self.misfit_marker in text
            verdicts.append({"sample": int(number), "attributes": [
                {"fits": False, "reason": f"marked {self.misfit_marker}: not {value}"}
                if misfit and i == len(attributes) - 1 else {"fits": True, "reason": f"it is {value}"[:100]}
                for i, (_, value) in enumerate(attributes)]})
        return json.dumps({"verdicts": verdicts})


# The copier (issue 9): the bundled 0.5B model, shown "do not repeat these existing samples", copied them. With
# ``copy_avoid`` the fake does the same: every sample of a reply is one of the listed entries, in turn exact, cut
# off with the next field's label inside the field ("...; reply:"), or behind words of its own (a prefixed
# copy). A "topics already covered" list is copied as its openings. No list in the prompt: fresh samples.
_AVOID_SAMPLES = re.compile(r"^Do not repeat these existing samples:\n((?:\[\d+\] .*\n?)+)", re.M)
_AVOID_TOPICS = re.compile(r"^Topics already covered here[^\n]*:\n((?:- .*\n?)+)", re.M)


def copied_samples(user: str, fields: list[str]) -> list[dict]:
    """The entries of a generation prompt's avoid list, as samples (empty when it has none)."""
    found = _AVOID_SAMPLES.search(user)
    if found:
        shape = re.compile("^" + "; ".join(f"{re.escape(f)}: (.*?)" for f in fields) + "$")
        out = []
        for line in found[1].splitlines():
            match = shape.match(re.sub(r"^\[\d+\] ", "", line))
            if match:
                out.append(dict(zip(fields, match.groups())))
        return out
    found = _AVOID_TOPICS.search(user)
    if found:
        return [{f: (line[2:].removesuffix(" ...") if k == 0 else "copied") for k, f in enumerate(fields)}
                for line in found[1].splitlines()]
    return []


def copy_variant(sample: dict, n: int, fields: list[str]) -> dict:
    """Copy number ``n`` of ``sample``: exact, cut off with "; reply:", or prefixed, in turn."""
    first, text = fields[0], sample[fields[0]]
    words = text.split()
    if n % 3 == 1 and len(words) > 4:
        text = " ".join(words[: max(4, len(words) * 2 // 3)])[:-2] + "; reply:"
    elif n % 3 == 2:
        text = "Here is a new one: " + text
    return {**sample, first: text}


def completion_body(body: dict, content: str, finish: str = "stop", number: int = 0) -> dict:
    """A chat completion answering ``body`` with ``content``, its usage counted at 4 characters a token."""
    prompt_tokens = sum(len(m.get("content") or "") for m in body.get("messages", [])) // 4
    return {
        "id": f"chatcmpl-{number}", "object": "chat.completion", "created": int(time.time()),
        "model": body.get("model", FAKE_MODEL),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(content) // 4,
                  "total_tokens": prompt_tokens + len(content) // 4},
    }


def run_batch(lines: Iterable[str | bytes], reply: Callable[[dict], str], faults: BatchFaults | None = None, *,
              model: str | None = None) -> list[dict]:
    """Answer OpenAI Batch request lines as a batch engine does: one result line each, in request order unless
    ``faults`` say otherwise. A request for another model than ``model`` (when given) gets a 404 line, as
    ``vllm run-batch`` writes one. ``failed_line`` tells the lines OpenAI puts in the error file."""
    faults = faults or BatchFaults()
    results: list[dict] = []
    for number, raw in enumerate((ln for ln in lines if ln.strip()), 1):
        request: dict = {}
        try:
            request = json.loads(raw)
            custom_id, body = request["custom_id"], request["body"]
            if request.get("url") != "/v1/chat/completions" or not isinstance(body, dict):
                raise ValueError(f"unsupported url {request.get('url')!r}")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            custom_id = request.get("custom_id") if isinstance(request, dict) else None
            results.append(_result_line(custom_id, None, {"code": "invalid_request", "message": str(exc)}))
            continue
        if model is not None and body.get("model") != model:
            message = f"The model `{body.get('model')}` does not exist."
            results.append(_result_line(custom_id, {"status_code": 404, "body": None}, message))
        elif faults.server_error_every and number % faults.server_error_every == 0:
            error = {"error": {"message": "scripted server error", "type": "server_error", "code": None}}
            results.append(_result_line(custom_id, {"status_code": 500, "body": error}, None))
        elif faults.invalid_every and number % faults.invalid_every == 0:
            unusable = (completion_body(body, "this is not JSON at all", number=number)
                        if number // faults.invalid_every % 2 else {"object": "chat.completion", "unexpected": 1})
            results.append(_result_line(custom_id, {"status_code": 200, "body": unusable}, None))
        else:
            answer = completion_body(body, reply(body), number=number)
            results.append(_result_line(custom_id, {"status_code": 200, "body": answer}, None))
    if faults.reverse:
        results.reverse()
    if faults.duplicate and results:
        results.append(results[0])
    return results


def failed_line(line: dict) -> bool:
    """A result line of a request that failed (OpenAI's error file), not a 200 (its output file)."""
    return not isinstance(line.get("response"), dict) or line["response"].get("status_code") != 200


def _result_line(custom_id: str | None, response: dict | None, error) -> dict:
    if response is not None:
        response = {"request_id": f"req_{uuid.uuid4().hex[:12]}", **response}
    return {"id": f"batch_req_{uuid.uuid4().hex[:12]}", "custom_id": custom_id, "response": response, "error": error}


class FakeLLM(FakeModel):
    def __init__(self, *, latency: float = 0.0, extra_values: int = 0, open_ended: bool = False,
                 values_per_split: int = 3, host: str = "127.0.0.1", port: int = 0,
                 max_in_flight: int | None = None, retry_after: float = 1.0, reject_response_format: bool = False,
                 sample_style: str | None = None, misfit_every: int = 0, copy_avoid: bool = False):
        super().__init__(extra_values=extra_values, open_ended=open_ended, values_per_split=values_per_split,
                         sample_style=sample_style, misfit_every=misfit_every, copy_avoid=copy_avoid)
        self.latency = latency
        # A rate limit: at most ``max_in_flight`` chat requests at once, others get 429 + retry-after (seconds).
        self.max_in_flight = max_in_flight
        self.retry_after = retry_after
        self.in_flight = 0
        self.rate_limited = 0  # how many 429s the rate limit sent
        self.reject_response_format = reject_response_format
        self.requests: list[dict] = []
        self.script: deque[Scripted] = deque()
        self.lock = threading.Lock()
        # the Batch API: uploaded and produced files by id, batches by id (the Batch object's fields)
        self.files: dict[str, dict] = {}
        self.batches: dict[str, dict] = {}
        self.batch_faults = BatchFaults()
        self.batch_polls = 1  # retrieves answered "in_progress" before a batch completes
        self.batch_create_delay = 0.0
        self.batch_lines = 0  # request lines run by batches
        self.delay_fn: Callable[[dict], float] | None = None
        # A fault injector: called with the request body when no scripted entry applies; a Scripted it returns
        # is served instead of the well-behaved reply (see tests' malformation catalogue).
        self.fault_fn: Callable[[dict], Scripted | None] | None = None
        self._server = _Server((host, port), self._handler())
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------- lifecycle
    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def endpoint(self, **overrides) -> Endpoint:
        values = dict(base_url=self.base_url, api_key="sk-fake-test-key-123456", model=FAKE_MODEL,
                      timeout=10.0, max_retries=2)
        values.update(overrides)
        return Endpoint(**values)

    def start(self) -> "FakeLLM":
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True, name="fakellm")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "FakeLLM":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ----------------------------------------------------------------- scripting
    def push(self, *entries: Scripted | str) -> None:
        with self.lock:
            for entry in entries:
                self.script.append(entry if isinstance(entry, Scripted) else Scripted(content=entry))

    def steps(self) -> list[str]:
        return [step_of(r) for r in self.requests]

    def _next_scripted(self, step: str) -> Scripted | None:
        with self.lock:
            for i, entry in enumerate(self.script):
                if entry.step in (None, step):
                    del self.script[i]
                    return entry
        return None

    # ----------------------------------------------------------------- the Batch API
    def _new_file(self, data: bytes, filename: str, purpose: str) -> dict:
        record = {"id": f"file-{uuid.uuid4().hex[:16]}", "object": "file", "bytes": len(data),
                  "created_at": int(time.time()), "filename": filename, "purpose": purpose, "status": "processed"}
        with self.lock:
            self.files[record["id"]] = {**record, "data": data}
        return record

    def _file(self, file_id: str) -> dict | None:
        with self.lock:
            return self.files.get(file_id)

    def _create_batch(self, body: dict) -> tuple[int, dict]:
        if body.get("endpoint") != "/v1/chat/completions" or body.get("completion_window") != "24h":
            return 400, {"error": {"message": "endpoint must be /v1/chat/completions, completion_window 24h",
                                   "type": "invalid_request_error"}}
        source = self._file(body.get("input_file_id") or "")
        if source is None:
            return 400, {"error": {"message": f"no file {body.get('input_file_id')!r}",
                                   "type": "invalid_request_error"}}
        total = sum(1 for line in source["data"].splitlines() if line.strip())
        batch = {"id": f"batch_{uuid.uuid4().hex[:16]}", "object": "batch", "endpoint": body["endpoint"],
                 "input_file_id": body["input_file_id"], "completion_window": "24h", "status": "validating",
                 "created_at": int(time.time()), "metadata": body.get("metadata"), "output_file_id": None,
                 "error_file_id": None, "request_counts": {"total": total, "completed": 0, "failed": 0}, "_polls": 0}
        with self.lock:
            self.batches[batch["id"]] = batch
        return 200, batch

    def _retrieve_batch(self, batch_id: str) -> dict | None:
        with self.lock:
            batch = self.batches.get(batch_id)
            if batch is None or batch["status"] in ("completed", "cancelled", "failed", "expired"):
                return batch
            batch["_polls"] += 1
            if batch["_polls"] <= self.batch_polls:
                batch["status"] = "in_progress"
                return batch
            faults = self.batch_faults
            data = self.files[batch["input_file_id"]]["data"]
        lines = data.decode("utf-8").splitlines()
        answered = run_batch(lines, self.default_reply, faults)
        results = [line for line in answered if not failed_line(line)]
        errors = [line for line in answered if failed_line(line)]
        output = self._new_file(_jsonl(results), "batch_output.jsonl", "batch_output") if results else None
        error = self._new_file(_jsonl(errors), "batch_errors.jsonl", "batch_output") if errors else None
        with self.lock:
            self.batch_lines += sum(1 for ln in lines if ln.strip())
            batch.update(status="completed", completed_at=int(time.time()),
                         output_file_id=output and output["id"], error_file_id=error and error["id"],
                         request_counts={"total": len(results) + len(errors), "completed": len(results),
                                         "failed": len(errors)})
            return batch

    def _cancel_batch(self, batch_id: str) -> dict | None:
        with self.lock:
            batch = self.batches.get(batch_id)
            if batch is not None and batch["status"] not in ("completed", "failed", "expired"):
                batch["status"] = "cancelled"
            return batch

    # ----------------------------------------------------------------- HTTP
    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _send_bytes(self, data: bytes) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _send_object(self, found: dict | None, what: str) -> None:
                if found is None:
                    self._send(404, {"error": {"message": f"no such {what}", "type": "invalid_request_error"}})
                else:
                    self._send(200, {k: v for k, v in found.items() if not k.startswith("_") and k != "data"})

            def do_GET(self):
                path = urlsplit(self.path).path.rstrip("/")
                parts = path.split("/")
                if path.endswith("/models"):
                    self._send(200, {"object": "list", "data": [{"id": FAKE_MODEL, "object": "model"}]})
                elif path.endswith("/batches"):
                    with fake.lock:
                        listed = sorted(fake.batches.values(), key=lambda b: b["created_at"], reverse=True)
                        data = [{k: v for k, v in b.items() if not k.startswith("_")} for b in listed]
                    self._send(200, {"object": "list", "data": data, "has_more": False,
                                     "first_id": data[0]["id"] if data else None,
                                     "last_id": data[-1]["id"] if data else None})
                elif len(parts) >= 2 and parts[-2] == "batches":
                    self._send_object(fake._retrieve_batch(parts[-1]), "batch")
                elif len(parts) >= 3 and parts[-3] == "files" and parts[-1] == "content":
                    found = fake._file(parts[-2])
                    if found is None:
                        self._send_object(None, "file")
                    else:
                        self._send_bytes(found["data"])
                elif len(parts) >= 2 and parts[-2] == "files":
                    self._send_object(fake._file(parts[-1]), "file")
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def _upload(self, raw: bytes) -> None:
                head = f"Content-Type: {self.headers.get('Content-Type', '')}\r\n\r\n".encode()
                form = BytesParser(policy=HTTP).parsebytes(head + raw)
                fields = {}
                for part in form.iter_parts() if form.is_multipart() else []:
                    name = part.get_param("name", header="content-disposition")
                    fields[name] = (part.get_filename(), part.get_payload(decode=True) or b"")
                if "file" not in fields or "purpose" not in fields:
                    self._send(400, {"error": {"message": "a multipart upload with file and purpose is required",
                                               "type": "invalid_request_error"}})
                    return
                filename, data = fields["file"]
                self._send(200, fake._new_file(data, filename or "upload.jsonl", fields["purpose"][1].decode()))

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                path = urlsplit(self.path).path.rstrip("/")
                if path.endswith("/files"):
                    self._upload(raw)
                    return
                try:
                    body = json.loads(raw or b"{}")
                except json.JSONDecodeError:
                    self._send(400, {"error": {"message": "invalid JSON body"}})
                    return
                if path.endswith("/batches"):
                    status, answer = fake._create_batch(body)
                    if fake.batch_create_delay:
                        time.sleep(fake.batch_create_delay)  # the batch exists; its id is not out yet
                    if status == 200:
                        self._send_object(answer, "batch")
                    else:
                        self._send(status, answer)
                    return
                if path.endswith("/cancel") and "/batches/" in path:
                    self._send_object(fake._cancel_batch(path.split("/")[-2]), "batch")
                    return
                if not path.endswith("/chat/completions"):
                    self._send(404, {"error": {"message": "not found"}})
                    return
                with fake.lock:
                    fake.requests.append(body)
                    limited = fake.max_in_flight is not None and fake.in_flight >= fake.max_in_flight
                    fake.rate_limited += limited
                    fake.in_flight += not limited
                if limited:
                    self._send(429, {"error": {"message": "rate limit reached", "type": "requests",
                                               "code": "rate_limit_exceeded"}},
                               {"retry-after": f"{fake.retry_after:g}"})
                    return
                try:
                    self._answer(body)
                finally:
                    with fake.lock:
                        fake.in_flight -= 1

            def _answer(self, body: dict) -> None:
                if fake.reject_response_format and "response_format" in body:
                    self._send(400, {"error": {"message": "response_format is not supported by this server",
                                               "type": "invalid_request_error", "param": "response_format"}})
                    return
                step = step_of(body)
                entry = fake._next_scripted(step)
                if entry is None and fake.fault_fn is not None:
                    entry = fake.fault_fn(body)
                delay = fake.latency + (entry.delay if entry else 0.0)
                if fake.delay_fn:
                    delay += fake.delay_fn(body)
                if delay:
                    time.sleep(delay)
                if entry and entry.status != 200:
                    message = entry.error or f"scripted error {entry.status}"
                    self._send(entry.status, {"error": {"message": message,
                                                        "type": "fake", "code": entry.code or entry.status}},
                               entry.headers if entry.headers is not None else {"retry-after-ms": "10"})
                    return
                content = entry.content if entry and entry.content is not None else fake.default_reply(body)
                finish = entry.finish_reason if entry else "stop"
                self._send(200, completion_body(body, content, finish, next(fake.counter)))

        return Handler


def _jsonl(lines: list[dict]) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the fake OpenAI-compatible model.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every reply")
    parser.add_argument("--values", type=int, default=3, help="values per split")
    args = parser.parse_args(argv)
    fake = FakeLLM(latency=args.latency, values_per_split=args.values, host=args.host, port=args.port)
    print(f"fake LLM serving at {fake.base_url} (model {FAKE_MODEL})", flush=True)
    try:
        fake._server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
