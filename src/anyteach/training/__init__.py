"""Training: the one loop every method runs in, and the runs built on it.

`trainer` is the loop (per-epoch evaluation, checkpoint and resume); `ddp` what it does differently
under torchrun; `transfer` one student and its teachers in one run directory; `multi_teacher` the
sequential and soup orchestrations; `run_config` one run as a YAML file; `protocols` named recipes of
published protocols (`paper-imagenet`); `run_notes` the line a run that changed nothing ends with.

May import: `core`, `models`, `data`, `zoo`, `methods`, `analysis`.
"""
