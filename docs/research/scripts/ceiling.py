"""The capacity ceiling of each zoo model's architecture: what it reaches fine-tuned long on abundant labelled
MNIST-1D data (issue 16, item 3), as a lower bound on what the architecture can hold at all.

Each model is fine-tuned from its zoo weights (S0) with plain cross-entropy on N fresh *labelled* samples the
zoo never saw (`mnist1d:fresh=N`), AdamW lr 1e-3 cosine, batch 256, E epochs, and measured on the zoo's eval
split (the split every study measures on). One process, one model after another.

usage: PYTHONPATH=src python docs/research/scripts/ceiling.py OUT.json [zoo-models] [fresh N] [epochs E]
OUT.json: {"recipe": ..., "models": {ref: {"before": S0 acc, "ceiling": acc after, "seconds": wall}}}
"""
import json
import os
import sys
import tempfile
import time

import torch

import anyteach
from anyteach.demo import demo_study
from anyteach.study import load_study_spec

torch.set_num_threads(1)
out = sys.argv[1]
models = sys.argv[2] if len(sys.argv) > 2 else "mnist1d"
fresh = int(sys.argv[3]) if len(sys.argv) > 3 else 200_000
epochs = int(sys.argv[4]) if len(sys.argv) > 4 else 2
spec = demo_study()
spec["models"] = models
spec.pop("data")
spec = load_study_spec(spec)
base = spec.data
data = base + (":" if ":" not in base else ",") + f"fresh={fresh}"
recipe = {"epochs": epochs, "batch_size": 256, "optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-4,
          "lr_schedule": "cosine"}
result = {"recipe": {"data": data, "method": "xe", **recipe}, "models": {}}
if os.path.exists(out):
    result = json.load(open(out))  # resume: models already measured are kept
for ref in spec.models:
    if ref in result["models"]:
        continue
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        run = anyteach.transfer(ref, None, data, method="xe", out=tmp, progress=False, **recipe)
    final = run.final
    result["models"][ref] = {"before": final["student_acc_before"], "ceiling": final["student_acc"],
                             "seconds": round(time.time() - started, 1)}
    print(f"{ref:32s} S0 {final['student_acc_before']:6.2f} -> {final['student_acc']:6.2f} "
          f"({time.time() - started:.0f} s)", flush=True)
    with open(out + ".tmp", "w") as f:
        json.dump(result, f, indent=2)
    os.replace(out + ".tmp", out)
