"""RoBERTa's forward pass in numpy (float64), written from the architecture of Hugging Face
transformers' RobertaModel / RobertaForSequenceClassification, as an independent check of the
trainer's RoBERTa loading: it reads the checkpoint by RoBERTa's own tensor names and computes
position ids as RoBERTa does (padding_idx + 1 onward; no padding in a single sequence).

usage: python3 roberta_reference.py MODEL_DIR < ids.json > out.json
ids.json: [[token ids of text 1], ...]; out.json: per text the logits (a model with a
classification head) or the mean over tokens of the last hidden states.
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


def layer_norm(x, g, b, eps):
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
    pre = "roberta." if any(k.startswith("roberta.") for k in w) else ""
    eps = cfg.get("layer_norm_eps", 1e-5)
    lin = lambda x, name: x @ w[f"{name}.weight"].T + w[f"{name}.bias"]
    ln = lambda x, name: layer_norm(x, w[f"{name}.weight"], w[f"{name}.bias"], eps)
    heads, dim = cfg["num_attention_heads"], cfg["hidden_size"]
    dh = dim // heads
    pad = cfg.get("pad_token_id", 1)
    outs = []
    for ids in json.load(sys.stdin):
        t = len(ids)
        positions = np.arange(t) + pad + 1
        x = (w[f"{pre}embeddings.word_embeddings.weight"][ids]
             + w[f"{pre}embeddings.position_embeddings.weight"][positions]
             + w[f"{pre}embeddings.token_type_embeddings.weight"][0])
        x = ln(x, f"{pre}embeddings.LayerNorm")
        for i in range(cfg["num_hidden_layers"]):
            p = f"{pre}encoder.layer.{i}"
            q, k, v = (lin(x, f"{p}.attention.self.{n}").reshape(t, heads, dh).transpose(1, 0, 2) for n in ("query", "key", "value"))
            scores = (q / math.sqrt(dh)) @ k.transpose(0, 2, 1)
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            probs = scores / scores.sum(-1, keepdims=True)
            ctx = (probs @ v).transpose(1, 0, 2).reshape(t, dim)
            a = ln(lin(ctx, f"{p}.attention.output.dense") + x, f"{p}.attention.output.LayerNorm")
            x = ln(lin(gelu(lin(a, f"{p}.intermediate.dense")), f"{p}.output.dense") + a, f"{p}.output.LayerNorm")
        if "classifier.out_proj.weight" in w:
            # RobertaClassificationHead: dense, tanh, out_proj on <s>.
            outs.append(lin(np.tanh(lin(x[0], "classifier.dense")), "classifier.out_proj").tolist())
        else:
            outs.append(x.mean(0).tolist())
    json.dump(outs, sys.stdout)


main()
