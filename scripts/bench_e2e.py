#!/usr/bin/env python3
"""End-to-end latency of q8bert next to ONNX Runtime, OpenVINO and CTranslate2, on the same model
shapes.

Usage:
    python3 scripts/bench_e2e.py [--quick] [--out docs/BENCHMARKS.md]
        [--models bert-base,minilm] [--points 1x32,1x128,8x128,32x128] [--threads 1,2]
        [--passes N] [--peers q8bert,q8bert-pt,q8bert-w7,q8bert-dyn,q8bert-hp,q8bert-i8a,ort-int8,ort-fp32,ov-int8,ct2-int8]
        [--ov-graph raw|fused] [--no-q8bert | --q8bert-bin PATH]

What it does:
  1. Creates a venv under ~/.cache/q8bert/bench/venv (or $Q8BERT_BENCH_VENV), installs the pinned
     packages of scripts/bench_requirements.txt that are missing there, and re-runs itself in it.
  2. Builds the comparison models once (cached under ~/.cache/q8bert/bench/models): a BERT graph
     written directly with onnx.helper (opset 17, dynamic batch/sequence axes, seeded random
     weights) in the op pattern that PyTorch's exporter produces, then ONNX Runtime's transformer
     optimizer (fusion: EmbedLayerNormalization, Attention, SkipLayerNormalization, BiasGelu), then
     `quantize_dynamic` (QInt8 weights, u8 activations) for the int8 peer. From the same graph:
     OpenVINO int8 (`openvino.convert_model` of the un-fused graph, `nncf.quantize` with
     model_type TRANSFORMER on 64 calibration inputs of sequence 32 and 128, saved as IR) and
     CTranslate2 int8 (the graph's weights in a TransformerEncoderSpec built as CTranslate2's
     BertLoader builds BertModel, saved with quantization "int8"). It reads which kernels
     OpenVINO compiled (runtime graph precisions) and measures each peer's output error against
     ORT fp32 on the same inputs.
  3. For every point (model shape x batch x seq x threads) it takes /tmp/q8bert-build.lock and
     measures q8bert (target/release/examples/bench_e2e: the paper's scheme, the per-token pack
     that `trainer quantize` writes by default, and int8 attention), ORT int8, ORT fp32,
     OpenVINO int8 and CTranslate2 int8 back to back, then releases the lock so that others can
     build between points. The order of the peers rotates from one pass to the next.
  4. Writes a markdown page (default docs/BENCHMARKS.md; /tmp/q8bert-bench/BENCHMARKS.md with
     --quick unless --out is given) and an SVG chart beside it: bench_latency.svg for a page named
     BENCHMARKS.md, bench_latency_<suffix>.svg for BENCHMARKS_<SUFFIX>.md (so a page for another
     machine does not overwrite the main page's chart).

Do not wrap this script in `flock /tmp/q8bert-build.lock ...`: it takes the lock itself, per point.
(If it is wrapped anyway, it sees that an ancestor holds the lock and does not take it again.)
"""
import argparse
import datetime
import fcntl
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
REQUIREMENTS = os.path.join(ROOT, "scripts", "bench_requirements.txt")
CACHE = os.path.join(os.path.expanduser("~"), ".cache", "q8bert", "bench")
VENV = os.environ.get("Q8BERT_BENCH_VENV", os.path.join(CACHE, "venv"))
LOCK_PATH = "/tmp/q8bert-build.lock"
MODEL_FORMAT = 2  # bump when the graph builder changes, to invalidate cached models
# (2: scalar constants stay 0-d, which OpenVINO's ONNX importer needs; the un-fused fp32.onnx is
# kept beside the fused one, for OpenVINO and CTranslate2)
SEED = 20240501

SHAPES = {
    "bert-base": dict(title="BERT-base", layers=12, hidden=768, heads=12, inter=3072,
                      vocab=30522, max_pos=512, type_vocab=2),
    "minilm": dict(title="all-MiniLM-L6-v2 shape", layers=6, hidden=384, heads=12, inter=1536,
                   vocab=30522, max_pos=512, type_vocab=2),
}
PEERS = ("q8bert", "q8bert-pt", "q8bert-w7", "q8bert-dyn", "q8bert-hp", "q8bert-i8a", "ort-int8", "ort-fp32", "ov-int8", "ct2-int8")
PEER_TITLE = {"q8bert": "q8bert", "q8bert-pt": "q8bert per-token",
              "q8bert-w7": "q8bert per-token 7-bit weights",
              "q8bert-dyn": "q8bert per-token dynamic int8 attention",
              "q8bert-hp": "q8bert per-token huge pages",
              "q8bert-i8a": "q8bert int8 attention", "ort-int8": "ORT int8",
              "ort-fp32": "ORT fp32", "ov-int8": "OpenVINO int8", "ct2-int8": "CTranslate2 int8"}
TARGET_VS_INT8 = 1.5
TARGET_VS_FP32 = 3.5
TARGET_VS_OV = 1.2  # issue 20
# Per-model tables of one q8bert variant against the per-token pack and the int8 peers: (peer,
# what it is, the peers it is compared with).
VARIANT_TABLES = (
    ("q8bert-w7", "the per-token pack with 7-bit weights (`trainer quantize --weight-bits 7`; on "
     "CPUs without VNNI its GEMMs take three instructions per 32 multiply-adds instead of four)",
     ("ov-int8", "ort-int8", "ct2-int8")),
    ("q8bert-dyn", "the per-token pack with dynamic int8 attention (`trainer quantize "
     "--dynamic-int8-attention`, opt-in; QKᵀ and P·V through VNNI with a scale per row of Q, K "
     "and V in every head, docs/ACCURACY.md)", ("ov-int8",)),
    ("q8bert-hp", "the per-token pack opened with `Q8BERT_FLAG_HUGE_PAGES` (opt-in: the model "
     "read into private memory in transparent huge pages instead of mapped from the file)",
     ("ov-int8",)),
)
# The ONNX graph OpenVINO converts: "raw" is the un-fused fp32.onnx (the PyTorch exporter's op
# pattern, what optimum-intel converts), "fused" the ORT-optimized fp32_opt.onnx (contrib ops).
OV_GRAPHS = {"raw": "fp32.onnx", "fused": "fp32_opt.onnx"}
OV_CALIB_SAMPLES = 64
# Pause between two peers of a point: worker threads that spin after a run (OpenMP in
# CTranslate2, ORT's pool, OpenVINO's TBB arena) go to sleep before the next peer is timed.
PEER_PAUSE_S = 0.3


