"""How a run ended: one value shared by the CLI's exit code, the job row and the pages.

- ``complete``: everything asked for was done; nothing failed and nothing was dropped.
- ``partial``: something usable came out, but some nodes or calls failed (the counts say how many).
- ``failed``: nothing usable came out (or the run could not start).
- ``cancelled``: the user stopped it; what finished is kept.
- ``interrupted``: the process running it died (a job row only); running it again resumes.

"0 failed" must mean nothing was dropped: a report only says ``complete`` when its failure counts are zero.
"""

from __future__ import annotations

from enum import Enum


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
