"""Prompts for the four steps (pivots, criterion, coverage, samples), built from the project spec alone,
and the pydantic shapes their JSON replies must have.

Each prompt names its step and the exact JSON to reply with; lists carry exact counts, which keeps small
local models from running past the count (see docs: the 0.5B model needs minItems/maxItems).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from .spec import ProjectSpec

# ----------------------------------------------------------------------------- reply shapes


class SamplesReply(BaseModel):
    """Samples are validated one by one against the fields later, so one bad sample does not sink a call."""

    model_config = ConfigDict(extra="ignore")
    samples: list[dict] = Field(min_length=1)


class CriterionReply(BaseModel):
    """One dimension and, for each pivot in order, its value: every pivot gets exactly one value by
    construction (the reference code's {value: [pivot indices]} form lets a model skip or repeat pivots)."""

    model_config = ConfigDict(extra="forbid")
    dimension: str = Field(min_length=1, max_length=80)
    labels: list[str] = Field(min_length=2)


class CoverageReply(BaseModel):
    """The values still missing. "Nothing is missing" is an explicit empty list: a reply without the list says
    nothing about coverage, so it is re-asked rather than read as complete."""

    model_config = ConfigDict(extra="forbid")
    new_values: list[str]
    open_ended: bool = False


# ----------------------------------------------------------------------------- shared text


def system_prompt(spec: ProjectSpec, step: str) -> str:
    fields = "\n".join(f"- {f.name}: {f.description or '(text)'}" for f in spec.fields)
    constraints = f"\nConstraints every sample must respect:\n{spec.constraints.strip()}\n" if spec.constraints.strip() else ""
    return (
        "You help build a diverse synthetic dataset.\n"
        f"Task: {spec.task.strip()}\n"
        f"Each sample is a JSON object with these string fields:\n{fields}\n"
        f"{constraints}"
        f"Step: {step}\n"
        "Reply with one JSON object and nothing else."
    )


def describe_subspace(attributes: list[tuple[str, str]]) -> str:
    if not attributes:
        return "Subspace: the whole task (no attribute fixed yet)."
    lines = "\n".join(f"- {dim}: {value}" for dim, value in attributes)
    sentence = " and ".join(f"its {dim} is {value}" for dim, value in attributes)
    return f"Subspace: every sample here has these attributes:\n{lines}\n(That is: {sentence}.)"


def sample_shape(spec: ProjectSpec, count: int) -> str:
    """The reply's shape in words: an inline example with "..." values gets copied verbatim by small models."""
    keys = ", ".join(f'"{f.name}"' for f in spec.fields)
    return (f'Reply as JSON: an object with the key "samples" holding a list of exactly {count} objects, each with '
            f"the text keys {keys} filled in with real content.")


def samples_schema(spec: ProjectSpec, count: int) -> dict:
    item = {
        "type": "object",
        "properties": {f.name: {"type": "string", "minLength": 1} for f in spec.fields},
        "required": spec.field_names,
    }
    return {
        "type": "object",
        "properties": {"samples": {"type": "array", "items": item, "minItems": count, "maxItems": count}},
        "required": ["samples"],
    }


EXAMPLE_FIELD_CHARS = 300  # of each field of a style example shown in a prompt; a longer one is cut


def examples_block(examples: list[dict] = ()) -> str:
    """Seed or imported examples as a fenced "style examples" block: one JSON object a line (their own line breaks
    escaped, so an example's text can never look like a line of the prompt), between start and end markers, with
    the instruction to take their form and not their content. Empty without examples: the prompt is unchanged."""
    if not examples:
        return ""
    import json

    def shown(example: dict) -> str:
        cut = {k: (str(v) if len(str(v)) <= EXAMPLE_FIELD_CHARS else str(v)[:EXAMPLE_FIELD_CHARS] + " [cut]")
               for k, v in example.items()}
        return json.dumps(cut, ensure_ascii=False)

    lines = "\n".join(f"Example {i}: {shown(e)}" for i, e in enumerate(examples, 1))
    return ("Style examples (do not copy their content): they show the format, length and tone wanted and nothing "
            "else. They are not samples of this subspace; do not reuse their topics, names, numbers or wording.\n"
            f"<<< style examples\n{lines}\n>>> end of style examples\n\n")


def format_sample(index: int, sample: dict, limit: int = 400) -> str:
    body = "; ".join(f"{k}: {str(v)[:limit]}" for k, v in sample.items())
    return f"[{index}] {body}"


# ----------------------------------------------------------------------------- the four steps


def pivots_messages(spec: ProjectSpec, attributes: list[tuple[str, str]], count: int,
                    examples: list[dict] = ()) -> list[dict]:
    """The pivots prompt; ``examples`` (seeds, seeds.style_examples) go in a fenced style block after the
    subspace, which stays the prompt's first paragraph."""
    user = (
        f"{describe_subspace(attributes)}\n\n"
        f"{examples_block(examples)}"
        f"Write {count} samples that belong to this subspace and differ from each other as much as possible.\n"
        f"Count: {count}\n"
        f"{sample_shape(spec, count)}"
    )
    return [{"role": "system", "content": system_prompt(spec, "pivots")}, {"role": "user", "content": user}]


# A value is a short name; a schema-enforcing server (llama.cpp) stops a string at this length, so a small model
# cannot answer a label with a paragraph.
VALUE_CHARS = 60

# Generic dimensions offered as a closed list to models that take a JSON schema (the local one): a 0.5B model
# otherwise keeps reusing its ancestors' dimension. Free-form for every other endpoint.
GENERIC_DIMENSIONS = ["topic", "difficulty", "setting", "format", "length", "audience", "tone", "style", "domain",
                      "perspective", "complexity", "purpose", "scenario", "reasoning type", "structure", "register"]


def criterion_messages(spec: ProjectSpec, attributes: list[tuple[str, str]], pivots: list[dict],
                       used_dimensions: list[str]) -> list[dict]:
    listing = "\n".join(format_sample(i + 1, p) for i, p in enumerate(pivots))
    used = "; ".join(used_dimensions) if used_dimensions else "none"
    n = len(pivots)
    user = (
        f"{describe_subspace(attributes)}\n\n"
        f"Samples from this subspace:\n{listing}\n\n"
        "Name ONE dimension (a single property of a sample, such as its topic, difficulty or setting) that best "
        "tells these samples apart, and give each sample its value of that dimension.\n"
        "Rules:\n"
        f"- Already used dimensions (do not reuse them or a synonym): {used}\n"
        f"- Give exactly {n} labels, one per sample in order (sample 1 to {n}): the value of each sample.\n"
        "- Samples that share a value get exactly the same label; use at least two different values.\n"
        "- Values are mutually exclusive, each a short concrete name of 1 to 5 words.\n"
        '- No catch-all value such as "other" or "misc"; no combined value such as "A and B" or "A/B".\n'
        'Reply as JSON: {"dimension": "...", "labels": ["value of sample 1", "value of sample 2", ...]}'
    )
    return [{"role": "system", "content": system_prompt(spec, "criterion")}, {"role": "user", "content": user}]


def criterion_schema(pivot_count: int, candidates: list[str] | None = None) -> dict:
    dimension: dict = {"type": "string", "minLength": 1}
    if candidates:
        dimension["enum"] = candidates
    return {
        "type": "object",
        "properties": {
            "dimension": dimension,
            "labels": {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": VALUE_CHARS},
                       "minItems": pivot_count, "maxItems": pivot_count},
        },
        "required": ["dimension", "labels"],
    }


def coverage_messages(spec: ProjectSpec, attributes: list[tuple[str, str]], dimension: str,
                      values: list[str], cap: int) -> list[dict]:
    user = (
        f"{describe_subspace(attributes)}\n\n"
        f"Dimension: {dimension}\n"
        f"Values so far: {'; '.join(values)}\n\n"
        f'List the values of "{dimension}" that are still missing, so that together with the values so far they '
        "cover every possible sample of this subspace. Each new value must be distinct from every other value "
        "(no overlap), concrete, and not a catch-all or a combination.\n"
        "If nothing is missing, reply with an empty list.\n"
        f"If the dimension is open-ended (more than {cap} values, such as names or quantities), set "
        '"open_ended" to true and list up to 10 more.\n'
        'Reply as JSON: {"new_values": ["...", "..."], "open_ended": false}'
    )
    return [{"role": "system", "content": system_prompt(spec, "coverage")}, {"role": "user", "content": user}]


COVERAGE_SCHEMA = {
    "type": "object",
    "properties": {
        "new_values": {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": VALUE_CHARS},
                       "maxItems": 10},
        "open_ended": {"type": "boolean"},
    },
    "required": ["new_values", "open_ended"],
}


TOPIC_WORDS = 6  # words of a sample's opening shown in a "topics already covered" list


def topic_of(sample: dict, words: int = TOPIC_WORDS) -> str:
    """A sample's fingerprint for a "topics already covered" list: the first ``words`` words of its first field
    and an ellipsis. A model that copies it writes a prefix of a stored sample, which the near-duplicate check
    catches (samples.near_copies)."""
    first = " ".join(str(next(iter(sample.values()), "")).split()[:words])
    return first + " ..."


def samples_messages(spec: ProjectSpec, attributes: list[tuple[str, str]], count: int,
                     avoid: list[dict] = (), avoid_style: str = "samples", examples: list[dict] = ()) -> list[dict]:
    """The generation prompt. ``avoid`` (the leaf's newest samples) is shown as the samples themselves
    (``avoid_style`` "samples") or as short openings under "topics already covered" ("topics"); a small model
    copies a list of whole samples into its reply (issue 9), which is why the setting exists. ``examples``
    (seed examples, or a leaf's imported rows when it is topped up) are shown as a fenced style block."""
    avoid_text = ""
    if avoid and avoid_style == "topics":
        avoid_text = ("\nTopics already covered here (do not copy these; write about something else):\n" +
                      "\n".join(f"- {topic_of(s)}" for s in avoid) + "\n")
    elif avoid:
        avoid_text = "\nDo not repeat these existing samples:\n" + "\n".join(
            format_sample(i + 1, s, 160) for i, s in enumerate(avoid)) + "\n"
    user = (
        f"{describe_subspace(attributes)}\n\n"
        f"{examples_block(examples)}"
        f"Write {count} new samples for the task. Every sample must satisfy all of the attributes above, "
        "be complete and correct, and differ from the others.\n"
        f"{avoid_text}"
        f"Count: {count}\n"
        f"{sample_shape(spec, count)}"
    )
    return [{"role": "system", "content": system_prompt(spec, "samples")}, {"role": "user", "content": user}]


# ----------------------------------------------------------------------------- the leaf-fit judge (issue 9)
# Appended here (not among the four steps above) so that the build's and generation's prompts stay as they are.

JUDGE_FIELD_CHARS = 1500  # of each field shown to the judge; a longer field is cut (the judge sees that it was)
JUDGE_REASON_CHARS = 200  # a reason is "short": the schema asks for at most this, longer ones are cut when stored


class AttributeVerdict(BaseModel):
    """Whether a sample fits one attribute, and why in a few words."""

    model_config = ConfigDict(extra="forbid")
    fits: bool
    reason: str = Field(default="", max_length=1000)


class SampleVerdict(BaseModel):
    """A sample's verdicts, one per attribute in the order they were listed."""

    model_config = ConfigDict(extra="forbid")
    sample: int
    attributes: list[AttributeVerdict] = Field(min_length=1)


class JudgeReply(BaseModel):
    """One verdict per sample. The counts (every sample once, every attribute once) are checked by the judge's
    ``check`` (judge.check_reply), so a reply that skips one is re-asked with the reason."""

    model_config = ConfigDict(extra="forbid")
    verdicts: list[SampleVerdict] = Field(min_length=1)


def judge_messages(spec: ProjectSpec, attributes: list[tuple[str, str]], samples: list[dict]) -> list[dict]:
    """Ask whether each sample fits each attribute. The attributes are numbered [A1].. in order (the first is
    the task itself, so an off-task sample fails even at the root); the samples are numbered [1].. and shown as
    one JSON line each (their own line breaks escaped), so a sample's text cannot look like another entry."""
    import json

    def shown(sample: dict) -> str:
        cut = {k: (v if len(str(v)) <= JUDGE_FIELD_CHARS else str(v)[:JUDGE_FIELD_CHARS] + " [cut]")
               for k, v in sample.items()}
        return json.dumps(cut, ensure_ascii=False)

    n, k = len(samples), len(attributes)
    listed = "\n".join(f"[A{i}] {dim}: {' '.join(str(value).split())}" for i, (dim, value) in enumerate(attributes, 1))
    listing = "\n".join(f"[{i}] {shown(s)}" for i, s in enumerate(samples, 1))
    user = (
        f"Attributes every sample here must have:\n{listed}\n\n"
        f"Samples to judge:\n{listing}\n\n"
        f"For each sample, decide for each attribute ([A1] to [A{k}], in order) whether the sample fits it: true "
        "when the sample clearly has that attribute, false when it contradicts it or is about something else. "
        "Judge only these attributes, not the sample's quality or correctness. Give each decision a short reason "
        "of at most 15 words.\n"
        f"Count: {n}\n"
        f'Reply as JSON: an object with the key "verdicts" holding a list of exactly {n} objects, one per sample in '
        f'order, each with "sample" (the sample\'s number, 1 to {n}) and "attributes": a list of exactly {k} '
        'objects, one per attribute in order, each with "fits" (true or false) and "reason" (the short reason).'
    )
    return [{"role": "system", "content": system_prompt(spec, "judge")}, {"role": "user", "content": user}]


def judge_schema(sample_count: int, attribute_count: int) -> dict:
    """The reply's JSON schema with exact counts (a schema-enforcing server keeps a small model to them)."""
    verdict = {"type": "object",
               "properties": {"fits": {"type": "boolean"},
                              "reason": {"type": "string", "maxLength": JUDGE_REASON_CHARS}},
               "required": ["fits", "reason"]}
    item = {"type": "object",
            "properties": {"sample": {"type": "integer", "minimum": 1, "maximum": sample_count},
                           "attributes": {"type": "array", "items": verdict, "minItems": attribute_count,
                                          "maxItems": attribute_count}},
            "required": ["sample", "attributes"]}
    return {"type": "object",
            "properties": {"verdicts": {"type": "array", "items": item, "minItems": sample_count,
                                        "maxItems": sample_count}},
            "required": ["verdicts"]}