def log(msg):
    print(f"[bench_e2e {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------
# 1. Python environment
# ----------------------------------------------------------------------------------------------

def read_pins():
    pins = []
    with open(REQUIREMENTS, encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                pins.append(line)
    return pins


MISSING_PROBE = r"""
import sys
from importlib import metadata
for pin in sys.argv[1:]:
    name, _, want = pin.partition("==")
    try:
        have = metadata.version(name.strip())
    except metadata.PackageNotFoundError:
        have = None
    if have is None or (want and have != want.strip()):
        print(pin)
"""


def ensure_env(args, script=None):
    """Make sure the pinned packages are importable; re-exec `script` (default this file)
    inside the venv if needed."""
    pins = read_pins()
    if args.no_venv:
        py = sys.executable
    else:
        py = os.path.join(VENV, "bin", "python")
        if not os.path.exists(py):
            log(f"creating venv {VENV}")
            subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
    missing = subprocess.run([py, "-c", MISSING_PROBE, *pins], check=True,
                             capture_output=True, text=True).stdout.split()
    if missing:
        log(f"pip install {' '.join(missing)}")
        cmd = [py, "-m", "pip", "install", "--quiet", *missing]
        if args.no_venv:
            cmd.insert(4, "--user")
        subprocess.run(cmd, check=True)
    if not args.no_venv and os.path.realpath(sys.prefix) != os.path.realpath(VENV):
        os.execv(py, [py, os.path.abspath(script or __file__), *sys.argv[1:]])


# ----------------------------------------------------------------------------------------------
# Shared lock (/tmp/q8bert-build.lock), taken per measurement point
# ----------------------------------------------------------------------------------------------

def _ancestors():
    pids, pid = set(), os.getpid()
    while pid > 1:
        pids.add(pid)
        try:
            with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


def _lock_held_by_ancestor():
    try:
        ino = os.stat(LOCK_PATH).st_ino
        with open("/proc/locks", encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return False
    anc = _ancestors()
    for line in lines:
        parts = line.split()
        if "->" in parts:
            continue
        try:
            kind, pid, dev_ino = parts[1], int(parts[4]), parts[5]
        except (IndexError, ValueError):
            continue
        if kind == "FLOCK" and int(dev_ino.rsplit(":", 1)[1]) == ino and pid in anc:
            return True
    return False


class SharedLock:
    def __init__(self, enabled=True):
        self.enabled = enabled
        self.fd = None
        self.inherited = False

    def __enter__(self):
        if not self.enabled:
            return self
        fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if _lock_held_by_ancestor():
                os.close(fd)
                self.inherited = True
                return self
            log(f"waiting for {LOCK_PATH} ...")
            t0 = time.monotonic()
            fcntl.flock(fd, fcntl.LOCK_EX)
            log(f"got the lock after {time.monotonic() - t0:.1f} s")
        self.fd = fd
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
        return False


# ----------------------------------------------------------------------------------------------
# 2. Comparison models
# ----------------------------------------------------------------------------------------------

def build_fp32_graph(cfg, seed, path, weights=None):
    """A BERT encoder (last_hidden_state output) written with onnx.helper, in the op pattern of
    the PyTorch exporter for HF BertModel, so that ORT's transformer optimizer fuses it.
    Seeded random weights, or `weights` (name -> float32 array, the names of this builder:
    see hf_bert_weights) for a real model."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    H, L, NH, FF = cfg["hidden"], cfg["layers"], cfg["heads"], cfg["inter"]
    D = H // NH
    inits, nodes = [], []

    def init(name, arr):
        # (np.ascontiguousarray would turn a 0-d array into shape [1]; scalars stay scalars, as
        # the PyTorch exporter writes them: OpenVINO's Slice wants 1-D ends.)
        arr = np.asarray(arr)
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr) if arr.ndim else arr, name))
        return name

    def given(name, shape):
        a = np.asarray(weights[name], dtype=np.float32)
        if a.shape != tuple(shape):
            raise ValueError(f"weight {name}: shape {a.shape}, expected {tuple(shape)}")
        return init(name, a)

    def weight(name, shape, std=0.02):
        if weights is not None:
            return given(name, shape)
        return init(name, (rng.standard_normal(shape, dtype=np.float32) * np.float32(std)))

    def ln_params(prefix):
        if weights is not None:
            return given(prefix + ".gamma", (H,)), given(prefix + ".beta", (H,))
        g = init(prefix + ".gamma", (1.0 + 0.05 * rng.standard_normal(H)).astype(np.float32))
        b = init(prefix + ".beta", (0.02 * rng.standard_normal(H)).astype(np.float32))
        return g, b

    def op(op_type, inputs, name, out=None, **attrs):
        out = out or name + "_out"
        nodes.append(helper.make_node(op_type, inputs, [out], name=name, **attrs))
        return out

    i64 = lambda name, vals: init(name, np.array(vals, dtype=np.int64))  # noqa: E731
    f32 = lambda name, val: init(name, np.array(val, dtype=np.float32))  # noqa: E731

    # Embeddings: word + token type + position (Slice of a [1, max_pos] position_ids buffer).
    word = op("Gather", [weight("emb.word", (cfg["vocab"], H)), "input_ids"], "emb.word_gather")
    ttype = op("Gather", [weight("emb.type", (cfg["type_vocab"], H)), "token_type_ids"],
               "emb.type_gather")
    wt = op("Add", [word, ttype], "emb.add0")
    shape = op("Shape", ["input_ids"], "emb.shape")
    seq = op("Gather", [shape, i64("c.one_scalar", 1)], "emb.seq_len", axis=0)
    seq_u = op("Unsqueeze", [seq, i64("c.axes0", [0])], "emb.seq_len_u")
    pos_ids = op("Slice", [i64("emb.position_ids", np.arange(cfg["max_pos"])[None, :]),
                           i64("c.zero1", [0]), seq_u, i64("c.one1", [1]), i64("c.step1", [1])],
                 "emb.pos_slice")
    pos = op("Gather", [weight("emb.pos", (cfg["max_pos"], H)), pos_ids], "emb.pos_gather")
    emb = op("Add", [wt, pos], "emb.add1")
    g, b = ln_params("emb.ln")
    x = op("LayerNormalization", [emb, g, b], "emb.ln", axis=-1, epsilon=1e-12)

    # Extended attention mask: (1 - mask[:, None, None, :]) * -10000
    m = op("Unsqueeze", ["attention_mask", i64("c.axes1", [1])], "mask.u1")
    m = op("Unsqueeze", [m, i64("c.axes2", [2])], "mask.u2")
    m = op("Cast", [m], "mask.cast", to=TensorProto.FLOAT)
    m = op("Sub", [f32("c.f_one", 1.0), m], "mask.sub")
    mask = op("Mul", [m, f32("c.f_neg", -10000.0)], "mask.mul")

    heads_shape = i64("c.heads_shape", [0, 0, NH, D])
    merge_shape = i64("c.merge_shape", [0, 0, H])
    scale = f32("c.sqrt_d", float(np.sqrt(D)))
    sqrt2 = f32("c.sqrt2", 1.4142135381698608)
    half = f32("c.half", 0.5)

    def dense(p, inp, n_in, n_out):
        mm = op("MatMul", [inp, weight(p + ".w", (n_in, n_out))], p + ".matmul")
        return op("Add", [weight(p + ".b", (n_out,)), mm], p + ".add")

    for li in range(L):
        p = f"l{li}"
        q = op("Reshape", [dense(p + ".q", x, H, H), heads_shape], p + ".q_reshape")
        q = op("Transpose", [q], p + ".q_t", perm=[0, 2, 1, 3])
        k = op("Reshape", [dense(p + ".k", x, H, H), heads_shape], p + ".k_reshape")
        k = op("Transpose", [k], p + ".k_t", perm=[0, 2, 3, 1])
        v = op("Reshape", [dense(p + ".v", x, H, H), heads_shape], p + ".v_reshape")
        v = op("Transpose", [v], p + ".v_t", perm=[0, 2, 1, 3])
        s = op("MatMul", [q, k], p + ".qk")
        s = op("Div", [s, scale], p + ".qk_scale")
        s = op("Add", [s, mask], p + ".qk_mask")
        s = op("Softmax", [s], p + ".softmax", axis=-1)
        c = op("MatMul", [s, v], p + ".pv")
        c = op("Transpose", [c], p + ".ctx_t", perm=[0, 2, 1, 3])
        c = op("Reshape", [c, merge_shape], p + ".ctx_reshape")
        o = dense(p + ".attn_out", c, H, H)
        r = op("Add", [o, x], p + ".attn_residual")
        g, b = ln_params(p + ".attn_ln")
        x = op("LayerNormalization", [r, g, b], p + ".attn_ln", axis=-1, epsilon=1e-12)
        h = dense(p + ".ffn_in", x, H, FF)
        e = op("Div", [h, sqrt2], p + ".gelu_div")
        e = op("Erf", [e], p + ".gelu_erf")
        e = op("Add", [e, f32(p + ".c_one", 1.0)], p + ".gelu_add")
        e = op("Mul", [h, e], p + ".gelu_mul")
        e = op("Mul", [e, half], p + ".gelu_half")
        o = dense(p + ".ffn_out", e, FF, H)
        r = op("Add", [o, x], p + ".ffn_residual")
        g, b = ln_params(p + ".ffn_ln")
        last = li == L - 1
        x = op("LayerNormalization", [r, g, b], p + ".ffn_ln",
               out="last_hidden_state" if last else None, axis=-1, epsilon=1e-12)

    dims = ["batch", "sequence"]
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, dims)
              for n in ("input_ids", "attention_mask", "token_type_ids")]
    outputs = [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, dims + [H])]
    graph = helper.make_graph(nodes, "bert", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="q8bert-bench_e2e")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


def hf_bert_weights(model_dir, cfg):
    """The weights of a Hugging Face BertModel checkpoint (model.safetensors) under this
    builder's names (MatMul weights transposed to [in, out]), as float32 numpy arrays."""
    import numpy as np
    from safetensors.numpy import load_file
    t = load_file(os.path.join(model_dir, "model.safetensors"))
    pre = "bert." if any(k.startswith("bert.") for k in t) else ""
    g = lambda k: np.asarray(t[pre + k], dtype=np.float32)  # noqa: E731
    w = {"emb.word": g("embeddings.word_embeddings.weight"),
         "emb.type": g("embeddings.token_type_embeddings.weight"),
         "emb.pos": g("embeddings.position_embeddings.weight"),
         "emb.ln.gamma": g("embeddings.LayerNorm.weight"),
         "emb.ln.beta": g("embeddings.LayerNorm.bias")}
    parts = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
             "attn_out": "attention.output.dense", "ffn_in": "intermediate.dense",
             "ffn_out": "output.dense"}
    for li in range(cfg["layers"]):
        hf = f"encoder.layer.{li}."
        for ours, theirs in parts.items():
            w[f"l{li}.{ours}.w"] = np.ascontiguousarray(g(hf + theirs + ".weight").T)
            w[f"l{li}.{ours}.b"] = g(hf + theirs + ".bias")
        for ours, theirs in (("attn_ln", "attention.output.LayerNorm"),
                             ("ffn_ln", "output.LayerNorm")):
            w[f"l{li}.{ours}.gamma"] = g(hf + theirs + ".weight")
            w[f"l{li}.{ours}.beta"] = g(hf + theirs + ".bias")
    return w


def build_models(key, cfg, weights=None, tag=None):
    """Returns (dir, meta) with fp32.onnx (un-fused), fp32_opt.onnx and int8.onnx in dir; builds
    them when absent. `weights`/`tag`: a real model's weights (hf_bert_weights) and the name
    its cache directory gets instead of the random weights' seed."""
    import onnx
    import onnxruntime as ort
    d = os.path.join(CACHE, "models",
                     f"{key}-v{MODEL_FORMAT}-{tag or f'seed{SEED}'}-ort{ort.__version__}")
    meta_path = os.path.join(d, "meta.json")
    if os.path.exists(meta_path):
        with open(meta_path, encoding="utf-8") as f:
            return d, json.load(f)

    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    import logging
    # Quiet the optimizer's "producer not matched" and the quantizer's pre-processing advice.
    for name in ("", "onnxruntime", "onnxruntime.transformers", "onnxruntime.quantization"):
        logging.getLogger(name).setLevel(logging.ERROR)
    tmp = d + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    t0 = time.monotonic()
    raw = os.path.join(tmp, "fp32.onnx")
    build_fp32_graph(cfg, SEED, raw, weights=weights() if callable(weights) else weights)
    log(f"{key}: fp32 graph written ({time.monotonic() - t0:.1f} s), optimizing")
    # opt_level=0: the Python fusions only (the graph has nothing for ORT's offline pass to fold;
    # sessions run with all graph optimizations anyway). Higher levels import torch.
    opt = optimize_model(raw, model_type="bert", num_heads=cfg["heads"],
                         hidden_size=cfg["hidden"], opt_level=0)
    fused = {k: v for k, v in opt.get_fused_operator_statistics().items() if v}
    expect = {"EmbedLayerNormalization": 1, "Attention": cfg["layers"],
              "SkipLayerNormalization": 2 * cfg["layers"]}
    if any(fused.get(k, 0) != v for k, v in expect.items()) or not (
            fused.get("BiasGelu", 0) + fused.get("Gelu", 0) + fused.get("FastGelu", 0)):
        raise RuntimeError(f"{key}: transformer optimizer fused only {fused}, expected {expect}")
    fp32 = os.path.join(tmp, "fp32_opt.onnx")
    opt.save_model_to_file(fp32)
    log(f"{key}: fused {fused}; quantizing")
    int8 = os.path.join(tmp, "int8.onnx")
    # The fused contrib ops carry no inferred output types; every activation here is fp32.
    quantize_dynamic(fp32, int8, weight_type=QuantType.QInt8,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    meta = dict(key=key, config=cfg, seed=SEED, fused=fused, ort=ort.__version__,
                fp32_bytes=os.path.getsize(fp32), int8_bytes=os.path.getsize(int8),
                quant_ops=_op_counts(int8), build_s=round(time.monotonic() - t0, 1))
    with open(os.path.join(tmp, "meta.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1)
    shutil.rmtree(d, ignore_errors=True)
    os.rename(tmp, d)
    log(f"{key}: models built in {meta['build_s']} s -> {d}")
    return d, meta


def _op_counts(path):
    import onnx
    counts = {}
    for n in onnx.load(path, load_external_data=False).graph.node:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


# ----------------------------------------------------------------------------------------------
# 2b. OpenVINO int8 (NNCF post-training quantization) and CTranslate2 int8, from the same weights
# ----------------------------------------------------------------------------------------------

def calibration_feeds(cfg, n=OV_CALIB_SAMPLES):
    """n batch-1 inputs, half of sequence 32 and half of 128 (random ids, as the timed inputs)."""
    import numpy as np
    rng = np.random.default_rng(SEED + 77)
    feeds = []
    for i in range(n):
        s = 32 if i % 2 == 0 else 128
        feeds.append({"input_ids": rng.integers(0, cfg["vocab"], size=(1, s), dtype=np.int64),
                      "attention_mask": np.ones((1, s), dtype=np.int64),
                      "token_type_ids": np.zeros((1, s), dtype=np.int64)})
    return feeds


def _quiet_nncf():
    import logging
    try:
        import nncf
        nncf.set_log_level(logging.ERROR)
    except Exception:  # noqa: BLE001
        pass


def build_openvino(key, cfg, d, graph, calib=None, calib_tag=None):
    """NNCF int8 IR of the fp32 ONNX graph `graph` (raw|fused), cached beside the ONNX models.
    `calib`: the calibration inputs (default calibration_feeds(cfg)) and `calib_tag` their name
    in the cache path. Returns the path of the .xml. Call with the lock held."""
    import nncf
    import openvino as ov
    out = os.path.join(d, f"openvino-{graph}{'-' + calib_tag if calib_tag else ''}"
                          f"-ov{ov.__version__.split('-')[0]}-nncf{nncf.__version__}")
    xml = os.path.join(out, "int8.xml")
    if os.path.exists(xml):
        return xml
    _quiet_nncf()
    t0 = time.monotonic()
    tmp = out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    model = ov.convert_model(os.path.join(d, OV_GRAPHS[graph]))
    calib = calibration_feeds(cfg) if calib is None else calib
    qmodel = nncf.quantize(model, nncf.Dataset(calib), model_type=nncf.ModelType.TRANSFORMER,
                           subset_size=len(calib))
    # compress_to_fp16=False: the fp32 constants (biases, LayerNorm, embeddings) stay fp32.
    ov.save_model(qmodel, os.path.join(tmp, "int8.xml"), compress_to_fp16=False)
    shutil.rmtree(out, ignore_errors=True)
    os.rename(tmp, out)
    log(f"{key}: OpenVINO int8 IR ({graph} graph) built in {time.monotonic() - t0:.1f} s -> {out}")
    return xml


def ov_config(threads):
    # f32 inference precision: no bf16 on a CPU that has avx512_bf16 (or AMX).
    return {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": int(threads),
            "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"}


def ov_runtime_ops(compiled):
    """{(layer type, runtime precision, primitive): count} of a compiled model's runtime graph,
    without the bookkeeping nodes (constants, inputs, outputs, reshapes)."""
    counts = {}
    for node in compiled.get_runtime_model().get_ordered_ops():
        rt = node.get_rt_info()
        get = lambda k: rt[k].astype(str) if k in rt else "?"  # noqa: E731
        lt = get("layerType")
        if lt in ("Const", "Input", "Output", "Parameter", "Result", "Reshape", "Squeeze",
                  "Unsqueeze"):
            continue
        k = (lt, get("runtimePrecision"), get("primitiveType"))
        counts[k] = counts.get(k, 0) + 1
    return counts


def fmt_ov_ops(counts):
    """'FullyConnected 36 (u8 brgemm_avx512_I8 25, i8 brgemm_avx512_i8 11), ...', int8 first."""
    by_type = {}
    for (lt, prec, prim), n in counts.items():
        by_type.setdefault(lt, []).append((n, prec, prim))
    int8 = lambda v: any(p in ("i8", "u8") for _, p, _ in v)  # noqa: E731
    parts = []
    for lt, v in sorted(by_type.items(), key=lambda kv: (not int8(kv[1]), -sum(x[0] for x in kv[1]))):
        v.sort(key=lambda x: -x[0])
        inner = ", ".join(f"{prec} `{prim}` {n}" for n, prec, prim in v)
        parts.append(f"{lt} {sum(x[0] for x in v)} ({inner})")
    return "; ".join(parts)


def _onnx_weights(path):
    import numpy as np
    import onnx
    from onnx import numpy_helper
    # Copies: the arrays numpy_helper returns are read-only, CTranslate2 quantizes in place.
    return {i.name: np.array(numpy_helper.to_array(i)) for i in onnx.load(path).graph.initializer}


def build_ct2_from_weights(w, cfg, out, tokens=None):
    """A CTranslate2 int8 BERT encoder from the builder's weights (name -> array, MatMul weights
    [in, out]), as CTranslate2's TransformersConverter BertLoader builds a BertModel spec."""
    import numpy as np
    from ctranslate2.specs import common_spec, transformer_spec
    enc = transformer_spec.TransformerEncoderSpec(
        cfg["layers"], cfg["heads"], pre_norm=False, activation=common_spec.Activation.GELU,
        layernorm_embedding=True, num_source_embeddings=2,
        embeddings_merge=common_spec.EmbeddingsMerge.ADD)
    spec = transformer_spec.TransformerEncoderModelSpec(enc, pooling_layer=False)
    spec.encoder.scale_embeddings = False
    spec.encoder.embeddings[0].weight = w["emb.word"]
    spec.encoder.embeddings[1].weight = w["emb.type"]
    spec.encoder.position_encodings.encodings = w["emb.pos"]
    spec.encoder.layernorm_embedding.gamma = w["emb.ln.gamma"]
    spec.encoder.layernorm_embedding.beta = w["emb.ln.beta"]

    def linear(ls, p):  # torch Linear layout: weight [out, in]
        ls.weight = np.ascontiguousarray(w[p + ".w"].T)
        ls.bias = w[p + ".b"]

    for li, ls in enumerate(spec.encoder.layer):
        p = f"l{li}"
        qkv = ls.self_attention.linear[0]
        qkv.weight = np.ascontiguousarray(
            np.concatenate([w[f"{p}.{n}.w"].T for n in ("q", "k", "v")], axis=0))
        qkv.bias = np.concatenate([w[f"{p}.{n}.b"] for n in ("q", "k", "v")])
        linear(ls.self_attention.linear[1], p + ".attn_out")
        ls.self_attention.layer_norm.gamma = w[p + ".attn_ln.gamma"]
        ls.self_attention.layer_norm.beta = w[p + ".attn_ln.beta"]
        linear(ls.ffn.linear_0, p + ".ffn_in")
        linear(ls.ffn.linear_1, p + ".ffn_out")
        ls.ffn.layer_norm.gamma = w[p + ".ffn_ln.gamma"]
        ls.ffn.layer_norm.beta = w[p + ".ffn_ln.beta"]
    spec.config.layer_norm_epsilon = 1e-12
    if tokens is None:
        tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [
            f"tok{i}" for i in range(5, cfg["vocab"])]
    spec.config.unk_token = "[UNK]"
    spec.register_vocabulary(tokens)
    spec.validate()
    spec.optimize(quantization="int8")
    tmp = out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    spec.save(tmp)
    shutil.rmtree(out, ignore_errors=True)
    os.rename(tmp, out)
    return out


def build_ct2(key, cfg, d):
    """CTranslate2 int8 model dir of the same weights; cached. Call with the lock held."""
    import ctranslate2
    out = os.path.join(d, f"ct2-{ctranslate2.__version__}-int8")
    if os.path.exists(os.path.join(out, "model.bin")):
        return out
    t0 = time.monotonic()
    build_ct2_from_weights(_onnx_weights(os.path.join(d, "fp32.onnx")), cfg, out)
    log(f"{key}: CTranslate2 int8 model built in {time.monotonic() - t0:.1f} s -> {out}")
    return out


CT2_INFO_PROBE = r"""
import sys, ctranslate2
ctranslate2.set_log_level(__import__("logging").INFO)
ctranslate2.Encoder(sys.argv[1], device="cpu", compute_type="int8", intra_threads=1, inter_threads=1)
"""


def ct2_backend_info(path):
    """CTranslate2's own account of the CPU path (ISA, GEMM backend) from its load-time log."""
    try:
        p = subprocess.run([sys.executable, "-c", CT2_INFO_PROBE, path], capture_output=True,
                           text=True, timeout=120, env=dict(os.environ, CT2_VERBOSE="1"))
    except (OSError, subprocess.TimeoutExpired):
        return None
    keep = []
    for line in (p.stderr + p.stdout).splitlines():
        msg = re.sub(r"^(\[[^\]]*\]\s*)+", "", line).strip()  # drop "[time] [thread N] [info]"
        if any(k in msg for k in ("CPU:", "ISA", "GEMM", "MKL", "oneDNN", "Ruy", "compute type",
                                  "Selected", "packed")):
            keep.append(msg.strip(" -"))
    return "; ".join(dict.fromkeys(keep)) or None


# ----------------------------------------------------------------------------------------------
# 3./4. Measurements
# ----------------------------------------------------------------------------------------------

class OtherLoad:
    """CPU time used by other processes (and stolen by the hypervisor) while a point runs, in
    cores: (machine busy time - this process's and its children's CPU time) / wall time."""
    TCK = os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _busy():
        with open("/proc/stat", encoding="utf-8") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        # user nice system idle iowait irq softirq steal ...
        return (v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)) / OtherLoad.TCK

    @staticmethod
    def _mine():
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def __enter__(self):
        self.b0, self.m0, self.t0 = self._busy(), self._mine(), time.monotonic()
        return self

    def __exit__(self, *exc):
        wall = max(time.monotonic() - self.t0, 1e-6)
        self.cores = max(0.0, (self._busy() - self.b0) - (self._mine() - self.m0)) / wall
        return False


class Timing:
    def __init__(self, quick):
        self.warmup_runs, self.warmup_s = (2, 0.1) if quick else (3, 0.5)
        self.min_runs, self.min_s = (5, 0.3) if quick else (20, 2.0)
        self.max_s = 10.0 if quick else 60.0


def summarize(samples_ms):
    import numpy as np
    a = np.asarray(samples_ms)
    return dict(median_ms=float(np.median(a)), p10_ms=float(np.percentile(a, 10)),
                p90_ms=float(np.percentile(a, 90)), runs=len(samples_ms))


class OrtPeer:
    def __init__(self, timing):
        self.timing = timing
        self.sessions = {}

    def session(self, path, threads):
        import onnxruntime as ort
        key = (path, threads)
        if key not in self.sessions:
            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
            so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            self.sessions[key] = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        return self.sessions[key]

    def drop(self):
        self.sessions.clear()

    def run(self, path, threads, feeds):
        return self.session(path, threads).run(["last_hidden_state"], feeds)[0]

    def measure(self, path, threads, feeds):
        sess = self.session(path, threads)
        return time_calls(lambda: sess.run(["last_hidden_state"], feeds), self.timing)


def time_calls(run, t):
    """Warm-up, then timed calls of run() until the Timing limits; a summarize() dict."""
    t0, n = time.perf_counter(), 0
    while n < t.warmup_runs or time.perf_counter() - t0 < t.warmup_s:
        run()
        n += 1
    samples = []
    start = time.perf_counter()
    while True:
        a = time.perf_counter_ns()
        run()
        samples.append((time.perf_counter_ns() - a) / 1e6)
        el = time.perf_counter() - start
        if (len(samples) >= t.min_runs and el >= t.min_s) or (el >= t.max_s and len(samples) >= 3):
            break
    return summarize(samples)


class OvPeer:
    """OpenVINO int8 IR, one compiled model per (IR, threads), one infer request each."""

    def __init__(self, timing):
        self.timing = timing
        self.compiled = {}
        self.core = None

    def request(self, xml, threads):
        key = (xml, threads)
        if key not in self.compiled:
            import openvino as ov
            if self.core is None:
                self.core = ov.Core()
            c = self.core.compile_model(self.core.read_model(xml), "CPU", ov_config(threads))
            self.compiled[key] = (c, c.create_infer_request())
        return self.compiled[key]

    def drop(self):
        self.compiled.clear()

    def run(self, xml, threads, feeds):
        _, req = self.request(xml, threads)
        return next(iter(req.infer(feeds).values()))

    def measure(self, xml, threads, feeds):
        _, req = self.request(xml, threads)
        # Inputs shared (no copy in), the output copied out as ORT's sess.run does.
        return time_calls(lambda: req.infer(feeds, share_inputs=True), self.timing)


class Ct2Peer:
    """CTranslate2 Encoder (compute_type int8), one per (model dir, threads)."""

    def __init__(self, timing):
        self.timing = timing
        self.encoders = {}

    def encoder(self, path, threads):
        key = (path, threads)
        if key not in self.encoders:
            import ctranslate2
            self.encoders[key] = ctranslate2.Encoder(path, device="cpu", compute_type="int8",
                                                     intra_threads=threads, inter_threads=1)
        return self.encoders[key]

    def drop(self):
        self.encoders.clear()

    @staticmethod
    def args(feeds):
        """forward_batch arguments: int32 ids [batch, seq] and lengths [batch] from the mask
        (token types are 0: CTranslate2 adds type-0 embeddings when none are given)."""
        import ctranslate2
        import numpy as np
        ids = np.ascontiguousarray(feeds["input_ids"], dtype=np.int32)
        lengths = np.ascontiguousarray(feeds["attention_mask"].sum(axis=1), dtype=np.int32)
        return (ctranslate2.StorageView.from_array(ids), ctranslate2.StorageView.from_array(lengths))

    def run(self, path, threads, feeds):
        import numpy as np
        ids, lengths = self.args(feeds)
        return np.array(self.encoder(path, threads).forward_batch(ids, lengths).last_hidden_state)

    def measure(self, path, threads, feeds):
        import numpy as np
        enc = self.encoder(path, threads)
        ids, lengths = self.args(feeds)
        # The output copied to numpy, as the other peers return it.
        return time_calls(lambda: np.array(enc.forward_batch(ids, lengths).last_hidden_state),
                          self.timing)


ERROR_INPUTS = 3  # batch-8 inputs (seq 128) per model for the output-error table


def output_errors(cfg, runners, threads):
    """{peer: {max_abs, mean_abs, mean_cos, min_cos}} of last_hidden_state against ORT fp32 (the
    fused graph) on ERROR_INPUTS random batch-8 x 128 inputs; cosine per token row."""
    import numpy as np
    ref_run = runners.pop("ort-fp32")
    acc = {p: dict(max_abs=0.0, abs_sum=0.0, n=0, cos=[]) for p in runners}
    for i in range(ERROR_INPUTS):
        feeds = make_feeds(cfg, 8, 128, SEED + 4242 + i)
        ref = np.asarray(ref_run(feeds), dtype=np.float64).reshape(-1, cfg["hidden"])
        for p, run in runners.items():
            try:
                out = np.asarray(run(feeds), dtype=np.float64).reshape(-1, cfg["hidden"])
            except Exception as e:  # noqa: BLE001
                acc[p]["error"] = f"{type(e).__name__}: {e}"[:200]
                continue
            d = np.abs(out - ref)
            a = acc[p]
            a["max_abs"] = max(a["max_abs"], float(d.max()))
            a["abs_sum"] += float(d.sum())
            a["n"] += d.size
            a["cos"].append((out * ref).sum(1) / (np.linalg.norm(out, axis=1) *
                                                  np.linalg.norm(ref, axis=1)))
    res = {}
    for p, a in acc.items():
        if "error" in a or not a["n"]:
            res[p] = dict(error=a.get("error", "no output"))
            continue
        cos = np.concatenate(a["cos"])
        res[p] = dict(max_abs=a["max_abs"], mean_abs=a["abs_sum"] / a["n"],
                      mean_cos=float(cos.mean()), min_cos=float(cos.min()))
    return res


def make_feeds(cfg, batch, seq, seed):
    import numpy as np
    rng = np.random.default_rng(seed)
    return {"input_ids": rng.integers(0, cfg["vocab"], size=(batch, seq), dtype=np.int64),
            "attention_mask": np.ones((batch, seq), dtype=np.int64),
            "token_type_ids": np.zeros((batch, seq), dtype=np.int64)}


def build_q8bert(args):
    """Returns (binary path, None) or (None, reason it is skipped). Call with the lock held."""
    if args.no_q8bert:
        return None, "skipped (--no-q8bert)"
    if args.q8bert_bin:
        if os.access(args.q8bert_bin, os.X_OK):
            return args.q8bert_bin, None
        return None, f"--q8bert-bin {args.q8bert_bin} is not an executable"
    if shutil.which("cargo") is None:
        return None, "cargo not found"
    log("cargo build --release --example bench_e2e")
    p = subprocess.run(["cargo", "build", "--release", "--example", "bench_e2e",
                        "--message-format=json-render-diagnostics"],
                       cwd=ROOT, capture_output=True, text=True)
    if p.returncode != 0:
        errs = [ln for ln in p.stderr.splitlines() if ln.strip().startswith("error")]
        reason = errs[0].strip() if errs else (p.stderr.strip().splitlines() or ["?"])[-1]
        return None, f"`cargo build --release --example bench_e2e` failed: {reason}"
    exe = None
    for line in p.stdout.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if (msg.get("reason") == "compiler-artifact" and msg.get("executable")
                and msg.get("target", {}).get("name") == "bench_e2e"):
            exe = msg["executable"]
    exe = exe or os.path.join(ROOT, "target", "release", "examples", "bench_e2e")
    if not os.access(exe, os.X_OK):
        return None, f"built, but {exe} is missing"
    return exe, None


def measure_q8bert(exe, key, batch, seq, threads, timing, int8_attention=False, per_token=False,
                   weight_bits=8, dynamic_attention=False, huge_pages=False):
    cmd = [exe, "--shape", key, "--batch", str(batch), "--seq", str(seq), "--threads",
           str(threads), "--min-time-ms", str(int(timing.min_s * 1000))]
    if int8_attention:
        cmd.append("--int8-attention")
    if per_token:
        cmd.append("--per-token")
    if weight_bits != 8:
        cmd += ["--weight-bits", str(weight_bits)]
    if dynamic_attention:
        cmd.append("--dynamic-attention")
    if huge_pages:
        cmd.append("--huge-pages")
    try:
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                           timeout=max(120.0, 10 * timing.max_s))
    except subprocess.TimeoutExpired:
        return dict(error="timed out")
    for line in reversed(p.stdout.strip().splitlines()):
        try:
            res = json.loads(line)
        except ValueError:
            continue
        if isinstance(res, dict) and "median_ms" in res:
            return res
    tail = (p.stderr.strip().splitlines() or p.stdout.strip().splitlines() or ["no output"])[-1]
    return dict(error=f"exit {p.returncode}: {tail[:200]}")


# ----------------------------------------------------------------------------------------------
# 5. Report
# ----------------------------------------------------------------------------------------------

def machine_info():
    info = {"model_name": "?", "flags": set()}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            k, _, v = line.partition(":")
            if k.strip() == "Model name":
                info["model_name"] = v.strip()
            elif k.strip() == "Flags":
                info["flags"] = set(v.split())
    except OSError:
        pass
    if not info["flags"]:
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as f:
                for line in f:
                    if line.startswith("flags"):
                        info["flags"] = set(line.split(":", 1)[1].split())
                        break
        except OSError:
            pass
    info["cpus"] = os.cpu_count()
    info["kernel"] = platform.release()
    return info


def tool_versions():
    def cmd(*c):
        try:
            return subprocess.run(c, cwd=ROOT, capture_output=True, text=True).stdout.strip()
        except OSError:
            return "?"
    rev = cmd("git", "rev-parse", "--short", "HEAD") or "?"
    if cmd("git", "status", "--porcelain", "--untracked-files=no"):
        rev += " (with uncommitted changes)"
    import numpy
    import onnx
    import onnxruntime
    from importlib import metadata

    def pkg(name):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"
    return {"q8bert commit": rev, "rustc": cmd("rustc", "--version") or "?",
            "python": platform.python_version(), "onnxruntime": onnxruntime.__version__,
            "onnx": onnx.__version__, "numpy": numpy.__version__, "openvino": pkg("openvino"),
            "nncf": pkg("nncf"), "ctranslate2": pkg("ctranslate2")}


def variant_table(title, key, peer, what, against, ctx, res):
    """Markdown lines: `peer`'s ms per cell, against the per-token pack and the peers `against`."""
    L = [f"{title}, {what}, against {', '.join(PEER_TITLE[a] for a in against)} "
         f"(✓: >= {TARGET_VS_OV}x):", "",
         f"| batch x seq | threads | {PEER_TITLE[peer]} ms | vs q8bert per-token | "
         + " | ".join(f"vs {PEER_TITLE[a]}" for a in against) + " |",
         "|---|---:|---:|---:|" + "---:|" * len(against)]
    for (b, s) in ctx["points"]:
        for th in ctx["threads"]:
            r = res.get((key, b, s, th), {})
            q = r.get(peer)
            L.append(f"| {b}x{s} | {th} | {fmt_ms(q)} | {fmt_r(r.get('q8bert-pt'), q)} | "
                     + " | ".join(fmt_x(r.get(a), q, TARGET_VS_OV) for a in against) + " |")
    L.append("")
    return L


def fmt_ms(v):
    if v is None:
        return "—"
    return f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 100 else f"{v:.0f}"


def fmt_r(num, den):
    """A ratio without a target mark."""
    if num is None or den is None:
        return "—"
    return f"{num / den:.2f}x"


def fmt_x(num, den, target):
    if num is None or den is None:
        return "—"
    s = num / den
    return f"{s:.2f}x {'✓' if s >= target else '✗'}"


def write_svg(path, results, models, points, threads_list, peers=PEERS):
    """Grouped bars (log-scale latency) per model shape, one group per shape x threads."""
    import math
    colors = {"q8bert": "#d1495b", "q8bert-pt": "#8f2d56", "q8bert-w7": "#c06c84", "q8bert-dyn": "#6a4c93", "q8bert-hp": "#9d4edd", "q8bert-i8a": "#edae49",
              "ort-int8": "#2e86ab", "ort-fp32": "#a3a9b3", "ov-int8": "#3b8b5a",
              "ct2-int8": "#8c6d31"}
    PEERS = peers  # noqa: N806 (the peers shown)
    W, panel_h, top, left, right, bottom = 1200, 330, 56, 70, 20, 62
    groups = [(b, s, t) for (b, s) in points for t in threads_list]
    H = top + len(models) * (panel_h + bottom) + 10
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           f'viewBox="0 0 {W} {H}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="24" text-anchor="middle" font-size="17" font-weight="bold">'
           'End-to-end latency, median ms (log scale, lower is better)</text>']
    lx = left
    for peer in PEERS:
        out.append(f'<rect x="{lx}" y="36" width="14" height="12" fill="{colors[peer]}"/>'
                   f'<text x="{lx + 19}" y="46" font-size="13">{PEER_TITLE[peer]}</text>')
        lx += 40 + 8 * len(PEER_TITLE[peer])
    for mi, key in enumerate(models):
        y0 = top + mi * (panel_h + bottom) + 22
        ph = panel_h - 22
        vals = [results.get((key, b, s, t), {}).get(p) for (b, s, t) in groups for p in PEERS]
        vals = [v for v in vals if v]
        out.append(f'<text x="{left}" y="{y0 - 8}" font-size="14" font-weight="bold">'
                   f'{SHAPES[key]["title"]}</text>')
        if not vals:
            out.append(f'<text x="{left + 10}" y="{y0 + 30}" font-size="13">no data</text>')
            continue
        lo = 10 ** math.floor(math.log10(min(vals)))
        narrow = (W - left - right) / len(groups) * 0.8 / len(PEERS) < 24
        top_v = max(vals) * (2.5 if narrow else 1.25)  # room for the value labels
        hi = next(m * 10 ** e for e in range(math.floor(math.log10(top_v)), 99)
                  for m in (1, 2, 5) if m * 10 ** e >= top_v)
        pw = W - left - right

        def ypos(v):
            return y0 + ph - (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)) * ph

        dec = lo
        while dec <= hi * 1.0001:
            for mult in (1, 2, 5):
                v = dec * mult
                if v > hi * 1.0001:
                    break
                y = ypos(v)
                major = mult == 1
                out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" '
                           f'stroke="{"#c8c8c8" if major else "#ececec"}" stroke-width="1"/>')
                out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" '
                           f'text-anchor="end" fill="#444">{v:g}</text>')
            dec *= 10
        out.append(f'<text x="18" y="{y0 + ph / 2}" font-size="12" text-anchor="middle" '
                   f'transform="rotate(-90 18 {y0 + ph / 2})">ms</text>')
        gw = pw / len(groups)
        bw = min(40.0, gw * 0.8 / len(PEERS))
        for gi, (b, s, t) in enumerate(groups):
            cx = left + gw * (gi + 0.5)
            r = results.get((key, b, s, t), {})
            for pi, peer in enumerate(PEERS):
                x = cx - bw * len(PEERS) / 2 + pi * bw
                v = r.get(peer)
                if v:
                    y = ypos(v)
                    out.append(f'<rect x="{x + 1:.1f}" y="{y:.1f}" width="{bw - 2:.1f}" '
                               f'height="{y0 + ph - y:.1f}" fill="{colors[peer]}">'
                               f'<title>{PEER_TITLE[peer]} {b}x{s}, {t} thread(s): '
                               f'{v:.2f} ms</title></rect>')
                    if bw >= 24:
                        out.append(f'<text x="{x + bw / 2:.1f}" y="{y - 4:.1f}" font-size="10" '
                                   f'text-anchor="middle">{fmt_ms(v)}</text>')
                    else:  # narrow bars: the value written upwards
                        tx, ty = x + bw / 2 + 3, y - 3
                        out.append(f'<text x="{tx:.1f}" y="{ty:.1f}" font-size="9" '
                                   f'transform="rotate(-90 {tx:.1f} {ty:.1f})">{fmt_ms(v)}</text>')
                else:
                    out.append(f'<text x="{x + bw / 2:.1f}" y="{y0 + ph - 4:.1f}" font-size="9" '
                               f'text-anchor="middle" fill="#888">n/a</text>')
            out.append(f'<text x="{cx:.1f}" y="{y0 + ph + 17}" font-size="12" '
                       f'text-anchor="middle">{b}x{s}</text>')
            out.append(f'<text x="{cx:.1f}" y="{y0 + ph + 32}" font-size="11" '
                       f'text-anchor="middle" fill="#555">{t} thread{"s" if t > 1 else ""}</text>')
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y0 + ph}" y2="{y0 + ph}" '
                   'stroke="#333"/>')
        out.append(f'<line x1="{left}" x2="{left}" y1="{y0}" y2="{y0 + ph}" stroke="#333"/>')
    out.append("</svg>")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")


