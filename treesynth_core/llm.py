"""The one LLM client: any OpenAI-compatible endpoint through the ``openai`` SDK.

Who retries what (no failure is retried by two layers):

- Transport errors (connection failures, timeouts, 408/409/5xx) belong to the SDK's own ``max_retries`` and
  its backoff; we add no second loop for them.
- Rate limits (429) are ours. The SDK is told not to retry them (our HTTP client's response hook marks a 429
  ``x-should-retry: false``, a header the SDK obeys), because its retry would sleep while holding our slot,
  never slow the other calls down, and give up after ``max_retries`` (about 1.5 s of backoff, far short of a
  per-minute quota). Instead the adaptive window (``window.py``) halves, the call gives its slot back, waits
  out ``Retry-After`` (or an exponential backoff with jitter) and sends the same request again, until its
  deadline. An account out of quota (``insufficient_quota``) fails at once.
- Semantic failures (unparseable JSON, a reply that fails validation or a check, a reply cut off at
  ``max_tokens``) get a bounded re-ask that tells the model what was wrong. Malformed JSON first goes through
  json-repair; a reply that parses only after repair is accepted, and logged ``repaired=1`` (a re-ask saved).

One deadline per request: ``Endpoint.deadline`` = timeout x (max_retries + 1) seconds (40 x 3 = 120 s by
default; the bundled model's longer timeout gives it longer) covers the request's HTTP attempts, the SDK's
backoff between them and our waits on 429s; time queued for a slot behind other calls does not count. It holds
on the wall clock: the SDK's attempts are fitted into what remains and the caller stops waiting at the deadline.
Re-asks are new requests with a deadline each; they only follow a reply, so a silent server costs one deadline
per ``ask``.

Stragglers (``hedge.py``): when the scheduler asks for it (``hedge_stragglers``), a request that runs far past
the recent median of its kind gets one identical copy, within a budget of about 5% more requests; the first
answer wins, the other is abandoned and logged as a row of its own (``finish_reason`` "hedged", not valid, its
prompt counted), so the cost stays honest. The tree's steps take free window slots before leaf samples do.

Every attempt is written to the store's call log with its reason when it failed; valid replies double as a cache
keyed by (model, messages, parameters). Nothing is stored that SQLite cannot encode (lone surrogates are replaced
in the log; a reply whose JSON contains one is invalid, so it is never cached). Error texts are redacted
(``config.redact``); reply and prompt texts lose the endpoint's own secrets. The API key is never stored.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import logging
import math
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import openai
from pydantic import BaseModel, ValidationError

from .config import REDACTED, Endpoint, redact
from .errors import EndpointError, LLMCallError, LLMOutputError
from .hedge import Hedger, RequestThreads
from .replies import (INVALID_UNICODE, bad_unicode, extract_json, load_json, repair_json_object, storable,
                      validation_message)
from .window import MAX_WINDOW, Window, backoff, retry_after

__all__ = ["LLM", "Reply", "Completion", "cache_key", "describe_api_error", "extract_json", "load_json",
           "repair_json_object", "bad_unicode", "storable", "INVALID_UNICODE", "LOCAL_CONCURRENCY"]

log = logging.getLogger(__name__)

LOCAL_CONCURRENCY = 2  # llama.cpp serves one request at a time; the window never grows past this
# What to do when a step never gets a usable reply: a tree step can be done by hand, the others only retried.
TREE_STEPS = frozenset({"pivots", "criterion", "coverage"})  # the critical path: urgent in the window
HEDGED = "hedged"  # finish_reason of a logged copy that did not count (see hedge.py)
HEDGE_COLD_CAP = 10.0  # seconds before a copy while nothing has answered yet (at most half the timeout)
OUTPUT_HINTS = {purpose: "see the call log; edit the node by hand or retry" for purpose in ("pivots", "criterion",
                                                                                          "coverage")}


@dataclass
class Reply:
    value: Any
    call_id: int | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    repaired: bool = False


@dataclass
class Abandoned:
    """A request sent and then abandoned because its twin (a hedge) answered first, or the deadline passed."""

    which: str  # "the first request" or "its hedge"
    seconds: float  # how long it ran before it was abandoned
    usage: tuple[int, int] | None = None  # when it had answered too
    failed: bool = False  # it ended with an error

    def note(self, answered: bool) -> str:
        """The call log's note; ``answered``: whether the other copy's answer is the call's."""
        if self.usage is not None:
            return f"hedged: {self.which} answered too late to count"
        if self.failed:
            return f"hedged: {self.which} failed after {self.seconds:.2f}s"
        if answered:
            return f"hedged: {self.which} was abandoned after {self.seconds:.2f}s, the other answered first"
        return f"hedged: {self.which} ran {self.seconds:.2f}s without an answer"


