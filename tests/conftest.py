"""Shared fixtures: a real OpenAI-compatible fake server on loopback and a fresh store."""

from __future__ import annotations

import pytest

from treesynth_core.fakellm import FakeLLM
from treesynth_core.llm import LLM
from treesynth_core.spec import ProjectSpec, Settings, parse_fields
from treesynth_core.store import Store


@pytest.fixture
def fake():
    with FakeLLM() as server:
        yield server


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "test.db") as s:
        yield s


def make_project(store: Store, **settings) -> int:
    spec = ProjectSpec(name="math", task="GSM8K-style grade-school math word problems",
                       fields=parse_fields("question: the problem, answer: the worked solution"),
                       settings=Settings(**{"pivots": 4, "max_depth": 2, "reasks": 2, **settings}))
    return store.create_project(spec)


@pytest.fixture
def project(store):
    return make_project(store)


@pytest.fixture
def llm(fake, store, project):
    return LLM(fake.endpoint(max_retries=1, timeout=5), store, project)
