"""A user's own data: torch Datasets and DataLoaders per split, a torchvision ImageFolder, a Hugging Face
datasets split, and image folders with `calib/` and `unlabelled/`. Each becomes a dataset with an identity
of its contents (so predictions are cached and runs resume), the transfer split is the unlabelled one when
there is one, and a method that reads labels the data does not have is refused before anything runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset

from anyteach import AnyteachError, load_dataset, transfer
from anyteach.data.references import UNLABELLED


def signals(tiny_data):
    return {
        "train": TensorDataset(tiny_data.inputs("train"), tiny_data.labels("train")),
        "val": DataLoader(TensorDataset(tiny_data.inputs("eval"), tiny_data.labels("eval")), batch_size=64),
    }


def test_tensor_datasets_and_loaders_become_a_dataset_identified_by_content(tiny_data):
    data = load_dataset(signals(tiny_data), class_names=tiny_data.class_names, name="mine")
    assert data.num_classes == 10 and data.class_names == tiny_data.class_names
    assert torch.equal(data.inputs("eval"), tiny_data.inputs("eval"))
    assert torch.equal(data.labels("transfer"), tiny_data.labels("train"))
    assert data.transfer_labelled and not data.transfer_unseen and not data.has_split("calib")
    again = load_dataset(signals(tiny_data), class_names=tiny_data.class_names, name="mine")
    assert again.split_identity("eval") == data.split_identity("eval")
    changed = signals(tiny_data)
    labels = tiny_data.labels("eval").clone()
    labels[0] = (labels[0] + 1) % 10
    changed["val"] = TensorDataset(tiny_data.inputs("eval"), labels)
    other = load_dataset(changed, class_names=tiny_data.class_names)
    assert other.split_identity("eval") != data.split_identity("eval")
    assert other.split_identity("train") == data.split_identity("train")


def test_an_unlabelled_split_is_the_transfer_split_and_label_readers_are_refused(tiny_data, tiny_zoo):
    splits = {**signals(tiny_data), "unlabelled": TensorDataset(tiny_data.inputs("train")[:300])}
    data = load_dataset(splits)
    assert not data.transfer_labelled and data.transfer_unseen
    assert data.size("transfer") == 300 and bool((data.labels("transfer") == UNLABELLED).all())
    with pytest.raises(AnyteachError, match="reads the labels of the transfer data"):
        transfer(tiny_zoo["mlp"], tiny_zoo["gru_chunk4"], data, "kl+dp", progress=False, epochs=1)


@pytest.mark.parametrize(
    "splits, message",
    [
        ({"train": "x"}, "give at least an eval split"),
        ({"train": "x", "eval": "y", "holdout": "z"}, "unknown split 'holdout'"),
        ({"train": "x", "val": "y", "test": "z"}, "the eval split is given twice"),
    ],
)
def test_a_wrong_mapping_of_splits_is_one_line(splits, message):
    with pytest.raises(AnyteachError, match=message):
        load_dataset(splits)


def test_split_objects_that_cannot_be_read_are_one_line(tiny_data):
    with pytest.raises(AnyteachError, match="one TensorDataset is one split"):
        load_dataset(TensorDataset(tiny_data.inputs("eval"), tiny_data.labels("eval")))
    ragged = [(torch.zeros(3, 8, 8), 0), (torch.zeros(3, 9, 9), 1)]
    with pytest.raises(AnyteachError, match="different shapes"):
        load_dataset({"train": ragged, "eval": ragged})
    with pytest.raises(AnyteachError, match="labels run from 0 to 1 but there are 1 classes"):
        load_dataset(
            {"train": [(torch.zeros(2), 0), (torch.zeros(2), 1)], "eval": [(torch.zeros(2), 0)]}, class_names=["a"]
        )
    with pytest.raises(AnyteachError, match="must be class indices"):
        load_dataset({"train": [(torch.zeros(2), 0.5)], "eval": [(torch.zeros(2), 0.5)]})


def _images(root, split, classes, per_class, size, rng, flat=False):
    for c in range(classes):
        folder = root / split if flat else root / split / f"class{c}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{c}_{i}.png")


def test_an_image_folder_with_calib_and_unlabelled_folders(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 3), ("val", 2), ("calib", 2)):
        _images(tmp_path, split, 2, n, 12, rng)
    _images(tmp_path, "unlabelled/batch1", 1, 5, 12, rng, flat=True)
    data = load_dataset(f"imagefolder:{tmp_path}")
    assert data.has_split("calib") and not data.transfer_labelled and data.transfer_unseen
    assert data.size("transfer") == 5 and data.size("train") == 6
    assert data.input_shape("eval") == (3, 12, 12)
    x, y, _ = next(iter(data.loader("transfer", batch_size=5, num_workers=0)))
    assert x.shape[0] == 5 and bool((y == UNLABELLED).all())
    with pytest.raises(AnyteachError, match="fraction takes a subset of train"):
        load_dataset(f"imagefolder:{tmp_path},fraction=0.5")


def test_torchvision_image_folders_stream_with_each_models_own_transform(tmp_path):
    from torchvision.datasets import ImageFolder

    rng = np.random.default_rng(1)
    for split, n in (("train", 3), ("val", 2)):
        _images(tmp_path, split, 2, n, 20, rng)
    data = load_dataset({"train": ImageFolder(tmp_path / "train"), "val": ImageFolder(tmp_path / "val")}, name="pets")
    assert data.class_names == ["class0", "class1"] and data.size("eval") == 4
    x, _, _ = next(iter(data.loader("eval", batch_size=4, num_workers=0)))
    assert x.dtype == torch.uint8 and x.shape[-1] == 224  # the default transform; a model's own sets its size
    with pytest.raises(AnyteachError, match="every split as a torchvision ImageFolder without a transform"):
        load_dataset({"train": ImageFolder(tmp_path / "train"), "eval": [(torch.zeros(3, 4, 4), 0)]})


def test_a_hugging_face_split_with_class_names():
    datasets = pytest.importorskip("datasets")
    rng = np.random.default_rng(2)

    def split(n):
        images = [Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)) for _ in range(n)]
        features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["cat", "dog"])})
        return datasets.Dataset.from_dict({"image": images, "label": [i % 2 for i in range(n)]}, features=features)

    data = load_dataset({"train": split(6), "test": split(4)})
    assert data.class_names == ["cat", "dog"] and data.inputs("eval").shape == (4, 3, 8, 8)
    assert data.inputs("eval").dtype == torch.uint8 and data.labels("train").tolist() == [0, 1, 0, 1, 0, 1]


def test_class_names_in_another_order_than_the_models_are_refused(tiny_data):
    from torch import nn

    from anyteach import load_model, predict

    net = nn.Sequential(nn.Linear(40, 10))
    names = list(reversed(tiny_data.class_names))
    with pytest.raises(AnyteachError, match="name the same classes in another order \\(class 0 is 'nine'"):
        predict(load_model(net, class_names=names), tiny_data)
    assert predict(load_model(net, class_names=tiny_data.class_names), tiny_data).logits.shape == (500, 10)
