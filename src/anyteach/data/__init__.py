"""Data: what a user hands over (a reference string or objects) resolved to splits of samples.

`references` turns a dataset reference (`mnist1d`, `glyphs`, `imagefolder:`) into a `Dataset` whose
splits yield `(input, label, index)`; `images` decodes image files; `glyph_images` draws the
generated glyph images; `mixing` mixes the samples of a batch in pairs (mixup, cutmix);
`predictions` runs one model over one split once and caches the logits.

May import: `core`, `models`.
"""

from .mixing import Mix, mix_batch
from .predictions import Predictions, check_compatible, predict
from .references import (
    BatchOrder,
    Dataset,
    Glyphs,
    ImageFolder,
    Mnist1d,
    TensorLoader,
    augment_signals,
    default_workers,
    epoch_order,
    export_imagefolder,
    load_dataset,
    stratified_subset,
)

__all__ = [
    "BatchOrder",
    "Dataset",
    "Glyphs",
    "ImageFolder",
    "Mix",
    "Mnist1d",
    "Predictions",
    "TensorLoader",
    "augment_signals",
    "check_compatible",
    "default_workers",
    "epoch_order",
    "export_imagefolder",
    "load_dataset",
    "mix_batch",
    "predict",
    "stratified_subset",
]
