"""How a run ends: the verdict, the exit codes, the abort rule and the one-line failure reason (pure)."""

from __future__ import annotations

import threading

from treesynth_core.errors import EndpointError
from treesynth_core.outcome import ABORT_AFTER, REASON_CHARS, AbortRule, Outcome, failure_reason, judge


def test_judge_and_exit_codes():
    assert judge(5, 0) is Outcome.COMPLETE and judge(0, 0) is Outcome.COMPLETE
    assert judge(5, 1) is Outcome.PARTIAL
    assert judge(0, 1) is Outcome.FAILED
    assert [o.exit_code for o in Outcome] == [0, 3, 2, 130, 130]


def test_the_abort_rule_trips_after_its_limit_of_failures_before_any_success():
    rule = AbortRule()
    assert [rule.failure() for _ in range(ABORT_AFTER)] == [False] * (ABORT_AFTER - 1) + [True]
    assert rule.tripped


def test_after_one_success_the_abort_rule_never_trips():
    rule = AbortRule(limit=2)
    rule.success()
    assert not any(rule.failure() for _ in range(10)) and not rule.tripped


def test_the_abort_rule_counts_failures_from_many_threads():
    rule = AbortRule(limit=400)
    threads = [threading.Thread(target=lambda: [rule.failure() for _ in range(100)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert rule.failures == 400 and rule.tripped


def test_failure_reason_is_one_bounded_line_of_valid_text():
    assert failure_reason(EndpointError("the endpoint refused", "check the key")) == \
        "the endpoint refused (check the key)"
    assert failure_reason(KeyError("dimension")) == "unexpected error: KeyError: 'dimension'"
    long = failure_reason(ValueError("x\n" * 1000))
    assert len(long) == REASON_CHARS and long.endswith("...") and "\n" not in long
    surrogate = failure_reason(ValueError("bad \ud800 escape"))
    surrogate.encode("utf-8")  # a lone surrogate never reaches the store
    assert "\\ud800" in surrogate


def test_the_public_surface_exports_outcomes_and_call_errors():
    import treesynth_core
    from treesynth_core.errors import Cancelled, LLMCallError

    assert {"Outcome", "LLMCallError", "Cancelled"} <= set(treesynth_core.__all__)
    assert all(hasattr(treesynth_core, name) for name in treesynth_core.__all__)
    assert treesynth_core.LLMCallError is LLMCallError and treesynth_core.Outcome is Outcome
    assert Cancelled("stopped").report is None and Cancelled("stopped", report="r").report == "r"


def test_a_run_report_is_cancelled_before_its_own_rule_and_counts_its_named_failures():
    from dataclasses import dataclass

    import pytest

    from treesynth_core.balance import BalanceReport
    from treesynth_core.importer import ImportReport
    from treesynth_core.outcome import RunReport
    from treesynth_core.routing import RouteReport

    assert ImportReport(skipped=2, imported=1).outcome is Outcome.PARTIAL
    assert ImportReport(skipped=2, imported=1, cancelled=True).outcome is Outcome.CANCELLED
    assert ImportReport(skipped=2).failed_count == 2 and ImportReport(skipped=2).outcome is Outcome.FAILED
    assert RouteReport(failed_calls=3, unrouted=3).failed_count == 3
    assert RouteReport(rows=1, unrouted=1, cancelled=True).outcome is Outcome.CANCELLED
    assert BalanceReport(failed_calls=1).failed_count == 1 and BalanceReport().outcome is Outcome.COMPLETE
    assert BalanceReport(short={"a": 1}, cancelled=True).outcome is Outcome.CANCELLED
    with pytest.raises(TypeError, match="failed_field"):
        @dataclass
        class Misspelt(RunReport):  # noqa: F841
            failed_field = "failed_cals"
            failed_calls: int = 0
