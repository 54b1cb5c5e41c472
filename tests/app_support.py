"""Helpers for the page tests (AppTest): the app pointed at the fake LLM server and a temp database.

Import the fixtures into a test module with ``from tests.app_support import app_env, downloads  # noqa: F401``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest

from treesynth_core import jobs
from treesynth_core.fakellm import FakeLLM, Scripted
from treesynth_core.spec import ProjectSpec, Settings, parse_fields
from treesynth_core.store import Store

REPO = Path(__file__).resolve().parent.parent
FAKE_KEY = "sk-fake-test-key-123456"


@dataclass
class AppEnv:
    db: str
    fake: FakeLLM

    def store(self) -> Store:
        return Store(self.db)

    def app(self, page: str | None = None, project_id: int | None = None, run: bool = True) -> AppTest:
        """The app on Home, or switched to ``page`` (e.g. "pages/1_Tree.py"), with a project open."""
        at = AppTest.from_file(str(REPO / "app.py"), default_timeout=15)
        if project_id is not None:
            at.session_state["ts_project_id"] = project_id
        if page:
            at.switch_page(page)
        return at.run() if run else at

    def project(self, **settings) -> int:
        spec = ProjectSpec(name="math", task="GSM8K-style grade-school math word problems",
                           fields=parse_fields("question: the problem, answer: the worked solution"),
                           settings=Settings(**{"pivots": 4, "max_depth": 2, "per_leaf": 3, **settings}))
        with self.store() as store:
            return store.create_project(spec)

    def run_job(self, project_id: int, kind: str, params: dict) -> dict:
        job_id = jobs.start_job(self.db, project_id, kind, params, self.fake.endpoint())
        return self.wait(job_id)

    def wait(self, job_id: int) -> dict:
        jobs.wait(self.db, job_id, timeout=20)
        with self.store() as store:
            return jobs.get_job(store, job_id)

    def last_job(self, project_id: int) -> dict:
        with self.store() as store:
            job = jobs.recent_jobs(store, project_id, limit=1)[0]
        return self.wait(job["id"])

    def fail_calls_mentioning(self, text: str | None) -> None:
        """Every LLM call whose messages contain ``text`` gets a reply that is not JSON (None: stop failing).
        Unscripted calls only: scripted replies still come first."""
        if text is None:
            self.fake.fault_fn = None
            return

        def fault(body: dict):
            mentioned = any(text in (m.get("content") or "") for m in body.get("messages", []))
            return Scripted(content="this is not JSON at all") if mentioned else None

        self.fake.fault_fn = fault

    def built(self, **settings) -> int:
        """A project with a two-level tree (3 x 3 values) built on the fake server."""
        pid = self.project(**settings)
        job = self.run_job(pid, "build", {"depth": 2})
        assert job["status"] == "complete", job
        return pid


@pytest.fixture
def app_env(tmp_path, monkeypatch):
    with FakeLLM() as fake:
        monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
        monkeypatch.setenv("TREESYNTH_MODEL", "fake-model")
        monkeypatch.setenv("TREESYNTH_DB", str(tmp_path / "app.db"))
        for name in ("TREESYNTH_PROVIDER", "TREESYNTH_MAX_RETRIES"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("TREESYNTH_TIMEOUT", "10")
        yield AppEnv(str(tmp_path / "app.db"), fake)


@pytest.fixture
def downloads(monkeypatch) -> dict[str, tuple[str | None, bytes]]:
    """(file name, bytes) handed to st.download_button, by the media file id in the button's URL."""
    files: dict[str, tuple[str | None, bytes]] = {}
    original = MemoryMediaFileStorage.load_and_get_id

    def spy(self, path_or_data, mimetype, kind, filename=None):
        file_id = original(self, path_or_data, mimetype, kind, filename)
        if isinstance(path_or_data, bytes):
            files[file_id] = (filename, path_or_data)
        return file_id

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", spy)
    return files


def download(at: AppTest, files: dict, key: str) -> tuple[str | None, bytes]:
    """The (file name, bytes) behind the download button with this key."""
    button = next(b for b in at.get("download_button") if key in b.proto.id)
    file_id = os.path.splitext(button.proto.url.rsplit("/", 1)[1])[0]
    return files[file_id]


def download_data(at: AppTest, files: dict, key: str) -> bytes:
    return download(at, files, key)[1]


def texts(at: AppTest) -> str:
    """Everything the page shows as text, Markdown, alerts, captions and code, joined."""
    parts = []
    for kind in ("markdown", "caption", "text", "code", "success", "info", "warning", "error", "title",
                 "subheader", "header"):
        parts += [str(e.value) for e in getattr(at, kind)]
    parts += [f"{m.label} {m.value}" for m in at.metric]
    return "\n".join(parts)


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error] + [e.message for e in at.exception]
