"""python3 example.py MODEL.q8b "a sentence" [...]: classify sentences with the Python binding."""
import sys

import q8bert

with q8bert.Model(sys.argv[1], truncate=True) as model:
    logits = model.classify(sys.argv[2:])
    for text, row in zip(sys.argv[2:], logits):
        print(f"{text}\n  label: {model.labels[int(row.argmax())]}")
