#!/usr/bin/env python3
"""Corpus throughput: sentences per second encoding real sentences into sentence embeddings with
the real all-MiniLM-L6-v2, q8bert (Python `encode()` and C `q8bert_run_text`) next to OpenVINO
int8 and ONNX Runtime int8 with the Hugging Face tokenizer. Tokenization is inside the timed
region for every peer.

Usage:
    python3 scripts/bench_corpus.py [DATA.tsv] [--limit 10000] [--threads 1,2] [--batch 32]
        [--passes 3] [--peers q8bert-py,q8bert-c,ov-int8,ort-int8] [--model-dir DIR]
        [--out FILE.md] [--no-build]

DATA.tsv: the GLUE SST-2 train.tsv (header row, text in the first column); default
../shared/data/glue/SST-2/train.tsv beside the checkout. The first --limit rows are encoded; the
last 64 rows of the file calibrate OpenVINO's int8 (NNCF).

What it does:
  1. Uses (and completes) the venv of scripts/bench_e2e.py (~/.cache/q8bert/bench/venv,
     scripts/bench_requirements.txt) and re-runs itself in it.
  2. Under /tmp/q8bert-build.lock (unless --no-build): `cargo build --release` of the library and
     the trainer; `pip install ./bindings/python` into the venv (the wheel of this tree);
     scripts/bench_corpus_c.c compiled against target/release/libq8bert.a;
     `trainer quantize --model DIR` (q8bert's default pack: per-token); the fp32 ONNX graph of the
     real weights (bench_e2e.py's graph builder fed from model.safetensors), ORT's transformer
     fusion and `quantize_dynamic` (ORT int8), NNCF int8 IR of the un-fused graph (OpenVINO
     int8); the reference embeddings (ORT fp32, same tokenizer) for the fidelity column.
  3. Times, while holding the lock (released between rounds), each peer at each thread count in
     its own process (model loaded before the clock starts): one warm-up pass over all texts,
     then timed passes. A pass: sort the texts by length (longest first, as sentence-transformers
     does), batches of --batch, tokenize, run, mean-pool over the attention mask, L2-normalize,
     rows in input order. The peers' order rotates from round to round; a cell is the median
     over rounds.
  4. Writes a markdown page (default docs/BENCHMARKS_CORPUS.md; /tmp/q8bert-bench/CORPUS.md when
     --limit is below 10000, unless --out is given).

Do not wrap this script in `flock /tmp/q8bert-build.lock ...`: it takes the lock itself.
"""
import argparse
import csv
import datetime
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench_e2e as be  # noqa: E402  (the venv, lock, graph builder and OpenVINO helpers)

ROOT = be.ROOT
DEFAULT_DATA = os.path.join(ROOT, "..", "shared", "data", "glue", "SST-2", "train.tsv")
WORK = os.path.join(be.CACHE, "corpus")
PEERS = ("q8bert-py", "q8bert-c", "ov-int8", "ort-int8")
TITLE = {"q8bert-py": "q8bert, Python `Model.encode()`",
         "q8bert-c": "q8bert, C `q8bert_run_text`",
         "ov-int8": "OpenVINO int8 + HF tokenizers",
         "ort-int8": "ONNX Runtime int8 + HF tokenizers"}
TARGET_VS_OV = 1.3  # issue 20
CALIB_ROWS = 64
FULL_CORPUS = 10000


def log(msg):
    print(f"[bench_corpus {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def read_tsv(path):
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    texts = [r[0] for r in rows[1:] if r]
    if any("\n" in t or "\r" in t for t in texts):
        raise SystemExit(f"{path}: a text contains a line break")
    return texts


def model_config(model_dir):
    with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
        c = json.load(f)
    return dict(title="all-MiniLM-L6-v2", layers=c["num_hidden_layers"], hidden=c["hidden_size"],
                heads=c["num_attention_heads"], inter=c["intermediate_size"],
                vocab=c["vocab_size"], max_pos=c["max_position_embeddings"],
                type_vocab=c["type_vocab_size"])


def sha256_head(path, n=12):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:n]


