#!/usr/bin/env python3
"""q8bert against sentence-transformers itself, on the real all-MiniLM-L6-v2.

For each layout, sentence-transformers builds and saves the model directory, `trainer quantize`
packs it (default scheme), and the packed model's `encode` (Python binding on libq8bert.so) is
compared with `SentenceTransformer.encode` on the same texts: cosine per text, mean / 1st
percentile / min.

Layouts:
  minilm  the model as published: Transformer (max_seq_length 256) -> Pooling(mean) -> Normalize
  dense   + Dense(384 -> 256, Tanh) before Normalize (LaBSE's layout)
  chain   Pooling(cls, mean, max) -> Dense(1152 -> 256, Tanh) -> Dense(256 -> 128, Identity)
          -> Normalize (several pooling modes and chained Dense modules, format 1.10)
  multi   Pooling with the legacy flags cls + mean_sqrt_len (sentence-transformers' fixed order)

Texts: STS-B dev sentences (short and normal), and long texts of 257-500 tokens made by joining
consecutive SST-2 train sentences (sentence-transformers cuts them at 256 tokens; so must we).

Needs torch and sentence-transformers (a separate venv: they are not test dependencies):
  python3 -m venv ~/.cache/q8bert/st && ~/.cache/q8bert/st/bin/pip install torch sentence-transformers
  cargo build --release -p q8bert-capi && cargo build --release -p trainer
  ~/.cache/q8bert/st/bin/python scripts/check_sentence_transformers.py \\
      --minilm "$(bash scripts/fetch_minilm.sh)" --glue ../shared/data/glue
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sts_sentences(glue, n):
    out = []
    with open(os.path.join(glue, "STS-B", "dev.tsv"), encoding="utf-8") as f:
        next(f)
        for line in f:
            a, b = line.rstrip("\n").split("\t")[:2]
            out += [a, b]
    seen, uniq = set(), []
    for s in out:
        if s not in seen:
            seen.add(s)
            uniq.append(s)
    return uniq[:n]


def long_texts(glue, tokenizer, n):
    """Consecutive SST-2 train sentences joined until the text has 257-500 tokens."""
    with open(os.path.join(glue, "SST-2", "train.tsv"), encoding="utf-8") as f:
        next(f)
        sentences = [line.split("\t")[0].strip() for line in f]
    # Targets spread over 257-500 tokens; a text that overshoots 500 starts again.
    texts, cur = [], []
    for s in sentences:
        target = 257 + (len(texts) * 97) % 244
        cur.append(s)
        count = len(tokenizer(" ".join(cur))["input_ids"])
        if count > 500:
            cur = [s]
        elif count >= target:
            texts.append(" ".join(cur))
            cur = []
            if len(texts) == n:
                break
    return texts


def build(layout, minilm, out_dir, seed):
    import torch
    from sentence_transformers import SentenceTransformer, models

    torch.manual_seed(seed)
    path = os.path.join(out_dir, layout)
    shutil.rmtree(path, ignore_errors=True)
    if layout == "minilm":
        shutil.copytree(minilm, path)
        return path
    base = SentenceTransformer(minilm, device="cpu")
    transformer = base[0]
    h = transformer.get_embedding_dimension() if hasattr(transformer, "get_embedding_dimension") else 384
    if layout == "dense":
        mods = [transformer, base[1], models.Dense(h, 256, activation_function=torch.nn.Tanh()), models.Normalize()]
    elif layout == "chain":
        pooling = models.Pooling(h, pooling_mode=("cls", "mean", "max"))
        mods = [transformer, pooling, models.Dense(3 * h, 256, activation_function=torch.nn.Tanh()),
                models.Dense(256, 128, activation_function=torch.nn.Identity()), models.Normalize()]
    elif layout == "multi":
        pooling = models.Pooling(h, pooling_mode=("cls", "mean_sqrt_len_tokens"))
        mods = [transformer, pooling, models.Normalize()]
    else:
        raise SystemExit(f"unknown layout {layout}")
    SentenceTransformer(modules=mods, device="cpu").save(path)
    if layout == "multi":
        # The flags older sentence-transformers releases write, instead of pooling_mode.
        cfg_path = os.path.join(path, "1_Pooling", "config.json")
        cfg = json.load(open(cfg_path))
        cfg.pop("pooling_mode", None)
        cfg.update({"pooling_mode_cls_token": True, "pooling_mode_mean_sqrt_len_tokens": True, "pooling_mode_mean_tokens": False})
        json.dump(cfg, open(cfg_path, "w"))
    return path


def stats(c):
    c = np.sort(np.asarray(c))
    return {"n": int(c.size), "mean": float(c.mean()), "p1": float(c[max(0, int(np.ceil(0.01 * c.size)) - 1)]), "min": float(c[0])}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minilm", required=True)
    ap.add_argument("--glue", default=os.path.join(ROOT, "..", "shared", "data", "glue"))
    ap.add_argument("--trainer", default=os.path.join(ROOT, "target", "release", "trainer"))
    ap.add_argument("--lib", default=os.path.join(ROOT, "target", "release", "libq8bert.so"))
    ap.add_argument("--out-dir", default=os.path.join(ROOT, "target", "st-check"))
    ap.add_argument("--layouts", default="minilm,dense,chain,multi")
    ap.add_argument("--short", type=int, default=1000, help="STS-B dev sentences")
    ap.add_argument("--long", type=int, default=60, help="texts of 257-500 tokens")
    ap.add_argument("--json", help="write the results here too")
    args = ap.parse_args()

    os.environ["Q8BERT_LIBRARY"] = args.lib
    sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))
    import q8bert
    import sentence_transformers
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(1)
    os.makedirs(args.out_dir, exist_ok=True)
    reference = SentenceTransformer(args.minilm, device="cpu")
    texts = {"short": sts_sentences(args.glue, args.short), "long": long_texts(args.glue, reference.tokenizer, args.long)}
    lengths = [len(reference.tokenizer(t)["input_ids"]) for t in texts["long"]]
    print(f"sentence-transformers {sentence_transformers.__version__}, torch {torch.__version__}; "
          f"{len(texts['short'])} STS-B sentences, {len(texts['long'])} long texts of {min(lengths)}-{max(lengths)} tokens", flush=True)
    results = {}
    for layout in args.layouts.split(","):
        path = build(layout, args.minilm, args.out_dir, seed=5)
        q8b = os.path.join(args.out_dir, layout + ".q8b")
        t0 = time.time()
        r = subprocess.run([args.trainer, "quantize", "--model", path, "--output", q8b], capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"{layout}: trainer quantize failed:\n{r.stderr}")
        st = SentenceTransformer(path, device="cpu")
        model = q8bert.Model(q8b, num_threads=1)
        row = {"quantize_s": round(time.time() - t0, 1), "dim": int(st.get_embedding_dimension() if hasattr(st, "get_embedding_dimension") else st.get_sentence_embedding_dimension())}
        for kind, batch in texts.items():
            want = st.encode(batch, batch_size=32, convert_to_numpy=True)
            got = model.encode(batch, batch_size=32)
            assert got.shape == want.shape, (layout, got.shape, want.shape)
            cos = (got * want).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
            row[kind] = stats(cos)
        results[layout] = row
        print(f"{layout:>7} (dim {row['dim']}): short cos mean {row['short']['mean']:.5f} p1 {row['short']['p1']:.5f} min {row['short']['min']:.5f}; "
              f"long cos mean {row['long']['mean']:.5f} p1 {row['long']['p1']:.5f} min {row['long']['min']:.5f}", flush=True)
    if args.json:
        json.dump(results, open(args.json, "w"), indent=1)


if __name__ == "__main__":
    main()
