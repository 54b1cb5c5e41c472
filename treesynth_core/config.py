"""Where the LLM endpoint comes from: environment variables (or values the app passes in).

The API key is read here and only here; it is never stored, logged or exported. Credentials written into a
URL (``https://user:password@host/v1``, ``?api_key=...``) are secrets too: :func:`redact` removes them from
any text before it is stored, logged, raised or shown.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

from .errors import ConfigError

DEFAULT_MODEL = "gpt-4o-mini"
LOCAL_MODEL_NAME = "qwen2.5-coder-0.5b-instruct-q4_k_m"
# One HTTP attempt may take DEFAULT_TIMEOUT seconds and the SDK makes at most 1 + DEFAULT_MAX_RETRIES of
# them, so a silent server costs one call at most 40 x 3 = 120 s (Endpoint.deadline).
DEFAULT_TIMEOUT = 40.0
DEFAULT_MAX_RETRIES = 2
MAX_TIMEOUT = 3600.0
MAX_RETRIES = 10

# scheme://userinfo@ : everything between "//" and the last "@" before the host's end
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^\s/?#@]*(?:@[^\s/?#@]*)*@")
_SECRET_NAME = r"[\w.\-]*?(?:key|token|passw(?:or)?d|pwd|secret|signature|sig|auth|credential)[\w.\-]*"
_SECRET_PARAM = re.compile(rf"(?i)([?&;]{_SECRET_NAME}=)[^&#\s\"'<>]+")
REDACTED = "***"


def redact(text: str | None, secrets: tuple[str, ...] | list[str] = ()) -> str | None:
    """``text`` without credentials: ``user:pass@`` in any URL, the values of query parameters named like
    key/token/password/secret/auth, and every exact string in ``secrets`` (e.g. the API key)."""
    if not text:
        return text
    for secret in sorted((s for s in secrets if s and len(s) >= 6), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    text = _USERINFO.sub(rf"\1{REDACTED}@", text)
    return _SECRET_PARAM.sub(rf"\1{REDACTED}", text)


def redact_url(url: str | None) -> str | None:
    """The URL with its ``user:password@`` and secret query parameters replaced by ``***``."""
    return redact(url)


def url_secrets(url: str | None) -> tuple[str, ...]:
    """The credentials inside a URL (user, password, secret query values), to scrub them from any text."""
    if not url:
        return ()
    try:
        parts = urlsplit(url)
        found = [parts.username or "", parts.password or ""]
        found += [v for k, v in parse_qsl(parts.query) if re.fullmatch(_SECRET_NAME, k, re.I)]
    except ValueError:
        return ()
    return tuple(s for s in found if s)


@dataclass(frozen=True)
class Endpoint:
    """An OpenAI-compatible endpoint. ``provider`` is "openai" (any remote/compatible server) or "local".

    ``timeout`` bounds one HTTP attempt and ``max_retries`` is the SDK's retries of transport errors; one
    call (its attempts, their backoff and any waits for a rate limit) ends by ``deadline`` = timeout x
    (max_retries + 1) seconds.
    """

    base_url: str | None = None
    api_key: str = field(default="", repr=False)
    model: str = DEFAULT_MODEL
    provider: str = "openai"
    timeout: float = DEFAULT_TIMEOUT
    max_retries: int = DEFAULT_MAX_RETRIES

    def __repr__(self) -> str:  # never show credentials, even in a traceback
        return (f"Endpoint(base_url={redact_url(self.base_url)!r}, model={self.model!r}, "
                f"provider={self.provider!r}, timeout={self.timeout!r}, max_retries={self.max_retries!r})")

    @property
    def is_local(self) -> bool:
        return self.provider == "local"

    @property
    def schema_in_response_format(self) -> bool:
        """llama.cpp's server enforces a JSON schema given inside ``response_format``; OpenAI does not accept it."""
        return self.is_local

    @property
    def deadline(self) -> float:
        """Seconds one call may take in all: timeout x attempts (the SDK's retries included)."""
        return self.timeout * (self.max_retries + 1)

    @property
    def secrets(self) -> tuple[str, ...]:
        """Exact strings that must never be stored or shown: the API key and any credentials in the URL."""
        return tuple(s for s in (self.api_key, *url_secrets(self.base_url)) if s)

    def masked_key(self) -> str:
        return mask_secret(self.api_key)

    def shown_url(self) -> str:
        """The base URL safe to show: credentials replaced by ``***``."""
        return redact_url(self.base_url) or "https://api.openai.com/v1"

    def describe(self) -> str:
        return f"{self.shown_url()} (model {self.model}, key {self.masked_key()})"


def mask_secret(secret: str) -> str:
    if not secret:
        return "not set"
    if len(secret) <= 8:
        return "****"
    return f"{secret[:3]}...{secret[-4:]}"


def _number(env, name: str, default, kind, low, high):
    raw = env.get(name)
    if raw is None or not str(raw).strip():
        return default
    try:
        value = kind(str(raw).strip())
    except ValueError:
        value = None
    if value is None or value != value or not low <= value <= high:  # value != value: NaN
        raise ConfigError(f"{name} must be a{'n integer' if kind is int else ' number'} from {low:g} to "
                          f"{high:g} (got {str(raw)[:40]!r})", f"fix or unset {name}")
    return value


def endpoint_from_env(env: dict[str, str] | None = None, **overrides) -> Endpoint:
    """Build the endpoint from OPENAI_BASE_URL, OPENAI_API_KEY, TREESYNTH_MODEL, TREESYNTH_PROVIDER,
    TREESYNTH_TIMEOUT and TREESYNTH_MAX_RETRIES. Keyword overrides win over the environment.
    Raises ConfigError for a timeout or retry count out of range."""
    env = os.environ if env is None else env
    values = dict(
        base_url=env.get("OPENAI_BASE_URL") or None,
        api_key=env.get("OPENAI_API_KEY", ""),
        model=env.get("TREESYNTH_MODEL") or DEFAULT_MODEL,
        provider=env.get("TREESYNTH_PROVIDER") or "openai",
        timeout=_number(env, "TREESYNTH_TIMEOUT", DEFAULT_TIMEOUT, float, 0.1, MAX_TIMEOUT),
        max_retries=_number(env, "TREESYNTH_MAX_RETRIES", DEFAULT_MAX_RETRIES, int, 0, MAX_RETRIES),
    )
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Endpoint(**values)


def endpoint_configured(env: dict[str, str] | None = None) -> bool:
    """True when the user pointed us at an endpoint (so no local model should be started)."""
    env = os.environ if env is None else env
    return bool(env.get("OPENAI_BASE_URL") or env.get("OPENAI_API_KEY"))
