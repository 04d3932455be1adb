"""The blind guard, kept as a research plugin to measure what the held-out guard changed (research/guards.md).

`self+xe+wise.blind` is `self+xe+wise` as it was before its guard was fixed: cross-entropy on every calib label
and the WiSE α chosen on the same calib samples. It is the product preset with `held_out_choice` switched off for
this one name, so its runs are bitwise those of the old control.
"""

import dataclasses

from anyteach.methods import METHODS, register_method
from anyteach.training import trainer

BLIND = "self+xe+wise.blind"

if BLIND not in METHODS:
    register_method(
        dataclasses.replace(
            METHODS["self+xe+wise"],
            name=BLIND,
            description="the old self+xe+wise: fine-tunes on every calib label and chooses α on the same samples",
        )
    )
    _held_out_choice = trainer.held_out_choice

    def _blind(preset, data, seed):
        return (None, None) if preset.name == BLIND else _held_out_choice(preset, data, seed)

    trainer.held_out_choice = _blind
