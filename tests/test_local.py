"""Assembling and finding the bundled model, with tiny fake parts (no llama-cpp needed)."""

import hashlib
import os
import sys
from pathlib import Path

import pytest

from treesynth_core import local
from treesynth_core.config import endpoint_from_env
from treesynth_core.errors import LocalModelError


@pytest.fixture
def fake_parts(tmp_path):
    """Three small part files and the size and sha256 of their concatenation."""
    folder = tmp_path / "parts"
    folder.mkdir()
    chunks = [b"GGUF" + b"a" * 1000, b"b" * 3, b"c" * 5000]
    parts = []
    for index, chunk in enumerate(chunks, start=1):
        part = folder / f"part{index:02d}.bin"
        part.write_bytes(chunk)
        parts.append(part)
    whole = b"".join(chunks)
    return parts, len(whole), hashlib.sha256(whole).hexdigest()


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir())


def test_assemble_joins_parts_in_order(fake_parts, tmp_path):
    parts, size, sha = fake_parts
    dest = tmp_path / "out" / "model.gguf"
    assert local.assemble_model(parts, dest, expected_size=size, expected_sha256=sha) == dest
    assert dest.read_bytes() == b"".join(p.read_bytes() for p in parts)
    assert leftovers(dest.parent) == ["model.gguf"]


def test_wrong_hash_is_refused_and_nothing_is_left(fake_parts, tmp_path):
    parts, size, _ = fake_parts
    dest = tmp_path / "model.gguf"
    with pytest.raises(LocalModelError) as info:
        local.assemble_model(parts, dest, expected_size=size, expected_sha256="0" * 64)
    assert "sha256" in str(info.value) and "0" * 64 in str(info.value)
    assert "pip install" in info.value.hint
    assert not dest.exists()
    assert leftovers(tmp_path) == ["parts"]


def test_wrong_size_is_refused(fake_parts, tmp_path):
    parts, size, sha = fake_parts
    dest = tmp_path / "model.gguf"
    with pytest.raises(LocalModelError, match=f"expected {size + 1:,} bytes, got {size:,}"):
        local.assemble_model(parts, dest, expected_size=size + 1, expected_sha256=sha)
    assert leftovers(tmp_path) == ["parts"]


def test_parts_out_of_order_are_refused(fake_parts, tmp_path):
    parts, size, sha = fake_parts
    with pytest.raises(LocalModelError, match="sha256"):
        local.assemble_model(parts[::-1], tmp_path / "m.gguf", expected_size=size, expected_sha256=sha)


def test_missing_part_is_refused(fake_parts, tmp_path):
    parts, size, sha = fake_parts
    parts[1].unlink()
    with pytest.raises(LocalModelError, match="part02.bin") as info:
        local.assemble_model(parts, tmp_path / "m.gguf", expected_size=size, expected_sha256=sha)
    assert "requirements-local.txt" in info.value.hint
    assert not (tmp_path / "m.gguf").exists()


def test_missing_package_says_what_to_install(monkeypatch):
    monkeypatch.setattr(local, "PART_PACKAGES", ("treesynth-no-such-package-part1",))
    with pytest.raises(LocalModelError, match="treesynth-no-such-package-part1") as info:
        local.find_parts(local.PART_PACKAGES)
    assert info.value.hint == local.INSTALL_HINT
    assert "pip install -r requirements-local.txt" in info.value.hint


def cached(folder, parts, size, sha):
    return local.default_model_path(folder, parts=parts, expected_size=size, expected_sha256=sha)


def test_cached_model_is_reused_without_reassembly(fake_parts, tmp_path, monkeypatch):
    parts, size, sha = fake_parts
    cache = tmp_path / "cache"
    model = cached(cache, parts, size, sha)
    assert model == cache / local.MODEL_FILENAME and model.stat().st_size == size
    mtime = model.stat().st_mtime_ns

    def fail(*args, **kwargs):
        raise AssertionError("should not run again")

    monkeypatch.setattr(local, "assemble_model", fail)
    monkeypatch.setattr(local, "_sha256", fail)
    assert cached(cache, parts, size, sha) == model
    assert model.stat().st_mtime_ns == mtime


def test_corrupted_cache_is_rebuilt_from_parts(fake_parts, tmp_path):
    parts, size, sha = fake_parts
    cache = tmp_path / "cache"
    model = cached(cache, parts, size, sha)
    with open(model, "r+b") as f:  # same size, different bytes, new mtime
        f.write(b"XXXX")
    os.utime(model, ns=(model.stat().st_atime_ns, model.stat().st_mtime_ns + 10**9))
    messages = []
    model = local.default_model_path(cache, parts=parts, expected_size=size, expected_sha256=sha,
                                     report=messages.append)  # fmt: skip
    assert hashlib.sha256(model.read_bytes()).hexdigest() == sha
    assert any("rebuilding" in m for m in messages)


