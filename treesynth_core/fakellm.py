"""A real OpenAI-compatible HTTP server for tests, demos and benchmarks (stdlib only).

It answers ``POST /v1/chat/completions`` and ``GET /v1/models``. By default it plays a well-behaved model
that reads our prompts (the step, the counts, the already-used dimensions) and answers valid JSON, so a
whole build + generate runs on it. Tests script faults ahead of the defaults: raw reply texts, truncated
replies (``finish_reason="length"``), HTTP errors (429, 500...) and slow replies; latency can be injected
on every call. Two endpoint behaviours can be switched on: ``max_in_flight`` (a rate limit: a request beyond
that many in flight gets 429 with ``retry-after``) and ``reject_response_format`` (HTTP 400 for any request
with ``response_format``, as servers without JSON mode answer). Run it alone with
``python -m treesynth_core.fakellm --port 8765``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from .config import Endpoint

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


class FakeLLM:
    def __init__(self, *, latency: float = 0.0, extra_values: int = 0, open_ended: bool = False,
                 values_per_split: int = 3, host: str = "127.0.0.1", port: int = 0,
                 max_in_flight: int | None = None, retry_after: float = 1.0, reject_response_format: bool = False):
        self.latency = latency
        # A rate limit: at most ``max_in_flight`` chat requests at once, others get 429 + retry-after (seconds).
        self.max_in_flight = max_in_flight
        self.retry_after = retry_after
        self.in_flight = 0
        self.rate_limited = 0  # how many 429s the rate limit sent
        self.reject_response_format = reject_response_format
        self.extra_values = extra_values
        self.open_ended = open_ended
        self.values_per_split = values_per_split
        self.requests: list[dict] = []
        self.script: deque[Scripted] = deque()
        self.lock = threading.Lock()
        self.counter = itertools.count(1)
        self.delay_fn: Callable[[dict], float] | None = None
        # A fault injector: called with the request body when no scripted entry applies; a Scripted it returns
        # is served instead of the well-behaved reply (see tests' malformation catalogue).
        self.fault_fn: Callable[[dict], Scripted | None] | None = None
        self._server = ThreadingHTTPServer((host, port), self._handler())
        self._server.daemon_threads = True
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

    # ----------------------------------------------------------------- the well-behaved model
    def default_reply(self, body: dict) -> str:
        step = step_of(body)
        user = _first_user(body)
        count = int((re.search(r"^Count: (\d+)", user, re.M) or [0, 3])[1])
        if step in ("pivots", "samples"):
            attrs = re.findall(r"^- ([^:\n]+): (.+)$", user.split("\n\n")[0], re.M)
            where = ", ".join(f"{d}={v}" for d, v in attrs) or "anything"
            samples = []
            for _ in range(count):
                n = next(self.counter)
                samples.append({f: f"{f} #{n} about {where}" for f in _field_names(body)})
            return json.dumps({"samples": samples})
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

            def do_GET(self):
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, {"object": "list", "data": [{"id": FAKE_MODEL, "object": "model"}]})
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except json.JSONDecodeError:
                    self._send(400, {"error": {"message": "invalid JSON body"}})
                    return
                if not self.path.rstrip("/").endswith("/chat/completions"):
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
                prompt_tokens = sum(len(m.get("content") or "") for m in body.get("messages", [])) // 4
                self._send(200, {
                    "id": f"chatcmpl-{next(fake.counter)}", "object": "chat.completion", "created": int(time.time()),
                    "model": body.get("model", FAKE_MODEL),
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                 "finish_reason": finish}],
                    "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(content) // 4,
                              "total_tokens": prompt_tokens + len(content) // 4},
                })

        return Handler


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
