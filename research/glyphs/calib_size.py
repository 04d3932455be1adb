"""How large must the glyphs calib split be? The teacher ranking's noise as a function of its size (no training).

Every choice the teaching presets make from data is made on the calib split: the forecast's teacher (its
available gain), the ensemble weight w and the WiSE α. This script measures how stable the first is. Each zoo
model predicts a pool of POOL labelled images drawn from a generator stream no split uses (stream 7 of the
zoo's seed); for each calib size n, REPEATS times, the available gain of every ordered pair
(`forecast.available_gains`, the `ens` rule's own choice of w) is computed on a random n-image subset and on
the rest of the pool (the reference, >= POOL - n images). Printed per n: Spearman ρ of the subset's available
gains with the reference's (over the 56 pairs, and within a student, mean), the share of students whose top-1
teacher on the subset is their top-1 on the reference, and the mean |difference| in pp.

usage: PYTHONPATH=src python research/glyphs/calib_size.py [--seed 0] [--pool 40000] [--repeats 10]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from anyteach import load_model
from anyteach.analysis.forecast import available_gains
from anyteach.data.glyph_images import generate_glyphs
from anyteach.zoo import get_zoo

parser = argparse.ArgumentParser()
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--pool", type=int, default=40_000)
parser.add_argument("--repeats", type=int, default=10)
parser.add_argument("--sizes", default="1000,2000,5000,10000")
parser.add_argument("--cache", default="runs/glyphs-calib-size")
args = parser.parse_args()
torch.set_num_threads(1)
started = time.time()
zoo = get_zoo("glyphs", args.seed)
cache = Path(args.cache) / f"seed{args.seed}-pool{args.pool}.pt"
if cache.exists():
    saved = torch.load(cache, weights_only=True)
    labels, logits = saved["labels"], saved["logits"]
else:
    images, labels = generate_glyphs(args.pool, args.seed, stream=7)
    logits = {}
    for ref in zoo.refs():
        model = load_model(ref).eval()
        with torch.no_grad():
            logits[ref] = torch.cat([model(images[i : i + 1000]) for i in range(0, len(images), 1000)])
        print(f"{ref}: {100 * (logits[ref].argmax(1) == labels).float().mean():.2f}%", flush=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"labels": labels, "logits": logits}, cache)
refs = list(logits)


def gains(index: torch.Tensor) -> pd.DataFrame:
    rows = []
    for s in refs:
        others = [t for t in refs if t != s]
        out = available_gains(logits[s][index], [logits[t][index] for t in others], labels[index])
        rows += [{"student": s, "teacher": t, "ag": g["available_gain"]} for t, g in zip(others, out)]
    return pd.DataFrame(rows)


rng = np.random.default_rng(0)
print(
    "| calib images | ρ over 56 pairs | ρ within a student (mean) | top-1 teacher as on the reference | mean abs diff (pp) |"
)
print("|---:|---:|---:|---:|---:|")
for n in (int(s) for s in args.sizes.split(",")):
    rho, within, top1, diff = [], [], [], []
    for _ in range(args.repeats):
        perm = torch.from_numpy(rng.permutation(args.pool))
        a, b = gains(perm[:n]), gains(perm[n:])
        rho.append(a["ag"].corr(b["ag"], method="spearman"))
        diff.append(float((a["ag"] - b["ag"]).abs().mean()))
        for s in refs:
            x, y = a[a["student"] == s], b[b["student"] == s]
            within.append(x["ag"].corr(y["ag"], method="spearman"))
            # ties on the subset count as a hit in proportion
            best = y["teacher"].iloc[int(np.argmax(y["ag"].to_numpy()))]
            tied = x[x["ag"] == x["ag"].max()]["teacher"]
            top1.append(float((tied == best).mean()))
    print(
        f"| {n:,} | {np.mean(rho):+.3f} | {np.nanmean(within):+.3f} | {100 * np.mean(top1):.0f}% | {np.mean(diff):.2f} |",
        flush=True,
    )
print(f"wall {time.time() - started:.0f} s, load average {os.getloadavg()}")
