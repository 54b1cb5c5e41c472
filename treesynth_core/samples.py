"""Sample hygiene: validate a generated sample against the project's fields and fingerprint it for dedup."""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re

from .tree import normalise

SAMPLE_STATUSES = ("generated", "accepted", "rejected", "excluded")
# excluded: set aside by balancing (balance.py) because its leaf is over its target; never deleted. It is not dataset
# content (no quota, no default export); a curator restores one with set_sample_status(..., "generated").
NOT_CONTENT = ("rejected", "excluded")  # statuses that count towards no quota and no "live" figure

# A lone surrogate (an invalid \ud800-style escape in the JSON) cannot be encoded as UTF-8: stored or sent on,
# it breaks the database, the export or the next request. NUL breaks C-string consumers. Refuse, never repair.
INVALID_TEXT = re.compile(r"[\x00\ud800-\udfff]")


def clean_samples(raw: list, field_names: list[str], max_chars: int | None = None) -> tuple[list[dict], list[str]]:
    """Keep samples that have every field as non-empty text; say why each other one was dropped.

    Extra keys are dropped from a kept sample; numbers are accepted and turned into text. Text with invalid
    Unicode (a lone surrogate) or NUL is refused, not repaired. A field longer than ``max_chars`` (the
    project's ``max_field_chars``) refuses the whole sample: it is counted, never truncated.
    """
    kept, problems = clean_reply(raw, field_names, max_chars)
    return [sample for sample, _ in kept], problems


