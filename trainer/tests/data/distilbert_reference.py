"""DistilBERT's forward pass in numpy (float64), written from the architecture of Hugging Face
transformers' DistilBertModel / DistilBertForSequenceClassification, as an independent check of
the trainer's DistilBERT loading: it reads the checkpoint by DistilBERT's own tensor names.

usage: python3 distilbert_reference.py MODEL_DIR < ids.json > out.json
ids.json: [[token ids of text 1], ...]; out.json: per text the logits (a model with a
classifier) or the mean over tokens of the last hidden states.
"""
import json
import math
import struct
import sys

import numpy as np

DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16}


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype=DTYPES[t["dtype"]]).reshape(t["shape"]).astype(np.float64)
    return out


def layer_norm(x, g, b, eps=1e-12):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


def gelu(x):
    erf = np.vectorize(math.erf)
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def main():
    d = sys.argv[1]
    cfg = json.load(open(f"{d}/config.json"))
    w = read_safetensors(f"{d}/model.safetensors")
    pre = "distilbert." if any(k.startswith("distilbert.") for k in w) else ""
    lin = lambda x, name: x @ w[f"{name}.weight"].T + w[f"{name}.bias"]
    heads, dim = cfg["n_heads"], cfg["dim"]
    dh = dim // heads
    outs = []
    for ids in json.load(sys.stdin):
        t = len(ids)
        x = w[f"{pre}embeddings.word_embeddings.weight"][ids] + w[f"{pre}embeddings.position_embeddings.weight"][:t]
        x = layer_norm(x, w[f"{pre}embeddings.LayerNorm.weight"], w[f"{pre}embeddings.LayerNorm.bias"])
        for i in range(cfg["n_layers"]):
            p = f"{pre}transformer.layer.{i}"
            q, k, v = (lin(x, f"{p}.attention.{n}_lin").reshape(t, heads, dh).transpose(1, 0, 2) for n in "qkv")
            scores = (q / math.sqrt(dh)) @ k.transpose(0, 2, 1)
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            probs = scores / scores.sum(-1, keepdims=True)
            ctx = (probs @ v).transpose(1, 0, 2).reshape(t, dim)
            sa = layer_norm(lin(ctx, f"{p}.attention.out_lin") + x, w[f"{p}.sa_layer_norm.weight"], w[f"{p}.sa_layer_norm.bias"])
            ffn = lin(gelu(lin(sa, f"{p}.ffn.lin1")), f"{p}.ffn.lin2")
            x = layer_norm(ffn + sa, w[f"{p}.output_layer_norm.weight"], w[f"{p}.output_layer_norm.bias"])
        if "classifier.weight" in w:
            pooled = np.maximum(lin(x[0], "pre_classifier"), 0.0)
            outs.append(lin(pooled, "classifier").tolist())
        else:
            outs.append(x.mean(0).tolist())
    json.dump(outs, sys.stdout)


main()
