#!/usr/bin/env python3
"""Markdown rows for docs/ACCURACY.md from fine-tune output directories.

    accuracy_table.py RUNS_DIR TASK [TASK ...]

expects RUNS_DIR/TASK-fp32 and RUNS_DIR/TASK-qat, each with all_results.json (fine-tune) and,
when the packed model was run through the runtime, runtime_eval.json (`trainer eval --reference
DIR/eval_predictions.json --output DIR/runtime_eval.json`).
"""
import json
import os
import sys

MAIN = {"sst2": ["accuracy"], "cola": ["matthews_correlation"], "mrpc": ["f1", "accuracy"], "stsb": ["pearson", "spearmanr"]}
SHORT = {"accuracy": "acc", "matthews_correlation": "MCC", "f1": "F1", "pearson": "Pearson", "spearmanr": "Spearman"}


def load(path):
    return json.load(open(path)) if os.path.exists(path) else None


def fmt(d, prefix, keys):
    if d is None or f"{prefix}{keys[0]}" not in d:
        return "—"
    return " / ".join(f"{100 * d[f'{prefix}{k}']:.2f}" for k in keys)


def main():
    root, tasks = sys.argv[1], sys.argv[2:]
    for t in tasks:
        keys = MAIN[t]
        fp, qat = (load(os.path.join(root, f"{t}-{m}", "all_results.json")) for m in ("fp32", "qat"))
        rfp, rqat = (load(os.path.join(root, f"{t}-{m}", "runtime_eval.json")) for m in ("fp32", "qat"))
        name = " / ".join(SHORT[k] for k in keys)
        def agree(r):
            if r is None or "runtime_agreement" not in r:
                return "—"
            return f"{100 * r['runtime_agreement']:.2f}% of {r['eval_samples']}"
        print(f"| {t} ({name}) | {fmt(fp, 'eval_', keys)} | {fmt(qat, 'eval_', keys)} | {fmt(rqat, 'eval_', keys)} | "
              f"{fmt(fp, 'eval_int8_simulated_', keys)} | {fmt(rfp, 'eval_', keys)} | {agree(rqat)} | {agree(rfp)} |")
    print()
    for t in tasks:
        for m in ("fp32", "qat"):
            r = load(os.path.join(root, f"{t}-{m}", "all_results.json"))
            if r:
                s = r["train_step_timing"]
                print(f"| {t} {m} | {r['train_samples']} | {r['epoch']:.0f} | {r['train_runtime']:.0f} s | "
                      f"{r['train_samples_per_second']:.1f} | {s['forward_ms_per_step']:.0f} / {s['backward_ms_per_step']:.0f} / {s['optimizer_ms_per_step']:.0f} |")


if __name__ == "__main__":
    main()
