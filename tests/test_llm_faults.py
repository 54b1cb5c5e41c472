"""The LLM client under faults, over the fake HTTP server: invalid Unicode, unexpected errors, an endpoint
without JSON mode at concurrency 1, rate limits (the adaptive window), hung servers (one deadline per call)
and credentials inside the base URL."""

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pydantic import BaseModel, ConfigDict

from treesynth_core.config import Endpoint, endpoint_from_env, redact, redact_url
from treesynth_core.errors import ConfigError, EndpointError, LLMCallError, LLMOutputError, TreeSynthError
from treesynth_core.fakellm import FakeLLM, Scripted
from treesynth_core.generate import generate
from treesynth_core.llm import INVALID_UNICODE, LLM
from treesynth_core.partition import build
from treesynth_core.store import Store
from treesynth_core.window import MAX_WINDOW, Window

from .conftest import make_project

MESSAGES = [{"role": "system", "content": "Step: test"}, {"role": "user", "content": "give me a thing"}]
GOOD = '{"name": "thing", "size": 3}'


class Thing(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    size: int


def ask(llm, **kw):
    return llm.ask(MESSAGES, schema=Thing, purpose="test", **{"reasks": 2, **kw})


def in_thread(target, timeout: float):
    """Run ``target`` on a thread; fail (instead of hanging the suite) if it has not finished in ``timeout``."""
    box: dict = {}

    def run():
        try:
            box["result"] = target()
        except BaseException as exc:  # handed to the test thread
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"still running after {timeout}s: a deadlock or a hang"
    if "error" in box:
        raise box["error"]
    return box.get("result")


def timed(fn):
    started = time.monotonic()
    try:
        return fn(), time.monotonic() - started
    except Exception as exc:
        return exc, time.monotonic() - started


# ----------------------------------------------------------------------------- invalid Unicode


@pytest.mark.parametrize("bad", [
    '{"name": "a\\ud800b", "size": 1}',  # the escape as raw text: json.loads makes a lone surrogate of it
    '{"name": "a\ud800b", "size": 1}',  # a real lone surrogate in the reply (sent escaped by the server)
    '{"name\\udfff": "a", "size": 1}',  # in a key
])
def test_a_lone_surrogate_is_re_asked_with_a_clear_reason_and_never_cached(fake, llm, store, bad):
    fake.push(bad, GOOD)
    assert ask(llm).value == Thing(name="thing", size=3)
    assert len(fake.requests) == 2
    assert INVALID_UNICODE in fake.requests[1]["messages"][-1]["content"]
    rows = store.query("select valid, error, response from calls order by id")
    assert rows[0]["valid"] == 0 and rows[0]["error"] == INVALID_UNICODE
    assert rows[1]["valid"] == 1 and rows[1]["response"] == GOOD
    again = ask(llm)  # the cache holds only the good reply
    assert again.cached and again.value.name == "thing"


def test_always_invalid_unicode_ends_in_a_recorded_output_error_and_nothing_valid(fake, llm, store):
    fake.push(*['{"name": "\ud800", "size": 1}'] * 3)
    with pytest.raises(LLMOutputError, match="invalid Unicode"):
        ask(llm)
    rows = store.query("select valid, response from calls")
    assert len(rows) == 3 and not any(r["valid"] for r in rows)
    assert all("\ufffd" in r["response"] for r in rows)  # logged, the surrogate replaced


def test_a_cached_reply_with_a_surrogate_from_an_older_version_is_not_served(fake, llm, store):
    from treesynth_core.llm import cache_key

    key = cache_key(llm.endpoint.model, MESSAGES, {"temperature": 0.7, "max_tokens": 1024, "purpose": "test"})
    store.log_call(project_id=llm.project_id, purpose="test", cache_key=key, valid=1,
                   response='{"name": "a\\ud800", "size": 1}')
    fake.push(GOOD)
    reply = ask(llm)
    assert not reply.cached and reply.value.name == "thing" and len(fake.requests) == 1


def test_a_surrogate_in_a_pivots_reply_does_not_sink_the_build_or_its_resume(fake, store, project, llm):
    fake.push(Scripted(content='{"samples": [{"question": "q\\ud800", "answer": "a"}, '
                               '{"question": "q2", "answer": "a2"}]}', step="pivots"))
    report = in_thread(lambda: build(store, project, llm, depth=1), 60)
    assert report.failed == {}
    again = in_thread(lambda: build(store, project, llm, depth=1), 60)
    assert again.failed == {}
    valid = store.query("select response from calls where valid = 1")
    assert valid and not any("\\ud800" in r["response"] for r in valid)


def test_generate_with_every_reply_invalid_unicode_finishes_with_the_failures_recorded(fake, store, project, llm):
    build(store, project, llm, depth=1)
    fake.fault_fn = lambda body: Scripted(content='{"samples": [{"question": "\\udc00", "answer": "x"}]}')
    report = in_thread(lambda: generate(store, project, llm, per_leaf=1), 60)
    assert report.failed_calls > 0 and report.inserted == 0
    assert all("invalid Unicode" in e for e in report.errors)
    assert not store.samples(project)


# ----------------------------------------------------------------------------- unexpected errors


@pytest.mark.parametrize("error", [TypeError("a bug"), KeyError("missing"), AttributeError("odd"),
                                   RuntimeError("boom")])
def test_an_unexpected_error_in_a_check_is_a_logged_typed_error(fake, llm, store, error):
    fake.push(GOOD, GOOD)

    def buggy(_):
        raise error

    with pytest.raises(LLMCallError, match=type(error).__name__) as caught:
        ask(llm, check=buggy)
    assert isinstance(caught.value, EndpointError)  # the contract: LLMOutputError or EndpointError only
    assert len(fake.requests) == 1  # a bug is not re-asked
    rows = store.query("select valid, error, response from calls")
    assert len(rows) == 1 and rows[0]["valid"] == 0 and type(error).__name__ in rows[0]["error"]
    assert rows[0]["response"] == GOOD


class NotAnAPI(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        data = b"<html>hello</html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def test_a_200_that_is_not_a_chat_completion_is_a_logged_typed_error(store, project):
    server = ThreadingHTTPServer(("127.0.0.1", 0), NotAnAPI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        llm = LLM(Endpoint(base_url=f"http://127.0.0.1:{server.server_address[1]}/v1", api_key="k",
                           max_retries=0, timeout=5), store, project)
        with pytest.raises(EndpointError) as caught:
            ask(llm)
    finally:
        server.shutdown()
        server.server_close()
    assert "Traceback" not in str(caught.value)
    rows = store.query("select valid, error from calls")
    assert len(rows) == 1 and rows[0]["valid"] == 0 and rows[0]["error"]


# ----------------------------------------------------------------------------- no deadlock


def test_concurrency_1_with_an_endpoint_that_rejects_response_format_finishes(store, project):
    with FakeLLM(reject_response_format=True) as fake:
        llm = LLM(fake.endpoint(max_retries=0, timeout=5), store, project, concurrency=1)
        fake.push(*[Scripted(content=GOOD, step="test")] * 4)

        def several_asks():
            results: list = []
            threads = [threading.Thread(target=lambda: results.append(ask(llm, cache=False))) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            return results

        assert len(in_thread(several_asks, 30)) == 4
        report = in_thread(lambda: build(store, project, llm, depth=2, concurrency=4), 60)
    assert report.failed == {} and len(report.expanded) > 1
    assert not llm.json_mode and llm.window.in_flight == 0
    assert all("response_format" not in r for r in fake.requests[-5:])
    assert store.usage(project)["failed_calls"] == 0  # the refusal is an adaptation, not a failed call


# ----------------------------------------------------------------------------- rate limits: the window


def test_window_halves_once_per_congestion_event_and_grows_after_a_run_of_successes():
    window = Window(8)
    a, b = window.acquire(), window.acquire()
    window.release(a, rate_limited=True)
    window.release(b, rate_limited=True)  # sent before the cut: no second cut
    assert window.size == 4 and window.cuts == 1
    for _ in range(8):
        window.release(window.acquire(), ok=True)
    assert window.size == 5 and window.grows == 1
    for _ in range(10):
        window.release(window.acquire(), rate_limited=True)
    assert window.size == 1 and window.lowest == 1  # never below 1
    assert Window(10_000).size == MAX_WINDOW >= 256 and Window(0).size == 1


def test_an_urgent_request_takes_the_next_slot_before_waiting_leaf_calls_and_a_hedge_never_waits():
    window = Window(1)
    held = window.acquire()
    order: list[str] = []

    def wait_for(name: str, urgent: bool) -> None:
        order.append(name + " waiting")
        epoch = window.acquire(urgent=urgent)
        order.append(name)
        window.release(epoch, ok=True)

    leaf = threading.Thread(target=wait_for, args=("leaf", False))
    leaf.start()
    while order != ["leaf waiting"]:
        time.sleep(0.01)
    urgent = threading.Thread(target=wait_for, args=("tree step", True))
    urgent.start()
    while len(order) < 2:
        time.sleep(0.01)
    time.sleep(0.05)  # both wait now
    assert window.try_acquire() is None  # full: a hedge does not wait ...
    spare = window.try_acquire(spare=1)  # ... it takes a spare slot, or none
    assert spare is not None and window.try_acquire(spare=1) is None
    window.release(spare)
    window.release(held, ok=True)
    leaf.join(5)
    urgent.join(5)
    assert order[2:] == ["tree step", "leaf"]  # the leaf call waited longer, the tree step went first


def test_a_local_endpoint_keeps_its_cap_of_2(fake, store, project):
    llm = LLM(fake.endpoint(provider="local"), store, project, concurrency=16)
    assert llm.window.size == 2 and llm.window.max_size == 2


@pytest.mark.parametrize("headers, at_least", [({"retry-after": "1"}, 0.95), ({"retry-after-ms": "400"}, 0.38),
                                               ({}, 0.45)])  # no header: exponential backoff (0.5-1 s)
def test_a_429_is_waited_out_the_window_halves_and_then_grows(fake, store, project, headers, at_least):
    llm = LLM(fake.endpoint(max_retries=2, timeout=10), store, project, concurrency=4)
    fake.push(Scripted(status=429, headers=headers), GOOD)
    reply, seconds = timed(lambda: ask(llm))
    assert reply.value.size == 3
    assert at_least <= seconds < at_least + 5
    assert len(fake.requests) == 2  # one 429, one answer: the SDK did not retry the 429 on its own
    assert llm.window.size == 2 and llm.window.cuts == 1
    assert store.usage(project)["failed_calls"] == 0
    fake.push(*[GOOD] * 4)
    for _ in range(4):  # a run of 2 x window successes grows it by one
        ask(llm, cache=False)
    assert llm.window.size == 3


def test_a_rate_limited_build_completes_with_no_failed_call(store, project):
    with FakeLLM(max_in_flight=2, retry_after=0.3, latency=0.05) as fake:
        llm = LLM(fake.endpoint(max_retries=2, timeout=10), store, project, concurrency=8)
        report, seconds = timed(lambda: in_thread(lambda: build(store, project, llm, depth=2, concurrency=8), 120))
    assert report.failed == {} and len(report.expanded) > 1
    assert fake.rate_limited > 0 and llm.window.cuts >= 1 and llm.window.lowest <= 4
    assert store.usage(project)["failed_calls"] == 0
    assert seconds >= 0.3  # at least one Retry-After was waited out


def test_a_persistent_429_fails_only_when_the_deadline_is_spent(fake, store, project):
    fake.fault_fn = lambda body: Scripted(status=429, headers={"retry-after": "0.2"})
    llm = LLM(fake.endpoint(max_retries=1, timeout=0.75), store, project)  # deadline 1.5 s
    error, seconds = timed(lambda: ask(llm))
    assert isinstance(error, EndpointError) and "kept rate-limiting (429" in str(error)
    assert 1.0 <= seconds < 4 and len(fake.requests) >= 3  # re-queued several times, not failed at once
    assert store.query("select count(*) as n from calls where error is not null")[0]["n"] == 1


def test_a_retry_after_beyond_the_deadline_fails_at_once(fake, store, project):
    fake.push(Scripted(status=429, headers={"retry-after": "600"}))
    llm = LLM(fake.endpoint(max_retries=1, timeout=1), store, project)
    error, seconds = timed(lambda: ask(llm))
    assert isinstance(error, EndpointError) and "deadline of 2s" in str(error) and seconds < 2


def test_an_account_out_of_quota_fails_at_once(fake, store, project):
    fake.push(*[Scripted(status=429, code="insufficient_quota", headers={"retry-after": "1"})] * 3)
    llm = LLM(fake.endpoint(max_retries=2, timeout=5), store, project)
    error, seconds = timed(lambda: ask(llm))
    assert isinstance(error, EndpointError) and "no quota left" in str(error)
    assert len(fake.requests) == 1 and seconds < 2


# ----------------------------------------------------------------------------- one deadline per call


def test_defaults_bound_a_silent_server_to_two_minutes():
    endpoint = endpoint_from_env({})
    assert (endpoint.timeout, endpoint.max_retries, endpoint.deadline) == (40.0, 2, 120.0)
    from treesynth_core.local import LOCAL_TIMEOUT

    assert endpoint_from_env({"TREESYNTH_TIMEOUT": str(LOCAL_TIMEOUT)}).deadline == LOCAL_TIMEOUT * 3 > 120


@pytest.mark.parametrize("env", [{"TREESYNTH_TIMEOUT": "abc"}, {"TREESYNTH_TIMEOUT": "0"},
                                 {"TREESYNTH_TIMEOUT": "-5"}, {"TREESYNTH_TIMEOUT": "nan"},
                                 {"TREESYNTH_TIMEOUT": "1e9"}, {"TREESYNTH_MAX_RETRIES": "-1"},
                                 {"TREESYNTH_MAX_RETRIES": "1.5"}, {"TREESYNTH_MAX_RETRIES": "99"}])
def test_bad_timeout_or_retries_are_a_config_error_with_the_range(env):
    with pytest.raises(ConfigError, match="must be an? (integer|number) from"):
        endpoint_from_env(env)


def test_a_hung_server_costs_one_deadline_not_one_per_attempt(fake, store, project):
    fake.latency = 10  # every reply takes longer than the timeout
    llm = LLM(fake.endpoint(max_retries=2, timeout=0.5), store, project)  # deadline 0.5 x 3 = 1.5 s
    error, seconds = timed(lambda: ask(llm))
    assert isinstance(error, EndpointError)
    assert "deadline of 1.5s (0.5s x 3 attempts)" in str(error) or "did not answer within" in str(error)
    assert 0.4 <= seconds < 3.5, seconds  # not 3 x the deadline, not 3 x (timeout + backoff)
    assert store.query("select count(*) as n from calls where error is not null")[0]["n"] == 1
    fake.latency = 0


def test_a_503_asking_for_a_long_wait_is_cut_at_the_deadline(fake, store, project):
    fake.push(*[Scripted(status=503, headers={"retry-after": "60"})] * 5)  # the SDK would honour up to 120 s
    llm = LLM(fake.endpoint(max_retries=2, timeout=0.5), store, project)
    error, seconds = timed(lambda: ask(llm))
    assert isinstance(error, EndpointError) and "deadline" in str(error) and seconds < 3


# ----------------------------------------------------------------------------- secrets in URLs

SECRET = "s3cretpass"
KEY = "sk-live-SECRETKEY-987654"


@pytest.mark.parametrize("text, expected", [
    ("http://user:s3cretpass@127.0.0.1:9/v1", "http://***@127.0.0.1:9/v1"),
    ("see https://u:p@ss@h.example/x?api_key=abc&x=1 and http://a:b@c/d", "see https://***@h.example/x?api_key=***&x=1 and http://***@c/d"),
    ("https://h/v1?access_token=zz&token=y#f", "https://h/v1?access_token=***&token=***#f"),
    ("mail a@b.com or http://host/p?email=a@b.com", "mail a@b.com or http://host/p?email=a@b.com"),
    ("", ""),
])
def test_redact_strips_credentials_from_any_url_in_a_text(text, expected):
    assert redact(text) == expected


def test_an_endpoint_never_shows_its_credentials():
    endpoint = Endpoint(base_url=f"https://user:{SECRET}@host/v1?api_key=qwerty123", api_key=KEY)
    for text in (endpoint.describe(), repr(endpoint), endpoint.shown_url(), redact_url(endpoint.base_url)):
        assert SECRET not in text and KEY not in text and "qwerty123" not in text


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_everything(store: Store, project: int, endpoint: Endpoint) -> list[str]:
    """build and generate as a user would; the texts of every report and exception."""
    llm = LLM(endpoint, store, project)
    texts = []
    for run in (lambda: build(store, project, llm, depth=2), lambda: generate(store, project, llm, per_leaf=2),
                lambda: llm.ping()):
        try:
            result = run()
            texts += [repr(result), result.summary() if hasattr(result, "summary") else ""]
        except TreeSynthError as exc:
            texts += [str(exc), repr(exc)]
    return texts


def assert_nothing_secret(db_path, texts):
    for text in texts:
        assert SECRET not in text and KEY not in text, text
    for path in (db_path, db_path.with_name(db_path.name + "-wal")):
        if path.exists():
            data = path.read_bytes()
            assert SECRET.encode() not in data and KEY.encode() not in data, path


def test_credentials_in_an_unreachable_base_url_are_never_stored_or_raised(tmp_path):
    db = tmp_path / "secret.db"
    with Store(db) as store:
        project = make_project(store)
        endpoint = Endpoint(base_url=f"http://user:{SECRET}@127.0.0.1:{closed_port()}/v1", api_key=KEY,
                            max_retries=0, timeout=2)
        texts = run_everything(store, project, endpoint)
        assert store.query("select count(*) as n from calls where error is not null")[0]["n"] > 0
        assert_nothing_secret(db, texts)
    assert_nothing_secret(db, texts)


def test_credentials_echoed_by_a_failing_endpoint_are_never_stored_or_raised(fake, tmp_path):
    url = fake.base_url.replace("http://", f"http://user:{SECRET}@")
    fake.fault_fn = lambda body: Scripted(status=500, headers={},
                                          error=f"upstream {url}?api_key={SECRET} refused key {KEY}")
    db = tmp_path / "secret.db"
    with Store(db) as store:
        project = make_project(store)
        texts = run_everything(store, project, fake.endpoint(base_url=url, api_key=KEY, max_retries=0))
        errors = [r["error"] for r in store.query("select error from calls where error is not null")]
        assert errors and all("HTTP 500" in e and "***" in e for e in errors)  # the reason is kept, redacted
        assert_nothing_secret(db, texts)
    assert_nothing_secret(db, texts)