def _is_qop(op_type):
    return op_type.startswith(("Q", "DynamicQuantize", "MatMulInteger", "ConvInteger"))


def chart_name(page):
    """bench_latency.svg beside BENCHMARKS.md; bench_latency_zen3.svg beside BENCHMARKS_ZEN3.md."""
    stem = os.path.splitext(os.path.basename(page))[0]
    suffix = stem.split("_", 1)[1].lower() if "_" in stem else ""
    return f"bench_latency_{suffix}.svg" if suffix else "bench_latency.svg"


def write_page(path, svg_name, ctx):
    m, v, res, det = ctx["machine"], ctx["versions"], ctx["results"], ctx["details"]
    flags = m["flags"]
    yn = lambda f: "yes" if f in flags else "no"  # noqa: E731
    t = ctx["timing"]
    L = ["# q8bert end-to-end benchmarks", ""]
    L.append(f"Generated by `scripts/bench_e2e.py{' --quick' if ctx['quick'] else ''}` on "
             f"{ctx['date']} ({ctx['elapsed_min']:.1f} min). All numbers: median latency of one "
             "`run` call in milliseconds; lower is better. Speedup = peer ms / q8bert ms; "
             f"✓ marks the issue-5 targets (≥ {TARGET_VS_INT8}x vs ORT int8, "
             f"≥ {TARGET_VS_FP32}x vs ORT fp32) and the issue-20 target (≥ {TARGET_VS_OV}x vs "
             "OpenVINO int8).")
    L += ["", f"Command: `{ctx['command']}`"]
    if ctx["quick"]:
        L += ["", "**Quick mode**: few runs per point; numbers are indicative only."]
    if ctx["partial"]:
        L += ["", f"**Incomplete run**: {ctx['partial']}."]
    L += ["", "## Machine", "",
          f"- CPU: {m['model_name']} ({m['cpus']} logical CPUs, shared; `lscpu` model name as "
          "the hypervisor reports it)",
          f"- avx512_vnni: {yn('avx512_vnni')}, avx_vnni: {yn('avx_vnni')}, "
          f"avx512f: {yn('avx512f')}, avx512_bf16: {yn('avx512_bf16')}, amx_int8: {yn('amx_int8')} "
          "(q8bert's AMX kernel, and OpenVINO's AMX brgemm, where present)",
          f"- Linux {m['kernel']}", "", "## Versions", ""]
    L += [f"- {k}: {val}" for k, val in v.items()]
    L += ["", "## Method", "",
          "- Models: BERT encoders with seeded random weights, output `last_hidden_state`, built "
          "by the script as ONNX (opset 17, dynamic batch and sequence axes) in the PyTorch "
          "exporter's op pattern; BERT-base (12 layers, hidden 768, 12 heads, FFN 3072) and the "
          "all-MiniLM-L6-v2 shape (6 layers, hidden 384, 12 heads, FFN 1536), both with vocab "
          "30522 and 512 positions.",
          "- ORT fp32: the graph after `onnxruntime.transformers.optimizer.optimize_model("
          "model_type=\"bert\")` (fused: " + "; ".join(
              f"{k}: {', '.join(f'{o} {n}' for o, n in mm['fused'].items())}"
              for k, mm in ctx["meta"].items()) + ").",
          "- ORT int8: `onnxruntime.quantization.quantize_dynamic` of that graph, QInt8 weights "
          "(per tensor), u8 activations quantized at run time (int8 ops: " + "; ".join(
              f"{k}: {', '.join(f'{o} {n}' for o, n in mm['quant_ops'].items() if _is_qop(o))}"
              for k, mm in ctx["meta"].items()) + ").",
          "- Sessions: CPUExecutionProvider, `intra_op_num_threads` = threads, "
          "`inter_op_num_threads` = 1, sequential execution, `ORT_ENABLE_ALL` graph optimizations. "
          "Inputs: random token ids within the vocab, attention mask all ones, token types 0.",
          f"- Timing: {t.warmup_runs}+ warm-up runs (≥ {t.warmup_s} s), then at least "
          f"{t.min_runs} timed runs and {t.min_s} s per point (at most {t.max_s} s); q8bert's "
          f"`bench_e2e` example is given `--min-time-ms {int(t.min_s * 1000)}` and does its own "
          "warm-up.",
          "- q8bert per-token: the same weights packed as `trainer quantize` packs by default "
          "(`bench_e2e --per-token`, format 1.4: per-channel weights, a scale and a zero point "
          "per token computed at run time for every linear layer's input, a scale per embedding "
          "row); the `q8bert` column is the paper's scheme (per-tensor weights, static input "
          "scales).",
          "- q8bert dynamic int8 attention: the per-token pack with `trainer quantize "
          "--dynamic-int8-attention` (format 1.6, `bench_e2e --per-token --dynamic-attention`, "
          "opt-in): Q·Kᵀ and P·V as int8 GEMMs, every row of Q, K and V in every head with its "
          "own scale taken at run time, probabilities as u8 with their row's scale; fidelity on "
          "real all-MiniLM-L6-v2 level with fp32 attention (docs/ACCURACY.md).",
          "- q8bert int8 attention: the same weights packed with int8 Q·Kᵀ and P·V (format 1.1, "
          "`bench_e2e --int8-attention`: Q, K, V requantized, probabilities as u8); a model must be "
          "trained with `trainer fine-tune --int8-attention` to keep its accuracy "
          "(docs/ACCURACY.md).",
          "- q8bert's random weights are its own (`bench_e2e` builds them); the other peers share "
          "the ONNX graph's weights, so only they appear in the output-error table (q8bert's "
          "fidelity on real models: docs/ACCURACY.md and `scripts/bench_corpus.py`).",
          ]
    ov_ops = {k: i["ov_ops"] for k, i in ctx["peer_info"].items() if i.get("ov_ops")}
    if "ov-int8" in ctx["peers"]:
        L.append(
            f"- OpenVINO int8: `openvino.convert_model` of the {'un-fused' if ctx['ov_graph'] == 'raw' else 'ORT-fused'} "
            f"fp32 graph (`{OV_GRAPHS[ctx['ov_graph']]}`, `--ov-graph {ctx['ov_graph']}`), then "
            "`nncf.quantize(model, nncf.Dataset(...), model_type=nncf.ModelType.TRANSFORMER, "
            f"subset_size={OV_CALIB_SAMPLES})` on {OV_CALIB_SAMPLES} calibration inputs (batch 1, "
            "half of sequence 32 and half of 128, random ids), saved as IR "
            "(`compress_to_fp16=False`) and compiled for `CPU` with "
            "`{\"INFERENCE_PRECISION_HINT\": \"f32\", \"INFERENCE_NUM_THREADS\": threads, "
            "\"NUM_STREAMS\": 1, \"PERFORMANCE_HINT\": \"LATENCY\"}` (no bf16); timed: "
            "`InferRequest.infer(inputs, share_inputs=True)` (the output copied out, as ORT's "
            "`run`). What it runs (`compiled.get_runtime_model()` after a 1x128 inference, "
            "1 thread: layer type, runtime precision, primitive; constants, inputs, outputs and "
            "reshapes left out; `u8`/`i8` FullyConnected = int8 GEMM with u8 or i8 activations "
            "and i8 weights, `Subgraph` = the fused attention): " + " ".join(
                f"**{k}**: {fmt_ov_ops(c)}." for k, c in ov_ops.items()))
    if "ct2-int8" in ctx["peers"]:
        be = {k: i["ct2_backend"] for k, i in ctx["peer_info"].items() if i.get("ct2_backend")}
        L.append(
            "- CTranslate2 int8: the same fp32 weights (read from the ONNX graph) put into a "
            "`ctranslate2.specs.TransformerEncoderSpec` as CTranslate2's own `BertLoader` "
            "(TransformersConverter) builds a `BertModel` (post-norm, erf GELU, word + token-type "
            "embeddings added, then positions and the embedding LayerNorm; Q, K, V fused into one "
            "linear), saved with `quantization=\"int8\"` (int8 weights, a scale per output row), "
            "loaded with `ctranslate2.Encoder(path, device=\"cpu\", compute_type=\"int8\", "
            "intra_threads=threads, inter_threads=1)`; timed: `forward_batch(ids, lengths)` on "
            "int32 `StorageView`s plus the copy of `last_hidden_state` to numpy. Its load log "
            "(`CT2_VERBOSE=1`): " + (next(iter(be.values())) if be else "not available") + ".")
    notes = [f"{PEER_TITLE[p]} ({k}): {n}" for k, i in ctx["peer_info"].items()
             for p, n in i.get("notes", {}).items()]
    if notes:
        L.append("- Not measured: " + "; ".join(notes))
    L += [f"- Per point the peers run back to back while the script holds "
          f"`{LOCK_PATH}` (the lock is released between points); their order rotates between "
          f"passes, with a {PEER_PAUSE_S} s pause between two peers (so that worker threads "
          "spinning after a run are asleep before the next peer starts). "
          f"Passes: {ctx['passes']}" + ("; a cell is the median of the per-pass medians."
                                        if ctx["passes"] > 1 else "."),
          ]
    all_loads = [x for v in ctx["loads"].values() for x in v]
    if all_loads:
        L.append(f"- Background load (CPU time of other processes and hypervisor steal while a "
                 f"point ran, in cores out of {m['cpus']}): mean {statistics.mean(all_loads):.2f}, "
                 f"max {max(all_loads):.2f}" + (" — the machine was not quiet; treat the numbers "
                 "with care." if max(all_loads) > 0.15 else "."))
    if ctx["q8bert_note"]:
        L.append(f"- q8bert column: {ctx['q8bert_note']}")
    kernels = sorted({d.get("kernel") for d in det.values() if d.get("kernel")})
    if kernels:
        L.append(f"- q8bert kernel reported by `bench_e2e`: {', '.join(kernels)}")
    L += ["", "## Results", "", f"![latency per shape: q8bert and its peers]({svg_name})", ""]
    for key in ctx["models"]:
        c = SHAPES[key]
        L += [f"### {c['title']} ({c['layers']} layers, hidden {c['hidden']}, {c['heads']} heads, "
              f"FFN {c['inter']})", "",
              "| batch x seq | threads | q8bert ms | ORT int8 ms | ORT fp32 ms | "
              "speedup vs ORT int8 | speedup vs ORT fp32 | q8bert int8 attention ms | "
              "its speedup vs ORT int8 | vs ORT fp32 |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for (b, s) in ctx["points"]:
            for th in ctx["threads"]:
                r = res.get((key, b, s, th), {})
                q, i8, f32 = r.get("q8bert"), r.get("ort-int8"), r.get("ort-fp32")
                qa = r.get("q8bert-i8a")
                L.append(f"| {b}x{s} | {th} | {fmt_ms(q)} | {fmt_ms(i8)} | {fmt_ms(f32)} | "
                         f"{fmt_x(i8, q, TARGET_VS_INT8)} | {fmt_x(f32, q, TARGET_VS_FP32)} | "
                         f"{fmt_ms(qa)} | {fmt_x(i8, qa, TARGET_VS_INT8)} | "
                         f"{fmt_x(f32, qa, TARGET_VS_FP32)} |")
        L.append("")
        if not any(p in ctx["peers"] for p in ("q8bert-pt", "ov-int8", "ct2-int8")):
            continue
        L += [f"{c['title']}, against OpenVINO and CTranslate2 (issue 20: ≥ {TARGET_VS_OV}x "
              "OpenVINO int8 in every cell):", "",
              "| batch x seq | threads | q8bert per-token ms | q8bert ms | OpenVINO int8 ms | "
              "CTranslate2 int8 ms | q8bert per-token vs OpenVINO | q8bert vs OpenVINO | "
              "q8bert int8 attention vs OpenVINO | q8bert per-token vs CTranslate2 |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for (b, s) in ctx["points"]:
            for th in ctx["threads"]:
                r = res.get((key, b, s, th), {})
                q, qp, qa = r.get("q8bert"), r.get("q8bert-pt"), r.get("q8bert-i8a")
                ov, ct = r.get("ov-int8"), r.get("ct2-int8")
                L.append(f"| {b}x{s} | {th} | {fmt_ms(qp)} | {fmt_ms(q)} | {fmt_ms(ov)} | "
                         f"{fmt_ms(ct)} | {fmt_x(ov, qp, TARGET_VS_OV)} | "
                         f"{fmt_x(ov, q, TARGET_VS_OV)} | {fmt_x(ov, qa, TARGET_VS_OV)} | "
                         f"{fmt_r(ct, qp)} |")
        L.append("")
        for peer, what, against in VARIANT_TABLES:
            if peer in ctx["peers"]:
                L += variant_table(c["title"], key, peer, what, against, ctx, res)
    errs = {k: i["errors"] for k, i in ctx["peer_info"].items() if i.get("errors")}
    if errs:
        L += ["### Output error vs ORT fp32", "",
              f"`last_hidden_state` of each int8 peer against ORT fp32 (the fused graph) on the "
              f"same {ERROR_INPUTS} random batch-8 x 128 inputs of the same weights; cosine per "
              "token row (mean and minimum over all rows), absolute difference over all elements.",
              "", "| model | peer | mean cosine | min cosine | mean abs diff | max abs diff |",
              "|---|---|---:|---:|---:|---:|"]
        for key, e in errs.items():
            for p in PEERS:
                if p not in e:
                    continue
                x = e[p]
                if "mean_cos" in x:
                    L.append(f"| {key} | {PEER_TITLE[p]} | {x['mean_cos']:.5f} | "
                             f"{x['min_cos']:.5f} | {x['mean_abs']:.3g} | {x['max_abs']:.3g} |")
                else:
                    L.append(f"| {key} | {PEER_TITLE[p]} | error: {x.get('error')} | | | |")
        L.append("")
    L += ["<details><summary>Spread per point (p10 / median / p90 ms and timed runs of the last "
          "pass; background load in cores, max over passes)</summary>", "",
          "| model | batch x seq | threads | peer | p10 | median | p90 | runs | other load |",
          "|---|---|---:|---|---:|---:|---:|---:|---:|"]
    for (key, b, s, th, peer), d in sorted(det.items()):
        ld = ctx["loads"].get((key, b, s, th))
        ld = f"{max(ld):.2f}" if ld else "?"
        if "median_ms" in d:
            L.append(f"| {key} | {b}x{s} | {th} | {PEER_TITLE[peer]} | {fmt_ms(d.get('p10_ms'))} | "
                     f"{fmt_ms(d['median_ms'])} | {fmt_ms(d.get('p90_ms'))} | "
                     f"{d.get('runs', d.get('iters', '?'))} | {ld} |")
        else:
            L.append(f"| {key} | {b}x{s} | {th} | {PEER_TITLE[peer]} | error: "
                     f"{d.get('error', '?')} | | | | {ld} |")
    L += ["", "</details>", ""]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(L))


# ----------------------------------------------------------------------------------------------

def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="few runs per point; page goes to /tmp")
    ap.add_argument("--out", help="markdown page (default docs/BENCHMARKS.md, "
                    "or /tmp/q8bert-bench/BENCHMARKS.md with --quick)")
    ap.add_argument("--models", default="bert-base,minilm", help="comma list of bert-base,minilm")
    ap.add_argument("--points", default="1x32,1x128,8x128,32x128", help="comma list of BATCHxSEQ")
    ap.add_argument("--threads", default="1,2", help="comma list of thread counts")
    ap.add_argument("--passes", type=int, help="passes over all points (default 3, 1 with --quick)")
    ap.add_argument("--no-q8bert", action="store_true", help="no q8bert columns (peers only)")
    ap.add_argument("--peers", default=",".join(PEERS),
                    help=f"comma list of peers to time (default all: {','.join(PEERS)})")
    ap.add_argument("--ov-graph", choices=sorted(OV_GRAPHS), default="raw",
                    help="ONNX graph that OpenVINO converts: raw (un-fused, default) or fused "
                    "(after ORT's transformer optimizer)")
    ap.add_argument("--q8bert-bin", help="use this q8bert bench_e2e binary instead of building it")
    ap.add_argument("--no-venv", action="store_true",
                    help="use this interpreter (pip install --user what is missing)")
    ap.add_argument("--no-lock", action="store_true", help=f"do not take {LOCK_PATH}")
    args = ap.parse_args()
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    for m in args.models:
        if m not in SHAPES:
            ap.error(f"unknown model shape {m!r} (known: {', '.join(SHAPES)})")
    try:
        args.points = [tuple(int(x) for x in p.lower().split("x")) for p in args.points.split(",")]
        args.threads = [int(t) for t in args.threads.split(",")]
    except ValueError:
        ap.error("--points is like 1x32,8x128 and --threads like 1,2")
    args.peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    for p in args.peers:
        if p not in PEERS:
            ap.error(f"unknown peer {p!r} (known: {', '.join(PEERS)})")
    if args.no_q8bert:
        args.peers = [p for p in args.peers if not p.startswith("q8bert")]
    if args.passes is None:
        args.passes = 1 if args.quick else 3
    if args.out is None:
        args.out = ("/tmp/q8bert-bench/BENCHMARKS.md" if args.quick
                    else os.path.join(ROOT, "docs", "BENCHMARKS.md"))
    return args