# ----------------------------------------------------------------------------------------------
# The encoders, as their users write them (run inside a worker process, one per peer x threads)
# ----------------------------------------------------------------------------------------------

def hf_tokenizer(vocab, max_len):
    from tokenizers import BertWordPieceTokenizer
    tok = BertWordPieceTokenizer(vocab, lowercase=True)
    tok.enable_truncation(max_length=max_len)
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    return tok


def hf_encoder(run, vocab, max_len, batch, hidden):
    """encode(texts) -> normalized mean-pooled embeddings [n, hidden]: length-sorted batches,
    the HF tokenizer, `run(feeds)` -> last_hidden_state, pooling as sentence-transformers."""
    import numpy as np
    tok = hf_tokenizer(vocab, max_len)

    def encode(texts):
        n = len(texts)
        order = np.argsort(-np.fromiter(map(len, texts), dtype=np.int64, count=n), kind="stable")
        out = np.empty((n, hidden), dtype=np.float32)
        for i in range(0, n, batch):
            idx = order[i:i + batch]
            encs = tok.encode_batch([texts[j] for j in idx])
            ids = np.array([e.ids for e in encs], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encs], dtype=np.int64)
            h = run({"input_ids": ids, "attention_mask": mask,
                     "token_type_ids": np.zeros_like(ids)})
            m = mask[:, :, None].astype(np.float32)
            emb = (h * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
            emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
            out[idx] = emb
        return out
    return encode


def make_encoder(spec):
    peer, th = spec["peer"], spec["threads"]
    if peer == "q8bert-py":
        import q8bert
        model = q8bert.Model(spec["q8b"], num_threads=th, truncate=True)
        return lambda texts: model.encode(texts, batch_size=spec["batch"])
    if peer in ("ort-int8", "ort-fp32"):
        import onnxruntime as ort
        ort.set_default_logger_severity(3)
        so = ort.SessionOptions()
        so.intra_op_num_threads = th
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = ort.InferenceSession(spec["onnx"], so, providers=["CPUExecutionProvider"])
        run = lambda feeds: sess.run(["last_hidden_state"], feeds)[0]  # noqa: E731
    elif peer == "ov-int8":
        import openvino as ov
        core = ov.Core()
        compiled = core.compile_model(core.read_model(spec["ov_xml"]), "CPU", be.ov_config(th))
        req = compiled.create_infer_request()
        run = lambda feeds: next(iter(req.infer(feeds, share_inputs=True).values()))  # noqa: E731
    else:
        raise ValueError(peer)
    return hf_encoder(run, spec["vocab"], spec["max_len"], spec["batch"], spec["hidden"])


def worker(spec):
    """One peer at one thread count: load, warm-up passes, timed passes; a JSON line out."""
    import numpy as np
    with open(spec["texts"], encoding="utf-8") as f:
        texts = f.read().split("\n")[:spec["n"]]
    encode = make_encoder(spec)
    for _ in range(spec["warmup"]):
        encode(texts)
    secs = []
    for _ in range(spec["timed"]):
        t0 = time.perf_counter()
        emb = encode(texts)
        secs.append(time.perf_counter() - t0)
    np.save(spec["emb_out"], np.asarray(emb, dtype=np.float32))
    print(json.dumps({"pass_s": secs}), flush=True)


def worker_env(threads):
    env = dict(os.environ)
    # The HF tokenizer's batch encoding runs on a rayon pool: as many threads as the peer has.
    env["RAYON_NUM_THREADS"] = str(threads)
    env["TOKENIZERS_PARALLELISM"] = "true" if threads > 1 else "false"
    return env


def run_peer(spec, c_bin):
    """Runs one worker (a subprocess) and returns (dict with pass_s or error, embeddings)."""
    import numpy as np
    if spec["peer"] == "q8bert-c":
        raw = spec["emb_out"] + ".f32"
        cmd = [c_bin, spec["q8b"], spec["texts"], str(spec["threads"]), str(spec["batch"]),
               str(spec["warmup"]), str(spec["timed"]), raw]
    else:
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)]
    p = subprocess.run(cmd, capture_output=True, text=True, env=worker_env(spec["threads"]))
    if p.returncode != 0:
        tail = (p.stderr.strip().splitlines() or p.stdout.strip().splitlines() or ["?"])[-1]
        return dict(error=f"exit {p.returncode}: {tail[:300]}"), None
    if spec["peer"] == "q8bert-c":
        secs = [float(ln.split()[1]) for ln in p.stdout.splitlines() if ln.startswith("pass_s ")]
        emb = np.fromfile(raw, dtype=np.float32).reshape(spec["n"], -1)
        os.remove(raw)
    else:
        secs = json.loads(p.stdout.strip().splitlines()[-1])["pass_s"]
        emb = np.load(spec["emb_out"])
        os.remove(spec["emb_out"])
    return dict(pass_s=secs), emb


