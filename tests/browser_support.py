"""Helpers for the real-browser walk (tests/test_browser.py): the app as a subprocess, headless Chromium, and
the waits a Streamlit page needs before it can be read.

Streamlit facts this relies on (1.67): the ``stApp`` element carries ``data-test-script-state`` (``initial``,
``running``, ``notRunning``); lazily loaded elements (plotly, code blocks, data grids) show ``stSkeleton``
placeholders for a few seconds after the script has finished; the page scrolls inside ``stMain``, so a full
page screenshot needs a viewport as tall as that element's content; page URLs drop the number prefix of the
file name (``pages/1_Tree.py`` is ``/Tree``).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

from treesynth_core import edits, jobs
from treesynth_core.llm import LLM
from treesynth_core.partition import build
from treesynth_core.samples import fingerprint
from treesynth_core.spec import ProjectSpec, Settings, parse_fields
from treesynth_core.store import Store

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts" / "browser"
CHROMIUM = "/usr/bin/chromium"
# The flags verified on this machine kind (docs/environment.md in the shared docs).
CHROMIUM_FLAGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-quic", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]
WAIT_MS = 30_000  # one bounded wait: generous for a 2-core machine, short enough to fail fast


def require_chromium() -> str:
    """The Chromium binary; skips locally when it is missing, fails on CI (which must install it)."""
    if Path(CHROMIUM).exists():
        return CHROMIUM
    message = (f"{CHROMIUM} is missing: install Debian's chromium (`make chromium`, or "
               "`apt-get install -y chromium chromium-driver`); `playwright install` does not work here")
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def require_playwright():
    try:
        from playwright import sync_api
    except ImportError:
        message = "the playwright package is missing: pip install -r requirements-dev.txt"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return sync_api


# ----------------------------------------------------------------------------- the app server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextmanager
def streamlit_app(env: dict[str, str], log_path: Path, startup_timeout: float = 60.0):
    """``streamlit run app.py`` on a free loopback port; yields its base URL once /_stcore/health answers.

    The app gets this environment with ``env`` on top, minus any OPENAI_* / TREESYNTH_* variable of the
    developer's shell (a TREESYNTH_PROVIDER=local there must not change what the test drives)."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "TREESYNTH_"))}, **env}
    port = free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
           "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false"]
    log = open(log_path, "wb")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if proc.poll() is not None:
                pytest.fail(f"streamlit exited with code {proc.returncode} before answering:\n{tail(log_path)}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"streamlit did not answer {url}/_stcore/health within {startup_timeout:.0f}s:\n"
                            f"{tail(log_path)}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


# ----------------------------------------------------------------------------- a project, the app and a browser

MATH_TASK = "GSM8K-style grade-school math word problems"


def new_project(db: Path, name: str, *, task: str = MATH_TASK, fields: str = "question,answer", **settings) -> int:
    """A project in ``db``, to be built to depth 2 with 4 pivots a node unless ``settings`` say otherwise."""
    with Store(db) as store:
        return store.create_project(ProjectSpec(name=name, task=task, fields=parse_fields(fields),
                                                settings=Settings(**{"pivots": 4, "max_depth": 2, **settings})))


def run_jobs(db: Path, pid: int, fake, *, per_leaf: int | None = None) -> None:
    """Build the tree to depth 2 (on the fake: 3 x 3 leaves) and, with ``per_leaf``, fill it, each through a job as
    the app's buttons run it; each must end complete."""
    for kind, params in [("build", {"depth": 2})] + ([("generate", {"per_leaf": per_leaf})] if per_leaf else []):
        with Store(db) as store:
            job = jobs.create_job(store, pid, kind, params)
        assert jobs.run_job(str(db), job, fake.endpoint())["status"] == "complete"


def built_project(db: Path, fake) -> int:
    """A depth-2 tree (topic A/B/C x difficulty A/B/C) built on the fake server, two samples per leaf."""
    pid = new_project(db, "browser tree")
    with Store(db) as store:
        build(store, pid, LLM(fake.endpoint(max_retries=1, timeout=10), store, pid), depth=2)
        for leaf in store.tree(pid).leaves():
            rows = [{"data": {"question": f"{leaf.id} q{i}", "answer": "a"}, "drawn": [],
                     "norm_hash": fingerprint({"question": f"{leaf.id} q{i}", "answer": "a"}, ["question"])}
                    for i in range(2)]
            edits.add_samples(store, pid, leaf.id, rows, cap=None, call_id=None)
    return pid


def node_id(db: Path, pid: int, value: str) -> str:
    """The id of the node with this value."""
    with Store(db) as store:
        return next(n.id for n in store.tree(pid).nodes.values() if n.value == value)


@dataclass
class Studio:
    """The app serving one database, and a headless Chromium to open pages of it in (see ``studio``)."""

    url: str
    log: Path
    browser: Any

    def page(self, path: str | None = None, timeout: int = WAIT_MS):
        """A new page in a fresh browser context (1400 x 1000), at ``url/path`` when given."""
        page = self.browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
        page.set_default_timeout(timeout)
        if path is not None:
            page.goto(f"{self.url}/{path}")
        return page

    @contextmanager
    def failure_shown(self, page, name: str, also: Callable[[], None] | None = None):
        """On a failure inside: a screenshot ``name``.png, ``also()`` (more to print) and the app log's tail,
        then the failure itself."""
        try:
            yield
        except Exception:
            try:
                screenshot(page, name)
            finally:
                if also is not None:
                    also()
                print(f"--- streamlit log (tail) ---\n{tail(self.log)}")
            raise


@contextmanager
def studio(db: Path, log: Path, secret: str, base_url: str):
    """``streamlit run app.py`` on ``db`` against the endpoint ``base_url`` (the fake server's, model fake-model)
    with the API key ``secret``, and headless Chromium (skipped without it); afterwards the key must not be in
    the app's log."""
    sync_api = require_playwright()
    chromium = require_chromium()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    env = {"OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": secret, "TREESYNTH_MODEL": "fake-model",
           "TREESYNTH_DB": str(db), "TREESYNTH_TIMEOUT": "10"}
    with streamlit_app(env, log) as url, sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        try:
            yield Studio(url, log, browser)
        finally:
            browser.close()
    assert secret not in log.read_text(errors="replace")


# ----------------------------------------------------------------------------- waiting and reading

# True once the script has run to the end, no element is still a loading skeleton and the "running" status
# widget (if the toolbar shows one) is gone, and all of that has held for a quiet period. The quiet period
# covers the moment right after a click, before the server has answered with "running".
_SETTLED = """([key, quietMs]) => {
  const now = performance.now();
  const app = document.querySelector('[data-testid="stApp"]');
  const status = document.querySelector('[data-testid="stStatusWidget"]');
  const busy = !app || app.getAttribute('data-test-script-state') !== 'notRunning'
    || app.getAttribute('data-test-connection-state') !== 'CONNECTED'
    || document.querySelector('[data-testid="stSkeleton"]') !== null
    || (status !== null && status.offsetParent !== null);
  window.__tsSettle = window.__tsSettle || {};
  if (busy || !(key in window.__tsSettle)) { window.__tsSettle[key] = now; return false; }
  return now - window.__tsSettle[key] >= quietMs;
}"""
_settle_calls = 0


def settle(page, quiet_ms: int = 400, timeout: int = WAIT_MS) -> None:
    """Wait until the app has finished the current run and rendered everything (bounded)."""
    global _settle_calls
    _settle_calls += 1
    page.wait_for_function(_SETTLED, arg=[f"s{_settle_calls}", quiet_ms], polling=100, timeout=timeout)


def wait_text(page, text: str | re.Pattern, timeout: int = WAIT_MS):
    """Wait for visible text (a substring, or a regex), then for the run to settle; returns the locator."""
    locator = page.get_by_text(text).first
    locator.wait_for(state="visible", timeout=timeout)
    settle(page)
    return locator


def main_text(page) -> str:
    return page.locator('[data-testid="stMain"]').inner_text()


def go(page, label: str) -> None:
    """Switch page with the sidebar link labelled ``label`` (the app draws its own links: st.page_link)."""
    page.locator('[data-testid="stSidebar"] [data-testid="stPageLink-NavLink"]', has_text=label).click()
    settle(page)


def pick(page, select_label: str, option: str) -> None:
    """Choose ``option`` in the searchable select box labelled ``select_label`` by typing into it."""
    box = page.locator('[data-testid="stSelectbox"]', has_text=select_label)
    box.locator("input").click()
    page.keyboard.type(option)
    page.get_by_role("option", name=option, exact=True).click()
    settle(page)


def set_number(page, label: str, value: int) -> None:
    field = page.get_by_role("spinbutton", name=label, exact=True)
    field.fill(str(value))
    field.press("Enter")
    settle(page)


def type_into_grid_cell(page, grid, row: int, x: int, text: str) -> None:
    """Type ``text`` into a cell of an st.data_editor (a glide-data-grid canvas: no DOM cell to type in) and
    leave its editor open: the caller then clicks the form's submit button, as a user would.

    ``row`` counts data rows from 0; ``x`` is a horizontal offset inside the wanted column; the grid's header
    and rows are 35 px high. A click selects the cell and Enter opens its editor (a textarea in a portal).
    Why not Enter again to commit: Streamlit (1.67) debounces a committed edit by 150 ms before handing it to
    the form, so a submit within that window silently drops it; a click outside the open editor (the submit
    button) flushes the edit first."""
    grid.scroll_into_view_if_needed()
    grid.locator(".dvn-scroller").click(position={"x": x, "y": 35 + 35 * row + 17})
    page.keyboard.press("Enter")
    editor = page.locator("textarea.gdg-input")
    editor.wait_for(state="visible", timeout=WAIT_MS)
    editor.fill(text)


def screenshot(page, name: str) -> Path:
    """A full-page screenshot in test-artifacts/browser/. Streamlit scrolls inside stMain, so the viewport is
    made as tall as its content for the shot, then put back."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    size = page.viewport_size
    height = page.evaluate("""() => Math.max(
        document.querySelector('[data-testid="stMain"]')?.scrollHeight || 0,
        document.querySelector('[data-testid="stSidebarContent"]')?.scrollHeight || 0,
        window.innerHeight)""")
    page.set_viewport_size({"width": size["width"], "height": min(int(height) + 40, 8000)})
    try:
        settle(page, quiet_ms=300)
        page.screenshot(path=str(path), full_page=True)
    finally:
        page.set_viewport_size(size)
    return path


def clean_artifacts() -> None:
    if ARTIFACTS.exists():
        shutil.rmtree(ARTIFACTS)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)


# ----------------------------------------------------------------------------- counting the user's actions

# What a curator does, counted in the page from the browser's own trusted events (the ones Playwright's mouse and
# keyboard produce, as a person's would): a click is a pointer pressed (pointerdown: a data grid's canvas cancels
# the mousedown); a key is a key pressed that is not typing text (Enter, Tab, Escape, arrows); a text entry is
# typing into one field, counted once per field however long the text (a fill and a typed word alike); the
# characters typed are counted too (``chars``, not in the total). Kept in sessionStorage: page switches keep it.
_COUNT_ACTIONS = """(() => {
  if (window.__tsCounting) return;
  window.__tsCounting = true;
  const read = () => JSON.parse(sessionStorage.getItem('tsActions') || '{"clicks":0,"keys":0,"texts":0,"chars":0}');
  const add = (kind, e) => { const c = read(); c[kind] += 1; sessionStorage.setItem('tsActions', JSON.stringify(c));
    const what = (e.target.getAttribute && (e.target.getAttribute('aria-label') || e.target.textContent)) || '';
    const log = JSON.parse(sessionStorage.getItem('tsLog') || '[]');
    log.push(`${kind.slice(0, -1)} ${e.key && e.key.length > 1 ? e.key + ' in ' : ''}${what.trim().slice(0, 40)}`);
    sessionStorage.setItem('tsLog', JSON.stringify(log)); };
  const chars = (n) => { const c = read(); c.chars += n; sessionStorage.setItem('tsActions', JSON.stringify(c)); };
  let typing = null;  // the field being typed into, until another action
  let keyed = false;  // the next input event comes from a key typed (counted there), not from a fill
  document.addEventListener('pointerdown', (e) => { if (e.isTrusted) { add('clicks', e); typing = null; } }, true);
  document.addEventListener('keydown', (e) => {
    if (!e.isTrusted) return;
    if (e.key.length === 1) {
      chars(1); keyed = true;
      if (typing !== e.target) { add('texts', e); typing = e.target; }
      return;
    }
    if (e.key !== 'Shift') { add('keys', e); typing = null; }
  }, true);
  document.addEventListener('input', (e) => {  // a fill types no keys: one text entry per field
    if (!e.isTrusted) return;
    if (!keyed && e.data) chars(e.data.length);
    keyed = false;
    if (typing !== e.target) { add('texts', e); typing = e.target; }
  }, true);
})()"""


def count_actions(context) -> None:
    """Count the user's clicks, keys and text entries in every page of this browser context from now on."""
    context.add_init_script(_COUNT_ACTIONS)


def action_log(page) -> list[str]:
    """Each counted action in order: "click <what>", "key Enter in <what>", "text <field>"."""
    return page.evaluate("() => JSON.parse(sessionStorage.getItem('tsLog') || '[]')")


def action_counts(page) -> dict[str, int]:
    """{"clicks", "keys", "texts", "chars", "total"} so far in this page (see ``count_actions``)."""
    counts = page.evaluate("() => JSON.parse(sessionStorage.getItem('tsActions') || "
                           "'{\"clicks\":0,\"keys\":0,\"texts\":0,\"chars\":0}')")
    return {**counts, "total": counts["clicks"] + counts["keys"] + counts["texts"]}


def click_sector(page, label: str) -> None:
    """Click the sunburst sector labelled ``label`` where its label is drawn (inside the sector), as a user would."""
    chart = page.locator('[data-testid="stPlotlyChart"]').first
    text = chart.locator("g.slicetext text", has_text=re.compile(rf"^{re.escape(label)}$")).first
    text.wait_for(state="visible")
    box = text.bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    settle(page)