def test_corrupted_cache_with_bad_parts_is_refused(fake_parts, tmp_path):
    parts, size, sha = fake_parts
    cache = tmp_path / "cache"
    model = cached(cache, parts, size, sha)
    model.write_bytes(b"Z" * size)
    parts[0].write_bytes(b"Z" * parts[0].stat().st_size)
    with pytest.raises(LocalModelError, match="sha256"):
        cached(cache, parts, size, sha)
    assert not model.exists()


def test_verified_cache_without_stamp_is_hashed_once(fake_parts, tmp_path, monkeypatch):
    parts, size, sha = fake_parts
    cache = tmp_path / "cache"
    model = cached(cache, parts, size, sha)
    local._stamp_path(model).unlink()
    monkeypatch.setattr(local, "assemble_model", lambda *a, **k: pytest.fail("re-assembled a good file"))
    assert cached(cache, parts, size, sha) == model
    assert local._stamp_path(model).exists()


def test_resolve_model_missing_user_path(tmp_path, monkeypatch):
    monkeypatch.delenv("TREESYNTH_GGUF", raising=False)
    with pytest.raises(LocalModelError, match="not found") as info:
        local.resolve_model(tmp_path / "nope.gguf")
    assert "TREESYNTH_GGUF" in info.value.hint
    monkeypatch.setenv("TREESYNTH_GGUF", str(tmp_path / "also-missing.gguf"))
    with pytest.raises(LocalModelError, match="also-missing.gguf"):
        local.resolve_model()


def test_resolve_model_user_file_used_as_is(tmp_path, monkeypatch):
    monkeypatch.delenv("TREESYNTH_GGUF", raising=False)
    good = tmp_path / "mine.gguf"
    good.write_bytes(b"GGUF" + b"\0" * 16)
    assert local.resolve_model(str(good)) == good
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    with pytest.raises(LocalModelError, match="Not a GGUF"):
        local.resolve_model(bad)


def test_cache_dir_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("TREESYNTH_CACHE", str(tmp_path / "c"))
    assert local.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("TREESYNTH_CACHE")
    assert local.cache_dir().parts[-2:] == (".cache", "treesynth")


def test_server_env_and_endpoint_without_starting():
    server = local.LocalServer("unused.gguf", port=12345)
    assert server.base_url == "http://127.0.0.1:12345/v1"
    assert server.env() == {
        "OPENAI_BASE_URL": "http://127.0.0.1:12345/v1",
        "OPENAI_API_KEY": "local-no-key",
        "TREESYNTH_MODEL": local.LOCAL_MODEL_NAME,
        "TREESYNTH_PROVIDER": "local",
        "TREESYNTH_TIMEOUT": "600.0",
        "TREESYNTH_MAX_RETRIES": "1",
    }
    endpoint = server.endpoint()
    assert endpoint.is_local and endpoint.model == local.LOCAL_MODEL_NAME
    assert endpoint == endpoint_from_env(server.env())
    assert "--model_alias" in server.command("m.gguf")


def test_server_that_exits_fails_fast_with_its_log(tmp_path, monkeypatch):
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    server = local.LocalServer(model, log_path=tmp_path / "server.log", startup_timeout=30)
    crash = [sys.executable, "-c", "print('no such model file, giving up'); raise SystemExit(3)"]
    monkeypatch.setattr(server, "command", lambda _model: crash)
    with pytest.raises(LocalModelError, match="exited with code 3") as info:
        with server:
            pass
    assert "giving up" in str(info.value)


def test_launch_command_port_from_env_then_args():
    from treesynth_core.launch import APP, streamlit_command

    command, port = streamlit_command([], {"TREESYNTH_PORT": "8600"})
    assert port == "8600" and command[1:5] == ["-m", "streamlit", "run", str(APP)]
    assert command[command.index("--server.address") + 1] == "127.0.0.1"
    command, port = streamlit_command(["--server.port", "8700"], {"TREESYNTH_PORT": "8600"})
    assert port == "8700" and command[-2:] == ["--server.port", "8700"]  # last one wins in click


