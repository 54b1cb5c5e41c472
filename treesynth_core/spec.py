"""The project's task specification: what one sample is, its fields, constraints and generation settings.

Prompts are built from this spec alone, so a new task never needs new Python.
"""

from __future__ import annotations

import math
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .tree import dedupe_values, dimension_problem, value_problem

FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,40}$")


class OutputField(BaseModel):
    """One named field of a sample. ``role`` says which side of a chat fine-tuning pair it belongs to."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    role: Literal["input", "output"] = "input"

    @field_validator("name", "description")
    @classmethod
    def _text(cls, text: str) -> str:
        return _utf8(text)

    @field_validator("name")
    @classmethod
    def _valid_name(cls, name: str) -> str:
        name = name.strip()
        if not FIELD_NAME.match(name):
            raise ValueError(f"field name {name!r} must be a letter or _ followed by letters, digits or _")
        return name


def _utf8(text: str) -> str:
    """Refuse text that cannot be stored or written as UTF-8 (lone surrogates, e.g. from non-UTF-8 bytes in
    a command-line argument or an invalid JSON escape)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("contains bytes that are not valid UTF-8 text") from None
    return text


class Settings(BaseModel):
    """Generation settings. Defaults follow the paper's reference code where it states them."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = None  # None: use the endpoint's model
    pivots: int = Field(6, ge=2, le=20, description="pivot samples written per node (paper: 10)")
    max_values: int = Field(8, ge=2, le=200, description="values cap N before a node becomes 'infinite' (paper: 50)")
    max_depth: int = Field(3, ge=0, le=8, description="depth of the tree (paper: 4); 0: no tree on purpose, "
                                                      "samples are generated from the whole task")
    samples_per_call: int = Field(10, ge=1, le=20, description="samples asked for in one generation call (paper: "
                                                                "10; README: why 10)")
    per_leaf: int = Field(10, ge=1, le=10_000, description="default quota of samples per leaf")
    pivot_temperature: float = Field(1.0, ge=0, le=2)
    criterion_temperature: float = Field(1.0, ge=0, le=2)
    coverage_temperature: float = Field(0.7, ge=0, le=2)
    generation_temperature: float = Field(0.7, ge=0, le=2)
    max_tokens: int = Field(1024, ge=64, le=32_000)
    reasks: int = Field(2, ge=0, le=5, description="extra asks after invalid output (bounded)")
    coverage_rounds: int = Field(2, ge=0, le=5, description="asks to complete a dimension's values (bounded)")
    concurrency: int = Field(64, ge=1, le=64, description="requests in flight at most (the adaptive window "
                                                       "halves on a 429); README: why 64")
    price_input_per_m: float | None = Field(None, ge=0, le=10_000,
                                            description="USD per million prompt tokens; None = unknown")
    price_output_per_m: float | None = Field(None, ge=0, le=10_000, description="USD per million completion tokens")
    batch_price_factor: float = Field(0.5, ge=0, le=10,
                                      description="what a call answered through a batch file costs, as a fraction "
                                                  "of the prices above (OpenAI's Batch API: half)")
    max_field_chars: int = Field(20_000, ge=100, le=1_000_000,
                                 description="longest text a sample field may have; longer samples are refused "
                                             "and counted, never truncated")
    pivots_from_data: bool = Field(
        True, description="a node holding imported rows (issue 11: at least 2, e.g. the root after an import, or a "
                          "node the rows were routed to) takes a seeded sample of them as its pivots instead of "
                          "asking the LLM to write pivots (one call less per node); off: the LLM always writes them")
    avoid_list: Literal["auto", "samples", "topics", "off"] = Field(
        "auto", description="what a generation prompt shows of the leaf's newest samples so they are not "
                            "repeated: the samples, short 'topics already covered' openings, or nothing; auto: "
                            "off for the bundled local model (it copies the list, issue 9), samples otherwise")

    @field_validator("*")
    @classmethod
    def _finite(cls, value):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        """USD for these tokens, or None while a price is unknown (we never guess prices)."""
        if self.price_input_per_m is None or self.price_output_per_m is None:
            return None
        return (prompt_tokens * self.price_input_per_m + completion_tokens * self.price_output_per_m) / 1e6


def bounds(name: str) -> tuple[float | None, float | None]:
    """The allowed range of a numeric setting, (lowest, highest), from its field constraints: the one place
    the CLI and the app take their limits from."""
    low = high = None
    for rule in Settings.model_fields[name].metadata:
        low = getattr(rule, "ge", low)
        high = getattr(rule, "le", high)
    return low, high


def local_settings() -> Settings:
    """Smaller defaults for the bundled CPU model, so a first tree and a few samples take minutes, not hours."""
    return Settings(pivots=3, max_values=5, max_depth=2, per_leaf=3, samples_per_call=1, concurrency=2)


class RootSplit(BaseModel):
    """A hand-set first split: the root's dimension and its values."""

    model_config = ConfigDict(extra="forbid")

    dimension: str = Field(min_length=1, max_length=200)
    values: list[str] = Field(min_length=2, max_length=200)

    @field_validator("dimension")
    @classmethod
    def _text(cls, text: str) -> str:
        text = _utf8(text)
        problem = dimension_problem(" ".join(text.split()))
        if problem:
            raise ValueError(problem)
        return text

    @field_validator("values")
    @classmethod
    def _texts(cls, values: list[str]) -> list[str]:
        for value in values:
            problem = value_problem(" ".join(_utf8(value).split()))
            if problem:
                raise ValueError(problem)
        return values


class ProjectSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    task: str = Field(min_length=3, max_length=4000, description="what one data sample is")
    fields: list[OutputField] = Field(min_length=1, max_length=20)
    constraints: str = Field("", max_length=4000)
    settings: Settings = Field(default_factory=Settings)
    root_split: RootSplit | None = None

    @field_validator("name", "task", "constraints")
    @classmethod
    def _text(cls, text: str, info) -> str:
        if info.field_name != "constraints" and not text.strip():
            raise ValueError("is empty; write a few words")
        return _utf8(text)

    @model_validator(mode="after")
    def _fields_unique_and_roles(self) -> "ProjectSpec":
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise ValueError(f"field names must be unique: {names}")
        if len(self.fields) > 1 and not any(f.role == "output" for f in self.fields):
            self.fields[-1].role = "output"
        return self

    @property
    def field_names(self) -> list[str]:
        return [f.name for f in self.fields]

    @property
    def dedup_fields(self) -> list[str]:
        """What makes two samples duplicates: the input side (the same question with another answer is a
        duplicate prompt, and a conflicting one); all fields when there is no output side."""
        inputs = [f.name for f in self.fields if f.role == "input"]
        return inputs if inputs and len(inputs) < len(self.fields) else self.field_names


def parse_fields(text: str) -> list[OutputField]:
    """Parse ``question,answer`` or ``question: the problem, answer: the worked solution``.

    The last field is the output side of a chat pair unless a field says ``(output)`` / ``(input)``.
    """
    fields: list[OutputField] = []
    for part in [p.strip() for p in re.split(r"[,\n]", text) if p.strip()]:
        name, _, description = part.partition(":")
        role = None
        for marker in ("(output)", "(input)"):
            if marker in name:
                role = marker.strip("()")
                name = name.replace(marker, "")
        field = OutputField(name=name.strip(), description=description.strip())
        if role:
            field.role = role  # type: ignore[assignment]
        fields.append(field)
    if len(fields) > 1 and not any(f.role == "output" for f in fields):
        fields[-1].role = "output"
    return fields


def parse_root_split(text: str) -> RootSplit:
    """Parse a hand-set first split written as ``dimension: value, value, ...``.

    Raises ValueError saying what is wrong: no colon, an empty dimension, fewer than two distinct values, or
    a value that breaks the value rules (catch-alls, combined values, formulas, markup).
    """
    dimension, colon, rest = text.partition(":")
    dimension = " ".join(dimension.split())
    if not colon or not dimension:
        raise ValueError("write it as 'dimension: value, value, ...', e.g. 'subject: algebra, geometry'")
    problem = dimension_problem(dimension)
    if problem:
        raise ValueError(problem)
    values = [" ".join(v.split()) for v in rest.split(",") if v.strip()]
    for value in values:
        problem = value_problem(value)
        if problem:
            raise ValueError(problem)
    if len(dedupe_values(values)) < 2:
        raise ValueError("a split needs at least two distinct values, e.g. 'subject: algebra, geometry'")
    return RootSplit(dimension=dimension, values=values)
