"""The capacity ceiling of each glyphs zoo model: what its architecture reaches fine-tuned on abundant labelled
images (issue 27, item 4), the glyphs counterpart of research/scripts/ceiling.py (same output format, so
`research/scripts/pooled.py --ceilings FILE` reads it).

Each model is fine-tuned from its zoo weights (S0) with plain cross-entropy on N fresh *labelled* images the zoo
never saw (`glyphs:...,fresh=N`, the fresh stream of the zoo's seed: the teaching runs' unlabelled images are its
first draw of another size, so not the same images), AdamW lr 1e-3 cosine, batch 64, E epochs, and measured on
the zoo's 10,000 eval images. A lower bound on what the architecture holds. Defaults: 100,000 images (25x the
zoo's train split), one epoch (1,563 steps).

usage: PYTHONPATH=src python research/glyphs/ceiling.py OUT.json [--seed S] [--fresh N] [--epochs E] [--only a,b]
"""

import argparse
import json
import os
import tempfile
import time

import torch

import anyteach
from anyteach.zoo import get_zoo

parser = argparse.ArgumentParser()
parser.add_argument("out")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--fresh", type=int, default=100_000)
parser.add_argument("--epochs", type=int, default=1)
parser.add_argument("--only", default=None)
args = parser.parse_args()
torch.set_num_threads(1)
zoo = get_zoo("glyphs", args.seed)
data = f"{zoo.data},fresh={args.fresh}"
recipe = {
    "epochs": args.epochs,
    "batch_size": 64,
    "optimizer": "adamw",
    "lr": 1e-3,
    "weight_decay": 1e-4,
    "lr_schedule": "cosine",
}
only = set(args.only.split(",")) if args.only else None
result = {"recipe": {"data": data, "method": "xe", **recipe}, "models": {}}
if os.path.exists(args.out):
    result = json.load(open(args.out))  # resume: models already measured are kept
for ref in zoo.refs():
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
        f"{ref:40s} S0 {final['student_acc_before']:6.2f} -> {final['student_acc']:6.2f} ({time.time() - started:.0f} s)",
        flush=True,
    )
    with open(args.out + ".tmp", "w") as f:
        json.dump(result, f, indent=2)
    os.replace(args.out + ".tmp", args.out)