# ----------------------------------------------------------------------------------------------
# Builds
# ----------------------------------------------------------------------------------------------

def sh(cmd, **kw):
    log(" ".join(cmd))
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        raise SystemExit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr[-3000:]}")
    return p.stdout


def build_all(args, cfg, calib_texts):
    """Everything the peers need; returns a dict of paths and notes. Call with the lock held."""
    os.makedirs(WORK, exist_ok=True)
    lib_a = os.path.join(ROOT, "target", "release", "libq8bert.a")
    trainer = os.path.join(ROOT, "target", "release", "trainer")
    c_bin = os.path.join(WORK, "bench_corpus_c")
    q8b = os.path.join(WORK, "minilm-default-pack.q8b")
    if not args.no_build:
        sh(["cargo", "build", "--release", "-p", "q8bert-capi", "-p", "trainer"])
        if "q8bert-py" in args.peers:
            sh([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--force-reinstall",
                os.path.join(ROOT, "bindings", "python")])
        sh([os.environ.get("CC", "cc"), "-O2", "-std=c11", "-Wall", "-Wextra", "-Werror",
            "-I" + os.path.join(ROOT, "include"), os.path.join(HERE, "bench_corpus_c.c"), lib_a,
            "-lpthread", "-ldl", "-lm", "-o", c_bin])
        sh([trainer, "quantize", "--model", args.model_dir, "--output", q8b])
    for need in ([q8b] + ([c_bin] if "q8bert-c" in args.peers else [])):
        if not os.path.exists(need):
            raise SystemExit(f"{need} is missing (run without --no-build once)")

    tag = "allMiniLM-L6-v2-" + sha256_head(os.path.join(args.model_dir, "model.safetensors"))
    d, meta = be.build_models("minilm", cfg, weights=lambda: be.hf_bert_weights(args.model_dir, cfg),
                              tag=tag)
    out = dict(c_bin=c_bin, q8b=q8b, onnx_int8=os.path.join(d, "int8.onnx"),
               onnx_fp32=os.path.join(d, "fp32_opt.onnx"), meta=meta, dir=d)
    if "ov-int8" in args.peers:
        import numpy as np
        tok = hf_tokenizer(os.path.join(args.model_dir, "vocab.txt"), cfg["max_pos"])
        tok.no_padding()
        calib = []
        for e in tok.encode_batch(calib_texts):
            ids = np.array([e.ids], dtype=np.int64)
            calib.append({"input_ids": ids, "attention_mask": np.ones_like(ids),
                          "token_type_ids": np.zeros_like(ids)})
        out["ov_xml"] = be.build_openvino("minilm", cfg, d, "raw", calib=calib,
                                          calib_tag=f"sst2last{len(calib)}")
        ovp = be.OvPeer(None)
        c, req = ovp.request(out["ov_xml"], 1)
        req.infer(be.make_feeds(cfg, 1, 128, be.SEED))
        out["ov_ops"] = be.fmt_ov_ops(be.ov_runtime_ops(c))
        ovp.drop()
    return out


