"""The fake OpenAI-compatible server in a process of its own, for benchmarks of the client's CPU.

In-process, the fake's threads share the client's interpreter lock, so its CPU would count as ours. Here it
also behaves as production servers do, which the test fake does not need to: HTTP/1.1 keep-alive with Nagle
off (a connection per request, as the test fake's HTTP/1.0 makes, costs the client a TCP connect per call) and
a listen backlog of 1,024 (the stdlib default of 5 drops the SYNs of a burst of connects, which then wait a
one-second retransmit). ``latency`` is added to every reply; ``values``/``extra`` shape the splits; a share
``hang_rate`` of the requests takes ``hang`` seconds more, as a server that stalls does: each arrival draws, by
a hash of the call's step, subspace, how many times that request arrived before and ``seed`` (so the same
requests hang in every run and mode with one seed, and a request sent again, a hedge or a retry, draws anew).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

from treesynth_core.fakellm import step_of

SERVE = """
import sys
from treesynth_core.fakellm import FakeLLM
port, latency, values, extra = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
hang_rate, hang, seed = float(sys.argv[5]), float(sys.argv[6]), int(sys.argv[7])
fake = FakeLLM(latency=latency, port=port, values_per_split=values, extra_values=extra)
production_like(fake)
if hang_rate:
    draw = HangDraw(hang_rate, seed)
    fake.delay_fn = lambda body: hang if draw(body) else 0.0
print("ready", flush=True)
fake._server.serve_forever()
"""


def subspace(body: dict) -> str:
    return next(m["content"] for m in body["messages"] if m["role"] == "user").split("\n\n")[0]


class HangDraw:
    """Whether an arriving request is one of the ``rate`` share that hang (see the module's docstring)."""

    def __init__(self, rate: float, seed: int = 0):
        self.rate, self.seed = rate, seed
        self.arrivals: dict[str, int] = {}
        self.hung = 0
        self._lock = threading.Lock()

    def __call__(self, body: dict) -> bool:
        key = f"{step_of(body)}|{subspace(body)}"
        with self._lock:
            n = self.arrivals[key] = self.arrivals.get(key, 0) + 1
        digest = hashlib.sha256(f"{self.seed}|{key}|{n}".encode()).digest()
        hung = int.from_bytes(digest[:4], "big") < self.rate * 2**32
        self.hung += hung
        return hung


def production_like(fake) -> None:
    """Keep-alive without Nagle and a deep listen backlog (see the module's docstring)."""
    fake._server.socket.listen(1024)
    fake._server.RequestHandlerClass.protocol_version = "HTTP/1.1"
    fake._server.RequestHandlerClass.disable_nagle_algorithm = True


@contextlib.contextmanager
def fake_server(latency: float = 0.0, values: int = 3, extra: int = 0, hang_rate: float = 0.0, hang: float = 0.0,
                seed: int = 0):
    """Yields the base URL of a fake server running in its own process."""
    with fake_server_process(latency, values, extra, hang_rate, hang, seed) as (url, _):
        yield url


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def fake_server_process(latency: float = 0.0, values: int = 3, extra: int = 0, hang_rate: float = 0.0,
                        hang: float = 0.0, seed: int = 0):
    """Yields (base URL, pid) of a fake server running in its own process (``cpu_seconds(pid)``: its CPU)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = "from bench.fake_process import HangDraw, production_like\n" + SERVE
    proc = subprocess.Popen([sys.executable, "-c", code, str(port), str(latency), str(values), str(extra),
                             str(hang_rate), str(hang), str(seed)], stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == b"ready"
        yield f"http://127.0.0.1:{port}/v1", proc.pid
    finally:
        proc.kill()
        proc.wait()
