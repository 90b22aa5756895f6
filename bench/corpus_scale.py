"""Corpus preparation at scale (not a test): synthetic JSONL corpora built from the built-in
text (no download), prepared with `scalesweep prepare`'s code path in a fresh process each.

Prints per size: prepare wall time, MB/s and MB/s per worker, peak RSS (the preparing process
and its workers, each), and trial start-up on the prepared corpus (a fresh process: load_corpus +
make_splits + one batch). Baseline, in the same run: the same BPE model's bare `encode_batch`
over 8 MB of the corpus, per core. Then, at the smallest size, the same preparation by the Ray
Data engine (`--engine ray` on a private local Ray, with and without its start-up, which the
manifest times apart; its workers are Ray's processes, so only the driver's RSS is known)
against the process pool. Ratios last. Usage:
  python bench/corpus_scale.py --sizes-gb 0.1 0.3 [--tokenizer bpe:4096] [--workers 2] [--dir /tmp/cs] [--no-ray]
Throughput on a shared machine is measured under whatever else runs there.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

PREPARE = """
import json, resource, sys, time
from trainers.data import CorpusSpec
from trainers.prepare import prepare_corpus
source, tokenizer, out, workers, engine = sys.argv[1:6]
spec = CorpusSpec(source=source, tokenizer=tokenizer)
t = time.perf_counter()
if engine == "ray":
    from orchestrator.corpus_ray import prepare_on_ray
    m = prepare_on_ray(spec, out, workers=int(workers))
else:
    m = prepare_corpus(spec, out, workers=int(workers))