def q8bert_info(q8b):
    """The q8bert package version, the library it loads and the kernel it picks (a subprocess:
    the wheel was just reinstalled)."""
    code = ("import json, q8bert; m = q8bert.Model(%r); print(json.dumps(dict(version=q8bert.version(), "
            "library=q8bert.library_path, source=q8bert.library_source, kernel=m.info.kernel, "
            "max_text_tokens=m.info.max_text_tokens, activations=m.info.activations)))" % q8b)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    try:
        return json.loads(p.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": (p.stderr.strip().splitlines() or ["?"])[-1]}


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------

def fmt_rate(v):
    return "—" if v is None else f"{v:,.0f}"


def write_page(path, ctx):
    a = ctx["args"]
    m, res, fid = ctx["machine"], ctx["rates"], ctx["fidelity"]
    L = ["# q8bert corpus benchmark: sentence embeddings per second", "",
         f"Generated by `scripts/bench_corpus.py` on {ctx['date']} ({ctx['elapsed_min']:.1f} min). "
         f"Sentences per second encoding the first {ctx['n']:,} rows of SST-2 `train.tsv` "
         f"with the real all-MiniLM-L6-v2 (mean pooling, L2-normalized), length-sorted batches "
         f"of {a.batch}, tokenization included for every peer; higher is better. "
         f"✓ marks the issue-20 target (≥ {TARGET_VS_OV}x OpenVINO int8).", "",
         f"Command: `{ctx['command']}`", ""]
    if ctx["partial"]:
        L += [f"**Incomplete run**: {ctx['partial']}.", ""]
    L += ["| peer | " + " | ".join(f"{t} thread{'s' if t > 1 else ''} sent/s" for t in a.threads)
          + " | " + " | ".join(f"vs OpenVINO, {t}T" for t in a.threads)
          + " | mean cosine vs fp32 | min cosine |",
          "|---|" + "---:|" * (2 * len(a.threads) + 2)]
    for p in a.peers:
        cells = [fmt_rate(res.get((p, t))) for t in a.threads]
        vs = []
        for t in a.threads:
            q, ov = res.get((p, t)), res.get(("ov-int8", t))
            if q is None or ov is None or p == "ov-int8":
                vs.append("—")
            elif p.startswith("q8bert"):
                vs.append(f"{q / ov:.2f}x {'✓' if q / ov >= TARGET_VS_OV else '✗'}")
            else:
                vs.append(f"{q / ov:.2f}x")
        f = fid.get(p, {})
        L.append(f"| {TITLE[p]} | " + " | ".join(cells) + " | " + " | ".join(vs) + " | "
                 + (f"{f['mean_cos']:.4f} | {f['min_cos']:.4f} |" if "mean_cos" in f else "— | — |"))
    L += ["", "<details><summary>Per round (seconds per pass; background load in cores)</summary>",
          "", "| peer | threads | seconds per timed pass, by round | other load |",
          "|---|---:|---|---:|"]
    for (p, t), runs in sorted(ctx["runs"].items()):
        ld = ctx["loads"].get(t)
        L.append(f"| {TITLE[p]} | {t} | " + ", ".join(
            f"{s:.3f}" if isinstance(s, float) else str(s) for s in runs) + " | "
            + (f"{max(ld):.2f}" if ld else "?") + " |")
    L += ["", "</details>", "", "## Method", "",
          f"- Texts: rows 1-{ctx['n']:,} of `{ctx['data']}` (first column), one pass encodes "
          f"all of them; {ctx['n_tokens']:,} tokens with [CLS]/[SEP] (mean "
          f"{ctx['n_tokens'] / ctx['n']:.1f}, max {ctx['max_tokens']}).",
          "- Every peer, in its own process per thread count (the model is loaded before the "
          "clock starts): sort the texts by length in characters, longest first "
          "(sentence-transformers' order), batches of "
          f"{a.batch}, tokenize, run, mean-pool over the attention mask, L2-normalize, rows back "
          f"in input order; {a.warmup} warm-up pass(es), then {a.timed} timed pass(es) per "
          f"round, {a.passes} rounds with the peers' order rotating; a cell is {ctx['n']:,} / the "
          "median seconds per pass. The script holds `/tmp/q8bert-build.lock` through a round.",
          f"- q8bert: `trainer quantize --model {ctx['model_dir_name']} --output X.q8b` "
          "(the default pack: per-token scheme with per-row zero points, format 1.4; the model "
          "mean-pools and normalizes itself). Python: the wheel of this tree (`pip install "
          "./bindings/python`), `q8bert.Model(path, num_threads=T, truncate=True).encode(texts, "
          f"batch_size={a.batch})`. C: `scripts/bench_corpus_c.c` (linked to "
          "`target/release/libq8bert.a`), the same sort, one `q8bert_run_text` call per batch "
          "(tokenizer inside the library). "
          + (f"Kernel: {ctx['q8']['kernel']}." if ctx["q8"].get("kernel") else ""),
          "- ONNX Runtime and OpenVINO: the fp32 ONNX graph that `scripts/bench_e2e.py` builds, "
          "fed the real weights from `model.safetensors`; tokenizer: Hugging Face `tokenizers` "
          f"`BertWordPieceTokenizer(vocab.txt, lowercase=True)`, truncation at {a.max_seq_len} "
          "tokens (q8bert's limit for this model; "
          + ("no text here reaches it), " if ctx["max_tokens"] < a.max_seq_len
             else "some texts here are truncated), ") +
          "padding to the batch's longest, `encode_batch` per batch (its thread pool limited to "
          "the peer's thread count: `RAYON_NUM_THREADS`, `TOKENIZERS_PARALLELISM=false` at 1 "
          "thread).",
          "- ONNX Runtime int8: ORT's transformer fusion of that graph, then `quantize_dynamic` "
          "(QInt8 weights per tensor, u8 activations); session: `intra_op_num_threads` = T, "
          "`inter_op_num_threads` = 1, sequential, `ORT_ENABLE_ALL`.",
          "- OpenVINO int8: `openvino.convert_model` of the un-fused graph, `nncf.quantize(..., "
          "model_type=nncf.ModelType.TRANSFORMER)` calibrated on the last "
          f"{CALIB_ROWS} rows of the TSV (batch 1, not among the timed texts), compiled for CPU "
          "with `INFERENCE_PRECISION_HINT` f32, `INFERENCE_NUM_THREADS` T, `NUM_STREAMS` 1, "
          "`PERFORMANCE_HINT` LATENCY. " + (f"Runtime graph: {ctx['ov_ops']}." if ctx.get("ov_ops")
                                            else ""),
          "- Fidelity: cosine of each peer's embedding of each text to ONNX Runtime fp32's (the "
          "fused graph, same tokenizer, same pooling) — all rows of the last timed pass.",
          ]
    if ctx["load_all"]:
        L.append(f"- Background load (CPU time of other processes and hypervisor steal while a "
                 f"round ran, in cores out of {m['cpus']}): mean "
                 f"{statistics.mean(ctx['load_all']):.2f}, max {max(ctx['load_all']):.2f}"
                 + (" — the machine was not quiet." if max(ctx["load_all"]) > 0.15 else "."))
    L += ["", "## Machine and versions", "",
          f"- CPU: {m['model_name']} ({m['cpus']} logical CPUs, shared); avx512_vnni: "
          f"{'yes' if 'avx512_vnni' in m['flags'] else 'no'}; Linux {m['kernel']}"]
    L += [f"- {k}: {v}" for k, v in ctx["versions"].items()]
    L.append("")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(L))


