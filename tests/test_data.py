"""Dataset references: deterministic generation, splits, stratified subsets, image folders."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anyteach import AnyteachError, load_dataset, timm_classifier
from anyteach.data.references import stratified_subset


def test_mnist1d_is_deterministic_and_seeded(tiny_data):
    again = load_dataset("mnist1d:size=2000,eval=500,seed=0")  # from the on-disk cache
    assert torch.equal(tiny_data.inputs("train"), again.inputs("train"))
    other = load_dataset("mnist1d:size=2000,eval=500,seed=1")
    assert not torch.equal(tiny_data.inputs("train"), other.inputs("train"))
    assert tiny_data.size("train") == 1500 and tiny_data.size("eval") == 500
    assert tiny_data.inputs("eval").shape == (500, 40)
    assert set(tiny_data.labels("train").tolist()) == set(range(10))


def test_generation_leaves_global_random_state_alone():
    np.random.seed(123)
    expected = np.random.rand()
    np.random.seed(123)
    load_dataset("mnist1d:size=200,eval=50,seed=7")
    assert np.random.rand() == expected


def test_loader_yields_input_label_index(tiny_data):
    seen = []
    for x, y, idx in tiny_data.loader("eval", batch_size=128, shuffle=True, seed=3):
        assert torch.equal(tiny_data.inputs("eval")[idx], x)
        assert torch.equal(tiny_data.labels("eval")[idx], y)
        seen.append(idx)
    assert sorted(torch.cat(seen).tolist()) == list(range(500))

    def first(epoch):
        return next(iter(tiny_data.loader("train", shuffle=True, seed=3, epoch=epoch)))[2]

    assert torch.equal(first(0), first(0)) and not torch.equal(first(0), first(1))


def test_stratified_fraction():
    labels = np.repeat(np.arange(5), [100, 50, 20, 10, 3])
    keep = stratified_subset(labels, 0.1, seed=0)
    counts = np.bincount(labels[keep], minlength=5)
    assert counts.tolist() == [10, 5, 2, 1, 1]  # at least one per class
    assert len(set(keep.tolist())) == len(keep)
    assert not np.array_equal(keep, stratified_subset(labels, 0.1, seed=1))
    data = load_dataset("mnist1d:size=2000,eval=500,seed=0,fraction=0.2")
    assert data.size("transfer") == pytest.approx(300, abs=10)
    assert data.size("train") == 1500


@pytest.mark.parametrize(
    "ref, message",
    [
        ("mnist1d:size=abc", "is not an integer"),
        ("mnist1d:colour=red", "unknown option"),
        ("mnist1d:size=100,eval=200", "0 < eval < size"),
        ("mnist1d:fraction=0", "fraction"),
        ("cifar", "unknown dataset reference"),
        ("imagefolder:/no/such/dir", "no train/ directory"),
    ],
)
def test_bad_dataset_references(ref, message):
    with pytest.raises(AnyteachError, match=message):
        load_dataset(ref)


def test_unknown_split(tiny_data):
    with pytest.raises(AnyteachError, match="unknown split"):
        tiny_data.labels("test")


def test_imagefolder_with_each_models_preprocessing(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 10), ("val", 4)):
        for c in ("n01440764", "n01443537"):
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(
                    tmp_path / split / c / f"{i}.png"
                )
    data = load_dataset(f"imagefolder:{tmp_path},fraction=0.5")
    assert data.num_classes == 2 and data.class_names == ["tench", "goldfish"]
    assert data.size("train") == 20 and data.size("transfer") == 10 and data.size("eval") == 8
    model = timm_classifier("test_vit", num_classes=2)
    size = model.info.preprocessing.input_size
    x, y, idx = next(iter(data.loader("eval", batch_size=8, preprocessing=model.info.preprocessing, num_workers=0)))
    assert x.shape == (8, *size) and x.dtype == torch.uint8  # raw 8-bit pixels: the model normalises
    assert y.tolist() == data.labels("eval").tolist() and idx.tolist() == list(range(8))
    from anyteach import predict

    pred = predict(model, data, "eval")
    assert pred.logits.shape == (8, 2)


def test_signal_augmentation_is_the_loaders_own_and_follows_its_generator(tiny_data):
    import torch

    def first_batch(augment, seed=None):
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        return next(iter(tiny_data.loader("transfer", batch_size=64, augment=augment, generator=generator)))[0]

    plain = first_batch(False)
    assert torch.equal(plain, tiny_data.inputs("transfer")[:64])
    augmented = first_batch(True, seed=3)
    assert not torch.allclose(augmented, plain)
    assert torch.equal(augmented, first_batch(True, seed=3))  # the generator decides the randomness
    assert not torch.equal(augmented, first_batch(True, seed=4))
    shifted_only = first_batch({"shift": 2}, seed=3)  # explicit parameters: a circular shift keeps the values
    assert torch.equal(shifted_only.sort(1).values, plain.sort(1).values)
