"""Shared fixtures: a private cache directory, a small MNIST-1D dataset and a tiny trained zoo.

Tests never touch the user's cache and never use the network.
"""

from __future__ import annotations

import os

import pytest
import torch

TINY_DATA = "mnist1d:size=2000,eval=500,seed=0"
TINY_MEMBERS = ["mlp_narrow", "mlp", "cnn_small_sgd", "gru_chunk4"]


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Every test session gets its own ANYTEACH_CACHE (set before anything reads it), and computes with one torch
    thread, in this process and in every process a test starts (unless the test says otherwise): a run and its
    resumed twin are compared like with like, whatever the machine's default thread count."""
    path = tmp_path_factory.mktemp("anyteach-cache")
    old = {key: os.environ.get(key) for key in ("ANYTEACH_CACHE", "OMP_NUM_THREADS")}
    os.environ["ANYTEACH_CACHE"] = str(path)
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(1)
    yield path
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def tiny_data():
    """A 2,000-sample MNIST-1D (1,500 train / 500 eval), generated once per session."""
    from anyteach import load_dataset

    return load_dataset(TINY_DATA)


@pytest.fixture(scope="session")
def tiny_zoo(tiny_data):
    """Four small zoo members trained for 3 epochs on `tiny_data`; maps name -> saved model path."""
    from anyteach.zoo import build_zoo, get_zoo

    zoo = get_zoo("mnist1d", data=TINY_DATA, members=TINY_MEMBERS, epochs=3)
    build_zoo(zoo, workers=1)
    return {name: str(zoo.path(name)) for name in zoo.names}