# ----------------------------------------------------------------------------------------------

def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", nargs="?", default=DEFAULT_DATA,
                    help="SST-2 train.tsv (default ../shared/data/glue/SST-2/train.tsv)")
    ap.add_argument("--limit", type=int, default=FULL_CORPUS, help="texts to encode (first rows)")
    ap.add_argument("--threads", default="1,2", help="comma list of thread counts")
    ap.add_argument("--batch", type=int, default=32, help="texts per batch")
    ap.add_argument("--passes", type=int, default=3, help="rounds over all peers and threads")
    ap.add_argument("--warmup", type=int, default=1, help="untimed passes per worker")
    ap.add_argument("--timed", type=int, default=1, help="timed passes per worker and round")
    ap.add_argument("--peers", default=",".join(PEERS), help=f"comma list of {','.join(PEERS)}")
    ap.add_argument("--model-dir", help="all-MiniLM-L6-v2 directory (default: "
                    "`bash scripts/fetch_minilm.sh`)")
    ap.add_argument("--out", help="markdown page (default docs/BENCHMARKS_CORPUS.md, or "
                    "/tmp/q8bert-bench/CORPUS.md with --limit below 10000)")
    ap.add_argument("--no-build", action="store_true",
                    help="use the built library/trainer/wheel/C program as they are")
    ap.add_argument("--no-venv", action="store_true",
                    help="use this interpreter (pip install --user what is missing)")
    ap.add_argument("--no-lock", action="store_true", help=f"do not take {be.LOCK_PATH}")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return args
    try:
        args.threads = [int(t) for t in args.threads.split(",")]
    except ValueError:
        ap.error("--threads is like 1,2")
    args.peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    for p in args.peers:
        if p not in PEERS:
            ap.error(f"unknown peer {p!r} (known: {', '.join(PEERS)})")
    if args.out is None:
        args.out = ("/tmp/q8bert-bench/CORPUS.md" if args.limit < FULL_CORPUS
                    else os.path.join(ROOT, "docs", "BENCHMARKS_CORPUS.md"))
    return args


