"""Cheap screening of candidate recipes on a few demo pairs (never a verdict: verdicts come from whole studies).

usage: python research/scripts/screen.py screen.json
screen.json: {"pairs": [[student, teacher], ...], "data": "...", "configs": {label: {method:..., options...}}}
"""

import hashlib
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor


def run(args):
    import torch

    torch.set_num_threads(1)
    from pathlib import Path

    import anyteach
    from anyteach.core.registry import import_plugins

    import_plugins([str(Path(__file__).resolve().parents[1] / "presets.py")])  # the research presets
    label, cfg, student, teacher, data, out = args
    cfg = dict(cfg)
    method = cfg.pop("method")
    data = cfg.pop("data", data)
    t = time.time()
    teacher_free = not anyteach.METHODS[method].needs_teacher
    r = anyteach.transfer(
        f"zoo:mnist1d/{student}",
        None if teacher_free else f"zoo:mnist1d/{teacher}",
        data,
        method=method,
        out=out,
        progress=False,
        **cfg,
    )
    f = r.final
    return label, student, teacher, f["transfer_delta"], f["knowledge_gain"], f["knowledge_loss"], time.time() - t


spec = json.load(open(sys.argv[1]))
jobs = []
for s, t in spec["pairs"]:
    for label, cfg in spec["configs"].items():
        teacher = None if cfg["method"] in ("xe", "self") else t
        digest = hashlib.sha1(json.dumps([cfg, spec.get("data")], sort_keys=True).encode()).hexdigest()[:10]
        out = f"/tmp/screen/{label}-{digest}/{s}--{teacher}"
        if teacher is None and any(j[0] == label and j[2] == s for j in jobs):
            continue
        jobs.append((label, cfg, s, t, spec.get("data", "mnist1d"), out))
start = time.time()
rows = []
with ProcessPoolExecutor(2) as pool:
    for row in pool.map(run, jobs):
        rows.append(row)
        print(
            f"{row[0]:14s} {row[1]:14s}<-{row[2]:16s} Δ {row[3]:+.2f} (+{row[4]:.2f} -{row[5]:.2f}) {row[6]:.0f}s",
            flush=True,
        )
print(f"total {time.time() - start:.0f}s")
import collections

by = collections.defaultdict(list)
for r in rows:
    by[r[0]].append(r[3])
for k, v in by.items():
    print(f"{k:14s} mean Δ {sum(v) / len(v):+.3f} over {len(v)}")