print(json.dumps({"s": time.perf_counter() - t, "tokens": m["tokens"], "tokenizer_s": m["tokenizer_s"],
                  "engine_start_s": m["engine_start_s"],
                  "rss_self_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "rss_worker_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""

START = """
import json, time
t = time.perf_counter()
from trainers.data import CorpusSpec, SequenceSampler, load_corpus, make_splits
import sys
corpus = load_corpus(CorpusSpec(source=sys.argv[1], tokenizer=sys.argv[2]))
splits = make_splits(corpus, corpus.tokens.size // 2, val_tokens=1 << 20, n_ctx=1024)
SequenceSampler(splits.train, 1024).next_global_batch(8)
print(json.dumps({"s": time.perf_counter() - t}))
"""

BASELINE = """
import json, os, sys, time
from tokenizers import Tokenizer
from trainers.documents import iter_documents
tok = Tokenizer.from_file(sys.argv[1])
docs, size = [], 0
for _, doc in iter_documents(sys.argv[2]):
    docs.append(doc.decode()); size += len(doc)
    if size > 8 << 20: break
t = time.perf_counter()
tok.encode_batch(docs)
mb_s = size / 1e6 / (time.perf_counter() - t)
t = time.perf_counter()
tok.encode_batch_fast(docs)
print(json.dumps({"mb_s": mb_s, "fast_mb_s": size / 1e6 / (time.perf_counter() - t), "cores": os.cpu_count()}))
"""


def python(code: str, *args) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code, *map(str, args)], env=env, capture_output=True,
                          text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def synthetic(path: Path, n_bytes: int) -> None:
    """JSONL documents cut from the stdlib sources, repeated to size, written in 8 MB blocks."""
    from trainers.documents import iter_documents

    lines = [json.dumps({"text": doc.decode()[:4000]}) + "\n" for _, doc in iter_documents("builtin")]
    block = "".join(lines)
    with path.open("w") as f:
        written = 0
        while written < n_bytes:
            f.write(block[: max(0, block.rfind("\n", 0, n_bytes - written) + 1)] if n_bytes - written < len(block) else block)
            written += len(block)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes-gb", type=float, nargs="+", default=[0.1, 0.3, 1.0])
    parser.add_argument("--tokenizer", default="bpe:4096")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--dir", default="/tmp/corpus_scale")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray Data engine comparison")
    args = parser.parse_args()
    root = Path(args.dir)
    root.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("SCALESWEEP_CACHE", str(root / "cache"))
    rows = []
    for gb in args.sizes_gb:
        source = root / f"c{gb}.jsonl"
        if not source.exists():
            synthetic(source, int(gb * 1e9))
        mb = source.stat().st_size / 1e6
        out = root / f"prepared-{gb}-{args.tokenizer.replace(':', '-')}"
        if out.exists():
            shutil.rmtree(out)  # a finished preparation would be returned as is, unmeasured
        prep = python(PREPARE, source, args.tokenizer, out, args.workers, "pool")
        start = python(START, out, args.tokenizer)
        base = python(BASELINE, out / "tokenizer.json", source) if args.tokenizer.startswith("bpe") else None
        row = {"gb": gb, "mb": round(mb), "prepare_s": round(prep["s"], 1), "mb_s": round(mb / prep["s"], 2),
               "mb_s_per_worker": round(mb / prep["s"] / args.workers, 2),
               "tokenizer_s": round(prep["tokenizer_s"], 1),
               "encode_mb_s_per_worker": round(mb / (prep["s"] - prep["tokenizer_s"]) / args.workers, 2),
               "rss_driver_mb": round(prep["rss_self_mb"]), "rss_worker_mb": round(prep["rss_worker_mb"]),
               "trial_start_s": round(start["s"], 2), "tokens": prep["tokens"],
               "baseline_mb_s_per_core": round(base["mb_s"] / base["cores"], 2) if base else None,
               "baseline_fast_mb_s_per_core": round(base["fast_mb_s"] / base["cores"], 2) if base else None}
        rows.append(row)
        print(json.dumps(row), flush=True)
    engines = None
    if not args.no_ray:
        gb = min(args.sizes_gb)
        out = root / f"prepared-{gb}-{args.tokenizer.replace(':', '-')}-ray"
        if out.exists():
            shutil.rmtree(out)
        on_ray = python(PREPARE, root / f"c{gb}.jsonl", args.tokenizer, out, args.workers, "ray")
        pooled = next(row for row in rows if row["gb"] == gb)
        engines = (gb, pooled["prepare_s"], round(on_ray["s"], 1), round(on_ray["engine_start_s"], 1))
        print(json.dumps({"gb": gb, "engine": "ray", "prepare_s": engines[2], "ray_start_s": engines[3],
                          "rss_driver_mb": round(on_ray["rss_self_mb"])}))
    print("ratios (goal: RSS <= 2 GB flat; throughput >= 0.8x baseline per core; start-up <= 1 s):")
    for row in rows:
        base = row["baseline_mb_s_per_core"]
        ratio = f"{row['mb_s_per_worker'] / base:.2f}x" if base else "n/a"
        encode = (f"{row['encode_mb_s_per_worker'] / base:.2f}x of encode_batch, "
                  f"{row['encode_mb_s_per_worker'] / row['baseline_fast_mb_s_per_core']:.2f}x of encode_batch_fast"
                  if base else "n/a")
        print(f"  {row['gb']} GB: peak RSS {max(row['rss_driver_mb'], row['rss_worker_mb'])} MB, "
              f"throughput per core {ratio} of bare encode_batch overall ({row['tokenizer_s']} s of it "
              f"BPE pass 1 + training), {encode} in the encode phase, trial start-up {row['trial_start_s']} s")
    if engines:
        gb, pool_s, ray_s, start_s = engines
        print(f"  engines at {gb} GB, {args.workers} workers: process pool {pool_s} s, Ray Data {ray_s} s, "
              f"{start_s} s of it Ray's start-up (Ray Data / pool: {ray_s / pool_s:.2f}x the time, "
              f"{(ray_s - start_s) / pool_s:.2f}x without the start-up)")


if __name__ == "__main__":
    main()
