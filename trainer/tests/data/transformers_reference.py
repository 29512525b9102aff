#!/usr/bin/env python3
"""Tiny random BERT, DistilBERT, RoBERTa and XLM-RoBERTa models written and run by Hugging Face
`transformers` itself, for trainer/tests/transformers_parity.rs.

Two frameworks, the same cases:
- PyTorch, when torch imports (transformers 5 has only PyTorch models): transformers initialises
  each model at random, `save_pretrained` writes it, and its PyTorch forward gives the outputs.
  Not a test dependency (PyPI's Linux torch wheel pulls gigabytes of CUDA); run it with
  Q8BERT_HF_PYTHON set to a Python that has torch (docs/MODELS.md has the figures).
- Flax otherwise (the test environment: transformers 4.57, jax CPU): the parameters are written
  as a PyTorch-layout model.safetensors (Flax `kernel` [in, out] -> `weight` [out, in],
  `embedding` and LayerNorm `scale` -> `weight`, the same names otherwise), with config.json from
  `config.save_pretrained`.
Either way the family's tokenizer files come from tests/data, texts are tokenized by Hugging
Face `tokenizers`, and the outputs (mean-pooled last hidden state, or logits) go to outputs.json.

Usage: transformers_reference.py OUT_DIR   (writes OUT_DIR/<case>/ and OUT_DIR/outputs.json)
"""
import json
import os
import shutil
import sys

import numpy as np
from tokenizers import Tokenizer
from tokenizers.implementations import BertWordPieceTokenizer
import transformers as tf

try:
    import torch
    FRAMEWORK = "torch"
except ImportError:
    FRAMEWORK = "flax"

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
DATA = os.path.join(ROOT, "tests", "data")
TEXTS = ["The film was very good.", "the cat sat on the mat", "It's not bad, is it?",
         "Größere Straßen führen zur Universität.", "Быстрая лиса и 東京 🎉"]
PAIRS = ["An answer.", "The dog sat.", "It is good", "Der schnelle Fuchs", "ｆｕｌｌ ｗｉｄｔｈ"]
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)

FAMILIES = {
    # family: (config class, base model, classifier, tokenizer files, extra config)
    "bert": (tf.BertConfig, "BertModel", "BertForSequenceClassification", ["vocab.txt"],
             dict(max_position_embeddings=64, type_vocab_size=2)),
    "distilbert": (tf.DistilBertConfig, "DistilBertModel", "DistilBertForSequenceClassification", ["vocab.txt"],
                   dict(dim=32, n_layers=2, n_heads=4, hidden_dim=64, max_position_embeddings=64)),
    "roberta": (tf.RobertaConfig, "RobertaModel", "RobertaForSequenceClassification", ["bpe/tokenizer.json"],
                dict(max_position_embeddings=66, type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2, layer_norm_eps=1e-5)),
    "xlm-roberta": (tf.XLMRobertaConfig, "XLMRobertaModel", "XLMRobertaForSequenceClassification", ["unigram/tokenizer.json"],
                    dict(max_position_embeddings=66, type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2, layer_norm_eps=1e-5)),
}


def tokenizer(family):
    if family in ("bert", "distilbert"):
        return BertWordPieceTokenizer(os.path.join(DATA, "vocab.txt"), lowercase=True)
    return Tokenizer.from_file(os.path.join(DATA, FAMILIES[family][3][0]))


def torch_layout(params):
    """Flax parameter tree -> PyTorch state dict (names and layouts)."""
    from flax.traverse_util import flatten_dict
    out = {}
    for path, v in flatten_dict(params).items():
        name, v = ".".join(path), np.asarray(v, dtype=np.float32)
        if name.endswith(".kernel"):
            name, v = name[:-len("kernel")] + "weight", v.T
        elif name.endswith(".embedding") or name.endswith(".scale"):
            name = name[:name.rindex(".")] + ".weight"
        out[name] = np.ascontiguousarray(v)
    return out