@dataclass
class Completion:
    """What one request came back with: the reply's text, finish reason and usage, or the error that ended it;
    ``abandoned``: the copies a hedge made that did not count (each is logged and paid for)."""

    text: str | None = None
    finish: str | None = None
    usage: tuple[int, int] = (0, 0)
    seconds: float = 0.0
    error: EndpointError | None = None
    abandoned: list[Abandoned] = field(default_factory=list)


class _DeadlineExceeded(Exception):
    pass


def cache_key(model: str, messages: list[dict], params: dict) -> str:
    blob = json.dumps({"model": model, "messages": messages, "params": params}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


# ----------------------------------------------------------------------------- errors


def describe_api_error(exc: Exception, endpoint: Endpoint) -> EndpointError:
    where = endpoint.shown_url()
    if isinstance(exc, openai.AuthenticationError):
        return EndpointError(f"{where} refused the API key (401)", "check OPENAI_API_KEY")
    if isinstance(exc, openai.NotFoundError):
        return EndpointError(f"{where} does not know model {endpoint.model!r} (404)",
                             "set TREESYNTH_MODEL to a model the endpoint serves")
    if isinstance(exc, openai.RateLimitError):
        return EndpointError(f"{where} kept rate-limiting (429)", "lower the concurrency or wait and resume")
    if isinstance(exc, openai.APITimeoutError):
        return EndpointError(f"{where} did not answer within {endpoint.timeout:g}s",
                             "raise TREESYNTH_TIMEOUT or check the server")
    if isinstance(exc, openai.APIConnectionError):
        return EndpointError(f"could not connect to {where}", "check OPENAI_BASE_URL and that the server is running")
    if isinstance(exc, openai.APIStatusError):  # redact before cutting, so no secret is cut in half
        return EndpointError(f"{where} answered HTTP {exc.status_code}: {redact(str(exc), endpoint.secrets)[:300]}",
                             "see the call log; resume when the endpoint is healthy")
    return EndpointError(f"LLM request failed: {redact(str(exc), endpoint.secrets)[:300]}", "see the call log")


def _no_sdk_retry_on_429(response) -> None:
    if response.status_code == 429:
        response.headers["x-should-retry"] = "false"  # the SDK obeys this header; we handle the 429


class _HttpClient(openai.DefaultHttpxClient):
    """The SDK's default HTTP client (its timeouts and limits) that leaves 429s to us; closed with its owner."""

    def __init__(self) -> None:
        super().__init__(event_hooks={"response": [_no_sdk_retry_on_429]})

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


def _usage(resp: dict) -> tuple[int, int]:
    """(prompt, completion) tokens of a chat completion's JSON body; (0, 0) when it says none."""
    usage = resp.get("usage") if isinstance(resp, dict) else None
    if not isinstance(usage, dict):
        return 0, 0
    return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)


# ----------------------------------------------------------------------------- the client


