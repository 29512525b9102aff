"""python3 example.py MODEL.q8b "a sentence" [...]: classify sentences (or embed them, for an
embedding model) with the Python package."""
import sys

import q8bert

with q8bert.Model(sys.argv[1], truncate=True) as model:
    texts = sys.argv[2:]
    if model.info.head == "embedding":
        for text, vec in zip(texts, model.encode(texts, normalize_embeddings=True)):
            print(f"{text}\n  embedding[:4]: {vec[:4]}")
    else:
        probs = model.predict(texts, apply_softmax=True)
        for text, label, p in zip(texts, model.classify(texts), probs):
            print(f"{text}\n  label: {label} ({p.max():.2f})")