def run_case(out_dir, family, head, seed):
    cfg_cls, base, classifier, files, extra = FAMILIES[family]
    tok = tokenizer(family)
    vocab = tok.get_vocab_size()
    kw = dict(extra)
    if family != "distilbert":
        kw.update(TINY)
    pairs = head == "classifier"
    config = cfg_cls(vocab_size=vocab, **kw)
    if pairs:
        config.num_labels = 3
    config.architectures = [classifier if pairs else base]
    config.initializer_range = 0.2  # larger than BERT's 0.02, so attention is far from uniform
    d = os.path.join(out_dir, f"{family}-{head}")
    os.makedirs(d, exist_ok=True)
    rng = np.random.default_rng(seed)
    # transformers initialises biases to 0 and LayerNorm to (1, 0): perturb them so that a bias
    # or a LayerNorm read from the wrong place would show.
    if FRAMEWORK == "torch":
        torch.manual_seed(seed)
        model = getattr(tf, classifier if pairs else base)(config).eval()
        with torch.no_grad():
            for m in model.modules():
                for p in ([m.weight, m.bias] if isinstance(m, torch.nn.LayerNorm) else [m.bias] if isinstance(m, torch.nn.Linear) else []):
                    if p is not None:
                        p.add_(torch.from_numpy(rng.normal(0, 0.1, tuple(p.shape)).astype(np.float32)))
        model.save_pretrained(d)
    else:
        import jax
        from safetensors.numpy import save_file
        model = getattr(tf, "Flax" + (classifier if pairs else base))(config, seed=seed)
        model.params = jax.tree_util.tree_map_with_path(
            lambda path, v: v + rng.normal(0, 0.1, v.shape).astype(v.dtype)
            if path[-1].key in ("bias", "scale") else v, model.params)
        config.save_pretrained(d)
        save_file(torch_layout(model.params), os.path.join(d, "model.safetensors"))
    for f in files:
        shutil.copy(os.path.join(DATA, f), os.path.join(d, os.path.basename(f)))
    # Hugging Face tokenization, padded with the model's pad id.
    encs = [tok.encode(a, b) if pairs else tok.encode(a) for a, b in zip(TEXTS, PAIRS)]
    pad = config.pad_token_id if config.pad_token_id is not None else 0
    t = max(len(e.ids) for e in encs)
    ids = np.full((len(encs), t), pad, dtype=np.int32)
    types = np.zeros_like(ids)
    mask = np.zeros_like(ids)
    for i, e in enumerate(encs):
        ids[i, :len(e.ids)], types[i, :len(e.ids)], mask[i, :len(e.ids)] = e.ids, e.type_ids, 1
    if FRAMEWORK == "torch":
        args = dict(attention_mask=torch.from_numpy(mask).long())
        if family != "distilbert":
            args["token_type_ids"] = torch.from_numpy(types).long()
        with torch.no_grad():
            out = model(torch.from_numpy(ids).long(), **args)
        res = type("Out", (), {k: getattr(out, k).numpy() for k in ("logits", "last_hidden_state") if getattr(out, k, None) is not None})
    else:
        args = dict(attention_mask=mask, params=model.params, train=False)
        if family != "distilbert":
            args["token_type_ids"] = types
        res = model(ids, **args)
    if pairs:
        vecs = np.asarray(res.logits, dtype=np.float64)
    else:
        h = np.asarray(res.last_hidden_state, dtype=np.float64)
        m = mask[:, :, None].astype(np.float64)
        vecs = (h * m).sum(1) / m.sum(1)
    return {"dir": d, "family": family, "head": head, "pairs": pairs, "ids": [e.ids for e in encs],
            "outputs": vecs.tolist()}


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    cases = []
    for seed, family in enumerate(FAMILIES):
        for head in ("base", "classifier"):
            cases.append(run_case(out_dir, family, head, seed))
    with open(os.path.join(out_dir, "outputs.json"), "w") as f:
        json.dump({"transformers": tf.__version__, "framework": FRAMEWORK, "texts": TEXTS, "pairs": PAIRS, "cases": cases}, f)


if __name__ == "__main__":
    main()