def clean_reply(raw: list, field_names: list[str], max_chars: int | None = None,
                dedup_fields: list[str] | None = None) -> tuple[list[tuple[dict, str | None]], list[str]]:
    """``clean_samples`` and ``fingerprint`` in one pass over a reply: (sample, its fingerprint over
    ``dedup_fields``, or None when none are given) for each kept sample, and the problems. Each field is
    normalised once, for the emptiness check and the fingerprint alike."""
    kept, problems = [], []
    for i, item in enumerate(raw, 1):
        if not isinstance(item, dict):
            problems.append(f"sample {i} is not an object")
            continue
        sample, norms = {}, {}
        for name in field_names:
            value = item.get(name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                value = str(value)
            norm = normalise(value) if isinstance(value, str) else ""
            if not norm:
                problems.append(f"sample {i} has no text for field {name!r}")  # empty, or a "..." placeholder
                break
            if INVALID_TEXT.search(value):
                problems.append(f"sample {i} field {name!r} contains invalid Unicode (a lone surrogate) or NUL")
                break
            value = value.strip()
            if max_chars is not None and len(value) > max_chars:
                problems.append(f"sample {i}: field {name!r} has {len(value):,} characters "
                                f"(cap max_field_chars={max_chars})")
                break
            sample[name], norms[name] = value, norm
        else:
            kept.append((sample, None if dedup_fields is None else _digest([norms.get(n, "") for n in dedup_fields])))
    return kept, problems


def fingerprint(sample: dict, field_names: list[str]) -> str:
    """Equal for samples that differ only in case, punctuation or spacing."""
    return _digest([normalise(sample.get(name, "")) for name in field_names])


def _digest(norms: list[str]) -> str:
    return hashlib.sha1(json.dumps(norms).encode()).hexdigest()


# ----------------------------------------------------------------------------- near-duplicates at generation time
# A small model told "do not repeat these samples" copies them (issue 9): whole, cut off mid-sentence with the
# next field's label after it ("... buys 3 more; reply:"), or behind a few words of its own. The exact dedup
# (fingerprint) misses all but the first; ``near_copies`` catches the rest, cheaply: words, no embeddings.

# A field label left at the end of a cut-off copy: "; reply:", ", answer :" (the colon makes it a label).
_LABEL_TAIL = re.compile(r"[\s;,.]*\b(?:reply|answer|response|output|solution|question|input|{names})\s*:\s*$",
                         re.IGNORECASE)


@functools.lru_cache(maxsize=64)
def _label_tail(field_names: tuple[str, ...]) -> re.Pattern:
    names = "|".join(re.escape(n) for n in field_names if n) or "(?!)"
    return re.compile(_LABEL_TAIL.pattern.format(names=names), re.IGNORECASE)


def strip_label_tail(text: str, field_names: list[str] = ()) -> tuple[str, bool]:
    """``text`` without a trailing field label such as "; reply:", and whether one was there."""
    if not text.rstrip().endswith(":"):  # every label ends in a colon: most texts need no regex at all
        return text, False
    stripped = _label_tail(tuple(field_names)).sub("", text)
    return stripped, stripped != text


def copy_text(sample: dict, dedup_fields: list[str]) -> str:
    """The text two samples are compared on: their dedup fields, joined. A cut-off copy (a label tail) loses its
    label and its last, possibly half-written, word, so it is a clean prefix of what it copied."""
    parts = []
    for name in dedup_fields:
        text, cut = strip_label_tail(str(sample.get(name, "")), dedup_fields)
        if cut:
            text = text.rsplit(None, 1)[0] if len(text.split()) > 1 else text
        parts.append(text)
    return " ".join(parts)


def near_copies(new: list[dict], existing: list[dict], dedup_fields: list[str]) -> dict[int, str]:
    """The new samples (by index) that copy an existing sample or an earlier new one, with how ("exact"; "prefix":
    a truncated copy or a sample cut short; "suffix": a copy behind a prefix of other words). The pairs are
    ``diversity.lexical_copies``'s (at least 4 shared words and 90% of the shorter text, neighbours in sorted
    order) on ``copy_text``, but only those with a new sample: per call, the new samples are tokenised and
    compared, the existing ones' keys come from a cache (a leaf's newest samples are the same from one call
    to the next). O(new x log) per call; pass a leaf's newest few dozen samples, not the whole leaf."""
    from .diversity import COPY_MIN_SHARE, COPY_MIN_TOKENS, COPY_WINDOW  # numpy: imported when a call is checked

    fields = tuple(dedup_fields)
    keyed = [_copy_keys(tuple(str(s.get(name, "")) for name in fields), fields) for s in (*existing, *new)]
    base = len(existing)
    pairs: dict[tuple[int, int], str] = {}
    for side_index, how in ((1, "prefix"), (2, "suffix")):
        keys = [k[side_index] for k in keyed]
        order = sorted((i for i in range(len(keys)) if len(keys[i]) >= COPY_MIN_TOKENS), key=keys.__getitem__)
        for pos, j in enumerate(order):
            if j < base:
                continue
            # sorted keys: the words a text shares with its neighbours only shrink moving away from it, so each
            # side stops at the first neighbour that shares too few (as lexical_copies' forward scan does)
            for side in (order[pos - 1 :: -1][:COPY_WINDOW] if pos else [], order[pos + 1 : pos + 1 + COPY_WINDOW]):
                for i in side:
                    a, b = keys[i], keys[j]
                    if a[:COPY_MIN_TOKENS] != b[:COPY_MIN_TOKENS]:  # fewer shared words than a copy has
                        break
                    # shares at least min_share of the shorter text's words: compared as slices, in C
                    need = math.ceil(COPY_MIN_SHARE * min(len(a), len(b)))
                    if a[:need] == b[:need]:
                        pairs.setdefault((min(i, j), max(i, j)), how)
    found: dict[int, str] = {}
    for (i, j), how in sorted(pairs.items()):
        if j >= base:  # the later of a pair is the copy: a new sample, against an existing or earlier new one
            found.setdefault(j - base, "exact" if keyed[i][0] == keyed[j][0] else how)
    return found


@functools.lru_cache(maxsize=8192)
def _copy_keys(values: tuple[str, ...], fields: tuple[str, ...]) -> tuple[str, tuple, tuple]:
    """A sample's (normalised copy text, prefix key, suffix key), from its dedup fields' values: computed once per
    sample content (a leaf's recent samples come back call after call)."""
    from .diversity import COPY_KEY_TOKENS

    text = copy_text(dict(zip(fields, values)), list(fields))
    tokens = _copy_tokens(text)
    return normalise(text), tokens[:COPY_KEY_TOKENS], tokens[::-1][:COPY_KEY_TOKENS]


def _copy_tokens(text: str) -> tuple[str, ...]:
    from .diversity import _copy_tokens as copy_tokens  # lexical_copies' own tokens (not its word list too)

    return copy_tokens(text)