def prepare_peers(args, key, cfg, d, ortp, ovp, ct2p):
    """Builds (or finds cached) the OpenVINO and CTranslate2 models of one shape, reads which
    kernels OpenVINO compiled, and measures every peer's output error against ORT fp32.
    Returns (paths {peer: path}, info dict). Call with the lock held."""
    paths, info = {}, {"notes": {}}
    if "ov-int8" in args.peers:
        try:
            paths["ov-int8"] = build_openvino(key, cfg, d, args.ov_graph)
            # Dynamic shapes: the CPU plugin picks a layer's primitive at its first run, so the
            # runtime graph is read after one 1x128 inference.
            c, req = ovp.request(paths["ov-int8"], 1)
            req.infer(make_feeds(cfg, 1, 128, SEED))
            info["ov_ops"] = ov_runtime_ops(c)
        except Exception as e:  # noqa: BLE001
            info["notes"]["ov-int8"] = f"{type(e).__name__}: {e}"[:300]
            log(f"{key}: OpenVINO peer unavailable: {info['notes']['ov-int8']}")
    if "ct2-int8" in args.peers:
        try:
            paths["ct2-int8"] = build_ct2(key, cfg, d)
            info["ct2_backend"] = ct2_backend_info(paths["ct2-int8"])
        except Exception as e:  # noqa: BLE001
            info["notes"]["ct2-int8"] = f"{type(e).__name__}: {e}"[:300]
            log(f"{key}: CTranslate2 peer unavailable: {info['notes']['ct2-int8']}")
    th = max(args.threads)
    runners = {"ort-fp32": lambda f: ortp.run(os.path.join(d, "fp32_opt.onnx"), th, f)}
    if "ort-int8" in args.peers:
        runners["ort-int8"] = lambda f: ortp.run(os.path.join(d, "int8.onnx"), th, f)
    if "ov-int8" in paths:
        runners["ov-int8"] = lambda f: ovp.run(paths["ov-int8"], th, f)
    if "ct2-int8" in paths:
        runners["ct2-int8"] = lambda f: ct2p.run(paths["ct2-int8"], th, f)
    if len(runners) > 1:
        info["errors"] = output_errors(cfg, runners, th)
        log(f"{key}: output error vs ORT fp32: " + ", ".join(
            f"{PEER_TITLE[p]} cos {e['mean_cos']:.5f} max|d| {e['max_abs']:.3g}" if "mean_cos" in e
            else f"{PEER_TITLE[p]} {e.get('error')}" for p, e in info["errors"].items()))
    ortp.drop()
    ovp.drop()
    ct2p.drop()
    return paths, info


