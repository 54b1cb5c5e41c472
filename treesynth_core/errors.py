"""The core's small error hierarchy: each error says what went wrong and what to do."""

from __future__ import annotations


class TreeSynthError(Exception):
    """Base class. ``hint`` tells the user what to do about it."""

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigError(TreeSynthError):
    """Missing or invalid configuration (API key, endpoint, settings)."""


class EndpointError(TreeSynthError):
    """The LLM endpoint could not be reached or refused the request after the SDK's retries."""


class LLMCallError(EndpointError):
    """One LLM call failed for an unexpected reason: not an HTTP status but, e.g., a response the SDK could
    not read, a network-library error or a bug in a reply check. It is recorded in the call log with its
    reason, and the caller records it on the node and carries on, as for any EndpointError."""


class LLMOutputError(TreeSynthError):
    """The LLM kept replying with output that fails validation; the reason is recorded.

    ``last_value`` is the last reply that had the right shape but broke a rule (or None), so a caller may
    salvage it under its own, looser rules and say so.
    """

    def __init__(self, message: str, hint: str = "", last_value=None, reason: str = ""):
        super().__init__(message, hint)
        self.last_value = last_value
        self.reason = reason


class NotFoundError(TreeSynthError):
    """A project, node or sample id that does not exist."""


class LeafGone(NotFoundError):
    """A leaf pruned or deleted (by another process, the app, an undo) while its samples were being made:
    nothing was stored for it, and a run stops asking for it."""


class TreeEditError(TreeSynthError):
    """An edit that would break the tree (duplicate sibling value, editing a locked node...)."""


class TreeImportError(TreeSynthError):
    """A tree JSON file that is malformed, too large or too deep."""


class LocalModelError(TreeSynthError):
    """The bundled local model could not be assembled, verified or started."""


class Cancelled(TreeSynthError):
    """A long run was cancelled by the user; everything finished so far is kept.

    ``report`` is the run's report up to the cancel (a BuildReport or GenerationReport, with what finished
    and what failed), or None when the run had none yet.
    """

    def __init__(self, message: str, hint: str = "", report=None):
        super().__init__(message, hint)
        self.report = report