def main():
    args = parse_args()
    if args.worker:
        worker(json.loads(args.worker))
        return
    be.ensure_env(args, script=__file__)
    t_start = time.monotonic()
    command = "python3 scripts/bench_corpus.py " + " ".join(sys.argv[1:])
    lock = lambda: be.SharedLock(not args.no_lock)  # noqa: E731
    import numpy as np

    if args.model_dir is None:
        args.model_dir = subprocess.run(["bash", os.path.join(HERE, "fetch_minilm.sh")],
                                        check=True, capture_output=True, text=True).stdout.strip()
    cfg = model_config(args.model_dir)
    all_texts = read_tsv(args.data)
    texts = all_texts[:args.limit]
    calib_texts = all_texts[-CALIB_ROWS:]
    if len(texts) < args.limit:
        log(f"{args.data} has only {len(texts)} texts")
    n = len(texts)
    os.makedirs(WORK, exist_ok=True)
    texts_path = os.path.join(WORK, f"texts-{n}.txt")
    with open(texts_path, "w", encoding="utf-8") as f:
        f.write("\n".join(texts))

    with lock():
        built = build_all(args, cfg, calib_texts)
        q8 = q8bert_info(built["q8b"])
        log(f"q8bert: {q8}")
        # Every peer truncates where q8bert's model does (its token limit: the position table).
        args.max_seq_len = int(q8.get("max_text_tokens") or cfg["max_pos"])
        vocab = os.path.join(args.model_dir, "vocab.txt")
        tok = hf_tokenizer(vocab, args.max_seq_len)
        tok.no_padding()
        lens = [len(e.ids) for e in tok.encode_batch(texts)]
        log("reference embeddings: ORT fp32 (fused graph)")
        ref = make_encoder(dict(peer="ort-fp32", threads=max(args.threads), onnx=built["onnx_fp32"],
                                vocab=vocab, max_len=args.max_seq_len, batch=args.batch,
                                hidden=cfg["hidden"]))(texts)

    machine = be.machine_info()
    versions = be.tool_versions()
    versions.pop("onnx", None)
    from importlib import metadata
    for name in ("tokenizers", "q8bert"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    if q8.get("library"):
        versions["q8bert library"] = f"{q8.get('version')} ({q8.get('source')}: {q8['library']})"
    cc = subprocess.run([os.environ.get("CC", "cc"), "--version"], capture_output=True, text=True)
    versions["cc"] = (cc.stdout.splitlines() or ["?"])[0]
    versions["model"] = (f"all-MiniLM-L6-v2 (`scripts/fetch_minilm.sh`, model.safetensors sha256 "
                         f"{sha256_head(os.path.join(args.model_dir, 'model.safetensors'))}…)")

    runs, loads, fidelity, load_all = {}, {}, {}, []
    out = os.path.abspath(args.out)
    os.makedirs(os.path.dirname(out), exist_ok=True)

    def report(done):
        rates = {}
        for k, v in runs.items():
            secs = [s for s in v if isinstance(s, float)]
            if secs:
                rates[k] = n / statistics.median(secs)
        n_done = sum(len(v) for v in loads.values())
        write_page(out, dict(
            args=args, machine=machine, versions=versions, rates=rates, fidelity=fidelity,
            runs=runs, loads=loads, load_all=load_all, n=n, data=os.path.relpath(args.data, ROOT),
            n_tokens=sum(lens), max_tokens=max(lens), q8=q8, ov_ops=built.get("ov_ops"),
            model_dir_name="$(bash scripts/fetch_minilm.sh)", command=command,
            date=datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
            elapsed_min=(time.monotonic() - t_start) / 60,
            partial=None if done else f"{n_done} of {args.passes * len(args.threads)} rounds done"))
        if done:
            log(f"wrote {out}")

    tmpdir = tempfile.mkdtemp(prefix="q8bert-corpus-")
    for rnd in range(args.passes):
        for th in args.threads:
            rot = rnd % len(args.peers)
            order = args.peers[rot:] + args.peers[:rot]
            with lock(), be.OtherLoad() as load:
                for peer in order:
                    spec = dict(peer=peer, threads=th, batch=args.batch, n=n, texts=texts_path,
                                warmup=args.warmup, timed=args.timed, q8b=built["q8b"],
                                onnx=built["onnx_int8"], ov_xml=built.get("ov_xml"), vocab=vocab,
                                max_len=args.max_seq_len, hidden=cfg["hidden"],
                                emb_out=os.path.join(tmpdir, f"{peer}-{th}.npy"))
                    r, emb = run_peer(spec, built["c_bin"])
                    if "error" in r:
                        log(f"{peer} {th}T: {r['error']}")
                        runs.setdefault((peer, th), []).append(r["error"][:80])
                        continue
                    runs.setdefault((peer, th), []).append(statistics.median(r["pass_s"]))
                    if emb is not None and peer not in fidelity:
                        cos = (emb.astype(np.float64) * ref).sum(1) / (
                            np.linalg.norm(emb, axis=1) * np.linalg.norm(ref, axis=1))
                        fidelity[peer] = dict(mean_cos=float(cos.mean()), min_cos=float(cos.min()))
            loads.setdefault(th, []).append(load.cores)
            load_all.append(load.cores)
            log(f"round {rnd + 1}/{args.passes} {th}T: " + ", ".join(
                f"{p} {n / runs[(p, th)][-1]:,.0f}/s" if isinstance(runs.get((p, th), [None])[-1], float)
                else f"{p} error" for p in args.peers) + f" (other load {load.cores:.2f} cores)")
            report(done=False)
    report(done=True)


if __name__ == "__main__":
    main()
