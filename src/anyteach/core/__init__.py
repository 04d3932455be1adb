"""The ground floor: what every other part of anyteach stands on, and nothing about transfer itself.

User errors (`errors`), atomic file writes and the cache directory (`io`), the `Registry` type
(`registry`), seed derivation (`seeds`), every training option declared once (`options`), optimisers
and learning-rate schedules (`optim`), how models run on a device (`runtime`), the torchrun process
group and its collectives (`process_group`), experiment trackers (`trackers`), matplotlib set-up
(`plotting`) and the old module paths kept for one release (`moved`).

May import: nothing else of anyteach.
"""