class LLM:
    """Ask for JSON validated by a pydantic model; log every attempt; adaptive, bounded concurrency."""

    def __init__(self, endpoint: Endpoint, store=None, project_id: int | None = None,
                 concurrency: int = 16, job_id: int | None = None, hedge: bool = True):
        self.endpoint = endpoint
        self.store = store
        self.project_id = project_id
        self.job_id = job_id
        self.client = openai.OpenAI(
            base_url=endpoint.base_url,
            api_key=endpoint.api_key or "no-key-set",
            timeout=endpoint.timeout,
            max_retries=endpoint.max_retries,
            http_client=_HttpClient(),
        )
        self._clients = {endpoint.max_retries: self.client}
        self.window = Window(concurrency, max_size=LOCAL_CONCURRENCY if endpoint.is_local else MAX_WINDOW)
        self.json_mode = True
        self.hedger: Hedger | None = None  # on for the scheduler's work (hedge_stragglers)
        self.may_hedge = hedge and not endpoint.is_local
        self._secrets = endpoint.secrets  # the endpoint is frozen: parsed once, not per logged message
        self._threads = RequestThreads()

    def hedge_stragglers(self) -> None:
        """From now on, hedge requests that run far past their kind's recent median (remote endpoints only:
        a local server answers one request at a time)."""
        if self.hedger is None and self.may_hedge:
            self.hedger = Hedger(cold=min(HEDGE_COLD_CAP, self.endpoint.timeout / 2))

    def prestart(self, requests: int) -> bool:
        """Make one more request thread if fewer than ``requests`` exist (see ``RequestThreads.prestart``)."""
        return self._threads.prestart(min(requests, self.window.max_size))

    def close(self) -> None:
        self._threads.close()
        self.client.close()

    def ping(self) -> list[str]:
        """The endpoint's model ids; raises EndpointError when it cannot be reached."""
        try:
            return [m.id for m in self.client.with_options(max_retries=0, timeout=5).models.list()]
        except openai.APIError as exc:
            raise describe_api_error(exc, self.endpoint) from None
        except Exception as exc:
            raise LLMCallError(f"could not list the models of {self.endpoint.shown_url()} "
                               f"({type(exc).__name__}: {self._redact(str(exc))[:300]})",
                               "check OPENAI_BASE_URL") from None

    def ask(self, messages: list[dict], *, schema: type[BaseModel], purpose: str, node_id: str | None = None,
            temperature: float = 0.7, max_tokens: int = 1024, reasks: int = 2,
            check: Callable[[Any], None] | None = None, json_schema: dict | None = None,
            cache: bool = True, model: str | None = None) -> Reply:
        """Return ``schema``-validated output, re-asking at most ``reasks`` times with the reason.

        ``check`` may raise ValueError with a reason the model is shown (a semantic rule, e.g. every
        pivot assigned exactly once).

        Exceptions: this raises only LLMOutputError (no usable reply after the last try; its ``reason`` and
        ``last_value`` say why) or EndpointError, including its subclass LLMCallError (the endpoint failed
        beyond the SDK's retries or the call's deadline, or something unexpected broke this one call: a
        response the SDK could not read, an error in ``check`` other than ValueError). Each is in the call log
        first, with its reason, and its message is redacted, so a caller records it on its node and carries
        on. Only BaseExceptions such as KeyboardInterrupt pass through.
        """
        model = model or self.endpoint.model
        params = {"temperature": temperature, "max_tokens": max_tokens, "purpose": purpose}
        key = cache_key(model, messages, params)
        base = dict(node_id=node_id, purpose=purpose, model=model, params=json.dumps(params), cache_key=key)
        convo, attempt, text = list(messages), 0, None
        try:
            if cache and self.store is not None:
                hit = self._cached(key, schema, check)
                if hit is not None:
                    return hit
            reason, last_value = "", None
            for attempt in range(1, reasks + 2):
                text = None
                done = self._complete(model, convo, temperature, max_tokens, json_schema, purpose)
                if done.error is not None:
                    self._log(base, convo, done, attempt, error=str(done.error))
                    raise done.error
                text = done.text
                try:
                    if done.finish == "length":
                        raise ValueError(f"the reply was cut off at max_tokens={max_tokens}")
                    value, repaired = self._parse(text, schema)
                    if check is not None:
                        last_value = value
                        check(value)
                except ValueError as exc:
                    reason = storable(str(exc))
                    self._log(base, convo, done, attempt, error=reason)
                    convo = convo + [
                        {"role": "assistant", "content": storable(text or "")[:4000]},
                        {"role": "user", "content": f"That reply cannot be used: {reason}. "
                                                    "Reply again with only the corrected JSON object."},
                    ]
                    if done.finish == "length":
                        max_tokens = min(max_tokens * 2, 16_000)
                    continue
                call_id = self._log(base, convo, done, attempt, repaired=repaired)
                return Reply(value, call_id, done.usage[0], done.usage[1], repaired=repaired)
            raise LLMOutputError(f"{purpose}: no usable reply after {reasks + 1} tries; last problem: {reason}",
                                 OUTPUT_HINTS.get(purpose, "see the call log; run again to retry"), last_value, reason)
        except (LLMOutputError, EndpointError):
            raise
        except Exception as exc:  # one call must never sink a job: record it, raise a typed error
            reason = self._redact(storable(f"unexpected {type(exc).__name__}: {exc}"))[:500]
            log.warning("LLM call %s (%s) failed: %s", purpose, node_id, reason)
            try:
                self._log(base, convo, None, max(attempt, 1), error=reason, text=text)
            except Exception as log_error:  # the store itself failed; the error below still says why
                log.warning("could not log the failed call: %s", type(log_error).__name__)
            raise LLMCallError(f"{purpose}: {reason}",
                               "see the call log; run again to retry this node") from None

    # ----------------------------------------------------------------- internals
    @staticmethod
    def _parse(text: str, schema: type[BaseModel]) -> tuple[Any, bool]:
        data, repaired = load_json(text)
        if bad_unicode(data):
            raise ValueError(INVALID_UNICODE)
        try:
            return schema.model_validate(data), repaired
        except ValidationError as exc:
            raise ValueError(f"the JSON does not have the expected shape ({validation_message(exc)})") from None

    def _cached(self, key: str, schema: type[BaseModel], check) -> Reply | None:
        hit = self.store.cached_response(key)
        if hit is None:
            return None
        try:
            value, repaired = self._parse(hit, schema)
            if check is not None:
                check(value)
        except ValueError:
            return None  # the rules changed since (e.g. an ancestor's dimension): ask again
        return Reply(value, None, cached=True, repaired=repaired)

    def _complete(self, model, convo, temperature, max_tokens, json_schema, purpose: str = "") -> Completion:
        """One request within the endpoint's deadline. It holds a window slot only while it talks to the server:
        a 429 or a ``response_format`` the endpoint refuses gives the slot back before the request is sent
        again, so no call ever waits for a slot while holding one. The copies its hedges abandoned come back
        in ``abandoned`` whatever the outcome."""
        abandoned: list[Abandoned] = []
        done = self._complete_one(model, convo, temperature, max_tokens, json_schema, purpose, abandoned)
        done.abandoned = abandoned
        return done

    def _complete_one(self, model, convo, temperature, max_tokens, json_schema, purpose: str,
                      abandoned: list[Abandoned]) -> Completion:
        deadline = self.endpoint.deadline
        spent, throttled = 0.0, 0
        # A fresh seed per call: servers that sample deterministically (llama.cpp) would otherwise answer an
        # identical prompt, or a re-ask, with the very same reply.
        seed = random.randrange(2**31)
        while True:
            remaining = deadline - spent
            if remaining <= 0:
                return Completion(seconds=spent, error=self._deadline_error(throttled))
            kwargs: dict = dict(model=model, messages=convo, temperature=temperature, max_tokens=max_tokens,
                                seed=seed)
            if self.json_mode:
                fmt: dict = {"type": "json_object"}
                if json_schema is not None and self.endpoint.schema_in_response_format:
                    fmt["schema"] = json_schema
                kwargs["response_format"] = fmt
            epoch = self.window.acquire(urgent=purpose in TREE_STEPS)
            started = time.monotonic()
            resp = exc = None
            try:
                resp = self._send(kwargs, remaining, purpose, abandoned)
            except Exception as caught:  # classified below, once the slot is free again
                exc = caught
            finally:
                spent += time.monotonic() - started
                self.window.release(epoch, ok=resp is not None, rate_limited=isinstance(exc, openai.RateLimitError))
            if exc is None:
                return self._completion(resp, spent)
            if isinstance(exc, openai.RateLimitError):
                wait = retry_after(exc.response)
                wait = backoff(throttled) if wait is None else wait * random.uniform(1.0, 1.1)
                throttled += 1
                problem = self._rate_limit_problem(exc, spent, wait, throttled)
                if problem is not None:
                    return Completion(seconds=spent, error=problem)
                log.info("%s rate-limited (429): waiting %.1fs, window now %d",
                         self.endpoint.shown_url(), wait, self.window.size)
                time.sleep(wait)
                spent += wait
                continue
            if (isinstance(exc, openai.BadRequestError) and "response_format" in kwargs
                    and "response_format" in str(exc)):
                self.json_mode = False  # an endpoint without JSON mode: rely on the prompt and the parser
                continue
            if isinstance(exc, _DeadlineExceeded):
                return Completion(seconds=spent, error=self._deadline_error(throttled))
            if isinstance(exc, openai.APIError):
                return Completion(seconds=spent, error=describe_api_error(exc, self.endpoint))
            return Completion(seconds=spent, error=LLMCallError(
                f"the request to {self.endpoint.shown_url()} failed unexpectedly "
                f"({type(exc).__name__}: {self._redact(storable(str(exc)))[:300]})",
                "see the call log; run again to retry"))

    def _send(self, kwargs: dict, remaining: float, purpose: str = "", abandoned: list[Abandoned] | None = None):
        """Send one chat completion and stop waiting for it after ``remaining`` seconds (wall clock).

        The SDK's attempts are fitted into what remains (each attempt's timeout cut to it, only the retries
        that fit); the request runs on a request thread so that nothing the SDK does (a Retry-After it honours
        on a 503, a server trickling bytes) holds the caller past the deadline. An abandoned request ends on
        its own timeout shortly after. With a hedger, a request still out after ``hedger.after(purpose)`` gets
        one identical copy (in a window slot free at that moment, within the hedge budget): the first answer
        wins; an error waits for the other copy. What was abandoned is appended to ``abandoned``."""
        timeout = min(self.endpoint.timeout, remaining)
        retries = max(0, min(self.endpoint.max_retries, math.ceil(remaining / self.endpoint.timeout) - 1))
        client = self._clients.get(retries)
        if client is None:
            client = self._clients[retries] = self.client.with_options(max_retries=retries)

        def post(limit: float):
            # the SDK's low-level post: the same request, retries and errors as ``chat.completions.create``,
            # without re-walking every message through its TypedDict transform (half of the SDK's CPU per
            # request; our params are plain JSON already), and the body as JSON, read by ``_completion``
            # (building a ChatCompletion model we read three fields of cost about a tenth of a request's CPU)
            return client.post("/chat/completions", body=kwargs, cast_to=dict, options={"timeout": limit})

        hedger, abandoned = self.hedger, [] if abandoned is None else abandoned
        started = time.monotonic()
        first = self._threads.submit(post, timeout)
        if hedger is None:
            try:
                return first.result(timeout=remaining)
            except concurrent.futures.TimeoutError:
                raise _DeadlineExceeded() from None
        hedger.sent()
        pending, copy, copy_started, copy_epoch, may_hedge, error = {first}, None, 0.0, None, True, None
        recorded = False
        try:
            while True:
                elapsed = time.monotonic() - started
                if elapsed >= remaining:
                    raise _DeadlineExceeded()
                wait = remaining - elapsed
                if may_hedge:
                    due = hedger.after(purpose) - elapsed
                    if due > 0:
                        wait = min(wait, due)
                    elif (epoch := self.window.try_acquire(spare=max(1, self.window.size // 8))) is None:
                        wait = min(wait, 0.05)  # no free slot now: look again shortly
                    elif not hedger.take():
                        self.window.release(epoch)
                        may_hedge = False
                    else:
                        may_hedge, copy_epoch, copy_started = False, epoch, time.monotonic()
                        copy = self._threads.submit(post, min(self.endpoint.timeout, remaining - elapsed))
                        pending.add(copy)
                        log.info("%s: a %s request still running after %.2fs got a hedge",
                                 self.endpoint.shown_url(), purpose or "", elapsed)
                done, pending = concurrent.futures.wait(pending, timeout=wait,
                                                        return_when=concurrent.futures.FIRST_COMPLETED)
                winner = next((f for f in (first, copy) if f in done and f.exception() is None), None)
                for f in done:
                    if f is not winner and f.exception() is not None and (error is None or f is first):
                        error = f.exception()
                if winner is not None:
                    now = time.monotonic()
                    hedger.observe(purpose, now - (started if winner is first else copy_started))
                    if copy is not None:
                        recorded, loser = True, copy if winner is first else first
                        answered = loser.done() and loser.exception() is None
                        abandoned.append(Abandoned("its hedge" if winner is first else "the first request",
                                                   now - (copy_started if winner is first else started),
                                                   _usage(loser.result()) if answered else None,
                                                   failed=loser.done() and not answered))
                        hedger.won += winner is copy
                    return winner.result()
                if not pending:
                    raise error
        finally:
            if copy_epoch is not None:  # the copy's slot; the first request's is released by the caller
                self.window.release(copy_epoch, ok=copy.done() and not copy.exception(),
                                    rate_limited=copy.done() and isinstance(copy.exception(), openai.RateLimitError))
                if not recorded:  # no answer won (the deadline, or both failed): the copy was sent all the same
                    abandoned.append(Abandoned("its hedge", time.monotonic() - copy_started,
                                               failed=copy.done() and copy.exception() is not None))

    def _completion(self, resp: dict, seconds: float) -> Completion:
        try:
            if not isinstance(resp, dict) or not isinstance(resp.get("choices"), list):
                raise TypeError(f"the body is a {type(resp).__name__} without a list of choices")
            usage = _usage(resp)
            if not resp["choices"]:
                return Completion("", "empty", usage, seconds)
            choice = resp["choices"][0]
            content = choice["message"].get("content") or ""
            if not isinstance(content, str):
                raise TypeError(f"the message content is {type(content).__name__}, not text")
            finish = choice.get("finish_reason")
            return Completion(content, finish if isinstance(finish, str) else None, usage, seconds)
        except Exception as exc:  # a 200 whose body is not a chat completion
            return Completion(seconds=seconds, error=LLMCallError(
                f"{self.endpoint.shown_url()} sent a response that is not a chat completion "
                f"({type(exc).__name__}: {self._redact(storable(str(exc)))[:200]})",
                "check that OPENAI_BASE_URL points at an OpenAI-compatible /v1 endpoint"))

    def _rate_limit_problem(self, exc, spent: float, wait: float, throttled: int) -> EndpointError | None:
        where = self.endpoint.shown_url()
        if getattr(exc, "code", None) == "insufficient_quota":
            return EndpointError(f"{where} says the account has no quota left (429 insufficient_quota)",
                                 "check the account's plan and billing, then resume")
        if spent + wait >= self.endpoint.deadline:
            return EndpointError(
                f"{where} kept rate-limiting (429, {throttled} time(s)); waiting {wait:.0f}s more would pass the "
                f"call's deadline of {self.endpoint.deadline:g}s", "lower the concurrency or wait, then resume")
        return None

    def _deadline_error(self, throttled: int) -> EndpointError:
        ep = self.endpoint
        if throttled:  # the server answered, with 429s: say so, not "did not answer"
            return EndpointError(f"{ep.shown_url()} kept rate-limiting (429, {throttled} time(s)) until the call's "
                                 f"deadline of {ep.deadline:g}s passed", "lower the concurrency or wait, then resume")
        return EndpointError(f"{ep.shown_url()} did not answer within the call's deadline of {ep.deadline:g}s "
                             f"({ep.timeout:g}s x {ep.max_retries + 1} attempts)",
                             "raise TREESYNTH_TIMEOUT or check the server")

    def _redact(self, text: str | None) -> str | None:
        """Error texts: no credentials of any URL, none of the endpoint's secrets."""
        return redact(text, self._secrets)

    def _scrub(self, text: str | None) -> str | None:
        """Reply and prompt texts, stored as they are but for lone surrogates and the endpoint's own secrets
        (a generated sample may legitimately contain a URL with ``user:pass@``; it is the user's data)."""
        text = storable(text)
        for secret in self._secrets:
            if text and len(secret) >= 6:
                text = text.replace(secret, REDACTED)
        return text

    def _log(self, base: dict, convo, done: Completion | None, attempt: int, *, error: str | None = None,
             repaired: bool = False, text: str | None = None) -> int | None:
        if self.store is None:
            return None
        done = done or Completion(text=text)
        messages = [{"role": m["role"], "content": self._scrub(m.get("content")) or ""} for m in convo]
        call_id = self.store.log_call_messages(  # each distinct message stored once (issue 10)
            messages, project_id=self.project_id, job_id=self.job_id, **base, response=self._scrub(done.text),
            finish_reason=done.finish, prompt_tokens=done.usage[0], completion_tokens=done.usage[1],
            duration_s=round(done.seconds, 4), attempt=attempt, valid=int(error is None),
            error=self._redact(storable(error)), repaired=int(repaired),
        )
        for copy in done.abandoned:  # a hedge's twin that did not count: sent, so logged and paid for
            usage = copy.usage or (done.usage[0], 0)  # the same prompt; its completion unknown when cut off
            self.store.log_call_messages(
                messages, project_id=self.project_id, job_id=self.job_id, **base, response=None,
                finish_reason=HEDGED, prompt_tokens=usage[0], completion_tokens=usage[1],
                duration_s=round(copy.seconds, 4), attempt=attempt, valid=0, error=None, repaired=0,
                dropped=copy.note(done.error is None))
        return call_id
