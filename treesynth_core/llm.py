"""The one LLM client: any OpenAI-compatible endpoint through the ``openai`` SDK.

Transport errors (connection, 429, 5xx, timeouts) are retried by the SDK's own ``max_retries``; we add
no second HTTP retry loop. Semantic failures (unparseable JSON, a reply that fails validation, a reply
cut off at ``max_tokens``) get a bounded re-ask that tells the model what was wrong. Every attempt is
written to the store's call log; valid replies double as a cache keyed by (model, messages, parameters).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import openai
from pydantic import BaseModel, ValidationError

from .config import Endpoint
from .errors import EndpointError, LLMOutputError

LOCAL_CONCURRENCY = 2
FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.S)


@dataclass
class Reply:
    value: Any
    call_id: int | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False


def extract_json(text: str) -> dict:
    """The JSON object in a reply, tolerating code fences and prose around it."""
    if text is None or not text.strip():
        raise ValueError("the reply was empty")
    fenced = FENCE.search(text)
    candidate = fenced.group(1) if fenced else text
    start, end = candidate.find("{"), candidate.rfind("}")
    if start < 0 or end <= start:
        raise ValueError("the reply contains no JSON object")
    try:
        value = json.loads(candidate[start : end + 1], strict=False)
    except json.JSONDecodeError as exc:
        raise ValueError(f"the reply is not valid JSON ({exc.msg} at character {exc.pos})") from None
    if not isinstance(value, dict):
        raise ValueError("the reply is JSON but not an object")
    return value


def validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "reply"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def cache_key(model: str, messages: list[dict], params: dict) -> str:
    blob = json.dumps({"model": model, "messages": messages, "params": params}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def describe_api_error(exc: Exception, endpoint: Endpoint) -> EndpointError:
    where = endpoint.base_url or "api.openai.com"
    if isinstance(exc, openai.AuthenticationError):
        return EndpointError(f"{where} refused the API key (401)", "check OPENAI_API_KEY")
    if isinstance(exc, openai.NotFoundError):
        return EndpointError(f"{where} does not know model {endpoint.model!r} (404)",
                             "set TREESYNTH_MODEL to a model the endpoint serves")
    if isinstance(exc, openai.RateLimitError):
        return EndpointError(f"{where} kept rate-limiting (429) after {endpoint.max_retries} retries",
                             "lower the concurrency or wait and resume")
    if isinstance(exc, openai.APITimeoutError):
        return EndpointError(f"{where} did not answer within {endpoint.timeout:g}s",
                             "raise TREESYNTH_TIMEOUT or check the server")
    if isinstance(exc, openai.APIConnectionError):
        return EndpointError(f"could not connect to {where}", "check OPENAI_BASE_URL and that the server is running")
    if isinstance(exc, openai.APIStatusError):
        return EndpointError(f"{where} answered HTTP {exc.status_code}: {str(exc)[:300]}",
                             "see the call log; resume when the endpoint is healthy")
    return EndpointError(f"LLM request failed: {exc}", "see the call log")


class LLM:
    """Ask for JSON validated by a pydantic model; log every attempt; bounded concurrency."""

    def __init__(self, endpoint: Endpoint, store=None, project_id: int | None = None,
                 concurrency: int = 16, job_id: int | None = None):
        self.endpoint = endpoint
        self.store = store
        self.project_id = project_id
        self.job_id = job_id
        self.client = openai.OpenAI(
            base_url=endpoint.base_url,
            api_key=endpoint.api_key or "no-key-set",
            timeout=endpoint.timeout,
            max_retries=endpoint.max_retries,
        )
        if endpoint.is_local:
            concurrency = min(concurrency, LOCAL_CONCURRENCY)  # llama.cpp serves one request at a time
        self.slots = threading.BoundedSemaphore(concurrency)
        self.json_mode = True

    def ping(self) -> list[str]:
        """The endpoint's model ids; raises EndpointError when it cannot be reached."""
        try:
            return [m.id for m in self.client.with_options(max_retries=0, timeout=5).models.list()]
        except openai.APIError as exc:
            raise describe_api_error(exc, self.endpoint) from None

    def ask(self, messages: list[dict], *, schema: type[BaseModel], purpose: str, node_id: str | None = None,
            temperature: float = 0.7, max_tokens: int = 1024, reasks: int = 2,
            check: Callable[[Any], None] | None = None, json_schema: dict | None = None,
            cache: bool = True, model: str | None = None) -> Reply:
        """Return ``schema``-validated output, re-asking at most ``reasks`` times with the reason.

        ``check`` may raise ValueError with a reason the model is shown (a semantic rule, e.g. every
        pivot assigned exactly once). Raises LLMOutputError after the last try, EndpointError when the
        endpoint fails beyond the SDK's retries.
        """
        model = model or self.endpoint.model
        params = {"temperature": temperature, "max_tokens": max_tokens, "purpose": purpose}
        key = cache_key(model, messages, params)
        if cache and self.store is not None:
            hit = self.store.cached_response(key)
            if hit is not None:
                try:
                    return Reply(self._validate(hit, schema, check), None, cached=True)
                except ValueError:
                    pass  # the rules changed since (e.g. an ancestor's dimension): ask again
        convo = list(messages)
        reason = ""
        last_value = None
        for attempt in range(1, reasks + 2):
            text, finish, usage, seconds, call_error = self._complete(
                model, convo, temperature, max_tokens, json_schema)
            if call_error is not None:
                self._log(node_id, purpose, model, params, key, convo, None, None, usage, seconds, attempt,
                          False, str(call_error))
                raise call_error
            try:
                if finish == "length":
                    raise ValueError(f"the reply was cut off at max_tokens={max_tokens}")
                value = self._parse(text, schema)
                if check is not None:
                    last_value = value
                    check(value)
            except ValueError as exc:
                reason = str(exc)
                self._log(node_id, purpose, model, params, key, convo, text, finish, usage, seconds, attempt,
                          False, reason)
                convo = convo + [
                    {"role": "assistant", "content": (text or "")[:4000]},
                    {"role": "user", "content": f"That reply cannot be used: {reason}. "
                                                "Reply again with only the corrected JSON object."},
                ]
                if finish == "length":
                    max_tokens = min(max_tokens * 2, 16_000)
                continue
            call_id = self._log(node_id, purpose, model, params, key, convo, text, finish, usage, seconds,
                                attempt, True, None)
            return Reply(value, call_id, usage[0], usage[1])
        raise LLMOutputError(f"{purpose}: no usable reply after {reasks + 1} tries; last problem: {reason}",
                             "see the call log; edit the node by hand or retry", last_value, reason)

    # ----------------------------------------------------------------- internals
    @staticmethod
    def _parse(text: str, schema: type[BaseModel]) -> Any:
        data = extract_json(text)
        try:
            return schema.model_validate(data)
        except ValidationError as exc:
            raise ValueError(f"the JSON does not have the expected shape ({validation_message(exc)})") from None

    @classmethod
    def _validate(cls, text: str, schema: type[BaseModel], check) -> Any:
        value = cls._parse(text, schema)
        if check is not None:
            check(value)
        return value

    def _complete(self, model, convo, temperature, max_tokens, json_schema):
        # A fresh seed per call: servers that sample deterministically (llama.cpp) would otherwise answer an
        # identical prompt, or a re-ask, with the very same reply.
        kwargs: dict = dict(model=model, messages=convo, temperature=temperature, max_tokens=max_tokens,
                            seed=random.randrange(2**31))
        if self.json_mode:
            fmt: dict = {"type": "json_object"}
            if json_schema is not None and self.endpoint.schema_in_response_format:
                fmt["schema"] = json_schema
            kwargs["response_format"] = fmt
        with self.slots:
            started = time.monotonic()
            try:
                resp = self.client.chat.completions.create(**kwargs)
            except openai.BadRequestError as exc:
                if "response_format" in str(exc) and self.json_mode:
                    self.json_mode = False  # an endpoint without JSON mode: rely on the prompt and parser
                    return self._complete(model, convo, temperature, max_tokens, json_schema)
                return None, None, (0, 0), time.monotonic() - started, describe_api_error(exc, self.endpoint)
            except openai.APIError as exc:
                return None, None, (0, 0), time.monotonic() - started, describe_api_error(exc, self.endpoint)
        seconds = time.monotonic() - started
        usage = (resp.usage.prompt_tokens or 0, resp.usage.completion_tokens or 0) if resp.usage else (0, 0)
        if not resp.choices:
            return "", "empty", usage, seconds, None
        choice = resp.choices[0]
        return choice.message.content or "", choice.finish_reason, usage, seconds, None

    def _log(self, node_id, purpose, model, params, key, convo, text, finish, usage, seconds, attempt, valid,
             error) -> int | None:
        if self.store is None:
            return None
        return self.store.log_call(
            project_id=self.project_id, node_id=node_id, job_id=self.job_id, purpose=purpose, model=model,
            params=json.dumps(params), cache_key=key, messages=json.dumps(convo, ensure_ascii=False),
            response=text, finish_reason=finish, prompt_tokens=usage[0], completion_tokens=usage[1],
            duration_s=round(seconds, 4), attempt=attempt, valid=int(valid), error=error,
        )
