"""A stand-in for ``vllm run-batch`` with its contract: ``-i req.jsonl -o res.jsonl --model M``.

It reads OpenAI Batch request lines, answers each chat completion from the fake model's well-behaved replies
(``treesynth_core.fakellm.FakeModel``) and writes one result line per request into the output file, as vLLM
does: 200s and errors in the same file, a request for another model than ``--model`` answered with a 404 line.
Fault flags script what tests need: ``--reverse``, ``--server-error-every K``, ``--invalid-every K``,
``--duplicate``. ``--first-number`` starts the samples' running number (two runs started at different numbers
never write duplicate samples).

    python tests/fake_run_batch.py -i req.jsonl -o res.jsonl --model fake-model
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from treesynth_core.fakellm import BatchFaults, FakeModel, failed_line, run_batch  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="fake vllm run-batch")
    parser.add_argument("-i", "--input-file", required=True)
    parser.add_argument("-o", "--output-file", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--reverse", action="store_true")
    parser.add_argument("--server-error-every", type=int, default=0)
    parser.add_argument("--invalid-every", type=int, default=0)
    parser.add_argument("--duplicate", action="store_true")
    parser.add_argument("--first-number", type=int, default=None)
    args = parser.parse_args(argv)
    first = args.first_number if args.first_number is not None else time.time_ns() // 1000 % 10**12
    model = FakeModel(first_number=first)
    faults = BatchFaults(reverse=args.reverse, server_error_every=args.server_error_every,
                         invalid_every=args.invalid_every, duplicate=args.duplicate)
    with open(args.input_file, encoding="utf-8") as handle:
        lines = run_batch(handle, model.default_reply, faults, model=args.model)
    tmp = f"{args.output_file}.tmp"
    with open(tmp, "w", encoding="utf-8") as out:
        for line in lines:
            out.write(json.dumps(line) + "\n")
    os.replace(tmp, args.output_file)
    failed = sum(failed_line(line) for line in lines)
    print(f"fake run-batch: {len(lines)} results ({failed} failed) -> {args.output_file}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
