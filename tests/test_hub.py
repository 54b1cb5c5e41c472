"""Push to the Hugging Face Hub (issue 11 part 6): the real huggingface_hub client against a local fake of the
Hub's HTTP API (create repo, validate YAML, preupload, commit), the dry run's exact upload set, the dataset card
checked against the store, the token never stored, logged or shown, and one line per failure."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from tests.app_support import app_env  # noqa: F401  (the page tests below)
from tests.app_support import errors as app_errors
from tests.app_support import texts as app_texts
from treesynth_core import edits, hub, jobs, seeds
from treesynth_core.cli import main
from treesynth_core.export import export_bytes
from treesynth_core.generate import generate
from treesynth_core.llm import LLM
from treesynth_core.partition import build
from treesynth_core.spec import ProjectSpec, Settings, parse_fields

TOKEN = "hf_FakeToken1234567890abcdef"


class FakeHub:
    """The Hub endpoints ``create_repo``, ``preupload_lfs_files`` and ``create_commit`` call, and the LFS ones.

    Preupload answers "lfs" for the paths in ``lfs_paths`` (the Parquet file by default) and for files of at least
    ``lfs_above`` bytes, "regular" for the rest. An LFS file then goes through the batch API
    (``POST /datasets/{repo}.git/info/lfs/objects/batch``, which offers only the "basic" transfer: no Xet), a
    ``PUT`` of its bytes to the upload href the batch returned (checked against its sha256), the verify call and a
    commit entry ``lfsFile`` naming its oid; with ``multipart_chunk`` set the batch answers the multipart transfer
    instead (a PUT per part to the part URLs, each answered with an ETag, then a completion POST listing them). A
    regular file is inline in the commit, base64. ``files`` holds what
    each repository received by path; ``blobs`` the LFS objects by oid. ``refuse`` maps a step ("create", "preupload",
    "batch", "upload", "verify", "commit") to an HTTP status to answer instead. Any other request is a 404 and
    recorded in ``unknown``."""

    def __init__(self, token: str = TOKEN, lfs_paths=("data/train.parquet",), lfs_above: int | None = None):
        self.token = token
        self.lfs_paths, self.lfs_above = set(lfs_paths), lfs_above
        self.refuse: dict[str, int] = {}
        self.created: list[dict] = []
        self.commits: list[dict] = []
        self.files: dict[str, dict[str, bytes]] = {}  # repo -> path -> bytes
        self.blobs: dict[str, bytes] = {}  # LFS objects by sha256
        self.batches: list[dict] = []
        self.uploads: list[str] = []  # oids PUT
        self.verified: list[str] = []
        self.unknown: list[str] = []
        self.auth_seen: list[str] = []
        self.upload_delay = 0.0  # seconds to sleep per 64 KiB of an LFS upload (to watch progress, or cancel)
        self.put_bytes = 0  # the most bytes one upload request has delivered so far
        self.multipart_chunk: int | None = None  # answer the multipart transfer: parts of this size, then completion
        self.parts: dict[str, dict[int, bytes]] = {}  # oid -> part number -> bytes (multipart)
        self.hold: dict[str, float] = {}  # step -> seconds to wait before answering it (a Hub that is slow to answer)
        self.holding: list[str] = []  # the steps being held now
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, status: int, body: dict, headers: dict | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> bytes:
                if self.headers.get("transfer-encoding", "").lower() == "chunked":
                    out = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        if not size:
                            self.rfile.readline()
                            return out
                        out += self.rfile.read(size)
                        self.rfile.readline()
                        self._pace(len(out))
                left, out = int(self.headers.get("content-length") or 0), b""
                while left:
                    piece = self.rfile.read(min(left, 65536))
                    if not piece:
                        break
                    out, left = out + piece, left - len(piece)
                    self._pace(len(out))
                return out

            def _pace(self, received: int) -> None:
                if self.command == "PUT":
                    fake.put_bytes = max(fake.put_bytes, received)
                    if fake.upload_delay:
                        time.sleep(fake.upload_delay)

            def _refused(self, step: str) -> bool:
                if fake.hold.get(step):
                    fake.holding.append(step)
                    time.sleep(fake.hold[step])
                    fake.holding.remove(step)
                status = fake.refuse.get(step)
                if status:
                    self._send(status, {"error": f"the fake Hub refuses {step} ({status})"})
                return bool(status)

            def _complete(self, oid: str, payload: dict) -> None:
                got = fake.parts.get(oid, {})
                numbers = [p["partNumber"] for p in payload["parts"]]
                if payload["oid"] != oid or numbers != sorted(got) or any(
                        p["etag"].strip('"') != hashlib.md5(got[p["partNumber"]]).hexdigest()
                        for p in payload["parts"]):
                    return self._send(400, {"error": "the parts do not match what was uploaded"})
                blob = b"".join(got[n] for n in numbers)
                if hashlib.sha256(blob).hexdigest() != oid:
                    return self._send(400, {"error": "the uploaded bytes do not match their oid"})
                fake.blobs[oid] = blob
                fake.uploads.append(oid)
                self._send(200, {})

            def do_GET(self):
                if not self.path.startswith("/api/agent-harnesses"):  # the client's best-effort registry fetch
                    fake.unknown.append("GET " + self.path)
                self._send(404, {"error": "not found"})

            def do_PUT(self):  # an LFS upload: the href the batch answered, no Hub token (like a presigned URL)
                body = self._body()
                parts = self.path.split("?")[0].strip("/").split("/")
                if len(parts) == 3 and parts[0] == "lfs-part":  # one part of a multipart upload
                    if self._refused("upload"):
                        return
                    fake.parts.setdefault(parts[1], {})[int(parts[2])] = body
                    return self._send(200, {}, {"etag": f'"{hashlib.md5(body).hexdigest()}"'})
                if len(parts) != 2 or parts[0] != "lfs-upload":
                    fake.unknown.append("PUT " + self.path)
                    return self._send(404, {"error": "not found"})
                if self._refused("upload"):
                    return
                oid = parts[1]
                if hashlib.sha256(body).hexdigest() != oid:
                    return self._send(400, {"error": "the uploaded bytes do not match their oid"})
                fake.blobs[oid] = body
                fake.uploads.append(oid)
                self._send(200, {})

            def do_POST(self):
                body = self._body()
                path = self.path.split("?")[0]
                if path.startswith("/lfs-complete/"):  # multipart completion: like the parts, no Hub token
                    return self._complete(path.rsplit("/", 1)[1], json.loads(body))
                auth = self.headers.get("authorization", "")
                fake.auth_seen.append(auth)
                if auth != f"Bearer {fake.token}":
                    return self._send(401, {"error": "Invalid credentials in Authorization header"})
                parts = path.strip("/").split("/")
                if path.startswith("/api/repos/create"):
                    if self._refused("create"):
                        return
                    payload = json.loads(body)
                    fake.created.append(payload)
                    repo = f"{payload.get('organization')}/{payload['name']}"
                    return self._send(200, {"url": f"http://{self.headers['host']}/datasets/{repo}", "name": repo})
                if path.startswith("/api/validate-yaml"):
                    return self._send(200, {"errors": [], "warnings": []})
                if len(parts) == 6 and parts[:2] == ["api", "datasets"] and parts[4] == "preupload":
                    if self._refused("preupload"):
                        return
                    files = json.loads(body)["files"]

                    def mode(f):
                        big = fake.lfs_above is not None and f["size"] >= fake.lfs_above
                        return "lfs" if f["path"] in fake.lfs_paths or big else "regular"

                    return self._send(200, {"files": [{"path": f["path"], "uploadMode": mode(f),
                                                       "shouldIgnore": False, "oid": None} for f in files]})
                if path.endswith(".git/info/lfs/objects/batch") and parts[0] == "datasets":
                    if self._refused("batch"):
                        return
                    payload = json.loads(body)
                    fake.batches.append(payload)
                    assert payload["operation"] == "upload" and payload["hash_algo"] == "sha256"
                    assert "basic" in payload["transfers"]
                    base = f"http://{self.headers['host']}"
                    objects = []
                    chunk = fake.multipart_chunk
                    for obj in payload["objects"]:
                        oid = obj["oid"]
                        entry = {"oid": oid, "size": obj["size"], "authenticated": True}
                        if oid not in fake.blobs and chunk:  # parts of `chunk` bytes, then the completion call
                            header = {"chunk_size": str(chunk)}
                            header.update({str(n): f"{base}/lfs-part/{oid}/{n}"
                                           for n in range(1, -(-obj["size"] // chunk) + 1)})
                            entry["actions"] = {"upload": {"href": f"{base}/lfs-complete/{oid}", "header": header},
                                                "verify": {"href": f"{base}/lfs-verify/{oid}"}}
                        elif oid not in fake.blobs:  # a known object needs no upload
                            entry["actions"] = {"upload": {"href": f"{base}/lfs-upload/{oid}"},
                                                "verify": {"href": f"{base}/lfs-verify/{oid}"}}
                        objects.append(entry)
                    return self._send(200, {"transfer": "multipart" if chunk else "basic", "objects": objects},
                                      {"content-type": "application/vnd.git-lfs+json"})
                if len(parts) == 2 and parts[0] == "lfs-verify":
                    if self._refused("verify"):
                        return
                    payload = json.loads(body)
                    blob = fake.blobs.get(parts[1])
                    if blob is None or payload["oid"] != parts[1] or payload["size"] != len(blob):
                        return self._send(404, {"error": "no such object"})
                    fake.verified.append(parts[1])
                    return self._send(200, {})
                if len(parts) == 6 and parts[:2] == ["api", "datasets"] and parts[4] == "commit":
                    if self._refused("commit"):
                        return
                    repo = f"{parts[2]}/{parts[3]}"
                    lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
                    header = next(x["value"] for x in lines if x["key"] == "header")
                    received = {}
                    for x in lines:
                        if x["key"] == "file":
                            assert x["value"]["encoding"] == "base64"
                            received[x["value"]["path"]] = base64.b64decode(x["value"]["content"])
                        elif x["key"] == "lfsFile":
                            v = x["value"]
                            blob = fake.blobs.get(v["oid"])
                            if v["algo"] != "sha256" or blob is None or len(blob) != v["size"]:
                                return self._send(422, {"error": f"LFS object {v['oid']} was never uploaded"})
                            received[v["path"]] = blob
                    fake.files.setdefault(repo, {}).update(received)
                    fake.commits.append({"repo": repo, "summary": header["summary"],
                                         "paths": [x["value"]["path"] for x in lines if x["key"] == "file"],
                                         "lfs": [x["value"]["path"] for x in lines if x["key"] == "lfsFile"]})
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
    # the Parquet file went the LFS way: batch (basic transfer only), PUT, verify, an lfsFile entry in the commit
    [commit] = fake_hub.commits
    assert commit["lfs"] == ["data/train.parquet"] and "data/train.parquet" not in commit["paths"]
    parquet = (tmp_path / "dry/data/train.parquet").read_bytes()
    oid = hashlib.sha256(parquet).hexdigest()
    assert [o["oid"] for b in fake_hub.batches for o in b["objects"]] == [oid]
    assert fake_hub.uploads == [oid] and fake_hub.verified == [oid] and fake_hub.blobs[oid] == parquet
    assert set(fake_hub.auth_seen) == {f"Bearer {TOKEN}"}
    # the token is nowhere: not in the output, the database file or its WAL, the uploaded files
    assert TOKEN not in out + err
    for path in Path(db).parent.glob(Path(db).name + "*"):
        assert TOKEN.encode() not in path.read_bytes()
    assert all(TOKEN.encode() not in data for data in fake_hub.files["me/math"].values())

    assert main(["push", "--db", db, "--repo", "me/public-math", "--public"]) == 0
    assert fake_hub.created[-1]["visibility"] == "public"
    out, err = capsys.readouterr()  # the Parquet object is known already: no upload, and no client progress bar
    assert out.startswith("pushed ") and err == "" and len(fake_hub.uploads) == 1
    assert fake_hub.files["me/public-math"] == fake_hub.files["me/math"]


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


# ----------------------------------------------------------------------------- every file through LFS, progress


def test_every_file_through_lfs_with_progress_in_bytes(store, made, fake_hub, tmp_path):
    """With every file above the LFS threshold the client uploads four objects (in parallel threads), each PUT
    checked against its oid and verified; the commit names them all as lfsFile; the repository holds the dry run's
    set byte for byte. Progress counts bytes, never goes back, and ends at the set's size."""
    fake_hub.lfs_above = 1
    hub.dry_run(store, made, hub.PushOptions("me/math"), tmp_path / "dry")
    dry = read_set(tmp_path / "dry")
    seen: list[tuple[int, int]] = []
    result = hub.push(store, made, hub.PushOptions("me/math"), on_progress=lambda d, t: seen.append((d, t)))
    assert result.outcome.value == "complete", result.error
    assert fake_hub.files["me/math"] == dry and fake_hub.unknown == []
    [commit] = fake_hub.commits
    assert sorted(commit["lfs"]) == sorted(hub.UPLOAD_FILES) and commit["paths"] == []
    oids = {hashlib.sha256(data).hexdigest() for data in dry.values()}
    assert set(fake_hub.uploads) == set(fake_hub.verified) == oids
    total = sum(len(data) for data in dry.values())
    assert seen and seen[-1] == (total, total) and result.sent == result.total_bytes == total
    assert all(t == total for _, t in seen) and [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_a_refused_lfs_upload_fails_with_the_hubs_status_and_commits_nothing(store, made, fake_hub):
    fake_hub.refuse["upload"] = 403  # the storage refuses the PUT (not retried: only 429 and 5xx are)
    result = hub.push(store, made, hub.PushOptions("me/math"))
    assert result.outcome.value == "failed" and "refused HF_TOKEN (403)" in result.error
    assert fake_hub.commits == [] and fake_hub.files == {} and TOKEN not in result.error
    fake_hub.refuse = {"commit": 422}  # the Parquet object was uploaded, the commit is refused
    result = hub.push(store, made, hub.PushOptions("me/math"))
    assert result.outcome.value == "failed" and "answered 422" in result.error and fake_hub.files == {}
    assert result.failed_count == len(hub.UPLOAD_FILES) and len(fake_hub.uploads) == 1


# ----------------------------------------------------------------------------- the push as a background job


def push_job(store, pid, fake, **params) -> dict:
    job_id = jobs.start_job(store.path, pid, "push", {"repo_id": "me/math", **params}, fake.endpoint())
    jobs.wait(store.path, job_id, timeout=30)
    return jobs.get_job(store, job_id)


def token_nowhere(db: str) -> None:
    for path in Path(db).parent.glob(Path(db).name + "*"):  # the database, its WAL and shared memory
        assert TOKEN.encode() not in path.read_bytes()


def test_the_push_job_ends_complete_with_the_url_and_counts_bytes(store, made, fake, fake_hub, caplog):
    job = push_job(store, made, fake, private=False)
    assert job["status"] == "complete", job["message"]
    assert job["params"] == {"repo_id": "me/math", "private": False}  # options only: never the token
    sizes = sum(len(data) for data in fake_hub.files["me/math"].values())
    assert job["done"] == job["total"] == sizes and job["failed"] == 0
    url = f"{fake_hub.url}/datasets/me/math"
    assert job["app_message"].endswith(f" to {url}") and url in job["message"]
    assert fake_hub.created[0]["visibility"] == "public" and fake_hub.commits[0]["lfs"] == ["data/train.parquet"]
    token_nowhere(store.path)
    assert TOKEN not in caplog.text


def test_a_push_job_the_hub_refuses_fails_with_one_scrubbed_line(store, made, fake, fake_hub, monkeypatch, caplog):
    monkeypatch.setenv("HF_TOKEN", "hf_WrongToken0000000000000")
    job = push_job(store, made, fake)
    assert job["status"] == "failed" and job["failed"] == len(hub.UPLOAD_FILES)
    assert "refused HF_TOKEN (401)" in job["message"] and len(job["message"].splitlines()) == 1
    assert "hf_WrongToken" not in job["message"] + (job["app_message"] or "") + caplog.text
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    fake_hub.refuse["commit"] = 500  # the commit is not retried by the client
    job = push_job(store, made, fake)
    assert job["status"] == "failed" and "answered 500" in job["message"] and fake_hub.files == {}
    token_nowhere(store.path)
    monkeypatch.delenv("HF_TOKEN")
    job = push_job(store, made, fake)
    assert job["status"] == "failed" and "HF_TOKEN is not set" in job["message"]


def test_a_cancelled_push_job_stops_mid_upload_and_commits_nothing(store, made, fake, fake_hub):
    """A big Parquet file (about 8 MB of random text) read slowly by the fake storage (64 KiB per 40 ms) shows bytes
    going out while it streams; a cancel then stops the upload at the client's next read, before the PUT ends and
    before any commit: the job ends cancelled, the repository holds nothing, and the next push completes."""
    leaf = next(n.id for n in store.tree(made).leaves() if n.parent_id)
    rows = [{"data": {"question": base64.b64encode(os.urandom(12_000)).decode(), "answer": f"answer {i}"},
             "drawn": [], "norm_hash": f"big-{i}"} for i in range(500)]
    store.add_samples(made, leaf, rows, cap=None, call_id=None)
    fake_hub.upload_delay = 0.04
    job_id = jobs.start_job(store.path, made, "push", {"repo_id": "me/math"}, fake.endpoint())
    deadline = time.monotonic() + 60
    while True:  # bytes are counted while the Parquet file streams out
        row = jobs.get_job(store, job_id)
        if row["status"] != "running" or (row["done"] or 0) > 0 or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert row["status"] == "running" and 0 < row["done"] < row["total"], row
    jobs.request_cancel(store, job_id)
    jobs.wait(store.path, job_id, timeout=60)
    job = jobs.get_job(store, job_id)
    assert job["status"] == "cancelled", job["message"]
    assert "nothing was committed" in job["message"] and fake_hub.commits == [] and fake_hub.files == {}
    assert fake_hub.uploads == [] and job["done"] < job["total"]  # stopped mid-upload: the PUT never completed
    fake_hub.upload_delay = 0
    assert push_job(store, made, fake)["status"] == "complete"
    assert sorted(fake_hub.files["me/math"]) == sorted(hub.UPLOAD_FILES)


# ----------------------------------------------------------------------------- the Export page (AppTest)

EXPORT = "pages/4_Export.py"


@pytest.fixture
def generated(app_env):
    """A built tree with 2 samples per leaf (18 samples, none reviewed)."""
    pid = app_env.built()
    assert app_env.run_job(pid, "generate", {"per_leaf": 2})["status"] == "complete"
    return pid


def start_push(app_env, pid, repo="me/math"):
    at = app_env.app(EXPORT, pid)
    at.text_input(key="export_hub_repo").input(repo).run()
    at.button(key="export_hub_push").click().run()
    assert not app_errors(at), app_errors(at)
    return at, app_env.last_job(pid)


def test_the_page_pushes_as_a_job_and_shows_the_url_after_a_reload(app_env, generated, monkeypatch):
    pid = generated
    at = app_env.app(EXPORT, pid)
    assert "HF_TOKEN is not set" in app_texts(at) and at.button(key="export_hub_push").proto.disabled
    with FakeHub() as fake_hub:
        monkeypatch.setenv("HF_ENDPOINT", fake_hub.url)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        at = app_env.app(EXPORT, pid)
        at.text_input(key="export_hub_repo").input("me/math").run()
        at.toggle(key="export_hub_card").set_value(True).run()
        card = next(c.value for c in at.code if c.value.startswith("---\n"))
        assert "| `question` | prompt | the problem |" in card and "## Review status" in card
        at, job = start_push(app_env, pid)
        assert job["kind"] == "push" and job["status"] == "complete", job["message"]
        assert job["params"] == {"repo_id": "me/math", "private": True, "statuses": ["accepted", "generated"],
                                 "license": "other"}
        uploaded = fake_hub.files["me/math"]
        assert sorted(uploaded) == sorted(hub.UPLOAD_FILES) and fake_hub.created[0]["visibility"] == "private"
        assert len(uploaded["data/train.jsonl"].decode().splitlines()) == 18
        url = f"{fake_hub.url}/datasets/me/math"
        for page in (at.run(), app_env.app(EXPORT, pid)):  # this session, and a new one (a reload)
            [success] = [s.value for s in page.success if "Pushed" in s.value]
            assert "Pushed 18 samples" in success and f"]({url})" in success and "(private)" in success
            assert f"push job #{job['id']} took" in success and not app_errors(page)
            assert TOKEN not in app_texts(page)
        token_nowhere(app_env.db)


def test_the_page_shows_a_refused_push_with_its_reason_and_no_token(app_env, generated, monkeypatch):
    pid = generated
    with FakeHub() as fake_hub:
        monkeypatch.setenv("HF_ENDPOINT", fake_hub.url)
        monkeypatch.setenv("HF_TOKEN", "hf_WrongToken0000000000000")
        at, job = start_push(app_env, pid)
        assert job["status"] == "failed" and "refused HF_TOKEN (401)" in job["message"]
        at.run()
        [error] = [e.value for e in at.error]
        assert f"Push job #{job['id']} to me/math failed: the Hub at" in error and "refused HF\\_TOKEN (401)" in error
        assert "hf_WrongToken" not in app_texts(at) and fake_hub.files == {}
        again = app_env.app(EXPORT, pid)  # a reload starts from the last push's options: one click to push again
        assert again.text_input(key="export_hub_repo").value == "me/math"
        assert not again.toggle(key="export_hub_public").value
        assert not again.button(key="export_hub_push").proto.disabled
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        fake_hub.refuse["commit"] = 500
        at, job = start_push(app_env, pid)
        assert job["status"] == "failed"
        error = app_env.app(EXPORT, pid).error[0].value
        assert "answered 500" in error and "the fake Hub refuses commit" in error and TOKEN not in error
        with app_env.store() as store:
            assert jobs.get_job(store, job["id"])["status"] == "failed"
    token_nowhere(app_env.db)


def test_the_page_shows_bytes_going_out_and_refuses_a_bad_id_before_any_job(app_env, generated, monkeypatch):
    pid = generated
    with FakeHub() as fake_hub:
        monkeypatch.setenv("HF_ENDPOINT", fake_hub.url)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        at = app_env.app(EXPORT, pid)
        at.text_input(key="export_hub_repo").input("me/../x").run()
        at.button(key="export_hub_push").click().run()
        assert any("is not a Hub repository id" in e for e in app_errors(at))
        with app_env.store() as store:
            assert jobs.recent_jobs(store, pid) and all(j["kind"] != "push" for j in jobs.recent_jobs(store, pid))
        with app_env.store() as store:  # a big file, read slowly by the fake storage: the page shows the bytes
            leaf = next(n.id for n in store.tree(pid).leaves() if n.parent_id)
            store.add_samples(pid, leaf, [{"data": {"question": base64.b64encode(os.urandom(12_000)).decode(),
                                                    "answer": f"a{i}"}, "drawn": [], "norm_hash": f"big-{i}"}
                                          for i in range(300)], cap=None, call_id=None)
        fake_hub.upload_delay = 0.04
        job_id = jobs.start_job(app_env.db, pid, "push", {"repo_id": "me/math"}, app_env.fake.endpoint())
        with app_env.store() as store:
            deadline = time.monotonic() + 30
            while not jobs.get_job(store, job_id)["done"] and time.monotonic() < deadline:
                time.sleep(0.05)
        at = app_env.app(EXPORT, pid)
        [bar] = at.get("progress")
        assert re.search(rf"Pushing to me/math \(job #{job_id}\): [\d.,]+ [KM]?B of [\d.,]+ MB sent", bar.proto.text)
        assert at.button(key="export_hub_push").proto.disabled  # one job per project
        at.button(key=f"export_hub_cancel_{job_id}").click().run()
        job = app_env.wait(job_id)
        assert job["status"] == "cancelled" and fake_hub.files == {}
        warning = app_env.app(EXPORT, pid).warning[0].value
        assert f"Push job #{job_id} to me/math cancelled" in warning and "nothing was committed" in warning


def test_a_multipart_lfs_upload_lands_byte_for_byte(store, made, fake_hub, tmp_path):
    """The Hub may ask for a big object in parts: a PUT per part URL, then the completion call with their ETags."""
    fake_hub.multipart_chunk = 1000
    hub.dry_run(store, made, hub.PushOptions("me/math"), tmp_path / "dry")
    result = hub.push(store, made, hub.PushOptions("me/math"))
    assert result.outcome.value == "complete", result.error
    assert fake_hub.files["me/math"] == read_set(tmp_path / "dry") and fake_hub.unknown == []
    parquet = (tmp_path / "dry/data/train.parquet").read_bytes()
    oid = hashlib.sha256(parquet).hexdigest()
    assert len(fake_hub.parts[oid]) == -(-len(parquet) // 1000) > 1 and fake_hub.verified == [oid]


KILLED_PUSH = """
import sys
from treesynth_core import jobs
from treesynth_core.config import Endpoint
from treesynth_core.store import Store
with Store(sys.argv[1]) as store:
    job_id = jobs.create_job(store, int(sys.argv[2]), "push", {"repo_id": "me/math"})
print(job_id, flush=True)
jobs.run_job(sys.argv[1], job_id, Endpoint(base_url="http://127.0.0.1:9/v1", api_key="", model="m"))
"""


def test_a_push_killed_mid_upload_is_interrupted_and_the_next_push_is_whole(store, made, fake, fake_hub, tmp_path):
    """kill -9 of the process running a push, while the Parquet file streams out: the job reads as interrupted,
    the repository got nothing (one commit, never sent), and pushing again uploads exactly the dry run's set."""
    leaf = next(n.id for n in store.tree(made).leaves() if n.parent_id)
    store.add_samples(made, leaf, [{"data": {"question": base64.b64encode(os.urandom(12_000)).decode(),
                                             "answer": f"a{i}"}, "drawn": [], "norm_hash": f"big-{i}"}
                                   for i in range(300)], cap=None, call_id=None)
    fake_hub.upload_delay = 0.05
    proc = subprocess.Popen([sys.executable, "-c", KILLED_PUSH, store.path, str(made)], stdout=subprocess.PIPE,
                            text=True, cwd=Path(__file__).resolve().parent.parent)
    try:
        job_id = int(proc.stdout.readline())
        deadline = time.monotonic() + 60
        while fake_hub.put_bytes == 0 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        assert fake_hub.put_bytes > 0 and proc.poll() is None
    finally:
        proc.kill()
        proc.wait()
    assert jobs.get_job(store, job_id)["status"] == "interrupted"
    assert fake_hub.commits == [] and fake_hub.files == {} and fake_hub.uploads == []
    fake_hub.upload_delay = 0
    hub.dry_run(store, made, hub.PushOptions("me/math"), tmp_path / "dry")
    assert push_job(store, made, fake)["status"] == "complete"
    assert fake_hub.files["me/math"] == read_set(tmp_path / "dry")


def test_a_stop_while_the_commit_is_unanswered_says_it_may_still_land(store, made, fake_hub, monkeypatch):
    """The client has no timeout on the commit: a stop waits STOP_GRACE for it, then gives up and says the truth."""
    monkeypatch.setattr(hub, "STOP_GRACE", 0.3)
    fake_hub.hold["commit"] = 2.0
    result = hub.push(store, made, hub.PushOptions("me/math"), should_stop=lambda: "commit" in fake_hub.holding)
    assert result.outcome.value == "cancelled" and "the commit may still land" in result.error
    assert fake_hub.commits == []  # not yet: the fake still holds it
    deadline = time.monotonic() + 10
    while not fake_hub.commits and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fake_hub.commits  # and then it landed, as the message warned
