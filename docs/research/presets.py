"""The presets the teaching-gains research (docs/research/teaching-gains.md) compared, as a plugin.

Every part they use is registered by anyteach itself (target rules `ens`, `ens-nll`, `ens-hard`,
`ens-fix`, `frozen-hard`, the `wise` regulariser); only the candidates that were not adopted live here,
so `anyteach methods` lists the product's presets while the log stays reproducible: every study
file under `studies/` names this file under `imports:`, and `scripts/screen.py` imports it.
"""

from anyteach.methods import MethodPreset, register_method

for preset in [
    MethodPreset("kl+ens", "KL to the calibrated student-teacher ensemble (teacher weight chosen on the calib split)",
                 "ens", "kl"),
    MethodPreset("kl+ens-nll", "KL to the calibrated student-teacher ensemble (teacher weight minimising NLL on the "
                 "calib split)", "ens-nll", "kl"),
    MethodPreset("pl+ens", "pseudo-labels: cross-entropy on the calibrated student-teacher ensemble's class",
                 "ens-hard", "kl"),
    MethodPreset("pl+self", "self-training control: cross-entropy on S_frozen's own predicted class", "frozen-hard",
                 "kl"),
    MethodPreset("kl+ens+wise", "kl+ens, exported as the WiSE interpolation chosen on the calib split", "ens", "kl",
                 "wise"),
    MethodPreset("kl+ens-nll+wise", "kl+ens-nll, exported as the WiSE interpolation chosen on the calib split",
                 "ens-nll", "kl", "wise"),
    MethodPreset("kl+ens-fix", "pseudo-label where the calibrated ensemble changes S_frozen's class, S_frozen elsewhere",
                 "ens-fix", "kl"),
    MethodPreset("kl+ens-fix+wise", "kl+ens-fix, exported as the WiSE interpolation chosen on the calib split",
                 "ens-fix", "kl", "wise"),
    MethodPreset("xe+wise", "control: cross-entropy fine-tuning with the same WiSE guard", None, "ce", "wise"),
    MethodPreset("xekl+ens", "α·KL to the calibrated student-teacher ensemble + (1−α)·CE", "ens", "kl",
                 defaults={"alpha": 0.5}),
]:
    register_method(preset)
