"""How a run ended: one value shared by the CLI's exit code, the job row and the pages.

- ``complete``: everything asked for was done; nothing failed and nothing was dropped.
- ``partial``: something usable came out, but some nodes or calls failed (the counts say how many).
- ``failed``: nothing usable came out (or the run could not start).
- ``cancelled``: the user stopped it; what finished is kept.
- ``interrupted``: the process running it died (a job row only); running it again resumes.

"0 failed" must mean nothing was dropped: a report only says ``complete`` when its failure counts are zero.

Beside the verdict live the two rules every run shares: ``AbortRule`` (when a run stops early) and
``failure_reason`` (the one line recorded for a failed node or call), and ``short_reason``, that line as a result
banner in the app shows it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from enum import Enum
from typing import ClassVar

from .errors import TreeSynthError


class Outcome(str, Enum):
    COMPLETE = "complete"
    PARTIAL = "partial"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"

    @property
    def exit_code(self) -> int:
        """The CLI's exit code: 0 complete, 3 partial, 2 failed (and user errors), 130 cancelled/interrupted."""
        return EXIT_CODES[self]


EXIT_CODES = {
    Outcome.COMPLETE: 0,
    Outcome.PARTIAL: 3,
    Outcome.FAILED: 2,
    Outcome.CANCELLED: 130,
    Outcome.INTERRUPTED: 130,
}
EXIT_USER_ERROR = 2


def judge(succeeded: int, failed: int) -> Outcome:
    """complete when nothing failed, failed when nothing succeeded although something was attempted,
    partial otherwise. ``succeeded`` counts usable results (expanded nodes, stored samples)."""
    if failed == 0:
        return Outcome.COMPLETE
    return Outcome.PARTIAL if succeeded > 0 else Outcome.FAILED


@dataclass
class RunReport:
    """What every run's report shares (import, route, balance): it may have been cancelled, it counts what failed
    (``failed_count``, the job row's count: the int field named by ``failed_field``), and its ``outcome`` is
    CANCELLED when it was, else its own rule, ``verdict()``. ``cancelled`` is keyword-only, so a report's own
    fields keep their positions."""

    failed_field: ClassVar[str]  # the int field holding what failed
    cancelled: bool = field(default=False, kw_only=True)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if not isinstance(getattr(cls, cls.failed_field, None), int):  # a misspelt name fails at import
            raise TypeError(f"{cls.__name__}.failed_field: {cls.failed_field!r} is not an int field")

    @property
    def failed_count(self) -> int:
        return getattr(self, self.failed_field)

    @property
    def outcome(self) -> Outcome:
        return Outcome.CANCELLED if self.cancelled else self.verdict()

    def verdict(self) -> Outcome:
        """The outcome of a run that was not cancelled: each report's own rule."""
        raise NotImplementedError


ABORT_AFTER = 3  # failures of any kind before the first success that stop a run (build and generate)
REASON_CHARS = 300


class AbortRule:
    """When to stop a run early: ``limit`` failures of any kind (endpoint errors, malformed replies, unexpected
    errors) before its first success mean this endpoint or model cannot do the work at all, so paying for the
    rest would be waste. After one success the run always goes on: a failure is then one node's or one call's.
    Written once, used by build and generate. Thread-safe."""

    def __init__(self, limit: int = ABORT_AFTER):
        self.limit = limit
        self.failures = 0
        self.successes = 0
        self._lock = threading.Lock()

    def success(self) -> None:
        with self._lock:
            self.successes += 1

    def failure(self) -> bool:
        """Count a failure; True when the run should stop now."""
        with self._lock:
            self.failures += 1
            return self.tripped

    @property
    def tripped(self) -> bool:
        return self.successes == 0 and self.failures >= self.limit


def failure_reason(exc: BaseException) -> str:
    """One line saying why a node or a call failed: our errors say it themselves; anything else is a bug or
    a reply we did not foresee, named with its type so it can be found."""
    text = str(exc) if isinstance(exc, TreeSynthError) else f"unexpected error: {type(exc).__name__}: {exc}"
    text = " ".join(text.split()).encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= REASON_CHARS else text[: REASON_CHARS - 3] + "..."


APP_REASON_CHARS = 160
CLI_POINTER = " (see the call log"  # how an LLM error's hint starts: it points to `calls --failed`


def short_reason(reason: str, limit: int = APP_REASON_CHARS) -> str:
    """A failure reason as the app shows it in a result banner: without the trailing hint that points to the
    CLI's call log (the page lists the failed calls and says what to do itself), cut to ``limit`` characters."""
    cut = reason.rfind(CLI_POINTER)
    text = reason[:cut] if cut > 0 else reason
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
