"""Reading an LLM's reply: the JSON object in it (strict first, then json-repair), and text SQLite can store.

Tolerated: code fences, prose around the object, raw newlines inside strings; after that, what json-repair can
mend (trailing commas, single quotes, an unclosed list). Rejected with a precise reason: everything else, and
any string that is not valid Unicode (a lone surrogate escape such as ``\\ud800``), which SQLite cannot store.
"""

from __future__ import annotations

import json
import re
from typing import Any

import json_repair
from pydantic import ValidationError

FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.S)
INVALID_UNICODE = "the reply contains invalid Unicode (a lone surrogate escape)"


def extract_json(text: str) -> dict:
    """The JSON object in a reply, tolerating code fences and prose around it (strict JSON otherwise)."""
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
    except RecursionError:
        raise ValueError("the reply's JSON is nested too deeply") from None
    if not isinstance(value, dict):
        raise ValueError("the reply is JSON but not an object")
    return value


def repair_json_object(text: str) -> dict | None:
    """The object json-repair makes of a malformed reply (trailing commas, single quotes, an unclosed list),
    from its first ``{`` on; None unless that is a non-empty object."""
    if not text or not text.strip():
        return None
    fenced = FENCE.search(text)
    candidate = fenced.group(1) if fenced else text
    start = candidate.find("{")
    if start < 0:
        return None
    try:
        value = json_repair.loads(candidate[start:])
    except Exception:  # json-repair on hostile input (deep nesting...): not repairable
        return None
    return value if isinstance(value, dict) and value else None


def load_json(text: str) -> tuple[dict, bool]:
    """The reply's JSON object and whether json-repair had to mend it. Raises ValueError with the strict
    parser's reason when repair cannot make an object of it either."""
    try:
        return extract_json(text), False
    except ValueError as exc:
        problem = exc
    mended = repair_json_object(text)
    if mended is None:
        raise problem
    return mended, True


def bad_unicode(value: Any) -> bool:
    """True when a string anywhere in ``value`` (keys included) is not valid Unicode (a lone surrogate)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return False


def storable(text: str | None) -> str | None:
    """``text`` as SQLite (UTF-8) can store it: lone surrogates become U+FFFD, split pairs are joined."""
    if text is None:
        return None
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "reply"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)
