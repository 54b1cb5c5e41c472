"""Run the app: ``python -m treesynth_core.launch [extra streamlit args]``.

With an endpoint configured (``OPENAI_BASE_URL`` or ``OPENAI_API_KEY`` set) this is plain
``streamlit run app.py``. Otherwise it starts the bundled local model (see :mod:`treesynth_core.local`),
points the app at it and stops it again when Streamlit exits, on Ctrl-C or on SIGTERM.
The app listens on 127.0.0.1; ``TREESYNTH_PORT`` or ``--server.port N`` picks the port (default 8501).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from .config import endpoint_configured
from .errors import TreeSynthError
from .local import LocalServer, resolve_model

APP = Path(__file__).resolve().parent.parent / "app.py"


def streamlit_command(args: list[str], env: dict[str, str]) -> tuple[list[str], str]:
    """The ``streamlit run`` command line and the app's port; ``args`` come last, so they win."""
    port = env.get("TREESYNTH_PORT") or env.get("STREAMLIT_SERVER_PORT") or "8501"
    for i, arg in enumerate(args):
        if arg == "--server.port" and i + 1 < len(args):
            port = args[i + 1]
        elif arg.startswith("--server.port="):
            port = arg.split("=", 1)[1]
    command = [sys.executable, "-m", "streamlit", "run", str(APP), "--server.address", "127.0.0.1",
               "--server.headless", "true", "--server.port", port, *args]  # fmt: skip
    return command, port


def run_streamlit(command: list[str], env: dict[str, str]) -> int:
    """Run Streamlit until it exits; if we are interrupted or terminated, stop it too."""
    process = subprocess.Popen(command, env=env)
    try:
        return process.wait()
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    # SIGTERM unwinds like Ctrl-C, so the `with` blocks and `finally` clauses stop both children.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    env = dict(os.environ)
    command, port = streamlit_command(args, env)
    try:
        if endpoint_configured(env):
            print(f"TreeSynth Studio: using the configured endpoint; app at http://127.0.0.1:{port}", flush=True)
            return run_streamlit(command, env)
        print("TreeSynth Studio: no OPENAI_BASE_URL or OPENAI_API_KEY set, using the bundled local model.")
        model = resolve_model(report=lambda msg: print(msg, flush=True))
        print(f"Starting the local LLM server (llama.cpp) with {model.name} ...", flush=True)
        with LocalServer(model, report=lambda msg: print(msg, file=sys.stderr, flush=True)) as server:
            print(f"Local LLM ready at {server.base_url} (log: {server.log_path})")
            print(f"App at http://127.0.0.1:{port}  (Ctrl-C stops the app and the local model)", flush=True)
            return run_streamlit(command, {**env, **server.env()})
    except TreeSynthError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