def main():
    args = parse_args()
    ensure_env(args)
    t_start = time.monotonic()
    import onnxruntime as ort
    ort.set_default_logger_severity(3)
    timing = Timing(args.quick)
    lock = lambda: SharedLock(not args.no_lock)  # noqa: E731
    ortp, ovp, ct2p = OrtPeer(timing), OvPeer(timing), Ct2Peer(timing)

    models, meta, peer_paths, peer_info = {}, {}, {}, {}
    with lock():  # one hold for the builds: cargo, then any model not in the cache yet
        exe, q8_note = (build_q8bert(args) if args.no_q8bert or any(
            p.startswith("q8bert") for p in args.peers) else (None, "skipped (--peers)"))
        for key in args.models:
            models[key], meta[key] = build_models(key, SHAPES[key])
            peer_paths[key], peer_info[key] = prepare_peers(args, key, SHAPES[key], models[key],
                                                            ortp, ovp, ct2p)
    if q8_note:
        log(f"q8bert column: {q8_note}")
        if "no example target" in q8_note:
            q8_note = ("not measured: the `bench_e2e` example does not exist yet in this tree "
                       f"({q8_note}).")
        elif not q8_note.startswith("skipped"):
            q8_note = f"not measured: {q8_note}"

    out = os.path.abspath(args.out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    svg = os.path.join(os.path.dirname(out), chart_name(out))
    raw = os.path.join(CACHE, "last_results.json")
    machine, versions = machine_info(), tool_versions()
    n_points = args.passes * len(args.models) * len(args.points) * len(args.threads)
    peers = [p for p in PEERS if p in args.peers]
    command = "python3 scripts/bench_e2e.py " + " ".join(sys.argv[1:])

    def report(done):
        """(Re)writes the page and chart; called after every point so a cut run keeps its data."""
        results = {}
        for (key, b, s, th, peer), meds in per_pass.items():
            results.setdefault((key, b, s, th), {})[peer] = statistics.median(meds)
        write_svg(svg, results, args.models, args.points, args.threads, peers)
        n_done = sum(len(v) for v in loads.values())
        ctx = dict(machine=machine, versions=versions, results=results, details=details,
                   timing=timing, quick=args.quick, passes=args.passes, models=args.models,
                   points=args.points, threads=args.threads, meta=meta, q8bert_note=q8_note,
                   loads=loads, date=datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
                   elapsed_min=(time.monotonic() - t_start) / 60, peers=peers,
                   peer_info=peer_info, ov_graph=args.ov_graph, command=command,
                   partial=None if done else f"{n_done} of {n_points} points measured so far")
        write_page(out, os.path.basename(svg), ctx)
        with open(raw, "w", encoding="utf-8") as f:
            json.dump({"|".join(map(str, k)): v for k, v in details.items()}, f, indent=1)
        if done:
            log(f"wrote {out} and {svg} (raw results: {raw})")

    per_pass = {}   # (key, b, s, t, peer) -> [median per pass]
    details = {}    # (key, b, s, t, peer) -> last result dict
    loads = {}      # (key, b, s, t) -> [cores used by other processes, per pass]
    q8_flags = {"q8bert": {}, "q8bert-pt": {"per_token": True},
                "q8bert-w7": {"per_token": True, "weight_bits": 7},
                "q8bert-dyn": {"per_token": True, "dynamic_attention": True},
                "q8bert-hp": {"per_token": True, "huge_pages": True},
                "q8bert-i8a": {"int8_attention": True}}
    for pas in range(args.passes):
        for key in args.models:
            cfg, d, paths = SHAPES[key], models[key], peer_paths[key]
            for (b, s) in args.points:
                feeds = make_feeds(cfg, b, s, SEED + b * 1000 + s)
                for th in args.threads:
                    rot = pas % len(peers)
                    order = peers[rot:] + peers[:rot]
                    with lock(), OtherLoad() as load:
                        for i, peer in enumerate(order):
                            if i:
                                time.sleep(PEER_PAUSE_S)
                            try:
                                if peer.startswith("q8bert"):
                                    if exe is None:
                                        continue
                                    r = measure_q8bert(exe, key, b, s, th, timing, **q8_flags[peer])
                                elif peer.startswith("ort-"):
                                    r = ortp.measure(os.path.join(
                                        d, "int8.onnx" if peer == "ort-int8" else "fp32_opt.onnx"),
                                        th, feeds)
                                elif peer not in paths:
                                    continue
                                elif peer == "ov-int8":
                                    r = ovp.measure(paths[peer], th, feeds)
                                else:
                                    r = ct2p.measure(paths[peer], th, feeds)
                            except Exception as e:  # noqa: BLE001
                                r = dict(error=f"{type(e).__name__}: {e}"[:200])
                            details[(key, b, s, th, peer)] = r
                            if "median_ms" in r:
                                per_pass.setdefault((key, b, s, th, peer), []).append(
                                    float(r["median_ms"]))
                    loads.setdefault((key, b, s, th), []).append(load.cores)
                    line = ", ".join(
                        f"{PEER_TITLE[p]} {fmt_ms(details.get((key, b, s, th, p), {}).get('median_ms'))}"
                        for p in peers if (key, b, s, th, p) in details)
                    log(f"pass {pas + 1}/{args.passes} {key} {b}x{s} {th}T: {line} ms "
                        f"(other load {load.cores:.2f} cores)")
                    report(done=False)
            # free this model's sessions before the next model
            ortp.drop()
            ovp.drop()
            ct2p.drop()

    report(done=True)


if __name__ == "__main__":
    main()
