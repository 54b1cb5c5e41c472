"""The LLM client against the fake HTTP server: parsing, json-repair, bounded re-asks, API errors, cache, call log.

Faults (invalid Unicode, unexpected errors, rate limits, deadlines, secrets in URLs) are in test_llm_faults.py.
"""

import pytest
from pydantic import BaseModel, ConfigDict

from treesynth_core.errors import EndpointError, LLMOutputError
from treesynth_core.fakellm import Scripted
from treesynth_core.llm import LLM, extract_json, load_json

MESSAGES = [{"role": "system", "content": "Step: test"}, {"role": "user", "content": "give me a thing"}]


class Thing(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    size: int


def ask(llm, **kw):
    return llm.ask(MESSAGES, schema=Thing, purpose="test", reasks=2, **kw)


@pytest.mark.parametrize("text", [
    '{"name": "a", "size": 1}',
    'Sure! Here it is:\n```json\n{"name": "a", "size": 1}\n```\nanything else?',
    'prose first {"name": "a", "size": 1} prose after',
    '{"name": "line\nbreak", "size": 1}',  # raw newline inside a string (small models do this)
])
def test_extract_json_tolerates_fences_prose_and_raw_newlines(text):
    assert extract_json(text)["size"] == 1


@pytest.mark.parametrize("text, reason", [("", "empty"), ("no json here", "no JSON object"),
                                          ('{"name": "a",, }', "not valid JSON"), ("[1, 2]", "no JSON object")])
def test_extract_json_rejects_with_a_precise_reason(text, reason):
    with pytest.raises(ValueError, match=reason):
        extract_json(text)


@pytest.mark.parametrize("bad", [
    "not json at all",
    '{"name": "a"}',  # missing key
    '{"name": "a", "size": "big"}',  # wrong type
    '{"name": "a", "size": 1, "extra": true}',  # unexpected key
])
def test_bad_reply_is_re_asked_with_the_reason_then_accepted(fake, llm, store, bad):
    fake.push(bad, '{"name": "thing", "size": 3}')
    reply = ask(llm)
    assert reply.value == Thing(name="thing", size=3)
    assert len(fake.requests) == 2
    second = fake.requests[1]["messages"]
    assert second[-2]["content"] == bad and "cannot be used" in second[-1]["content"]
    calls = store.query("select attempt, valid, error from calls order by id")
    assert [c["valid"] for c in calls] == [0, 1] and calls[0]["error"]


def test_truncated_reply_is_re_asked_with_more_tokens(fake, llm):
    fake.push(Scripted(content='{"name": "a", "si', finish_reason="length"), '{"name": "a", "size": 5}')
    assert ask(llm, max_tokens=100).value.size == 5
    assert [r["max_tokens"] for r in fake.requests] == [100, 200]


def test_always_bad_ends_in_a_recorded_failure_after_bounded_tries(fake, llm, store):
    fake.push(*["nope"] * 10)
    with pytest.raises(LLMOutputError, match="no usable reply after 3 tries"):
        ask(llm)
    assert len(fake.requests) == 3
    rows = store.query("select valid, error from calls")
    assert len(rows) == 3 and all(r["valid"] == 0 and "JSON" in r["error"] for r in rows)


def test_semantic_check_failure_is_re_asked(fake, llm):
    fake.push('{"name": "a", "size": -1}', '{"name": "a", "size": 2}')

    def positive(t):
        if t.size < 0:
            raise ValueError("size must be positive")

    assert ask(llm, check=positive).value.size == 2
    assert "size must be positive" in fake.requests[1]["messages"][-1]["content"]


def test_429_is_waited_out_by_the_client_and_500_retried_by_the_sdk(fake, llm, store):
    fake.push(Scripted(status=429), Scripted(status=500), '{"name": "a", "size": 1}')
    llm_retry = LLM(fake.endpoint(max_retries=2), store, llm.project_id)
    assert ask(llm_retry).value.size == 1
    assert len(fake.requests) == 3
    assert store.usage(llm.project_id)["failed_calls"] == 0  # neither is a failed call: both were recovered


def test_persistent_500_is_an_endpoint_error_and_logged(fake, llm, store):
    fake.push(*[Scripted(status=500)] * 5)
    with pytest.raises(EndpointError, match="HTTP 500"):
        ask(llm)
    assert len(fake.requests) == 2  # max_retries=1 in the fixture: bounded
    assert "HTTP 500" in store.query("select error from calls")[0]["error"]


def test_timeout_is_an_endpoint_error(fake, store, project):
    fake.push(Scripted(content='{"name": "a", "size": 1}', delay=1.5))
    quick = LLM(fake.endpoint(timeout=0.3, max_retries=0), store, project)
    with pytest.raises(EndpointError, match="did not answer within"):
        ask(quick)


def test_unreachable_endpoint(store, project):
    from treesynth_core.config import Endpoint

    dead = LLM(Endpoint(base_url="http://127.0.0.1:9/v1", api_key="k", max_retries=0, timeout=2), store, project)
    with pytest.raises(EndpointError, match="could not connect"):
        ask(dead)
    with pytest.raises(EndpointError):
        dead.ping()


def test_valid_reply_is_cached_so_a_rerun_costs_nothing(fake, llm, store):
    fake.push('{"name": "a", "size": 1}', '{"name": "b", "size": 2}')
    first = ask(llm)
    again = ask(llm)
    assert again.cached and again.value == first.value and len(fake.requests) == 1
    assert ask(llm, cache=False).value.name == "b" and len(fake.requests) == 2


def test_usage_is_logged_and_the_key_never_stored(fake, llm, store):
    fake.push('{"name": "a", "size": 1}')
    ask(llm)
    usage = store.usage(llm.project_id)
    assert usage["calls"] == 1 and usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    dump = "\n".join(store.db.iterdump())
    assert "sk-fake-test-key-123456" not in dump


# ----------------------------------------------------------------------------- json-repair before a re-ask


class Bag(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[str]


@pytest.mark.parametrize("text, items", [
    ('```json\n{"items": ["a", "b",],}\n```', ["a", "b"]),  # fenced, trailing commas
    ("{'items': ['a', 'b']}", ["a", "b"]),  # single quotes
    ('Here you go: {"items": ["a", "b", "c"', ["a", "b", "c"]),  # truncated list (the model stopped)
    ('{"items": ["a" "b"]}', ["a", "b"]),  # a missing comma
])
def test_malformed_json_is_repaired_without_a_re_ask_and_counted(fake, llm, store, text, items):
    fake.push(text, '{"items": ["never", "asked"]}')
    reply = llm.ask(MESSAGES, schema=Bag, purpose="test", reasks=2)
    assert reply.value.items == items and reply.repaired
    assert len(fake.requests) == 1  # the re-ask it saved was never sent
    rows = store.query("select valid, repaired, error from calls")
    assert rows == [{"valid": 1, "repaired": 1, "error": None}]
    assert store.query("select count(*) as n from calls where repaired = 1")[0]["n"] == 1


def test_strict_json_is_not_marked_repaired(fake, llm, store):
    fake.push('{"items": ["a"]}')
    assert not llm.ask(MESSAGES, schema=Bag, purpose="test").repaired
    assert store.query("select repaired from calls") == [{"repaired": 0}]


def test_a_repaired_reply_is_a_valid_cache_entry(fake, llm):
    fake.push("{'items': ['a', 'b',]}")
    first = llm.ask(MESSAGES, schema=Bag, purpose="test")
    again = llm.ask(MESSAGES, schema=Bag, purpose="test")
    assert again.cached and again.value == first.value and len(fake.requests) == 1


def test_repair_does_not_bypass_validation(fake, llm, store):
    # repairable JSON of the wrong shape is still re-asked with pydantic's reason
    fake.push("{'name': 'a', 'size': 'big',}", '{"name": "a", "size": 2}')
    assert ask(llm).value.size == 2 and len(fake.requests) == 2
    first = store.query("select valid, repaired, error from calls order by id")[0]
    assert first["valid"] == 0 and "expected shape" in first["error"]


@pytest.mark.parametrize("text, reason", [("", "empty"), ("no json here", "no JSON object"),
                                          ("[1, 2]", "no JSON object"), ("{", "no JSON object"),
                                          ("{:::}", "not valid JSON")])
def test_load_json_refuses_what_repair_cannot_make_an_object_of(text, reason):
    with pytest.raises(ValueError, match=reason):
        load_json(text)


def test_deeply_nested_json_is_a_clear_refusal_not_a_crash():
    with pytest.raises(ValueError):
        load_json("{" + '"a": [' * 100_000)


def test_the_hint_after_unusable_replies_fits_the_step(tmp_path):
    """A tree step can be fixed by hand; a samples or judge call can only be retried."""
    from pydantic import BaseModel

    from treesynth_core.errors import LLMOutputError
    from treesynth_core.fakellm import FakeLLM, Scripted

    class Shape(BaseModel):
        x: int

    with FakeLLM() as fake:
        llm = LLM(fake.endpoint(max_retries=0))
        hints = {}
        for purpose in ("criterion", "samples"):
            fake.push(Scripted(content="no json"), Scripted(content="no json"))
            with pytest.raises(LLMOutputError) as info:
                llm.ask([{"role": "user", "content": purpose}], schema=Shape, purpose=purpose, reasks=1, cache=False)
            hints[purpose] = info.value.hint
    assert "edit the node by hand" in hints["criterion"]
    assert "edit the node" not in hints["samples"] and "retry" in hints["samples"]
