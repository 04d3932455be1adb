"""Headroom of the demo pairs: accuracies per split, positive flips on train vs fresh samples, and the
calibrated student-teacher ensemble (teacher weight w chosen on the calib split) on the eval split.

usage: PYTHONPATH=src python research/scripts/headroom.py [zoo-models] [data]
"""

import sys

import torch

from anyteach.data.predictions import predict
from anyteach.data.references import load_dataset
from anyteach.demo import demo_study
from anyteach.study.driver import load_study_spec, plan_study

models = sys.argv[1] if len(sys.argv) > 1 else "mnist1d"
spec = demo_study()
spec["models"] = models
spec.pop("data")
spec = load_study_spec(spec)
plan = plan_study(spec)
data = load_dataset(spec.data + (":" if ":" not in spec.data else ",") + "calib=5000,fresh=25000")
P = {}


def preds(ref, split):
    key = (ref, split)
    if key not in P:
        P[key] = predict(ref, data, split)
    return P[key]


print("model acc: train / fresh / calib / eval")
for m in plan.models:
    print(
        f"  {m.name:16s} "
        + " ".join(f"{preds(m.ref, s).accuracy:6.2f}" for s in ("train", "transfer", "calib", "eval"))
    )
ws = torch.linspace(0, 1, 21)


def mix_acc(s, t, w):
    p = (1 - w) * s.probabilities() + w * t.probabilities()
    return 100 * (p.argmax(1) == s.labels).float().mean().item()


print("pair: strength, posflips% train/fresh/eval, w*, ens gain on eval (w*), ens(0.5) gain, maxconf gain")
for s, t in plan.pairs:
    strength = t.eval_acc - s.eval_acc
    pf = []
    for split in ("train", "transfer", "eval"):
        a, b = preds(s.ref, split), preds(t.ref, split)
        pf.append(100 * ((~a.correct) & b.correct).float().mean().item())
    cs, ct = preds(s.ref, "calib"), preds(t.ref, "calib")
    accs = torch.tensor([mix_acc(cs, ct, w) for w in ws])
    w = ws[accs.argmax()].item()
    es, et = preds(s.ref, "eval"), preds(t.ref, "eval")
    base = es.accuracy
    mc = torch.where((es.probabilities().amax(1) >= et.probabilities().amax(1)), es.predicted, et.predicted)
    mcg = 100 * (mc == es.labels).float().mean().item() - base
    print(
        f"  {s.name:16s}<-{t.name:16s} {strength:+6.2f}  {pf[0]:5.2f} {pf[1]:5.2f} {pf[2]:5.2f}  w={w:.2f} "
        f"{mix_acc(es, et, w) - base:+6.2f} {mix_acc(es, et, 0.5) - base:+6.2f} {mcg:+6.2f}"
    )
