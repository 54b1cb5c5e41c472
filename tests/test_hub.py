"""Push to the Hugging Face Hub (issue 11 part 6): the real huggingface_hub client against a local fake of the
Hub's HTTP API (create repo, validate YAML, preupload, commit), the dry run's exact upload set, the dataset card
checked against the store, the token never stored, logged or shown, and one line per failure."""

from __future__ import annotations

import base64
import json
import socket
import sys
import threading
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from treesynth_core import edits, hub, seeds
from treesynth_core.cli import main
from treesynth_core.export import export_bytes
from treesynth_core.generate import generate
from treesynth_core.llm import LLM
from treesynth_core.partition import build
from treesynth_core.spec import ProjectSpec, Settings, parse_fields

TOKEN = "hf_FakeToken1234567890abcdef"


class FakeHub:
    """The Hub endpoints ``create_repo`` and ``upload_folder`` call. Regular (non-LFS) upload mode for every file,
    so the commit carries the files inline; any other request is a 404 and recorded in ``unknown``."""

    def __init__(self, token: str = TOKEN):
        self.token = token
        self.created: list[dict] = []
        self.commits: list[dict] = []
        self.files: dict[str, dict[str, bytes]] = {}  # repo -> path -> bytes
        self.unknown: list[str] = []
        self.auth_seen: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if not self.path.startswith("/api/agent-harnesses"):  # the client's best-effort registry fetch
                    fake.unknown.append("GET " + self.path)
                self._send(404, {"error": "not found"})

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                auth = self.headers.get("authorization", "")
                fake.auth_seen.append(auth)
                if auth != f"Bearer {fake.token}":
                    return self._send(401, {"error": "Invalid credentials in Authorization header"})
                parts = self.path.split("?")[0].strip("/").split("/")
                if self.path.startswith("/api/repos/create"):
                    payload = json.loads(body)
                    fake.created.append(payload)
                    repo = f"{payload.get('organization')}/{payload['name']}"
                    return self._send(200, {"url": f"http://{self.headers['host']}/datasets/{repo}", "name": repo})
                if self.path.startswith("/api/validate-yaml"):
                    return self._send(200, {"errors": [], "warnings": []})
                if len(parts) == 6 and parts[:2] == ["api", "datasets"] and parts[4] == "preupload":
                    files = json.loads(body)["files"]
                    return self._send(200, {"files": [{"path": f["path"], "uploadMode": "regular",
                                                       "shouldIgnore": False, "oid": None} for f in files]})
                if len(parts) == 6 and parts[:2] == ["api", "datasets"] and parts[4] == "commit":
                    repo = f"{parts[2]}/{parts[3]}"
                    lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
                    header = next(x["value"] for x in lines if x["key"] == "header")
                    stored = fake.files.setdefault(repo, {})
                    for x in lines:
                        if x["key"] == "file":
                            assert x["value"]["encoding"] == "base64"
                            stored[x["value"]["path"]] = base64.b64decode(x["value"]["content"])
                    fake.commits.append({"repo": repo, "summary": header["summary"],
                                         "paths": [x["value"]["path"] for x in lines if x["key"] == "file"]})
                    url = f"http://{self.headers['host']}/datasets/{repo}/commit/1"
                    return self._send(200, {"commitOid": "0" * 40, "commitUrl": url, "pullRequestUrl": None})
                fake.unknown.append("POST " + self.path)
                return self._send(404, {"error": "not found"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_hub(monkeypatch):
    with FakeHub() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        yield server


@pytest.fixture
def made(fake, store):
    """A built and generated project with a hand-set review, a seed and a call log."""
    pid = store.create_project(ProjectSpec(
        name="Grade-school math", task="GSM8K-style grade-school math word problems",
        fields=parse_fields("question: the problem, answer: the worked solution"),
        settings=Settings(pivots=4, max_depth=2, per_leaf=2, samples_per_call=2)))
    seeds.add_seeds(store, pid, [{"question": "A seed question?", "answer": "A seed answer."}])
    llm = LLM(fake.endpoint(max_retries=1, timeout=5), store, pid)
    build(store, pid, llm)
    generate(store, pid, llm)
    ids = [s["id"] for s in store.samples(pid)]
    edits.set_sample_status(store, ids[:3], "accepted")
    edits.set_sample_status(store, ids[3:5], "rejected")
    return pid


def read_set(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------- the card against the store


def test_the_card_says_what_the_store_holds(store, made, tmp_path):
    out = tmp_path / "set"
    result = hub.dry_run(store, made, hub.PushOptions("me/math"), out)
    assert result.outcome.value == "complete"
    files = read_set(out)
    assert sorted(files) == sorted(hub.UPLOAD_FILES)
    card = files["README.md"].decode()
    front = yaml.safe_load(card.split("---\n")[1])
    counts = {}
    for by_status in store.sample_counts(made).values():
        for status, n in by_status.items():
            counts[status] = counts.get(status, 0) + n
    exported = counts["accepted"] + counts["generated"]
    assert front["configs"] == [{"config_name": "default", "data_files": [{"split": "train",
                                                                          "path": "data/train.parquet"}]}]
    assert front["license"] == "other" and front["task_categories"] == ["text-generation"]
    assert front["size_categories"] == ["n<1K"] and front["pretty_name"] == "Grade-school math"
    assert result.rows == exported
    assert f"A synthetic dataset of {exported:,} samples" in card
    assert "GSM8K-style grade-school math word problems" in card
    assert "| `question` | prompt | the problem |" in card and "| `answer` | answer | the worked solution |" in card
    for status, n in counts.items():  # review status counts: every status in the store, and its count
        assert f"| {status} | {n:,} |" in card
    tree = store.tree(made)
    per_leaf = {}
    for s in store.samples(made):
        if s["status"] in ("accepted", "generated"):
            per_leaf[s["node_id"]] = per_leaf.get(s["node_id"], 0) + 1
    leaves = [n for n in tree.leaves() if n.parent_id]
    assert len(leaves) > 2
    for leaf in leaves:  # counts per leaf
        assert f"| {tree.path_text(leaf.id)} | {per_leaf.get(leaf.id, 0):,} |" in card
    for node in tree.nodes.values():  # every criterion and its values
        kids = tree.kids(node.id, include_pruned=False)
        if kids:
            assert f"split by **{node.dimension}**" in card
            assert ", ".join(k.label for k in kids) in card
    models = store.call_models(made)
    assert models and all(f"`{m}` ({n:,} calls)" in card for m, n in models.items())
    usage = store.usage(made)
    assert f"LLM calls: {usage['calls']:,}" in card
    assert "- `pivots`: 4" in card and "- `per_leaf`: 2" in card
    assert "seed examples shown in prompts as style examples: 1" in card
    assert "Not measured" in card  # no embeddings cached: no diversity figures
    assert "![The tree as a sunburst" in card and "(images/sunburst.svg)" in card
    # the data files are the export's, status filter and all
    assert files["data/train.jsonl"] == export_bytes(store, made, "jsonl", statuses=["accepted", "generated"])
    assert files["data/train.parquet"] == export_bytes(store, made, "parquet", statuses=["accepted", "generated"])
    svg = files["images/sunburst.svg"].decode()
    assert svg.count("<path ") == len(tree.nodes) - 1  # one sector per node but the root
    assert all(f"<title>{escape(tree.path_text(leaf.id))}: {per_leaf.get(leaf.id, 0):,} samples</title>" in svg
               for leaf in leaves)


def test_the_card_shows_diversity_figures_when_vectors_are_cached(store, made, tmp_path):
    pytest.importorskip("onnxruntime")
    from treesynth_core.quality import quality_report

    try:
        report = quality_report(store, made, statuses=["accepted", "generated"])
    except Exception as exc:  # noqa: BLE001 - the offline model is not installed here
        pytest.skip(f"offline encoder unavailable: {exc}")
    hub.dry_run(store, made, hub.PushOptions("me/math"), tmp_path / "set")
    card = (tmp_path / "set/README.md").read_text()
    assert f"Measured on {report.dataset.n:,} samples" in card
    assert f"| mean pairwise cosine (lower: more diverse) | {report.dataset.mean_cosine:.3f} |" in card


def test_the_endpoint_url_in_the_card_is_redacted(store, made, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "https://user:s3cretpass@llm.example.com/v1?api_key=abcdef123")
    hub.dry_run(store, made, hub.PushOptions("me/math"), tmp_path / "set")
    card = (tmp_path / "set/README.md").read_text()
    assert "llm.example.com" in card and "s3cretpass" not in card and "abcdef123" not in card


# ----------------------------------------------------------------------------- push against the fake Hub


def test_push_uploads_exactly_the_dry_run_set_privately_and_never_keeps_the_token(store, made, fake_hub, tmp_path,
                                                                               capsys):
    db = store.path
    assert main(["push", "--db", db, "--repo", "me/math", "--dry-run", str(tmp_path / "dry")]) == 0
    assert main(["push", "--db", db, "--repo", "me/math"]) == 0
    out, err = capsys.readouterr()
    assert "pushed" in out and fake_hub.unknown == []
    [created] = fake_hub.created
    assert (created["name"], created["organization"], created["type"]) == ("math", "me", "dataset")
    assert created["visibility"] == "private"  # private by default
    assert fake_hub.files["me/math"] == read_set(tmp_path / "dry")  # byte for byte the dry run's set
    assert set(fake_hub.auth_seen) == {f"Bearer {TOKEN}"}
    # the token is nowhere: not in the output, the database file or its WAL, the uploaded files
    assert TOKEN not in out + err
    for path in Path(db).parent.glob(Path(db).name + "*"):
        assert TOKEN.encode() not in path.read_bytes()
    assert all(TOKEN.encode() not in data for data in fake_hub.files["me/math"].values())

    assert main(["push", "--db", db, "--repo", "me/public-math", "--public"]) == 0
    assert fake_hub.created[-1]["visibility"] == "public"


def test_a_refused_token_is_one_line_exit_2_and_never_shown(store, made, fake_hub, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", "hf_WrongToken0000000000000")
    assert main(["push", "--db", store.path, "--repo", "me/math"]) == 2
    out, err = capsys.readouterr()
    line = (out + err).strip()
    assert len(line.splitlines()) == 1 and "refused HF_TOKEN (401)" in line and not out
    assert "hf_WrongToken" not in line and fake_hub.files == {}


def test_without_network_push_fails_with_one_clear_line(store, made, monkeypatch, capsys):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert main(["push", "--db", store.path, "--repo", "me/math"]) == 2
    out, err = capsys.readouterr()
    line = (out + err).strip()
    assert len(line.splitlines()) == 1 and "cannot reach the Hub" in line and TOKEN not in line and not out


def test_push_refuses_without_a_token_a_bad_repo_id_or_the_extra(store, made, monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    assert main(["push", "--db", store.path, "--repo", "me/math"]) == 2
    assert "HF_TOKEN is not set" in capsys.readouterr().err
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    for bad in ("me/../x", "a/b/c", "-x", "me/ma th", ""):
        assert main(["push", "--db", store.path, f"--repo={bad}"]) == 2
        assert "is not a Hub repository id" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # as if the optional extra were not installed
    assert main(["push", "--db", store.path, "--repo", "me/math"]) == 2
    err = capsys.readouterr().err
    assert "needs huggingface_hub" in err and "requirements-hub.txt" in err and len(err.strip().splitlines()) == 1
    assert main(["push", "--db", store.path, "--repo", "me/math", "--dry-run", str(tmp_path / "d")]) == 0  # no extra


def test_the_dry_run_refuses_a_folder_with_other_files(store, made, tmp_path):
    folder = tmp_path / "busy"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(hub.ConfigError, match="holds other files"):
        hub.dry_run(store, made, hub.PushOptions("me/math"), folder)
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
    hub.dry_run(store, made, hub.PushOptions("me/math"), tmp_path / "again")
    hub.dry_run(store, made, hub.PushOptions("me/math"), tmp_path / "again")  # its own set is replaced


def test_hub_error_scrubs_anything_token_shaped():
    class Boom(Exception):
        pass

    text = hub.hub_error(Boom(f"bad header Authorization: Bearer {TOKEN} and hf_abcdefghijklmnop"), TOKEN, None)
    assert TOKEN not in text and "hf_abcdefghijklmnop" not in text and "Boom" in text


def test_nothing_to_push_is_refused_before_any_file_or_request(store, fake_hub, tmp_path, capsys):
    pid = store.create_project(ProjectSpec(name="empty", task="an empty project here", fields=parse_fields("q, a")))
    assert main(["push", "--db", store.path, "--project", str(pid), "--repo", "me/empty"]) == 2
    assert "nothing to push" in capsys.readouterr().err
    assert main(["push", "--db", store.path, "--project", str(pid), "--repo", "me/empty",
                 "--dry-run", str(tmp_path / "d")]) == 2
    assert not (tmp_path / "d").exists() and fake_hub.created == [] and fake_hub.auth_seen == []
    assert main(["push", "--db", store.path, "--project", str(pid), "--repo", "me/empty", "--status", "nope"]) == 2
    assert "unknown sample status 'nope'" in capsys.readouterr().err


def test_the_license_is_one_bounded_id_and_the_status_is_named(store, made, tmp_path, capsys):
    """--license takes a license id (no whitespace or newline, at most 64 characters), refused with its option
    named, before any file is written; --status names itself like export's."""
    folder = tmp_path / "set"
    for bad in ("apache 2.0", "mit\nevil: yes", "x" * 65, "", "-mit"):
        assert main(["push", "--db", store.path, "--repo", "me/math", f"--license={bad}",
                     "--dry-run", str(folder)]) == 2
        err = capsys.readouterr().err
        assert "argument --license:" in err and "is not a license id" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(hub.ConfigError, match="is not a license id"):
        hub.dry_run(store, made, hub.PushOptions("me/math", license="a b"), folder)
    assert not folder.exists()
    assert main(["push", "--db", store.path, "--repo", "me/math", "--license", "cc-by-4.0",
                 "--dry-run", str(folder)]) == 0
    assert 'license: "cc-by-4.0"' in (folder / "README.md").read_text()
    capsys.readouterr()
    assert main(["push", "--db", store.path, "--repo", "me/math", "--status", "nope",
                 "--dry-run", str(tmp_path / "other")]) == 2
    assert "argument --status: unknown sample status 'nope'" in capsys.readouterr().err


def test_a_dry_run_into_an_unwritable_place_is_one_line_exit_2(store, made, capsys):
    assert main(["push", "--db", store.path, "--repo", "me/math", "--dry-run", "/proc/f3-upload-set"]) == 2
    err = capsys.readouterr().err
    assert "cannot make the upload folder /proc/f3-upload-set" in err and len(err.strip().splitlines()) == 1
    assert "internal error" not in err
