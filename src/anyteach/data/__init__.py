"""Data: what a user hands over (a reference string or objects) resolved to splits of samples.

`references` turns a dataset reference (`mnist1d`, `glyphs`, `imagefolder:`) into a `Dataset` whose
splits yield `(input, label, index)`; `objects` does the same for data a user holds as objects (torch
Datasets and DataLoaders, torchvision ImageFolders, Hugging Face splits); `images` decodes image files;
`glyph_images` draws the generated glyph images; `mixing` mixes the samples of a batch in pairs (mixup,
cutmix); `predictions` runs one model over one split once and caches the logits (and stops a model at
chance on its data).

May import: `core`, `models`.
"""

from .mixing import Mix, mix_batch
from .objects import InMemoryData, from_objects
from .predictions import Predictions, check_compatible, check_not_at_chance, predict
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
    "InMemoryData",
    "check_not_at_chance",
    "from_objects",
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
