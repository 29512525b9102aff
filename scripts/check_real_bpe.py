#!/usr/bin/env python3
"""Byte-level BPE parity on real GPT-2 / RoBERTa vocabulary files.

The parity suite (tests/bpe_parity.rs) uses a 4,000-token BPE trained with RoBERTa's pipeline:
no PyPI package ships roberta-base's tokenizer. GPT-2's vocab.json and merges.txt do ship, in
the openai-whisper 20230124 sdist (whisper/assets/gpt2, MIT), and RoBERTa's merges are GPT-2's
(its vocab.json holds the same 50,257 pieces under other ids); so does whisper's multilingual
byte-level BPE (whisper/assets/multilingual), checked too. For each, this script puts the files
with RoBERTa's five special tokens added (its layout: four first, <mask> last) into a RoBERTa directory with a tiny random model,
packs it with `trainer quantize` (the vocab.json + merges.txt path), and compares the packed
model's tokenizer (Python binding) with transformers' RoBERTa tokenizer loaded from the same
directory, on every untruncated case of tests/data/bpe/vectors.jsonl.

Needs torch and transformers (the venv of scripts/check_sentence_transformers.py), and release
builds of libq8bert.so and trainer:
  ~/.cache/q8bert/st/bin/python scripts/check_real_bpe.py
"""
import argparse
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SDIST = "openai-whisper-20230124.tar.gz"
SDIST_SHA256 = "31adf9353bf0e3f891b6618896f22c65cf78cd6f845a4d5b7125aa5102187f79"
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


def whisper_files(cache, which):
    path = os.path.join(cache, SDIST)
    if not os.path.isfile(path):
        os.makedirs(cache, exist_ok=True)
        html = urllib.request.urlopen("https://pypi.org/simple/openai-whisper/", timeout=60).read().decode()
        url = next(part.split('"')[0] for part in html.split('href="')[1:] if SDIST in part.split('"')[0])
        urllib.request.urlretrieve(url.split("#")[0], path)
    data = open(path, "rb").read()
    got = hashlib.sha256(data).hexdigest()
    if got != SDIST_SHA256:
        raise SystemExit(f"{path}: sha256 {got}, expected {SDIST_SHA256}; delete it and run again")
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        read = lambda name: t.extractfile(f"openai-whisper-20230124/whisper/assets/{which}/{name}").read()
        return json.loads(read("vocab.json")), read("merges.txt").decode("utf-8")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", default=os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "q8bert", "pkgs"))
    ap.add_argument("--out-dir", default=os.path.join(ROOT, "target", "real-bpe"))
    ap.add_argument("--trainer", default=os.path.join(ROOT, "target", "release", "trainer"))
    ap.add_argument("--lib", default=os.path.join(ROOT, "target", "release", "libq8bert.so"))
    args = ap.parse_args()

    failed = False
    for which in ("gpt2", "multilingual"):
        failed |= check(args, which)
    sys.exit(1 if failed else 0)


def check(args, which):
    """Parity on whisper's `which` BPE files; True if a case differs."""
    import torch
    import transformers as tf

    gpt2, merges = whisper_files(args.cache, which)
    # The multilingual vocab.json names id 50256 "" (whisper adds <|endoftext|> there); a .q8b
    # refuses an empty token, and no merge can produce one, so it gets that name back.
    if "" in gpt2 and "<|endoftext|>" not in gpt2:
        gpt2["<|endoftext|>"] = gpt2.pop("")
    n = len(gpt2)
    # roberta-base's layout: <s> <pad> </s> <unk> first (the position table's padding_idx is the
    # pad id), the pieces, <mask> last.
    vocab = {s: i for i, s in enumerate(SPECIALS[:4])}
    for piece, i in sorted(gpt2.items(), key=lambda kv: kv[1]):
        vocab[piece] = len(vocab)
    vocab["<mask>"] = len(vocab)
    d = os.path.join(args.out_dir, which)
    os.makedirs(d, exist_ok=True)
    json.dump(vocab, open(os.path.join(d, "vocab.json"), "w"))
    open(os.path.join(d, "merges.txt"), "w", encoding="utf-8").write(merges)
    # Special tokens as roberta-base declares them: <mask> takes the space before it (lstrip).
    added = {str(vocab[t]): {"content": t, "lstrip": t == "<mask>", "normalized": False, "rstrip": False, "single_word": False, "special": True} for t in SPECIALS}
    json.dump({"tokenizer_class": "RobertaTokenizer", "added_tokens_decoder": added, "bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>",
               "unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>", "add_prefix_space": False, "model_max_length": 1 << 20},
              open(os.path.join(d, "tokenizer_config.json"), "w"))
    torch.manual_seed(0)
    config = tf.RobertaConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64,
                              max_position_embeddings=8194, type_vocab_size=1, pad_token_id=vocab["<pad>"], bos_token_id=vocab["<s>"],
                              eos_token_id=vocab["</s>"], architectures=["RobertaModel"])
    tf.RobertaModel(config).save_pretrained(d)
    q8b = os.path.join(d, "model.q8b")
    r = subprocess.run([args.trainer, "quantize", "--model", d, "--output", q8b], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"trainer quantize failed:\n{r.stderr}")
    os.environ["Q8BERT_LIBRARY"] = args.lib
    sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))
    import q8bert

    ours = q8bert.Model(q8b, num_threads=1)
    hf = tf.AutoTokenizer.from_pretrained(d)
    cases = [json.loads(line) for line in open(os.path.join(ROOT, "tests", "data", "bpe", "vectors.jsonl"), encoding="utf-8")]
    # The C API takes NUL-terminated text: cases with a NUL go through tests/bpe_parity.rs only.
    with_nul = [c for c in cases if "\0" in c["text_a"] + (c["text_b"] or "")]
    # transformers drops an empty second text (`if text_pair`), `tokenizers` keeps it as an empty
    # pair (<s> a </s></s></s>); the runtime follows `tokenizers` (tests/bpe_parity.rs).
    empty_pair = [c for c in cases if c["text_b"] == ""]
    cases = [c for c in cases if c["max_len"] is None and c not in with_nul and c not in empty_pair]
    same, first_diff = 0, None
    for c in cases:
        want = hf(c["text_a"], c["text_b"])["input_ids"] if c["text_b"] is not None else hf(c["text_a"])["input_ids"]
        got = ours.tokenize(c["text_a"], c["text_b"]).tolist()
        if got == want:
            same += 1
        elif first_diff is None:
            at = next((i for i, (g, w) in enumerate(zip(got, want)) if g != w), min(len(got), len(want)))
            first_diff = (c["text_a"], c["text_b"], f"ids differ from position {at}: ours {got[at:at + 8]}, transformers {want[at:at + 8]}")
    pairs = sum(c["text_b"] is not None for c in cases)
    print(f"whisper {which} vocab.json ({n} pieces + {len(SPECIALS)} RoBERTa specials) and merges.txt ({len(merges.splitlines()) - 1} merges) "
          f"from {SDIST}; transformers {tf.__version__} {type(hf).__name__}")
    print(f"same ids: {same} of {len(cases)} cases ({pairs} pairs; left out: {len(with_nul)} cases with a NUL, {len(empty_pair)} with an empty second text)")
    if first_diff:
        print("first difference:", first_diff)
    return first_diff is not None


if __name__ == "__main__":
    main()
