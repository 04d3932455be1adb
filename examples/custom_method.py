"""Adding a transfer method: one target rule and one preset line.

A method is three registered parts (a target rule, a loss, an optional weight regulariser); a new
one usually needs only a new target rule, reusing the `kl` loss. This file adds
`kl+confident`: per sample the teacher's output where the teacher is more confident than
`CONFIDENCE`, the frozen student's own output elsewhere. Use it from the command line or a study:

    anyteach transfer --import examples/custom_method.py --method kl+confident \\
        --student zoo:mnist1d/mlp --teacher zoo:mnist1d/cnn_bn --out runs/confident
    # or, in a study file:  imports: [examples/custom_method.py]   methods: [kl+confident]

or run this file for a short transfer on the built-in MNIST-1D zoo (`anyteach zoo build mnist1d`).
"""

from __future__ import annotations

import torch

from anyteach.methods import (
    FROZEN,
    TARGET_RULES,
    MethodPreset,
    RuleInputs,
    Target,
    register_method,
    register_target_rule,
)

CONFIDENCE = 0.9
"""The teacher's max probability above which its output becomes the target."""


def confident_teacher(inputs: RuleInputs) -> Target:
    """The teacher where its max probability exceeds CONFIDENCE, the frozen student elsewhere."""
    teacher = inputs.teachers[0].to(inputs.frozen.dtype)
    confident = teacher.float().softmax(-1).amax(-1) > CONFIDENCE  # (B,): one tensor op, no loop
    logits = torch.where(confident.unsqueeze(1), teacher, inputs.frozen)
    return Target(logits, torch.where(confident, 1, FROZEN))


if "confident-teacher" not in TARGET_RULES:  # importing the file twice registers once
    register_target_rule("confident-teacher")(confident_teacher)
    register_method(
        MethodPreset(
            "kl+confident",
            "KL to the teacher where it is confident, to S_frozen elsewhere",
            target="confident-teacher",
            loss="kl",
        )
    )


if __name__ == "__main__":
    from anyteach import transfer

    result = transfer(
        "zoo:mnist1d/mlp", "zoo:mnist1d/cnn_bn", method="kl+confident", epochs=2, out="runs/custom_method"
    )
    print(
        f"student {result.final['student_acc']:.2f}% (Δ {result.final['transfer_delta']:+.2f} points), "
        f"saved to {result.student_path}"
    )
