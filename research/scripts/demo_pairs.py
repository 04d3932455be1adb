"""How the demo's fixed pairs and teachers were drawn, and whether another build of the zoo would have drawn the
same: the rule the demo used to apply on every machine (24 pairs drawn round-robin over the teacher-strength
buckets with `random.Random(0)`, and per student the teacher the shipped forecast ranks first), applied once to
one build of the zoo, printed as the `pairs.list` and `teacher:` mapping that `src/anyteach/demo.py` holds.

usage: ANYTEACH_CACHE=DIR PYTHONPATH=src python research/scripts/demo_pairs.py SEED
"""

import json
import sys

from anyteach.analysis.metrics import strength_bucket, teacher_strength
from anyteach.study.driver import best_teachers, describe_models, sample_pairs
from anyteach.study.spec import MethodSpec, PairSpec, load_study_spec

seed = int(sys.argv[1])
data = f"mnist1d:seed={seed}"
teaching = f"mnist1d:seed={seed},calib=5000,fresh=100000"
spec = load_study_spec(
    {"models": f"mnist1d@{seed}", "data": data, "methods": [{"name": "pl+ens+wise", "data": teaching}]}
)
models = describe_models(spec.models, data, accuracies=True)
for m in sorted(models, key=lambda m: -m.eval_acc):
    print(f"{m.name:16s} {m.eval_acc:.2f}")
pairs = sample_pairs(models, PairSpec(random=24, seed=0, balanced=True))
print()
for s, t in pairs:
    edge = teacher_strength(t.eval_acc, s.eval_acc)
    print(f"{s.name:16s} <- {t.name:16s} {edge:+.2f} pp  {strength_bucket(edge)}")
students = list(dict.fromkeys(s for s, _ in pairs))
best = best_teachers(spec, MethodSpec("pl+ens+wise", data=teaching), students, models)
print(json.dumps({"list": [[s.name, t.name] for s, t in pairs], "best": {s.name: t.name for s, t in best}}))
