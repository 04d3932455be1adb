"""The capacity ceiling of each zoo model's architecture: what it reaches fine-tuned long on abundant labelled
MNIST-1D data (issue 16, item 3), as a lower bound on what the architecture can hold at all.

Each model is fine-tuned from its zoo weights (S0) with plain cross-entropy on N fresh *labelled* samples the
zoo never saw (`mnist1d:fresh=N`), AdamW lr 1e-3 cosine, batch 256, E epochs, and measured on the zoo's eval
split (the split every study measures on). One process, one model after another. Defaults: the 100,000 fresh
samples of the teaching studies (4x the zoo's train split), now with their labels, 3 epochs (1,170 steps).

usage: PYTHONPATH=src python research/scripts/ceiling.py OUT.json [zoo-models] [fresh N] [epochs E] [a,b,...]
(the last argument: only these model names, e.g. to run two halves side by side into two files)
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
from anyteach.study.driver import load_study_spec

torch.set_num_threads(1)
out = sys.argv[1]
models = sys.argv[2] if len(sys.argv) > 2 else "mnist1d"
fresh = int(sys.argv[3]) if len(sys.argv) > 3 else 100_000
epochs = int(sys.argv[4]) if len(sys.argv) > 4 else 3
only = set(sys.argv[5].split(",")) if len(sys.argv) > 5 else None
spec = demo_study()
spec["models"] = models
spec.pop("data")
spec["methods"] = ["xe"]  # the demo's methods carry the seed-0 zoo's data; only the zoo's own data is wanted
spec = load_study_spec(spec)
base = spec.data
# calib=5000 only so that the fresh samples (and their cache) are those the teaching studies use
data = base + (":" if ":" not in base else ",") + f"calib=5000,fresh={fresh}"
recipe = {
    "epochs": epochs,
    "batch_size": 256,
    "optimizer": "adamw",
    "lr": 1e-3,
    "weight_decay": 1e-4,
    "lr_schedule": "cosine",
}
result = {"recipe": {"data": data, "method": "xe", **recipe}, "models": {}}
if os.path.exists(out):
    result = json.load(open(out))  # resume: models already measured are kept
for ref in spec.models:
    if ref in result["models"] or (only is not None and ref.rsplit("/", 1)[-1] not in only):
        continue
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        run = anyteach.transfer(ref, None, data, method="xe", out=tmp, progress=False, **recipe)
    final = run.final
    result["models"][ref] = {
        "before": final["student_acc_before"],
        "ceiling": final["student_acc"],
        "seconds": round(time.time() - started, 1),
    }
    print(
        f"{ref:32s} S0 {final['student_acc_before']:6.2f} -> {final['student_acc']:6.2f} "
        f"({time.time() - started:.0f} s)",
        flush=True,
    )
    with open(out + ".tmp", "w") as f:
        json.dump(result, f, indent=2)
    os.replace(out + ".tmp", out)
