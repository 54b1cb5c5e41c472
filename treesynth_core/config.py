"""Where the LLM endpoint comes from: environment variables (or values the app passes in).

The API key is read here and only here; it is never stored, logged or exported.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

DEFAULT_MODEL = "gpt-4o-mini"
LOCAL_MODEL_NAME = "qwen2.5-coder-0.5b-instruct-q4_k_m"


@dataclass(frozen=True)
class Endpoint:
    """An OpenAI-compatible endpoint. ``provider`` is "openai" (any remote/compatible server) or "local"."""

    base_url: str | None = None
    api_key: str = field(default="", repr=False)
    model: str = DEFAULT_MODEL
    provider: str = "openai"
    timeout: float = 120.0
    max_retries: int = 2

    @property
    def is_local(self) -> bool:
        return self.provider == "local"

    @property
    def schema_in_response_format(self) -> bool:
        """llama.cpp's server enforces a JSON schema given inside ``response_format``; OpenAI does not accept it."""
        return self.is_local

    def masked_key(self) -> str:
        return mask_secret(self.api_key)

    def describe(self) -> str:
        where = self.base_url or "https://api.openai.com/v1"
        return f"{where} (model {self.model}, key {self.masked_key()})"


def mask_secret(secret: str) -> str:
    if not secret:
        return "not set"
    if len(secret) <= 8:
        return "****"
    return f"{secret[:3]}...{secret[-4:]}"


def endpoint_from_env(env: dict[str, str] | None = None, **overrides) -> Endpoint:
    """Build the endpoint from OPENAI_BASE_URL, OPENAI_API_KEY, TREESYNTH_MODEL, TREESYNTH_PROVIDER,
    TREESYNTH_TIMEOUT and TREESYNTH_MAX_RETRIES. Keyword overrides win over the environment."""
    env = os.environ if env is None else env
    values = dict(
        base_url=env.get("OPENAI_BASE_URL") or None,
        api_key=env.get("OPENAI_API_KEY", ""),
        model=env.get("TREESYNTH_MODEL") or DEFAULT_MODEL,
        provider=env.get("TREESYNTH_PROVIDER") or "openai",
        timeout=float(env.get("TREESYNTH_TIMEOUT") or 120.0),
        max_retries=int(env.get("TREESYNTH_MAX_RETRIES") or 2),
    )
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Endpoint(**values)


def endpoint_configured(env: dict[str, str] | None = None) -> bool:
    """True when the user pointed us at an endpoint (so no local model should be started)."""
    env = os.environ if env is None else env
    return bool(env.get("OPENAI_BASE_URL") or env.get("OPENAI_API_KEY"))
