"""The fake OpenAI-compatible server in a process of its own, for benchmarks of the client's CPU.

In-process, the fake's threads share the client's interpreter lock, so its CPU would count as ours. Here it
also behaves as production servers do, which the test fake does not need to: HTTP/1.1 keep-alive with Nagle
off (a connection per request, as the test fake's HTTP/1.0 makes, costs the client a TCP connect per call) and
a listen backlog of 1,024 (the stdlib default of 5 drops the SYNs of a burst of connects, which then wait a
one-second retransmit). ``latency`` is added to every reply; ``values``/``extra`` shape the splits; a share
``hang_rate`` of the calls, chosen by a hash of the call's step and subspace (the same calls in every run and
mode), takes ``hang`` seconds more.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import subprocess
import sys

from treesynth_core.fakellm import step_of

SERVE = """
import sys
from treesynth_core.fakellm import FakeLLM
port, latency, values, extra = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
hang_rate, hang = float(sys.argv[5]), float(sys.argv[6])
fake = FakeLLM(latency=latency, port=port, values_per_split=values, extra_values=extra)
production_like(fake)
if hang_rate:
    fake.delay_fn = lambda body: hang if hangs(body, hang_rate) else 0.0
print("ready", flush=True)
fake._server.serve_forever()
"""


def subspace(body: dict) -> str:
    return next(m["content"] for m in body["messages"] if m["role"] == "user").split("\n\n")[0]


def hangs(body: dict, rate: float) -> bool:
    """Whether this call is one of the ``rate`` share that hang: a hash of its step and subspace decides."""
    digest = hashlib.sha256(f"{step_of(body)}|{subspace(body)}".encode()).digest()
    return int.from_bytes(digest[:4], "big") < rate * 2**32


def production_like(fake) -> None:
    """Keep-alive without Nagle and a deep listen backlog (see the module's docstring)."""
    fake._server.socket.listen(1024)
    fake._server.RequestHandlerClass.protocol_version = "HTTP/1.1"
    fake._server.RequestHandlerClass.disable_nagle_algorithm = True


@contextlib.contextmanager
def fake_server(latency: float = 0.0, values: int = 3, extra: int = 0, hang_rate: float = 0.0, hang: float = 0.0):
    """Yields the base URL of a fake server running in its own process."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = "from bench.fake_process import hangs, production_like\n" + SERVE
    proc = subprocess.Popen([sys.executable, "-c", code, str(port), str(latency), str(values), str(extra),
                             str(hang_rate), str(hang)], stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == b"ready"
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.kill()
        proc.wait()