# A stand-in for `python -m llama_cpp.server`: answers GET /v1/models, then dies by a signal on the first
# completion, as a natively built llama.cpp does on a CPU with AMX.
CRASHING_SERVER = r"""
import os, signal, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

class H(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass
    def do_GET(self):
        body = b'{"object": "list", "data": [{"id": "m"}]}'
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def do_POST(self):
        print("ggml: general protection fault (simulated)", flush=True)
        os.kill(os.getpid(), signal.SIGSEGV)

print("server listening", flush=True)
HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def _crashing_server(tmp_path, monkeypatch, **kwargs):
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    script = tmp_path / "crash_server.py"
    script.write_text(CRASHING_SERVER)
    heard: list[str] = []
    server = local.LocalServer(model, log_path=tmp_path / "server.log", startup_timeout=30, report=heard.append,
                               **kwargs)
    monkeypatch.setattr(server, "command", lambda _model: [sys.executable, str(script), str(server.port)])
    server.watch_interval = 0.05
    return server, heard


def _complete(server) -> None:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"{server.base_url}/chat/completions", data=b"{}", method="POST")
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        urllib.request.urlopen(request, timeout=5)


def _wait_for(condition, seconds=20.0, message=None) -> None:
    import time

    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out {message}"
        time.sleep(0.05)


def test_server_that_dies_on_a_completion_is_restarted_once_then_reported(tmp_path, monkeypatch):
    server, heard = _crashing_server(tmp_path, monkeypatch)
    with server:
        first_pid = server.process.pid
        _complete(server)
        _wait_for(lambda: any("answering again" in h for h in heard), message=heard)
        assert server.process.pid != first_pid and server.base_url.endswith(f":{server.port}/v1")
        server.check()  # restarted and answering: not an error, but the death is on record
        assert "killed by signal SIGSEGV" in server.deaths[0]
        assert "general protection fault (simulated)" in server.deaths[0]  # the log tail
        assert any("Restarting it once" in h for h in heard)

        _complete(server)  # the second death is final
        _wait_for(lambda: len(server.deaths) == 2)
        _wait_for(lambda: any("Not restarting" in h for h in heard), message=heard)
        with pytest.raises(LocalModelError, match="killed by signal SIGSEGV") as info:
            server.check()
        assert "died 2 times" in str(info.value)
        assert info.value.hint  # what to do: rebuild portably / check the install


def test_a_stopped_server_is_not_a_death(tmp_path, monkeypatch):
    server, heard = _crashing_server(tmp_path, monkeypatch)
    with server:
        pass
    assert server.deaths == [] and heard == []
    server.check()


def test_exit_descriptions_and_the_amx_hint(tmp_path, monkeypatch):
    assert local.describe_exit(3) == "exited with code 3"
    assert local.describe_exit(-11) == "was killed by signal SIGSEGV (11)"
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("flags\t: fpu sse avx2 amx_bf16 amx_tile amx_int8\n")
    assert local.cpu_has_amx(str(cpuinfo))
    cpuinfo.write_text("flags\t: fpu sse avx2\n")
    assert not local.cpu_has_amx(str(cpuinfo))
    monkeypatch.setattr(local, "cpu_has_amx", lambda: True)
    assert "GGML_NATIVE=OFF" in local.crash_hint() and "make deps-local" in local.crash_hint()


def test_makefile_builds_llama_cpp_portably():
    """The offline model's runtime is compiled without -march=native and without AMX, from a wheel folder
    named by version and flags (so pip's cache cannot hand back a native build)."""
    makefile = (Path(__file__).resolve().parent.parent / "Makefile").read_text()
    flags = next(line for line in makefile.splitlines() if line.startswith("LLAMA_CMAKE_ARGS"))
    assert "-DGGML_NATIVE=OFF" in flags and "-DGGML_AMX_TILE=OFF" in flags and "-DGGML_AMX_INT8=OFF" in flags
    assert "--no-cache-dir" in makefile and "--only-binary llama-cpp-python" in makefile
    requirements = (Path(__file__).resolve().parent.parent / "requirements-local.txt").read_text()
    assert "llama-cpp-python[server]==" in requirements  # pinned: the wheel folder is named by this version


def test_the_installed_llama_cpp_is_a_portable_build():
    """What `make deps-local` installed has no AMX and no AVX-512 kernels: those crash (AMX) or do not run
    (AVX-512 on older CPUs) on other x86-64 machines. Skipped where the offline runtime is not installed."""
    llama_cpp = pytest.importorskip("llama_cpp")
    info = llama_cpp.llama_print_system_info().decode()
    assert "AMX" not in info and "AVX512" not in info, info
